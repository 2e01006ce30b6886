"""The objective of one trial: suggest, build, measure latency, co-train, report.

Returns (validation accuracy, latency in ms). Everything else a user wants to see next to a trial
is stored as a user attribute (named in ``TrialAttr``), the weights and the learning curve as
artifacts. Test accuracy is stored, never used for selection.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from automl.attrs import TrialAttr
from automl.complexity import count_flops_and_macs, count_parameters
from automl.data import DataBundle
from automl.device import describe_device, resolve_device
from automl.errors import AutoMLError, TrainingError
from automl.host_share import HostShare, wait_for_quiet_cpu
from automl.latency import LatencyRecord, Reference, measure, settle_reference
from automl.latency_targets import device_label, target_key
from automl.models import create_model
from automl.models.ensemble import DividedNet, Ensemble
from automl.names import study_dir_name
from automl.paths import inside
from automl.retry import DEFAULT_TIMEOUT_S, db_retry
from automl.scheduler import EarlyStopper, RungScheduler
from automl.space import DataSection, SearchSpace, TrialParams
from automl.training import EpochRecord, FitResult, evaluate, fit

__all__ = [
    "STUDY_UUID_ATTR",
    "ArtifactStoreError",
    "EpochReporter",
    "ModelInput",
    "Objective",
    "StopRequested",
    "record_intermediate_values",
    "trial_key",
]

# A study's own identity, stored once by the process that creates it: two studies of the same
# name (another database, or the same file deleted and created again) never share checkpoints.
STUDY_UUID_ATTR = "automl:study_uuid"
# The settled time of the reference network (the study's baseline) per host, device, batch size
# and thread count: every worker of a host multiplies its ratios by the same number.
REFERENCE_ATTR_PREFIX = "automl:latency_reference:"
# How much longer than a trial's measurement the reference is settled for.
REFERENCE_SETTLE_FACTOR = 3.0
MODEL_INPUT_ATTR = "automl:model_input"

log = logging.getLogger(__name__)


def _profiler(trace_dir: Path, device: torch.device) -> torch.profiler.profile:
    """A torch.profiler trace of a few training steps, in TensorBoard's format."""
    # Kineto writes to the C-level stderr, through any progress bar: on the CPU its lines are
    # noise (profiler_start/stop, and "gpuGetDeviceCount failed", which only says there is no
    # GPU), so all are off; on a GPU its errors are kept (a CUPTI failure means no GPU events).
    # Kineto reads this when the first profiler starts; a value the user set wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6" if device.type == "cpu" else "4")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=1, warmup=1, active=3, repeat=1),
        on_trace_ready=torch.profiler.tensorboard_trace_handler(str(trace_dir)),
        record_shapes=True,
    )


@contextlib.contextmanager
def _profiling(
    enabled: bool, device: torch.device, keep: Callable[[Path], None]
) -> Iterator[Callable[[int], None] | None]:
    """With ``enabled``, a step hook that drives a profiler; once the profiler has stopped and
    written its trace, each trace file is handed to ``keep``. Otherwise no hook."""
    if not enabled:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        with _profiler(Path(tmp), device) as prof:
            yield lambda step: prof.step()
        for f in sorted(Path(tmp).rglob("*.json")):
            keep(f)


@dataclass(frozen=True)
class ModelInput:
    """What a model of the study is built for, kept in the study so that its architectures can
    be rebuilt where the data set is not (``automl remeasure`` on a deployment box)."""

    num_classes: int
    in_chans: int
    image_size: int

    @classmethod
    def of(cls, data: DataBundle) -> ModelInput:
        return cls(data.num_classes, data.in_chans, data.image_size)

    @classmethod
    def stored(cls, study: optuna.Study) -> ModelInput | None:
        raw = study.user_attrs.get(MODEL_INPUT_ATTR)
        if isinstance(raw, list) and len(raw) == 3 and all(isinstance(v, int) for v in raw):
            return cls(*raw)
        return None

    def store(self, study: optuna.Study) -> None:
        if ModelInput.stored(study) != self:
            study.set_user_attr(
                MODEL_INPUT_ATTR, [self.num_classes, self.in_chans, self.image_size]
            )


