"""The life of one trial, top to bottom: claim, sample, build, measure, train, store, end.

A worker claims a WAITING trial (``claim_waiting_trial``: the storage's atomic state change, so no
two workers run one trial) and ``run_trial`` takes it to one of its end states:

- complete: (validation accuracy, latency ms) told to the study, its attributes, curve, weights and
  member subsets stored; the checkpoint discarded.
- pruned: over a budget before training, or stopped at a rung or by dominance after an epoch; its
  reason, rung and curve kept; the checkpoint discarded.
- failed by its own fault (a diverging loss, out of memory): the reason stored, the worker goes on;
  the checkpoint discarded.
- stopped (the worker was asked to stop) or lost its database: failed and re-enqueued at once, the
  checkpoint kept, so that any worker resumes it from its last epoch.
- failed outside its fault (the artifact folder, the data set, the database): retried from its
  checkpoint while retries are left, and this worker stops (``HostFault``).
- anything else (a bug): failed for good, the error raised.

Test accuracy is stored, never used for selection. Everything a user sees beside the two values is a
user attribute named in ``TrialAttr``, the weights and the learning curve are artifacts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import socket
import statistics
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from automl.data import DataBundle
from automl.device import describe_device
from automl.errors import AutoMLError, DataError, TrainingError, first_line
from automl.measure.host_share import HostShare
from automl.measure.latency import LatencyRecord, Reference
from automl.measure.targets import device_label, target_key
from automl.models.ensemble import DividedNet, Ensemble
from automl.search.budgets import Complexity, complexity_of, set_budgets
from automl.search.checkpoints import TrialCheckpoint
from automl.search.dedup import (
    SameConfigurationRunning,
    config_id,
    known_latency,
    known_subset_latencies,
    outcome_attrs,
    same_configuration,
)
from automl.search.promotion import (
    CLAIM_TIERS,
    CONTINUATIONS,
    RESUMED_EPOCHS,
    PauseTrial,
    enqueue_continuation,
    evict_paused,
)
from automl.search.reporter import EpochReporter, StopRequested, record_intermediate_values
from automl.search.retrain import FINAL_EPOCHS, FROM_WEIGHTS
from automl.search.retries import RECONNECT_WAIT_S, max_retry_of, retry_later, trial_key
from automl.search.scheduler import early_stopper
from automl.search.startup import (
    assign_picks,
    latency_spread,
    run_survey,
    stored_survey,
    surveyed_latency,
)
from automl.search.subsets import store_subset_points
from automl.search.timing import LatencyTimer, ModelInput, latency_attrs, record_from_attrs
from automl.space import DataSection, SearchSpace, TrialParams
from automl.space.networks import Network, space_networks
from automl.store.artifacts import WEIGHTS_ARTIFACT, download_trial_file, load_weights
from automl.store.attrs import TrialAttr
from automl.store.claim import WaitingQueue
from automl.store.heartbeats import HeartbeatThread, heartbeat_interval
from automl.store.liveness import process_tag
from automl.store.retry import DEFAULT_TIMEOUT_S, TRANSIENT_DB_ERRORS, db_retry
from automl.training import EpochRecord, FitResult, evaluate, fit
from automl.training.profiling import profiling

__all__ = [
    "ArtifactStoreError",
    "Claimed",
    "HostFault",
    "TrialEnv",
    "TrialLife",
    "claim_order",
    "claim_waiting_trial",
    "run_trial",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# The seed of repeat r of a trial is its key + r * this: apart from every other trial's key.
REPEAT_SEED_STRIDE = 1_000_003


class ArtifactStoreError(AutoMLError):
    """The artifact folder cannot take a trial's files: the host's fault, not the trial's, so the
    trial is left to be retried."""


class HostFault(AutoMLError):
    """A trial failed for a reason outside it (its artifact folder, the database); the trial is
    left to be retried and this process runs no more trials, since the next would fail alike."""


def _is_host_fault(e: BaseException) -> bool:
    return isinstance(e, ArtifactStoreError | DataError | OSError | SQLAlchemyError)


# -- claiming -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A trial this worker moved from WAITING to RUNNING."""

    trial: optuna.Trial
    key: int
    trial_id: int


def claim_order(frozen: FrozenTrial) -> tuple[int, int]:
    """Retries first, then promoted continuations, then fresh tickets, each in trial order: an
    interrupted trial resumes from its checkpoint at once instead of after every new trial, and
    a promoted one before new work, their epochs so far not left idle."""
    tier = next(i for i, t in enumerate(CLAIM_TIERS) if t.holds(frozen.system_attrs))
    return (tier, frozen.number)


