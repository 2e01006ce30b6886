"""The Python study API: plain Optuna studies with documented attribute names.

``create_study(space)`` makes (or resumes) a two-objective study, maximise "accuracy" and minimise
"latency_ms", stores the search space and the artifact folder in the study's user attributes and
enqueues the undivided baseline exactly once. ``optuna.load_study`` still opens it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from automl._version import __version__
from automl.device import resolve_device
from automl.errors import ConfigError, StorageError
from automl.measure.host_share import HostShare
from automl.measure.targets import latencies_for, resolve_target
from automl.search.front import network_front
from automl.search.hooks import TrialEndHook, default_trial_end_hooks
from automl.search.promotion import final_order, is_continuation
from automl.search.records import ParetoRecord
from automl.search.retrain import enqueue_retrain, retrain_epochs, retrain_source
from automl.search.retries import fail_stale_trials, trial_key
from automl.search.runner import RunStats, run_trials
from automl.search.samplers import make_sampler
from automl.search.subsets import front_with_subsets
from automl.search.trial import TrialEnv
from automl.space import SearchSpace, load_space, space_differences
from automl.space.networks import NetworkCount, space_networks
from automl.store.attrs import StudyAttr
from automl.store.names import STUDY_NAME_RULE, is_valid_study_name, shown, validate_study_name
from automl.store.retry import DEFAULT_TIMEOUT_S, db_retry
from automl.store.storage import (
    StorageSettings,
    default_storage_url,
    is_sqlite,
    normalize_url,
    open_storage,
    redact,
)

log = logging.getLogger(__name__)

__all__ = [
    "DIRECTIONS",
    "METRIC_NAMES",
    "AutoMLStudy",
    "ParetoRecord",
    "create_study",
    "default_artifact_dir",
    "load_study",
    "process_seed_offset",
]

METRIC_NAMES = ["accuracy", "latency_ms"]
DIRECTIONS: list[optuna.study.StudyDirection] = [
    optuna.study.StudyDirection.MAXIMIZE,
    optuna.study.StudyDirection.MINIMIZE,
]


def default_artifact_dir(url: str) -> Path:
    """Next to an SQLite file; else ``$AUTOML_ARTIFACTS`` or ./artifacts."""
    if is_sqlite(url):
        db = make_url(url).database
        if db and db != ":memory:":
            return Path(db).expanduser().resolve().parent / "artifacts"
    return Path(os.environ.get("AUTOML_ARTIFACTS", "artifacts")).resolve()


class AutoMLStudy:
    """A two-objective Optuna study over a search space, and the loop that runs its trials."""

    def __init__(
        self,
        optuna_study: optuna.Study,
        space: SearchSpace,
        storage_url: str,
        artifact_dir: Path,
        storage: optuna.storages.BaseStorage,
    ) -> None:
        self._study = optuna_study
        self.space = space
        self.storage_url = storage_url
        self.artifact_dir = artifact_dir
        # The storage object the study was opened with (heartbeats, claiming trials).
        self.storage = storage

    @property
    def optuna_study(self) -> optuna.Study:
        return self._study

    @property
    def study_name(self) -> str:
        return self._study.study_name

    def waiting_trials(self) -> int:
        """Trials waiting to run: new ones and retries; paused trials waiting for a promotion
        are not counted (``paused_trials``)."""
        waiting = self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        return sum(1 for t in waiting if not is_continuation(t))

    def paused_trials(self) -> list[FrozenTrial]:
        """The continuation tickets of paused trials (promote mode), waiting for a promotion."""
        waiting = self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        return [t for t in waiting if is_continuation(t)]

    def add_trials(self, n: int) -> int:
        """Enqueue ``n`` trials for any worker to run; returns how many were added."""
        for _ in range(n):
            self._study.enqueue_trial({})
        target = self._study.user_attrs.get(StudyAttr.TARGET_TRIALS) or 0
        self._study.set_user_attr(StudyAttr.TARGET_TRIALS, int(target) + n)
        return n

    def optimize(
        self,
        n_trials: int | None = None,
        timeout: float | None = None,
        *,
        device: str | None = None,
        progress: bool = False,
        stop_event: threading.Event | None = None,
        max_trials_here: int | None = None,
        profile: bool = False,
        db_timeout_s: float = DEFAULT_TIMEOUT_S,
        budget_s: float | None = None,
        host_share: HostShare | None = None,
        on_trial_end: Sequence[TrialEndHook] | None = None,
    ) -> RunStats:
        """Run trials in this process.

        ``n_trials`` adds that many trials to the study, counting those already waiting (left by
        an interrupted run), and runs waiting trials until none is left; other workers on the
        same storage share the work. With only ``timeout`` the study is open-ended: trials run
        until the timeout (checked between trials). With neither, the waiting trials are run.
        A lost database connection is waited out for ``db_timeout_s`` seconds at every call.

        ``budget_s`` bounds the wall time: no trial starts that the longest trial so far says
        would not end in time, and a trial still running when the budget is spent stops at its
        next epoch boundary, its checkpoint kept and the trial left waiting for the next run.

        ``host_share`` (joined) splits this host's cores with the other workers on it and keeps
        latency measurements apart (``automl.measure.host_share``); the CLI's workers always use
        one.

        ``on_trial_end`` is called after every trial that ends; by default the registered hooks
        (``automl.search.hooks``: the optuna-dashboard note and plots).
        """
        if budget_s is not None and not budget_s > 0:
            raise ConfigError(f"budget_s must be > 0 seconds, got {budget_s}")
        if n_trials is not None and n_trials < 0:
            raise ConfigError(f"n_trials must be >= 0, got {n_trials}")
        # The device and the data are checked before trials are added: a run that cannot start
        # leaves the study as it was.
        dev = resolve_device(device)
        self.space.check_runtime(dev)
        stop = stop_event or threading.Event()
        env = TrialEnv(
            self.space,
            device=dev,
            artifact_dir=self.artifact_dir,
            stop_event=stop,
            profile=profile,
            db_timeout_s=db_timeout_s,
            storage_url=self.storage_url,
            host_share=host_share,
        )
        if n_trials is not None:
            # A trial whose process is gone (killed, crashed) comes back as a waiting retry
            # first, so that it counts among the n_trials instead of beside them.
            db_retry(
                lambda: fail_stale_trials(
                    self._study,
                    self.storage,
                    lambda t: env.checkpoint(self._study, trial_key(t)).discard(),
                ),
                what="check for stale trials",
                timeout_s=db_timeout_s,
            )
            missing = n_trials - self.waiting_trials()
            if missing > 0:
                self.add_trials(missing)
        timer = threading.Timer(budget_s, stop.set) if budget_s is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        hooks = default_trial_end_hooks() if on_trial_end is None else on_trial_end
        sc = self.space.scheduler
        final_s = (
            budget_s * sc.final_share
            if budget_s is not None
            and sc.final_share > 0
            and (sc.mode == "promote" or sc.final != "continue")
            else 0.0
        )
        began = time.monotonic()
        try:
            stats = run_trials(
                self._study,
                self.storage,
                env,
                expected=None if timeout is not None else self.waiting_trials(),
                max_trials=max_trials_here,
                timeout=None if timeout is None else timeout - final_s,
                open_ended=n_trials is None and timeout is not None,
                stop_event=stop,
                progress=progress,
                db_timeout_s=db_timeout_s,
                budget_s=None if budget_s is None else budget_s - final_s,
                on_trial_end=hooks,
            )
            if final_s > 0 and not stop.is_set():
                left = budget_s - (time.monotonic() - began) if budget_s is not None else 0.0
                if left > 0:
                    stats.final = self._final_phase(env, left, stop, progress, db_timeout_s, hooks)
            return stats
        finally:
            if timer is not None:
                timer.cancel()

    def _final_phase(
        self,
        env: TrialEnv,
        budget_s: float,
        stop: threading.Event,
        progress: bool,
        db_timeout_s: float,
        hooks: Sequence[TrialEndHook],
    ) -> RunStats:
        """The share of the budget kept for the front: with ``final = "retrain"`` (or
        ``"restart"``, from its weights) the most accurate configuration trained again on a
        schedule the time left holds
        (``automl.search.retrain``); then paused networks resumed from their checkpoints and
        trained to the end, most promising first (``final_order``)."""
        order = final_order(self.paused_trials())
        if self.space.scheduler.final != "continue":
            ticket = self._enqueue_retrain(budget_s)
            if ticket is not None:
                order.insert(0, ticket)
        if not order:
            return RunStats()

        def first_waiting(t: FrozenTrial) -> bool:
            waiting = {
                w.number
                for w in self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            }
            return t.number == next((n for n in order if n in waiting), None)

        env.final_phase = True
        try:
            return run_trials(
                self._study,
                self.storage,
                env,
                stop_event=stop,
                progress=progress,
                db_timeout_s=db_timeout_s,
                budget_s=budget_s,
                on_trial_end=hooks,
                eligible=first_waiting,
                only_eligible=True,
            )
        finally:
            env.final_phase = False

    def _enqueue_retrain(self, budget_s: float) -> int | None:
        """The retrain ticket of the most accurate configuration, when a schedule longer than
        the space's fits in ``budget_s`` (a shorter one would end below what the search has)."""
        source = retrain_source(self.trials())
        if source is None:
            log.info("final phase: no completed trial to retrain; resuming paused trials")
            return None
        epochs = retrain_epochs(source, budget_s)
        if epochs <= self.space.train.epochs:
            log.info(
                "final phase: %d epochs of trial %d fit in %.0f s, no more than its own %d; "
                "resuming paused trials instead",
                epochs,
                source.number,
                budget_s,
                self.space.train.epochs,
            )
            return None
        from_weights = self.space.scheduler.final == "restart"
        ticket = enqueue_retrain(self._study, source, epochs, from_weights=from_weights)
        if ticket is not None:
            log.info(
                "final phase: trial %d retrains trial %d's configuration%s for %d epochs "
                "(%.0f s left)",
                ticket,
                source.number,
                " from its weights" if from_weights else "",
                epochs,
                budget_s,
            )
        return ticket

    def pareto_front(
        self,
        include_subsets: bool = False,
        *,
        device: str | None = None,
        batch_size: int | None = None,
    ) -> list[ParetoRecord]:
        """The non-dominated feasible configurations, sorted by latency: repeats of one
        configuration are one record (the first trial's, with their mean accuracy), and a point
        inside its neighbour's measured spread is left to that neighbour
        (``automl.search.front``).

        With ``include_subsets`` the trials' subset points (``subset_points``: K > 1 ensembles
        answering with their m best members) compete too, marked by ``subset_members``.

        With ``device`` (a target label such as ``cpu``, ``cuda:NVIDIA H200`` or a name given to
        ``automl remeasure``, or a full key such as ``cpu@b8``) the front is drawn from the
        latencies measured on that target (by the workers or by ``automl remeasure``) at
        ``batch_size`` (default: the space's); trials not measured there are left out.
        """
        if device is not None:
            if include_subsets:
                raise ConfigError(
                    "subset points are timed on the workers' device only: ask for "
                    "include_subsets or for a device, not both"
                )
            return self._front_on(device, batch_size)
        if include_subsets:
            return front_with_subsets(self._study)
        return [p.record for p in network_front(self.trials())]

    def _front_on(self, device: str, batch_size: int | None) -> list[ParetoRecord]:
        records = self.completed_records(device=device, batch_size=batch_size)
        return [p.record for p in network_front(self.trials(), records)]

    def completed_records(
        self, *, device: str | None = None, batch_size: int | None = None
    ) -> list[ParetoRecord]:
        """Every complete trial as a record, in trial order; with ``device`` (as for
        ``pareto_front``) its latency on that target, the trials not measured there left out."""
        trials = [t for t in self.trials(states=(TrialState.COMPLETE,)) if t.values]
        if device is None:
            if batch_size is not None:
                raise ConfigError(
                    "a latency batch size names a target only with its device: pass the device "
                    "too (e.g. --device cpu --batch-size 8)"
                )
            return [ParetoRecord.from_trial(t) for t in trials]
        key = resolve_target(
            self._study, device, batch_size, self.space.objectives.latency_batch_size
        )
        measured = latencies_for(self._study, key, trials)
        return [
            dataclasses.replace(
                ParetoRecord.from_trial(t),
                latency_ms=lat.median_ms,
                latency_mode=lat.mode,
                latency_iqr_ms=lat.iqr_ms,
                device=lat.device,
            )
            for t in trials
            if (lat := measured.get(t.number)) is not None
        ]

    def networks(self, *, keep: bool = True) -> list[NetworkCount]:
        """The distinct networks per K that the space holds (``automl.space.networks``):
        counted once, on the meta device, and kept in the study (unless ``keep`` is false: a
        command that only reads, on a database it may not write)."""
        raw = self._study.user_attrs.get(StudyAttr.NETWORKS)
        if isinstance(raw, list):
            try:
                return [NetworkCount(int(k), tuple(map(float, w)), bool(e)) for k, w, e in raw]
            except (TypeError, ValueError):
                pass  # written by someone else: counted again
        counts = space_networks(self.space)
        if keep:
            stored = [[c.split_factor, list(c.widths), c.exact] for c in counts]
            self._study.set_user_attr(StudyAttr.NETWORKS, stored)
        return counts

    def trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        return self._study.get_trials(deepcopy=False, states=states)