def _cpu_name() -> str:
    """The CPU's model name: a host record settled on one CPU is not reused on another."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class StopRequested(Exception):
    """The worker was asked to stop; the trial is left to be retried from its checkpoint."""


class ArtifactStoreError(AutoMLError):
    """The artifact folder cannot take a trial's files: the host's fault, not the trial's, so the
    trial is left to be retried (``automl.runner``)."""


class EpochReporter:
    """What happens after every epoch of a trial: store the curve, ask the early stopper (the
    space's scheduler), obey a stop.

    A retry inherits the interrupted run's attributes: its curve fills the epochs that the resumed
    run skips, so that index e is always epoch e (``None`` where neither run recorded it).
    """

    def __init__(
        self,
        trial: optuna.Trial,
        *,
        latency_ms: float,
        stopper: EarlyStopper | None,
        epochs: int,
        stop_event: threading.Event,
        db_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.trial = trial
        self.latency_ms = latency_ms
        self.stopper = stopper
        self.epochs = epochs
        self.stop_event = stop_event
        self.db_timeout_s = db_timeout_s
        self.rungs: list[int] = stopper.rungs if isinstance(stopper, RungScheduler) else []
        self.prior_curve: list[float | None] = list(trial.user_attrs.get(TrialAttr.CURVE, []))
        self.prior_seconds: list[float | None] = list(
            trial.user_attrs.get(TrialAttr.EPOCH_SECONDS, [])
        )
        self.curve: list[float | None] = []
        self.seconds: list[float | None] = []

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        return db_retry(fn, what=what, timeout_s=self.db_timeout_s, stop_event=self.stop_event)

    def _record(self, rec: EpochRecord) -> None:
        for values, prior in ((self.curve, self.prior_curve), (self.seconds, self.prior_seconds)):
            del values[rec.epoch :]
            while len(values) < rec.epoch:
                values.append(prior[len(values)] if len(values) < len(prior) else None)
        self.curve.append(rec.val_accuracy)
        self.seconds.append(rec.seconds)

    def __call__(self, rec: EpochRecord) -> None:
        self._record(rec)
        trial = self.trial
        curve = list(self.curve)
        seconds = [None if s is None else round(s, 3) for s in self.seconds]
        self._retry(lambda: trial.set_user_attr(TrialAttr.CURVE, curve), "store the curve")
        self._retry(
            lambda: trial.set_user_attr(TrialAttr.EPOCH_SECONDS, seconds), "store epoch times"
        )
        last_epoch = rec.epoch + 1 >= self.epochs
        stopper = self.stopper
        if stopper is not None and not last_epoch:
            stop = self._retry(
                lambda: stopper.decide(
                    trial.study, trial.number, rec.epoch, rec.val_accuracy, self.latency_ms
                ),
                "read other trials' curves",
            )
            if stop is not None:
                self._retry(
                    lambda: trial.set_user_attr(TrialAttr.PRUNED_REASON, stop.reason),
                    "record why the trial stopped",
                )
                self._retry(
                    lambda: trial.set_user_attr(TrialAttr.STOPPED_EPOCH, rec.epoch + 1),
                    "record why the trial stopped",
                )
                if stop.rung is not None:
                    rung = stop.rung
                    self._retry(
                        lambda: trial.set_user_attr(TrialAttr.RUNG, rung), "record the rung"
                    )
                raise optuna.TrialPruned(stop.reason)
            if self.rungs and rec.epoch + 1 in self.rungs:
                # The highest rung passed: what `automl status` and the report show.
                self._retry(
                    lambda: trial.set_user_attr(TrialAttr.RUNG, rec.epoch + 1), "record the rung"
                )
        if self.stop_event.is_set() and not last_epoch:
            raise StopRequested(f"stopped after epoch {rec.epoch + 1}")


def record_intermediate_values(
    trial: optuna.Trial, history: list[EpochRecord], db_timeout_s: float = DEFAULT_TIMEOUT_S
) -> None:
    """Store the validation accuracy per epoch as the trial's intermediate values (step = epoch),
    what optuna-dashboard lists on the trial's page, once the trial has trained every epoch.

    Not per epoch through ``trial.report``: it refuses two-objective studies. Not for a trial that
    stops early either: Optuna's TPE sampler ranks PRUNED trials by their last intermediate value
    through ``study.direction``, which raises in a two-objective study, so one pruned trial with
    intermediate values would stop every later trial from sampling. A trial that trained to the
    end completes (or fails), and TPE does not read those values.
    """
    storage, trial_id = trial.storage, trial._trial_id
    for rec in history:
        db_retry(
            functools.partial(
                storage.set_trial_intermediate_value, trial_id, rec.epoch, rec.val_accuracy
            ),
            what="store the learning curve",
            timeout_s=db_timeout_s,
        )


def trial_key(trial: optuna.trial.FrozenTrial) -> int:
    """The number of the original trial, equal for every retry of it (checkpoints, seeds)."""
    original = trial.system_attrs.get("failed_trial")
    return int(original) if original is not None else int(trial.number)


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


class Objective:
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
        self.host_share = host_share
        self._references: dict[str, Reference] = {}
        # The reference of the running trial's measurement: its subset points use it too.
        self._trial_reference: Reference | None = None
        self.storage_url = storage_url
        self.device = device
        self.artifact_dir = artifact_dir
        self.store = FileSystemArtifactStore(str(artifact_dir))
        self.stop_event = stop_event or threading.Event()
        self.progress = progress
        self.profile = profile
        self.db_timeout_s = db_timeout_s
        self._baseline: tuple[int, int, int] | None = None
        # Told what the running trial is doing (a progress bar's description); set by the runner.
        self.on_phase: Callable[[str], None] | None = None

    def _phase(self, what: str) -> None:
        if self.on_phase is not None:
            self.on_phase(what)

    # -- helpers ----------------------------------------------------------------------------------
    def data(self) -> DataBundle:
        return _DATA.get(self.space.data)

    def checkpoint_path(self, study_name: str, key: int) -> Path:
        # The study name comes from the database, which whoever creates a study writes: it names
        # a folder only in its safe form, and the path is proven to stay in the artifact folder.
        return inside(
            self.artifact_dir, "checkpoints", study_dir_name(study_name), f"trial-{int(key)}.pt"
        )

    def discard_checkpoint(self, study_name: str, key: int) -> None:
        """Remove the checkpoint of original trial ``key``: it has ended and will not resume."""
        try:
            self.checkpoint_path(study_name, key).unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove the checkpoint of trial %d: %s", key, e)

    def run_identity(self, trial: optuna.Trial, key: int, model: Ensemble, data: DataBundle) -> str:
        """What a checkpoint of this trial must have been written by: the study itself (its
        stored uuid), the whole space (data split included), the model and the parameters."""
        study = trial.study
        study_uuid = study.user_attrs.get(STUDY_UUID_ATTR)
        if study_uuid is None:
            # A study created before studies had a uuid: its database and row stand in for it.
            study_uuid = f"{self.storage_url or '?'}#{study._study_id}"
        space = {k: v for k, v in self.space.to_dict().items() if k != "source"}
        parts = {
            "study": study.study_name,
            "study_uuid": str(study_uuid),
            "space": space,
            "trial": key,
            "params": dict(sorted(trial.params.items())),
            "model": model.model_config,
            "input": [data.num_classes, *self._input_shape(data)],
            "train_size": len(data.train),
            "val_size": len(data.val),
        }
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _input_shape(self, data: DataBundle) -> tuple[int, int, int]:
        return (data.in_chans, data.image_size, data.image_size)

    def baseline_complexity(self) -> tuple[int, int, int]:
        """(params, FLOPs, MACs) of the undivided network at the default width, for relative
        budgets."""
        if self._baseline is None:
            data = self.data()
            m = self.baseline_model(data.num_classes, data.in_chans)
            self._baseline = (
                count_parameters(m),
                *count_flops_and_macs(m, self._input_shape(data)),
            )
        return self._baseline

    def baseline_model(self, num_classes: int, in_chans: int) -> Ensemble:
        """The same network as the trials' (its options included), undivided, at the default
        width: the yardstick of relative budgets and of paired latency. Its weights matter to
        neither, so the process's random state is left alone."""
        return create_model(
            self.space.model.name,
            num_classes=num_classes,
            in_chans=in_chans,
            split_factor=1,
            width_mult=self.space.model.default_width_mult,
            **self.space.model.options,
        )

    def latency_device(self) -> torch.device:
        """Where latency is timed: ``[objectives] latency_device``, else the training device."""
        wanted = self.space.objectives.latency_device
        return self.device if wanted is None else resolve_device(wanted)

    def measuring(self, dev: torch.device) -> contextlib.AbstractContextManager[int | None]:
        """The host's measurement lock (automl.host_share), yielding the threads granted."""
        if self.host_share is None:
            return contextlib.nullcontext(None)
        return self.host_share.measuring(cpu=dev.type == "cpu")

    def reference(
        self,
        study: optuna.Study,
        model_input: ModelInput,
        dev: torch.device,
        x: torch.Tensor,
        threads: int | None,
    ) -> Reference:
        """The study's baseline network and its settled time on this host, device, batch size
        and thread count: settled once by the first worker there, read by the others."""
        n_threads = threads or torch.get_num_threads()
        key = f"{socket.gethostname()}|{device_label(dev)}|b{x.shape[0]}|t{n_threads}"
        if key in self._references:
            return self._references[key]
        model = self.baseline_model(model_input.num_classes, model_input.in_chans)
        # The host's own record holds the scale across studies: same reference network (its
        # configuration and input), same device, batch and threads.
        host_key = json.dumps(
            [model.model_config, list(x.shape), device_label(dev), n_threads, _cpu_name()],
            sort_keys=True,
            default=str,
        )
        share = self.host_share
        stored = study.user_attrs.get(REFERENCE_ATTR_PREFIX + key)
        if not (isinstance(stored, int | float) and stored > 0) and share is not None:
            stored = share.settled(host_key)
        if isinstance(stored, int | float) and stored > 0:
            ref = Reference(model=model, median_ms=float(stored))
        else:
            obj = self.space.objectives
            if dev.type == "cpu" and share is not None:
                wait_for_quiet_cpu()
            ref = settle_reference(
                model,
                x,
                device=dev,
                threads=n_threads,
                warmup_s=obj.latency_warmup_s,
                run_s=obj.latency_min_run_s * REFERENCE_SETTLE_FACTOR,
            )
            if share is not None:
                share.settle(host_key, ref.median_ms)
        if study.user_attrs.get(REFERENCE_ATTR_PREFIX + key) != ref.median_ms:
            self._retry_db(
                lambda: study.set_user_attr(REFERENCE_ATTR_PREFIX + key, ref.median_ms),
                "store the reference latency",
            )
        self._references[key] = ref
        return ref

    def time_architecture(
        self,
        study: optuna.Study,
        model: Ensemble,
        model_input: ModelInput,
        dev: torch.device,
        x: torch.Tensor,
        min_run_s: float | None = None,
    ) -> tuple[LatencyRecord, Reference | None]:
        """``model``'s latency on ``dev`` for input ``x`` with the space's protocol: the host's
        measurement lock held, paired with the reference unless the space says otherwise."""
        obj = self.space.objectives
        with self.measuring(dev) as granted:
            threads = obj.latency_threads or granted
            reference = (
                self.reference(study, model_input, dev, x, threads) if obj.latency_paired else None
            )
            lat = measure(
                model,
                x,
                mode=obj.latency_mode,
                device=dev,
                threads=threads,
                warmup_s=obj.latency_warmup_s,
                min_run_s=obj.latency_min_run_s if min_run_s is None else min_run_s,
                reference=reference,
            )
        return lat, reference

    def _retry_db(self, fn: Callable[[], Any], what: str) -> Any:
        return db_retry(fn, what=what, timeout_s=self.db_timeout_s, stop_event=self.stop_event)

    def _constraints(self, trial: optuna.Trial, params: int, flops: int, macs: int) -> list[str]:
        """Set every budget as an Optuna constraint (<= 0 is feasible); return the violated ones."""
        c = self.space.constraints
        limits: dict[str, tuple[float, float]] = {}
        if c.max_params is not None:
            limits["params"] = (params, c.max_params)
        if c.max_flops is not None:
            limits["flops"] = (flops, c.max_flops)
        if c.max_macs is not None:
            limits["macs"] = (macs, c.max_macs)
        if any(r is not None for r in (c.max_params_ratio, c.max_flops_ratio, c.max_macs_ratio)):
            bp, bf, bm = self.baseline_complexity()
            if c.max_params_ratio is not None:
                limits["params_ratio"] = (params / bp, c.max_params_ratio)
            if c.max_flops_ratio is not None:
                limits["flops_ratio"] = (flops / bf, c.max_flops_ratio)
            if c.max_macs_ratio is not None:
                limits["macs_ratio"] = (macs / bm, c.max_macs_ratio)
        violated = []
        for name, (value, limit) in limits.items():
            # Normalised so that values are comparable across budgets: 0.1 means 10% over.
            trial.set_constraint(name, value / limit - 1.0)
            if value > limit:
                violated.append(f"{name} {value:.4g} > {limit:.4g}")
        if limits:
            # optuna-dashboard 0.21 reads feasibility only from a list under "constraints" (the
            # format set_constraint replaced). Optuna 5 reads both, so trial.constraints names
            # each budget twice (by name and by index); feasibility is the same either way.
            trial.storage.set_trial_system_attr(
                trial._trial_id, "constraints", [v / lim - 1.0 for v, lim in limits.values()]
            )
        return violated

    def _upload_file(self, trial: optuna.Trial, path: Path, mimetype: str) -> None:
        upload_artifact(
            artifact_store=self.store, file_path=str(path), study_or_trial=trial, mimetype=mimetype
        )

    def _upload(self, trial: optuna.Trial, name: str, write: Any, mimetype: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            write(path)
            self._upload_file(trial, path, mimetype)

    # -- the objective ----------------------------------------------------------------------------
    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        """Run ``trial``; usable directly as ``optuna.Study.optimize``'s objective."""
        frozen = trial.study.get_trials(deepcopy=False)[trial.number]
        return self.run(trial, trial_key(frozen))

    def run(self, trial: optuna.Trial, key: int) -> tuple[float, float]:
        """Run ``trial``, whose checkpoints and seed are those of original trial ``key``.

        The checkpoint is removed when the trial ends for good (complete, pruned, failed by its
        own fault); it stays when the trial is stopped or fails for a reason outside it.
        """
        study_name = trial.study.study_name
        share = self.host_share
        if share is not None:
            # Before every trial: a worker that joined or left this host changes the shares.
            share.apply()
        return self._run(trial, key, study_name)

    def _run(self, trial: optuna.Trial, key: int, study_name: str) -> tuple[float, float]:
        try:
            sampled = self.space.suggest(trial)
            data = self.data()
            self._retry_db(lambda: ModelInput.of(data).store(trial.study), "store the model input")
            trial.set_user_attr(TrialAttr.HOST, socket.gethostname())
            trial.set_user_attr(TrialAttr.DEVICE, describe_device(self.device))
            self._phase("building")
            model = self._build(trial, sampled, data, seed=key)
            # Latency does not depend on the weights: measure first, so the pruner can use it.
            self._phase("measuring latency")
            lat = self._measure_latency(trial, model, data)
            ckpt = self.checkpoint_path(study_name, key)
            identity = self.run_identity(trial, key, model, data)
            result = self._train(trial, sampled, model, data, lat, ckpt, identity, seed=key)
            self._store_outcome(trial, model, data, result)
            record_intermediate_values(trial, result.history, self.db_timeout_s)
        except (optuna.TrialPruned, TrainingError, torch.OutOfMemoryError):
            self.discard_checkpoint(study_name, key)
            raise
        self.discard_checkpoint(study_name, key)
        return result.val_accuracy, lat.median_ms

    def _build(
        self, trial: optuna.Trial, sampled: TrialParams, data: DataBundle, seed: int
    ) -> Ensemble:
        """The trial's model, its size stored; pruned before training when over a budget."""
        torch.manual_seed(seed)
        model = self.space.build_model(sampled, data.num_classes, data.in_chans)
        params = count_parameters(model)
        # MACs the paper's way (BatchNorm outputs counted), so that they compare with its tables;
        # FLOPs stay PyTorch's count (2 per multiply-add), which existing budgets are written in.
        flops, macs = count_flops_and_macs(model, self._input_shape(data))
        trial.set_user_attr(TrialAttr.N_PARAMS, params)
        trial.set_user_attr(TrialAttr.FLOPS, flops)
        trial.set_user_attr(TrialAttr.MACS, macs)
        violated = self._constraints(trial, params, flops, macs)
        if violated:
            reason = "over budget: " + "; ".join(violated)
            trial.set_user_attr(TrialAttr.PRUNED_REASON, reason)
            raise optuna.TrialPruned(reason)
        return model

    def _measure_latency(
        self, trial: optuna.Trial, model: Ensemble, data: DataBundle
    ) -> LatencyRecord:
        dev = self.latency_device()
        x = torch.randn(self.space.objectives.latency_batch_size, *self._input_shape(data))
        lat, self._trial_reference = self.time_architecture(
            trial.study, model, ModelInput.of(data), dev, x
        )
        attrs: dict[str, Any] = {
            TrialAttr.LATENCY_MS: lat.median_ms,
            TrialAttr.LATENCY_IQR_MS: lat.iqr_ms,
            TrialAttr.LATENCY_MODE: lat.mode,
            TrialAttr.LATENCY_MODES: lat.modes,
            TrialAttr.LATENCY_CHANNELS_LAST: lat.channels_last,
            TrialAttr.LATENCY_BATCH_SIZE: lat.batch_size,
            TrialAttr.LATENCY_THREADS: lat.threads,
            TrialAttr.LATENCY_DEVICE: lat.device,
            TrialAttr.LATENCY_TARGET: target_key(device_label(dev), lat.batch_size),
        }
        if lat.ratio is not None:
            attrs[TrialAttr.LATENCY_RATIO] = lat.ratio
            attrs[TrialAttr.LATENCY_REFERENCE_MS] = lat.reference_ms
            attrs[TrialAttr.LATENCY_RAW_MS] = lat.raw_median_ms
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        return lat

    def _train(
        self,
        trial: optuna.Trial,
        sampled: TrialParams,
        model: Ensemble,
        data: DataBundle,
        lat: LatencyRecord,
        ckpt: Path,
        identity: str,
        seed: int,
    ) -> FitResult:
        """Co-train from the checkpoint of an earlier run of this trial, if there is one."""
        train_cfg = self.space.train_config(sampled, seed=seed)
        reporter = EpochReporter(
            trial,
            latency_ms=lat.median_ms,
            stopper=self.space.early_stopper(train_cfg.epochs),
            epochs=train_cfg.epochs,
            stop_event=self.stop_event,
            db_timeout_s=self.db_timeout_s,
        )

        def keep_trace(path: Path) -> None:
            self._upload_file(trial, path, "application/json")

        share = self.host_share
        with _profiling(self.profile, self.device, keep_trace) as profile_hook:
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
                return self._fit(model, data, train_cfg, reporter, ckpt, step_hook, identity)
            finally:
                if share is not None:
                    share.end_training()

    def _fit(
        self,
        model: Ensemble,
        data: DataBundle,
        train_cfg: Any,
        reporter: EpochReporter,
        ckpt: Path,
        step_hook: Callable[[int], None] | None,
        identity: str,
    ) -> FitResult:
        return fit(
            model,
            data,
            train_cfg,
            device=self.device,
            callback=reporter,
            checkpoint_path=ckpt,
            resume=True,
            progress=self.progress,
            step_hook=step_hook,
            run_identity=identity,
            # A checkpoint of another run, or a damaged one, is moved aside, not resumed.
            quarantine_bad_checkpoint=True,
            phase=self._phase,
        )

    def _store_outcome(
        self, trial: optuna.Trial, model: Ensemble, data: DataBundle, result: FitResult
    ) -> None:
        """Attributes of the finished run, its test accuracy, and its curve and weights."""
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
            # Operating points for free: the m best members of this ensemble (automl.export).
            from automl.export.subsets import store_subset_points

            self._phase("measuring member subsets")
            dev = self.latency_device()
            store_subset_points(
                trial,
                model,
                data,
                dev,
                self.space.objectives,
                result.member_val_accuracies,
                reference=self._trial_reference,
                measuring=lambda: self.measuring(dev),
            )
        self._phase("evaluating on the test split")
        test = evaluate(model, data.test, device=self.device)
        trial.set_user_attr(TrialAttr.TEST_ACCURACY, test.accuracy)
        trial.set_user_attr(TrialAttr.TEST_MEMBER_ACCURACIES, test.member_accuracies)

        history = [asdict(r) for r in result.history]
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        try:
            self._upload(
                trial,
                "learning_curve.json",
                lambda p: p.write_text(json.dumps(history, indent=1)),
                "application/json",
            )
            self._upload(
                trial,
                "weights.pt",
                lambda p: torch.save({"model_config": model.model_config, "state_dict": state}, p),
                "application/octet-stream",
            )
        except OSError as e:
            raise ArtifactStoreError(
                f"cannot write artifacts under {self.artifact_dir}: {e}; make the folder "
                "writable (or pass --artifacts) and run again: the trial resumes"
            ) from e