def claim_waiting_trial(
    study: optuna.Study,
    storage: BaseStorage,
    eligible: Callable[[FrozenTrial], bool] | None = None,
    only_eligible: bool = False,
) -> Claimed | None:
    """Atomically take one WAITING trial of ``study`` (held in ``storage``) in ``claim_order``;
    ``None`` when there is none. A continuation of a paused trial is taken only when ``eligible``
    says so (it is promotable); without ``eligible`` never. With ``only_eligible`` every trial
    must be.

    Only a trial that ``eligible`` must judge is read whole before the claim; the others are
    claimed by the storage as the first free one of their tier (``automl.store.claim``), so
    that a pool of workers claiming at once neither reads the queue once each nor races for the
    same trial."""
    study_id = storage.get_study_id_from_name(study.study_name)
    queue = WaitingQueue(storage, study_id)
    trial_id = _claim_in_order(queue, eligible, only_eligible, wait=False)
    if trial_id is None and queue.passes_over_held:
        # Trials other workers held at that instant were passed over: wait for them before
        # saying that none waits, so that a worker never leaves while a trial still waits.
        trial_id = _claim_in_order(queue, eligible, only_eligible, wait=True)
    if trial_id is None:
        return None
    if isinstance(storage, BaseHeartbeat) and heartbeat_interval(storage) is not None:
        # At once, not when the heartbeat thread first runs: Optuna only finds a trial stale
        # once it has a heartbeat, so a worker dying in between would leave it RUNNING forever.
        storage.record_heartbeat(trial_id)
    storage.set_trial_user_attr(trial_id, TrialAttr.WORKER_PROCESS, process_tag())
    frozen = storage.get_trial(trial_id)
    inherited = frozen.user_attrs.get(TrialAttr.FAIL_REASON)
    if inherited is not None:
        # Optuna's retry copies the failed attempt's attributes; its reason belongs to that
        # attempt, so it is kept under another name and this attempt starts without one.
        storage.set_trial_user_attr(trial_id, TrialAttr.RETRIED_AFTER, inherited)
        storage.set_trial_user_attr(trial_id, TrialAttr.FAIL_REASON, None)
    _known_to_study(study, trial_id)
    return Claimed(optuna.Trial(study, trial_id), trial_key(frozen), trial_id)


def _claim_in_order(
    queue: WaitingQueue,
    eligible: Callable[[FrozenTrial], bool] | None,
    only_eligible: bool,
    wait: bool,
) -> int | None:
    for tier in CLAIM_TIERS:
        if only_eligible or tier is CONTINUATIONS:
            # Judged one by one, each claim waiting for a held trial: nothing to wait for again.
            if eligible is not None and not wait:
                trial_id = queue.claim_accepted(tier, eligible)
            else:
                trial_id = None
        else:
            trial_id = queue.claim_first(tier, wait=wait)
        if trial_id is not None:
            return trial_id
    return None


def _known_to_study(study: optuna.Study, trial_id: int) -> None:
    """Optuna's cache in front of an RDB storage (the study's own storage) must know a trial
    before the trial takes a parameter: a trial made by another process since this one last read
    (a retry, a ticket) is otherwise unknown to it, and a sampler that reads no history (random)
    would fail on it. The cache is brought up to date only then, since that reads every
    unfinished trial of the study. (The gRPC proxy's client and the in-memory storage pass a
    parameter on as it is; the proxy's server cache has just read the trial for the claim.)"""
    cache = study._storage
    if isinstance(cache, _CachedStorage) and trial_id not in cache._trial_id_to_study_id_and_number:
        study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


# -- what a worker brings to every trial ------------------------------------------------------


@dataclass
class _DataCache:
    """Each worker loads its data set once, not once per trial."""

    bundles: dict[DataSection, DataBundle] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, section: DataSection) -> DataBundle:
        with self.lock:
            if section not in self.bundles:
                self.bundles[section] = section.load()
            return self.bundles[section]


_DATA = _DataCache()