def _foreign(study: optuna.Study) -> bool:
    """Whether ``study`` cannot be an automl study still being created: automl writes its
    directions, then its attributes, then enqueues the baseline; a study with other directions,
    trials or metric names but no space was made by someone else."""
    if study.directions != DIRECTIONS:
        return True
    if study.metric_names is not None and study.metric_names != METRIC_NAMES:
        return True
    return bool(study.get_trials(deepcopy=False))


def _wait_for_space(study: optuna.Study, timeout: float = 30.0) -> dict[str, Any]:
    """A study created by another worker a moment ago may not hold its space yet: wait for it.
    A study that automl did not create fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        raw = study.user_attrs.get(StudyAttr.SPACE)
        if raw is not None:
            return dict(raw)
        if _foreign(study) or time.monotonic() >= deadline:
            # Read again: the creator may have written its space and enqueued its baseline
            # between the read above and the look at the trials.
            raw = study.user_attrs.get(StudyAttr.SPACE)
            if raw is not None:
                return dict(raw)
            raise StorageError(
                f"study {study.study_name!r} holds no automl search space; it was not created by "
                "automl (create it with 'automl search --space FILE')"
            )
        time.sleep(0.5)


def _open(
    storage: str | None, settings: StorageSettings | None, *, must_exist: bool = False
) -> tuple[str, optuna.storages.BaseStorage]:
    # None means the default storage; an empty string is refused by open_storage.
    url = default_storage_url() if storage is None else storage
    rdb = open_storage(url, settings, must_exist=must_exist)
    return normalize_url(url), rdb


def create_study(
    space: SearchSpace | str | Path,
    storage: str | None = None,
    study_name: str | None = None,
    load_if_exists: bool = True,
    *,
    artifact_dir: str | Path | None = None,
    settings: StorageSettings | None = None,
    sampler_seed_offset: int = 0,
    device: str | None = None,
    check_data: bool = True,
) -> AutoMLStudy:
    """Create the study for ``space`` (a ``SearchSpace`` or a TOML path), or resume it.

    The space is validated before anything is written, and checked against this machine: its
    data set's files (unless ``check_data`` is false: the study is made for workers elsewhere)
    and, with ``device``, the device the trials will run on here. On creation the undivided
    baseline is enqueued once: only the process whose insert of the study row succeeded does it,
    so workers starting together cannot enqueue it twice.
    """
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    # The name becomes a folder on every worker: checked before the database is touched.
    name = validate_study_name(sp.name if study_name is None else study_name)
    # Before the storage is opened: a space that cannot run stores nothing.
    sp.check_runtime(device, data=check_data)
    url, rdb = _open(storage, settings)
    art = Path(artifact_dir).resolve() if artifact_dir is not None else default_artifact_dir(url)
    sampler = _seeded_sampler(sp, sampler_seed_offset)
    try:
        study = optuna.create_study(
            storage=rdb, study_name=name, directions=DIRECTIONS, sampler=sampler
        )
    except optuna.exceptions.DuplicatedStudyError:
        if not load_if_exists:
            raise StorageError(
                f"study {shown(name)} already exists in {redact(url)}; pick another --study name "
                "or resume it"
            ) from None
        # A run that resumes a study draws on from a seed of its own: with the space's seed alone
        # it would repeat the first run's parameters trial for trial (or, run beside it, in step).
        offset = sampler_seed_offset or process_seed_offset()
        study = optuna.load_study(study_name=name, storage=rdb, sampler=_seeded_sampler(sp, offset))
        stored = SearchSpace.from_dict(_wait_for_space(study))
        diff = space_differences(stored, sp)
        if diff:
            differs = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise StorageError(
                f"study {shown(name)} already holds a different search space (stored from "
                f"{stored.source}; stored vs given: {differs}); use --study with a new name for "
                f"{sp.source}, or the same space file"
            ) from None
        stored_art = study.user_attrs.get(StudyAttr.ARTIFACT_DIR)
        if artifact_dir is None and stored_art:
            art = Path(stored_art)
        return AutoMLStudy(study, stored, url, art, rdb)
    # First, before the space: whoever sees the space also sees the study's identity.
    study.set_user_attr(StudyAttr.UUID, uuid.uuid4().hex)
    study.set_metric_names(METRIC_NAMES)
    study.set_user_attr(StudyAttr.ARTIFACT_DIR, str(art))
    study.set_user_attr(StudyAttr.VERSION, __version__)
    study.set_user_attr(StudyAttr.SPACE, sp.to_dict())
    study.enqueue_trial(sp.baseline_params())
    study.set_user_attr(StudyAttr.TARGET_TRIALS, 1)
    return AutoMLStudy(study, sp, url, art, rdb)


def process_seed_offset() -> int:
    """A sampler seed offset of this process and moment: two processes sharing a study (workers,
    or searches resumed one after the other) sample different parameters."""
    text = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    digest = hashlib.sha256(text.encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % 1_000_000


def _seeded_sampler(space: SearchSpace, offset: int) -> optuna.samplers.BaseSampler:
    # Workers sharing a study must not draw the same parameters: each gets its own seed.
    if offset and space.sampler.seed is not None:
        from dataclasses import replace

        space = replace(space, sampler=replace(space.sampler, seed=space.sampler.seed + offset))
    return make_sampler(space)


def load_study(
    study_name: str,
    storage: str | None = None,
    *,
    artifact_dir: str | Path | None = None,
    settings: StorageSettings | None = None,
    sampler_seed_offset: int = 0,
) -> AutoMLStudy:
    """Open an existing automl study; everything a worker needs is read from the study.

    Any name the storage holds opens, even one that ``create_study`` would refuse (a study made
    by plain Optuna): paths built from it are kept inside the artifact folder
    (``automl.store.names.study_dir_name``). A database that does not exist is an error, not
    created.
    """
    if "\x00" in study_name or len(study_name) > 512:
        # Neither fits Optuna's study_name column; PostgreSQL would refuse the query itself.
        validate_study_name(study_name)
    url, rdb = _open(storage, settings, must_exist=True)
    try:
        study = optuna.load_study(study_name=study_name, storage=rdb)
    except KeyError:
        if not is_valid_study_name(study_name):
            raise ConfigError(
                f"--study {shown(study_name)} is not a valid study name and no study of that "
                f"name is in {redact(url)}; use {STUDY_NAME_RULE}"
            ) from None
        names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
        raise StorageError(
            f"no study named {shown(study_name)} in {redact(url)}; existing studies: "
            f"{', '.join(names) if names else 'none'} "
            "(create one with 'automl search --space FILE')"
        ) from None
    space = SearchSpace.from_dict(_wait_for_space(study))
    study = optuna.load_study(
        study_name=study_name, storage=rdb, sampler=_seeded_sampler(space, sampler_seed_offset)
    )
    art = (
        Path(artifact_dir).resolve()
        if artifact_dir is not None
        else Path(study.user_attrs.get(StudyAttr.ARTIFACT_DIR) or default_artifact_dir(url))
    )
    return AutoMLStudy(study, space, url, art, rdb)