class TrialEnv:
    """What a worker brings to every trial it runs: the space, its device, the artifact folder,
    the latency timer with its reference, the host share, the stop signal and the progress hook."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        device: torch.device,
        artifact_dir: Path,
        stop_event: threading.Event | None = None,
        progress: bool = False,
        profile: bool = False,
        db_timeout_s: float = DEFAULT_TIMEOUT_S,
        storage_url: str | None = None,
        host_share: HostShare | None = None,
    ) -> None:
        self.space = space
        self.device = device
        self.artifact_dir = artifact_dir
        self.artifacts = FileSystemArtifactStore(str(artifact_dir))
        self.stop_event = stop_event or threading.Event()
        self.progress = progress
        self.profile = profile
        self.db_timeout_s = db_timeout_s
        self.storage_url = storage_url
        self.host_share = host_share
        self.timer = LatencyTimer(
            space, host_share=host_share, db_timeout_s=db_timeout_s, stop_event=self.stop_event
        )
        self.timer.on_phase = self.phase
        self._baseline: Complexity | None = None
        # The final phase: promoted continuations train to the end, no rung stops them.
        self.final_phase = False
        # Told what the running trial is doing (a progress bar's description); set by the runner.
        self.on_phase: Callable[[str], None] | None = None

    def phase(self, what: str) -> None:
        if self.on_phase is not None:
            self.on_phase(what)

    def data(self) -> DataBundle:
        return _DATA.get(self.space.data)

    def checkpoint(self, study: optuna.Study, key: int) -> TrialCheckpoint:
        """The checkpoint of original trial ``key`` of ``study``."""
        return TrialCheckpoint.of(self.artifact_dir, study, key)

    def baseline_size(self) -> Complexity:
        """(params, FLOPs, MACs) of the undivided network at the default width, for relative
        budgets."""
        if self._baseline is None:
            data = self.data()
            model = self.timer.baseline_model(data.num_classes, data.in_chans)
            self._baseline = complexity_of(model, ModelInput.of(data).shape)
        return self._baseline

    def retry_db(self, fn: Callable[[], T], what: str) -> T:
        """``fn`` with a lost database connection waited out; cut short by a stop."""
        return db_retry(fn, what=what, timeout_s=self.db_timeout_s, stop_event=self.stop_event)

    def upload(self, trial: optuna.Trial, path: Path, mimetype: str) -> None:
        upload_artifact(
            artifact_store=self.artifacts,
            file_path=str(path),
            study_or_trial=trial,
            mimetype=mimetype,
        )


# -- the life of one trial --------------------------------------------------------------------


def run_trial(
    env: TrialEnv, study: optuna.Study, storage: BaseStorage, claimed: Claimed
) -> TrialState:
    """Run a claimed trial to its end state (see the module's docstring) and return it."""
    return TrialLife(env, study, storage, claimed).run()


class TrialLife:
    """One claimed trial, from its first step to its end state."""

    def __init__(
        self, env: TrialEnv, study: optuna.Study, storage: BaseStorage, claimed: Claimed
    ) -> None:
        self.env = env
        self.study = study
        self.storage = storage
        self.claimed = claimed
        self.trial = claimed.trial
        self.key = claimed.key
        self.space = env.space
        self.checkpoint = env.checkpoint(study, claimed.key)
        # The reference of this trial's measurement: its subset points are timed against it too.
        self.reference: Reference | None = None
        # The measurement's attributes and where it was taken (host, target), once measured.
        self.latency: dict[str, Any] = {}
        self.where = ("", "")

    @functools.cached_property
    def ticket_attrs(self) -> dict[str, Any]:
        """What the ticket says about its run (a continuation's epochs, a retrain's schedule),
        read once, inside the steps, where a lost database ends the trial as such."""
        return self.env.retry_db(
            lambda: self.storage.get_trial_system_attrs(self.claimed.trial_id), "read the trial"
        )

    @property
    def final_epochs(self) -> int | None:
        """A final-phase retrain's own schedule (automl.search.retrain); None: the space's."""
        epochs = self.ticket_attrs.get(FINAL_EPOCHS)
        return int(epochs) if isinstance(epochs, int) else None

    def run(self) -> TrialState:
        with HeartbeatThread(self.storage, self.claimed.trial_id):
            try:
                values = self.steps()
            except PauseTrial as e:
                return self.end_paused(e)
            except optuna.TrialPruned:
                return self.end_pruned()
            except (StopRequested, KeyboardInterrupt) as e:
                return self.end_stopped(e)
            except SameConfigurationRunning as e:
                return self.end_not_trained(e)
            except (TrainingError, torch.OutOfMemoryError) as e:
                return self.end_failed(e)
            except TRANSIENT_DB_ERRORS as e:
                return self.end_lost_database(e)
            except Exception as e:
                if _is_host_fault(e):
                    self.end_host_fault(e)
                self.end_failed_for_good(e)
                raise
            except BaseException as e:
                self.end_failed_for_good(e)
                raise
            return self.end_complete(values)

    # -- the steps --------------------------------------------------------------------------------
    def steps(self) -> tuple[float, float]:
        """Sample, build, measure, train and store: the trial's (accuracy, latency ms)."""
        if self.env.host_share is not None:
            # Before every trial: a worker that joined or left this host changes the shares.
            self.env.host_share.apply()
        sampled = self.sample()
        data = self.env.data()
        model = self.build(sampled, data)
        known = self.reuse_known_outcome()
        if known is not None:
            return known
        # Latency does not depend on the weights: measured first, so the schedulers can use it,
        # and a network over the latency budget is rejected untrained.
        lat = self.measure(model, data)
        self.start_from_survey(sampled, data)
        self.check_latency_budget(lat)
        if self.env.stop_event.is_set():
            # Asked to stop while measuring: re-enqueued now, not after a first epoch.
            raise StopRequested("stopped before its first epoch")
        result = self.train(sampled, model, data, lat)
        accuracy = self.repeat(sampled, data, result)
        self.store(model, data, result)
        return accuracy, lat.median_ms

    def sample(self) -> TrialParams:
        """The trial's point of the space, and where it runs."""
        trial, env = self.trial, self.env
        sampled = self.space.suggest(trial)
        data = env.data()
        env.retry_db(lambda: ModelInput.of(data).store(trial.study), "store the model input")
        trial.set_user_attr(TrialAttr.HOST, socket.gethostname())
        trial.set_user_attr(TrialAttr.DEVICE, describe_device(env.device))
        return sampled

    def build(self, sampled: TrialParams, data: DataBundle) -> Ensemble:
        """The trial's model, its size stored; pruned before training when over a budget."""
        self.env.phase("building")
        trial = self.trial
        torch.manual_seed(self.key)
        model = self.space.build_model(sampled, data.num_classes, data.in_chans)
        size = complexity_of(model, ModelInput.of(data).shape)
        for name, value in zip(
            (TrialAttr.N_PARAMS, TrialAttr.FLOPS, TrialAttr.MACS), size, strict=True
        ):
            trial.set_user_attr(name, value)
        m = self.space.model
        net = Network.of(model, m.name, sampled.split_factor, {"combine": m.combine, **m.options})
        self.network = net
        trial.set_user_attr(TrialAttr.NETWORK, net.id)
        trial.set_user_attr(TrialAttr.MEMBER_WIDTHS, list(net.widths))
        self.config = config_id(net, sampled, self.space, self.final_epochs)
        trial.set_user_attr(TrialAttr.CONFIG, self.config)
        self.size = size
        self._check_budgets(None)
        return model

    def _check_budgets(self, latency_ms: float | None) -> None:
        c = self.space.constraints
        relative = (c.max_params_ratio, c.max_flops_ratio, c.max_macs_ratio)
        baseline = self.env.baseline_size() if any(r is not None for r in relative) else None
        violated = set_budgets(self.trial, c, self.size, baseline, latency_ms)
        if violated:
            reason = "over budget: " + "; ".join(violated)
            self.trial.set_user_attr(TrialAttr.PRUNED_REASON, reason)
            raise optuna.TrialPruned(reason)

    def check_latency_budget(self, lat: LatencyRecord) -> None:
        """``[constraints] max_latency_ms``: rejected before training, stored as a constraint."""
        if self.space.constraints.max_latency_ms is not None:
            self._check_budgets(lat.median_ms)

    def reuse_known_outcome(self) -> tuple[float, float] | None:
        """The stored outcome of this configuration (``automl.search.dedup``): the values of a
        finished trial, or a stop at the same epochs (raises ``TrialPruned``); ``None`` when the
        configuration is new. Raises ``SameConfigurationRunning`` when it trains elsewhere."""
        trial = self.trial
        source = same_configuration(self.study, trial, self.config)
        if source is None:
            return None
        self.env.phase(f"reusing trial {source.number}")
        for name, value in outcome_attrs(source).items():
            trial.set_user_attr(name, value)
        trial.set_user_attr(TrialAttr.REUSED_FROM, source.number)
        if source.state is TrialState.COMPLETE:
            log.info(
                "%s: the same configuration as trial %d; its outcome reused",
                self._name,
                source.number,
            )
            return float(source.values[0]), float(source.values[1])
        why = source.user_attrs.get(TrialAttr.PRUNED_REASON) or "stopped early"
        reason = f"the same configuration as trial {source.number}: {why}"
        trial.set_user_attr(TrialAttr.PRUNED_REASON, reason)
        raise optuna.TrialPruned(reason)

    def measure(self, model: Ensemble, data: DataBundle) -> LatencyRecord:
        """The model's latency on the latency device, stored on the trial."""
        self.env.phase("measuring latency")
        timer = self.env.timer
        dev = timer.device(self.env.device)
        model_input = ModelInput.of(data)
        x = torch.randn(self.space.objectives.latency_batch_size, *model_input.shape)
        target = target_key(device_label(dev), x.shape[0])
        host = socket.gethostname()
        known = known_latency(self.study, self.trial, self.network.id, host, target) or (
            surveyed_latency(self.study, self.network.id, host, target)
        )
        self.where = (host, target)
        if known is not None:
            # Measured once per network, host and target: every later trial reads it, and times
            # its member subsets against the reference it was paired with (settled and stored).
            record = record_from_attrs(known)
            if self.space.objectives.latency_paired:
                self.reference = timer.reference(
                    self.trial.study, model_input, dev, x, record.threads
                )
            for name, value in known.items():
                self.trial.set_user_attr(name, value)
            self.latency = known
            return record
        lat, self.reference = timer.time(self.trial.study, model, model_input, dev, x)
        self.latency = latency_attrs(lat, dev)
        for name, value in self.latency.items():
            self.trial.set_user_attr(name, value)
        return lat

    def start_from_survey(self, sampled: TrialParams, data: DataBundle) -> None:
        """``[sampler] startup = "latency"``: the worker of the baseline trial times every
        network of the space and fixes the start's networks (``automl.search.startup``)."""
        space = self.space
        if not space.surveys_latency or stored_survey(self.study) is not None:
            return
        if TrialAttr.STARTUP in self.trial.user_attrs or sampled.split_factor != 1:
            return
        if abs(sampled.width_mult - space.model.default_width_mult) > 1e-9:
            return  # only the baseline's worker surveys: one survey per study
        timer, m = self.env.timer, space.model
        dev = timer.device(self.env.device)
        model_input = ModelInput.of(data)
        x = torch.randn(space.objectives.latency_batch_size, *model_input.shape)

        def identify(k: int, w: float) -> tuple[str, Ensemble]:
            if self.env.stop_event.is_set():
                raise StopRequested("stopped while timing the space's networks")
            model = space.build_model(
                dataclasses.replace(sampled, split_factor=k, width_mult=w),
                data.num_classes,
                data.in_chans,
            )
            return Network.of(model, m.name, k, {"combine": m.combine, **m.options}).id, model

        def time_model(model: Ensemble) -> dict[str, Any]:
            lat, _ = timer.time(self.study, model, model_input, dev, x)
            return latency_attrs(lat, dev)

        points = run_survey(
            self.study,
            space_networks(space),
            identify,
            time_model,
            (self.network.id, self.latency),
            self.where,
            self.env.phase,
        )
        picks = latency_spread(points, space.sampler.n_startup_trials, self.network.id)
        assign_picks(self.study, self.storage, picks)
        added = [f"K={p.split_factor} w{p.width_mult:.3g} {p.latency_ms:.3f} ms" for p in picks]
        log.info("%s: timed %d networks; the start adds %s", self._name, len(points), added)

    def train(
        self, sampled: TrialParams, model: Ensemble, data: DataBundle, lat: LatencyRecord
    ) -> FitResult:
        """Co-train, from the checkpoint of an earlier attempt of this trial if there is one."""
        env, trial = self.env, self.trial
        train_cfg = self.space.train_config(sampled, seed=self.key)
        if self.final_epochs is not None:
            # A schedule of its own length: warm-up, then a cosine that ends at its last epoch.
            train_cfg = dataclasses.replace(train_cfg, epochs=self.final_epochs)
        resumes = self.ticket_attrs.get(RESUMED_EPOCHS)
        if resumes is not None:
            self._note_resume(int(resumes))
        source = self.ticket_attrs.get(FROM_WEIGHTS)
        if isinstance(source, int):
            # A restart begins where its source ended; a checkpoint of this run, if there is
            # one, replaces these weights in fit (a retry resumes its own epochs).
            self._load_source_weights(model, source)
        reporter = EpochReporter(
            trial,
            latency_ms=lat.median_ms,
            # The final phase trains the front's paused networks to the end, and a retrain (in
            # any run) has a schedule of its own that the rungs' epochs do not rank: no rung
            # stops either.
            stopper=(
                None
                if env.final_phase or self.final_epochs is not None
                else early_stopper(self.space, train_cfg.epochs)
            ),
            epochs=train_cfg.epochs,
            stop_event=env.stop_event,
            db_timeout_s=env.db_timeout_s,
        )
        self.checkpoint.adopt_legacy()
        identity = self.checkpoint.identity(
            trial.study, self.space, trial.params, model, data, env.storage_url
        )

        def keep_trace(path: Path) -> None:
            env.upload(trial, path, "application/json")

        share = env.host_share
        with profiling(env.profile, env.device, keep_trace) as profile_hook:
            step_hook = profile_hook
            if share is not None:
                # Between steps, the training pauses for another worker's CPU measurement.
                def step_hook(step: int) -> None:
                    if profile_hook is not None:
                        profile_hook(step)
                    share.step(step)

                # Busy while training: another worker's CPU measurement waits for a step
                # boundary instead of timing while this one computes.
                share.begin_training()
            try:
                return fit(
                    model,
                    data,
                    train_cfg,
                    device=env.device,
                    callback=reporter,
                    checkpoint_path=self.checkpoint.path,
                    resume=True,
                    progress=env.progress,
                    step_hook=step_hook,
                    run_identity=identity,
                    # A checkpoint of another run, or a damaged one, is moved aside, not resumed.
                    quarantine_bad_checkpoint=True,
                    phase=env.phase,
                )
            finally:
                if share is not None:
                    share.end_training()

    def repeat(self, sampled: TrialParams, data: DataBundle, result: FitResult) -> float:
        """``[search] repeats = n``: a configuration trained to the end is trained again with
        n - 1 other seeds; the trial's value is the mean validation accuracy, every seed's kept in
        ``repeat_accuracies``. The shipped weights (and the test accuracy) are the first run's.
        Repeats are not checkpointed: a retry trains them again."""
        # A retrain is the model to ship, trained once: repeats rank configurations.
        n = 1 if self.final_epochs is not None else self.space.search.repeats
        accuracies = [result.val_accuracy]
        env = self.env

        def obey_stop(rec: EpochRecord) -> None:
            if env.stop_event.is_set():
                raise StopRequested(f"stopped in a repeat after epoch {rec.epoch + 1}")

        for r in range(1, n):
            seed = self.key + r * REPEAT_SEED_STRIDE
            env.phase(f"repeat {r + 1} of {n}")
            torch.manual_seed(seed)
            model = self.space.build_model(sampled, data.num_classes, data.in_chans)
            again = fit(
                model,
                data,
                self.space.train_config(sampled, seed=seed),
                device=env.device,
                callback=obey_stop,
                progress=env.progress,
                phase=env.phase,
            )
            accuracies.append(again.val_accuracy)
        if n > 1:
            self.trial.set_user_attr(TrialAttr.REPEAT_ACCURACIES, accuracies)
        return statistics.fmean(accuracies)

    def _load_source_weights(self, model: Ensemble, number: int) -> None:
        """The weights trial ``number`` ended with, into ``model``; where they cannot be read,
        the run trains from a new initialisation and its ``final_phase`` says why."""
        try:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                self.study._study_id, number
            )
            source = self.storage.get_trial(trial_id)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / WEIGHTS_ARTIFACT
                download_trial_file(
                    self.storage, self.env.artifact_dir, source, WEIGHTS_ARTIFACT, path
                )
                model.load_state_dict(load_weights(path)["state_dict"])
        except (ArtifactNotFound, LookupError, OSError, ValueError, RuntimeError) as e:
            why = f"trial {number}'s weights could not be read ({e}): trained from scratch"
            log.warning("%s: %s", self._name, why)
            found = self.trial.user_attrs.get(TrialAttr.FINAL_PHASE)
            phase = dict(found) if isinstance(found, dict) else {}
            self.trial.set_user_attr(
                TrialAttr.FINAL_PHASE, phase | {"from_weights": False, "weights_error": why}
            )

    def _note_resume(self, rung: int) -> None:
        """A promoted (or final-phase) continuation: what it starts from, in its attributes."""
        trial = self.trial
        curve = trial.user_attrs.get(TrialAttr.CURVE) or []
        if self.env.final_phase:
            before = curve[rung - 1] if len(curve) >= rung else None
            trial.set_user_attr(
                TrialAttr.FINAL_PHASE, {"epochs_before": rung, "accuracy_before": before}
            )
        if not self.checkpoint.path.is_file():
            # Discarded (the disk budget) or lost: the run starts again, and says so.
            trial.set_user_attr(
                TrialAttr.RESTARTED,
                f"its checkpoint at epoch {rung} was gone: trained again from epoch 0",
            )
            trial.set_user_attr(TrialAttr.CURVE, [])

    def store(self, model: Ensemble, data: DataBundle, result: FitResult) -> None:
        """Attributes of the finished run, its member subsets, its test accuracy, and its curve
        and weights as artifacts."""
        env, trial = self.env, self.trial
        trial.set_user_attr(TrialAttr.TRAIN_FORM, result.form)
        if result.resumed_from_epoch:
            trial.set_user_attr(TrialAttr.RESUMED_FROM_EPOCH, result.resumed_from_epoch)
            # The curve of the epochs done before the interruption comes from the checkpoint.
            trial.set_user_attr(TrialAttr.CURVE, [r.val_accuracy for r in result.history])
        trial.set_user_attr(
            TrialAttr.TRAIN_SECONDS, round(sum(r.seconds for r in result.history), 3)
        )
        trial.set_user_attr(TrialAttr.MEMBER_ACCURACIES, result.member_val_accuracies)
        if model.split_factor > 1 and isinstance(model, DividedNet):
            # Operating points for free: the m best members of this ensemble.
            env.phase("measuring member subsets")
            dev = env.timer.device(env.device)
            store_subset_points(
                trial,
                model,
                data,
                dev,
                self.space.objectives,
                result.member_val_accuracies,
                reference=self.reference,
                measuring=lambda: env.timer.measuring(dev),
                known=known_subset_latencies(
                    self.study, trial.user_attrs.get(TrialAttr.LATENCY_FROM)
                ),
            )
        env.phase("evaluating on the test split")
        test = evaluate(model, data.test, device=env.device)
        trial.set_user_attr(TrialAttr.TEST_ACCURACY, test.accuracy)
        trial.set_user_attr(TrialAttr.TEST_MEMBER_ACCURACIES, test.member_accuracies)
        self._upload_outcome(model, result)
        record_intermediate_values(trial, result.history, env.db_timeout_s)

    def _upload_outcome(self, model: Ensemble, result: FitResult) -> None:
        history = [asdict(r) for r in result.history]
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        files: list[tuple[str, Callable[[Path], Any], str]] = [
            (
                "learning_curve.json",
                lambda p: p.write_text(json.dumps(history, indent=1)),
                "application/json",
            ),
            (
                "weights.pt",
                lambda p: torch.save({"model_config": model.model_config, "state_dict": state}, p),
                "application/octet-stream",
            ),
        ]
        try:
            for name, write, mimetype in files:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / name
                    write(path)
                    self.env.upload(self.trial, path, mimetype)
        except OSError as e:
            raise ArtifactStoreError(
                f"cannot write artifacts under {self.env.artifact_dir}: {e}; make the folder "
                "writable (or pass --artifacts) and run again: the trial resumes"
            ) from e

    # -- the end states ---------------------------------------------------------------------------
    def _record(self, fn: Callable[[], T], what: str) -> T:
        # Not cut short by a stop: recording how the trial ended is what a stop waits for.
        return db_retry(fn, what=what, timeout_s=self.env.db_timeout_s)

    def end_complete(self, values: tuple[float, float]) -> TrialState:
        # A finished trial is the expensive part: wait out a database restart rather than lose it.
        self._record(lambda: self.study.tell(self.trial, list(values)), f"record {self._name}")
        self.checkpoint.discard()
        return TrialState.COMPLETE

    def end_pruned(self) -> TrialState:
        self._record(
            lambda: self.study.tell(self.trial, state=TrialState.PRUNED), "record a pruned trial"
        )
        self.checkpoint.discard()
        return TrialState.PRUNED

    def end_paused(self, e: PauseTrial) -> TrialState:
        """Promote mode: PRUNED with ``paused`` set and its checkpoint kept; a continuation ticket
        resumes it once it is promoted (``automl.search.promotion``)."""
        trial, study = self.trial, self.study
        self._record(lambda: trial.set_user_attr(TrialAttr.PRUNED_REASON, e.reason), "pause")
        self._record(lambda: trial.set_user_attr(TrialAttr.RUNG, e.rung), "pause")
        self._record(lambda: trial.set_user_attr(TrialAttr.PAUSED, True), "pause")
        self._record(lambda: study.tell(trial, state=TrialState.PRUNED), "record a paused trial")
        frozen = self._record(lambda: self.storage.get_trial(self.claimed.trial_id), "pause")
        self._record(
            lambda: enqueue_continuation(study, frozen, self.key, e.rung), "enqueue its promotion"
        )
        limit = self.space.scheduler.max_paused_checkpoints
        self._record(
            lambda: evict_paused(
                study,
                self.storage,
                limit,
                lambda t: self.env.checkpoint(study, trial_key(t)).discard(),
            ),
            "keep the paused checkpoints within their budget",
        )
        return TrialState.PRUNED

    def end_stopped(self, e: BaseException) -> TrialState:
        """A stop is nobody's failure: re-enqueued at once, not counted against max_retry."""
        why = f"worker stopped: {e or 'interrupted'}"
        try:
            # Not through the stop-aware wait: the stop is already set.
            db_retry(
                lambda: retry_later(self.study, self.trial, why, None),
                what="re-enqueue a stopped trial",
                timeout_s=min(self.env.db_timeout_s, 5.0),
            )
        except Exception as err:
            log.error(
                "could not re-enqueue %s (%s); it is retried once it goes stale",
                self._name,
                first_line(err),
            )
        if isinstance(e, KeyboardInterrupt):
            raise e
        return TrialState.WAITING

    def end_failed(self, e: BaseException) -> TrialState:
        """The trial's own fault (divergence, a model too big for this device): its reason
        recorded, this trial failed, the worker goes on with the next."""
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        trial = self.trial
        self._record(lambda: trial.set_user_attr(TrialAttr.FAIL_REASON, reason), "record a failure")
        self._record(lambda: self.study.tell(trial, state=TrialState.FAIL), "record a failure")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning("%s failed: %s", self._name, reason)
        self.checkpoint.discard()
        return TrialState.FAIL

    def end_not_trained(self, e: SameConfigurationRunning) -> TrialState:
        """The configuration trains elsewhere right now: this trial fails without training (a
        FAIL stays out of the samplers' history) and a new trial takes its place, so a study asked
        for N trials still gets N."""
        trial, study = self.trial, self.study
        self._record(lambda: trial.set_user_attr(TrialAttr.FAIL_REASON, str(e)), "record a failure")
        self._record(lambda: study.tell(trial, state=TrialState.FAIL), "record a failure")
        self._record(lambda: study.enqueue_trial({}), "enqueue a trial in its place")
        log.info("%s: %s; a new trial takes its place", self._name, e)
        self.checkpoint.discard()
        return TrialState.FAIL

    def end_lost_database(self, e: BaseException) -> TrialState:
        """The database went away mid-trial (a restart, say). This process knows the trial is
        abandoned: once the database answers again, the trial is failed and its retry enqueued at
        once, rather than left RUNNING until it goes stale (never, without heartbeats)."""
        why = f"lost its database connection: {first_line(e)}"
        try:
            db_retry(
                lambda: retry_later(self.study, self.trial, why, max_retry_of(self.storage)),
                what="re-enqueue a trial that lost its database connection",
                timeout_s=min(self.env.db_timeout_s, RECONNECT_WAIT_S),
            )
        except Exception as err:
            log.warning(
                "%s lost its database connection (%s) and it is still gone (%s); the trial is "
                "retried once it goes stale",
                self._name,
                first_line(e),
                first_line(err),
            )
            return TrialState.RUNNING
        log.warning("%s lost its database connection; re-enqueued", self._name)
        return TrialState.WAITING

    def end_host_fault(self, e: Exception) -> None:
        """Not the trial's fault: retried from its checkpoint while retries are left; raises
        ``HostFault`` so that this worker stops."""
        why = f"not the trial's fault: {first_line(e)}"
        try:
            retried = self._record(
                lambda: retry_later(self.study, self.trial, why, max_retry_of(self.storage)),
                "re-enqueue a trial",
            )
        except Exception:
            log.error("could not record the failure of %s:\n%s", self._name, traceback.format_exc())
            retried = True  # it goes stale and is retried from its checkpoint
        if not retried:
            self.checkpoint.discard()
        left = "left to be retried" if retried else "failed for good (retries used up)"
        raise HostFault(f"{self._name} {left}: {first_line(e)}") from e

    def end_failed_for_good(self, e: BaseException) -> None:
        """An unexpected error (a bug): the trial fails with its reason and is not retried."""
        try:
            self.trial.set_user_attr(TrialAttr.FAIL_REASON, first_line(e))
            self.study.tell(self.trial, state=TrialState.FAIL)
        except Exception:
            log.error("could not record the failure of %s:\n%s", self._name, traceback.format_exc())
            return
        self.checkpoint.discard()

    @property
    def _name(self) -> str:
        return f"trial {self.trial.number}"
