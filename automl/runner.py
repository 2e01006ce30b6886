"""The trial loop shared by ``AutoMLStudy.optimize`` and the long-running worker.

Trials are *claimed*: every trial a study should run exists first as a WAITING trial (a ticket:
the baseline, ``n_trials`` empty ones, or the retry of a trial that went stale), and a worker
moves one from WAITING to RUNNING with the storage's atomic state transition. Two workers can
therefore never run the same trial, and a study asked for N trials runs exactly N, however many
workers share it. A claimed trial samples its parameters as usual (an empty ticket fixes none).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError
from tqdm.auto import tqdm

from automl.attrs import TrialAttr
from automl.dashboard_plots import publish_trial_end
from automl.errors import AutoMLError, DataError, TrainingError
from automl.liveness import gone_here, process_tag
from automl.objective import ArtifactStoreError, Objective, StopRequested, trial_key
from automl.retry import DEFAULT_TIMEOUT_S, TRANSIENT_DB_ERRORS, db_retry
from automl.storage import DEFAULT_MAX_RETRY, StaleTrialRetry

__all__ = [
    "Claimed",
    "HostFault",
    "RunStats",
    "claim_waiting_trial",
    "enqueue_retry",
    "run_one",
    "run_trials",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RunStats:
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    stopped: int = 0
    lost: int = 0

    @property
    def total(self) -> int:
        return self.completed + self.pruned + self.failed + self.stopped + self.lost


@dataclass(frozen=True)
class Claimed:
    """A trial this worker moved from WAITING to RUNNING."""

    trial: optuna.Trial
    key: int
    trial_id: int


def _heartbeat_interval(storage: BaseStorage) -> float | None:
    """Seconds between heartbeats, or ``None`` for a storage without them (the gRPC proxy)."""
    if not isinstance(storage, BaseHeartbeat):
        return None
    interval = storage.get_heartbeat_interval()
    return float(interval) if interval else None


def claim_waiting_trial(study: optuna.Study, storage: BaseStorage) -> Claimed | None:
    """Atomically take one WAITING trial of ``study`` (held in ``storage``); ``None`` when there
    is none."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        if isinstance(storage, BaseHeartbeat) and _heartbeat_interval(storage) is not None:
            # At once, not when the heartbeat thread first runs: Optuna only finds a trial stale
            # once it has a heartbeat, so a worker dying in between would leave it RUNNING forever.
            storage.record_heartbeat(trial_id)
        storage.set_trial_user_attr(trial_id, TrialAttr.WORKER_PROCESS, process_tag())
        inherited = frozen.user_attrs.get(TrialAttr.FAIL_REASON)
        if inherited is not None:
            # Optuna's retry copies the failed attempt's attributes; its reason belongs to that
            # attempt, so it is kept under another name and this attempt starts without one.
            storage.set_trial_user_attr(trial_id, TrialAttr.RETRIED_AFTER, inherited)
            storage.set_trial_user_attr(trial_id, TrialAttr.FAIL_REASON, None)
        return Claimed(optuna.Trial(study, trial_id), trial_key(frozen), trial_id)
    return None


class _Heartbeat:
    """Records the running trial's heartbeat; a failed write (database away) is retried later."""

    def __init__(self, storage: BaseStorage, trial_id: int) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval = _heartbeat_interval(storage)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="automl-heartbeat")

    def _loop(self) -> None:
        assert self.interval is not None and isinstance(self.storage, BaseHeartbeat)
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # a lost connection must not kill the trial
                log.warning("heartbeat for trial id %s failed (%s); retrying", self.trial_id, e)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> _Heartbeat:
        if self.interval is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)


def fail_stale_trials(
    study: optuna.Study,
    storage: BaseStorage,
    on_abandoned: Callable[[FrozenTrial], None] | None = None,
) -> None:
    """Optuna's ``fail_stale_trials``, with the reason stored on each stale trial first.

    A finished trial takes no attributes, so the reason is written while the trial is still
    RUNNING; the storage's atomic state change then decides which worker fails it (the others
    wrote the same text), and only that worker runs the retry callback. A stale trial that is not
    retried (its retries used up) is passed to ``on_abandoned`` (its checkpoint is removed).
    """
    if not isinstance(storage, BaseHeartbeat):
        return
    callback = storage.get_heartbeat_stale_trial_callback()
    study_id = storage.get_study_id_from_name(study.study_name)
    # The method BaseHeartbeat storages implement for Optuna's own fail_stale_trials.
    stale: dict[int, str | None] = dict.fromkeys(storage._get_stale_trial_ids(study_id))
    # Trials whose process ran on this machine and is gone need not wait for the grace period;
    # for those the process's absence is the more precise reason, whatever the heartbeat says.
    for running in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        pid = gone_here(running.user_attrs.get(TrialAttr.WORKER_PROCESS))
        if pid is not None:
            stale[running._trial_id] = (
                f"its worker (process {pid} on this machine) is gone: killed or crashed"
            )
    for trial_id, cause in stale.items():
        frozen = storage.get_trial(trial_id)
        if isinstance(callback, StaleTrialRetry):
            retries = len(frozen.system_attrs.get("retry_history", []))
            try:
                reason = callback.reason(retries, cause)
                storage.set_trial_user_attr(trial_id, TrialAttr.FAIL_REASON, reason)
            except UpdateFinishedTrialError:
                continue
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        log.warning(
            "trial %d went stale: %s",
            frozen.number,
            cause or "its worker stopped sending heartbeats",
        )
        if callback is not None:
            failed = storage.get_trial(trial_id)
            callback(study, failed)
            if on_abandoned is not None and not _retried(study, failed):
                on_abandoned(failed)


def _retried(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Whether a retry of ``failed`` exists in ``study``."""
    return any(
        t.number > failed.number and failed.number in t.system_attrs.get("retry_history", [])
        for t in study.get_trials(deepcopy=False)
    )


def _max_retry(storage: BaseStorage) -> int | None:
    callback = (
        storage.get_heartbeat_stale_trial_callback() if isinstance(storage, BaseHeartbeat) else None
    )
    return callback.max_retry if isinstance(callback, StaleTrialRetry) else DEFAULT_MAX_RETRY


def enqueue_retry(study: optuna.Study, failed: FrozenTrial, max_retry: int | None) -> bool:
    """Enqueue the retry of ``failed`` (the same parameters and attributes, resumed from its
    checkpoint), as Optuna's retry callback does; ``False`` when ``failed`` already used up
    ``max_retry`` retries (``None``: no bound)."""
    system_attrs: dict[str, object] = {
        "failed_trial": failed.number,
        **failed.system_attrs,
        "retry_history": [*failed.system_attrs.get("retry_history", []), failed.number],
    }
    history = system_attrs["retry_history"]
    assert isinstance(history, list)
    if max_retry is not None and len(history) > max_retry:
        return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs=failed.user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


# How long a trial that lost its connection waits for the database before it is left to go stale.
RECONNECT_WAIT_S = 60.0


def _retry_later(
    study: optuna.Study, trial: optuna.Trial, reason: str, max_retry: int | None
) -> bool:
    """Fail a trial now with ``reason`` and enqueue its retry at once, instead of leaving it to go
    stale; returns whether a retry is waiting (not when its retries are used up). Safe to call
    again after a lost connection: each step checks whether it was already done."""
    frozen = study.get_trials(deepcopy=True)[trial.number]
    if frozen.state is TrialState.RUNNING:
        retries = len(frozen.system_attrs.get("retry_history", []))
        if max_retry is not None and retries >= max_retry:
            reason += f"; not retried: it already failed {retries} time(s)"
        else:
            reason += "; retried from its checkpoint"
        trial.set_user_attr(TrialAttr.FAIL_REASON, reason[:600])
        study.tell(trial, state=TrialState.FAIL)
        frozen = study.get_trials(deepcopy=True)[trial.number]
    if _retried(study, frozen):
        return True
    return enqueue_retry(study, frozen, max_retry)


class HostFault(AutoMLError):
    """A trial failed for a reason outside it (its artifact folder, the database); the trial is
    left to be retried and this process runs no more trials, since the next would fail alike."""


def _is_host_fault(e: BaseException) -> bool:
    return isinstance(e, ArtifactStoreError | DataError | OSError | SQLAlchemyError)


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:500] if str(e) else type(e).__name__


def run_one(
    study: optuna.Study,
    storage: BaseStorage,
    objective: Objective,
    claimed: Claimed,
    *,
    db_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TrialState:
    """Run a claimed trial to its end and record the outcome; returns the final state.

    Pruned and failed-by-its-own-fault trials end for good (their checkpoint removed). A stop
    (``StopRequested``, Ctrl-C) fails the attempt and enqueues its retry at once, so the next run
    resumes it from its checkpoint without waiting for it to go stale. An error that is not the
    trial's fault (artifact folder, database) does the same, bounded by the storage's
    ``max_retry``, and raises ``HostFault``.
    """
    trial, key = claimed.trial, claimed.key

    def retry(fn: Callable[[], T], what: str) -> T:
        # Not cut short by a stop: recording how the trial ended is what a stop waits for.
        return db_retry(fn, what=what, timeout_s=db_timeout_s)

    with _Heartbeat(storage, claimed.trial_id):
        try:
            values = objective.run(trial, key)
        except optuna.TrialPruned:
            retry(lambda: study.tell(trial, state=TrialState.PRUNED), "record a pruned trial")
            return TrialState.PRUNED
        except (StopRequested, KeyboardInterrupt) as e:
            # A stop is nobody's failure: its retry is not counted against max_retry.
            why = f"worker stopped: {e or 'interrupted'}"
            try:
                # Not through db_retry's stop-aware wait: the stop is already set.
                db_retry(
                    lambda: _retry_later(study, trial, why, None),
                    what="re-enqueue a stopped trial",
                    timeout_s=min(db_timeout_s, 5.0),
                )
            except Exception as err:
                log.error(
                    "could not re-enqueue trial %d (%s); it is retried once it goes stale",
                    trial.number,
                    _first_line(err),
                )
            if isinstance(e, KeyboardInterrupt):
                raise
            return TrialState.WAITING
        except (TrainingError, torch.OutOfMemoryError) as e:
            # The trial's own fault (divergence, a model too big for this device): record why,
            # fail this trial only and go on with the next.
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            retry(lambda: trial.set_user_attr(TrialAttr.FAIL_REASON, reason), "record a failure")
            retry(lambda: study.tell(trial, state=TrialState.FAIL), "record a failure")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("trial %d failed: %s", trial.number, reason)
            return TrialState.FAIL
        except TRANSIENT_DB_ERRORS as e:
            # The database went away mid-trial (a restart, say). This process knows the trial is
            # abandoned: once the database answers again, fail it and enqueue its retry at once,
            # rather than leave it RUNNING until it goes stale (never, without heartbeats).
            why = f"lost its database connection: {_first_line(e)}"
            try:
                db_retry(
                    lambda: _retry_later(study, trial, why, _max_retry(storage)),
                    what="re-enqueue a trial that lost its database connection",
                    timeout_s=min(db_timeout_s, RECONNECT_WAIT_S),
                )
            except Exception as err:
                log.warning(
                    "trial %d lost its database connection (%s) and it is still gone (%s); the "
                    "trial is retried once it goes stale",
                    trial.number,
                    _first_line(e),
                    _first_line(err),
                )
                return TrialState.RUNNING
            log.warning("trial %d lost its database connection; re-enqueued", trial.number)
            return TrialState.WAITING
        except Exception as e:
            if not _is_host_fault(e):
                _fail_for_good(study, trial, e, objective)
                raise
            why = f"not the trial's fault: {_first_line(e)}"
            try:
                retried = retry(
                    lambda: _retry_later(study, trial, why, _max_retry(storage)),
                    "re-enqueue a trial",
                )
            except Exception:
                log.error(
                    "could not record the failure of trial %d:\n%s",
                    trial.number,
                    traceback.format_exc(),
                )
                retried = True  # it goes stale and is retried from its checkpoint
            if not retried:
                objective.discard_checkpoint(study.study_name, key)
            left = "left to be retried" if retried else "failed for good (retries used up)"
            raise HostFault(f"trial {trial.number} {left}: {_first_line(e)}") from e
        except BaseException as e:
            _fail_for_good(study, trial, e, objective)
            raise
        # A finished trial is the expensive part: wait out a database restart rather than lose it.
        retry(lambda: study.tell(trial, list(values)), f"record trial {trial.number}")
        return TrialState.COMPLETE


def _fail_for_good(
    study: optuna.Study, trial: optuna.Trial, e: BaseException, objective: Objective
) -> None:
    """An unexpected error (a bug): the trial fails with its reason and is not retried."""
    try:
        trial.set_user_attr(TrialAttr.FAIL_REASON, _first_line(e))
        study.tell(trial, state=TrialState.FAIL)
    except Exception:
        log.error(
            "could not record the failure of trial %d:\n%s",
            trial.number,
            traceback.format_exc(),
        )
        return
    frozen = study.get_trials(deepcopy=False)[trial.number]
    objective.discard_checkpoint(study.study_name, trial_key(frozen))


def _running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _reader(storage: BaseStorage, trial_id: int) -> Callable[[], FrozenTrial]:
    return lambda: storage.get_trial(trial_id)


def _count(stats: RunStats, state: TrialState) -> None:
    if state is TrialState.COMPLETE:
        stats.completed += 1
    elif state is TrialState.PRUNED:
        stats.pruned += 1
    elif state is TrialState.FAIL:
        stats.failed += 1
    elif state is TrialState.RUNNING:
        stats.lost += 1
    else:
        stats.stopped += 1


def _describe(bar: Any, prefix: str) -> Callable[[str], None]:
    """The trial bar's description follows the trial's phase, so that a hang shows where."""
    return lambda what: bar.set_description(f"{prefix}: {what}", refresh=True)


def run_trials(
    study: optuna.Study,
    storage: BaseStorage,
    objective: Objective,
    *,
    max_trials: int | None = None,
    timeout: float | None = None,
    open_ended: bool = False,
    stop_event: threading.Event | None = None,
    progress: bool = False,
    expected: int | None = None,
    db_timeout_s: float = DEFAULT_TIMEOUT_S,
    budget_s: float | None = None,
) -> RunStats:
    """Claim and run WAITING trials until none is left, ``max_trials`` ran here, the ``timeout``
    (seconds, checked between trials) passed or ``stop_event`` was set.

    ``storage`` is the storage ``study`` was opened with. With ``open_ended`` a worker that finds
    no waiting trial enqueues one for itself (a study with no target, e.g. ``automl search
    --timeout``). Otherwise a worker that finds no waiting trial while others still run waits
    for them, so that the retry of a trial whose worker died is picked up. A lost database
    connection is waited out for ``db_timeout_s`` seconds at every call.

    With ``budget_s`` no trial starts once the time left is shorter than the longest trial run
    here so far (the caller stops a running trial at the budget through ``stop_event``).
    """
    stop = stop_event or threading.Event()
    longest = 0.0
    stats = RunStats()
    waiting_logged = False
    interval = _heartbeat_interval(storage)
    # Idle workers look again often enough to exit soon after the last trial ends elsewhere.
    poll_s = min(interval, 5.0) if interval else 5.0
    start = time.monotonic()

    def retry(fn: Callable[[], T], what: str) -> T:
        return db_retry(fn, what=what, timeout_s=db_timeout_s, stop_event=stop)

    def abandoned(frozen: FrozenTrial) -> None:
        objective.discard_checkpoint(study.study_name, trial_key(frozen))

    # The bar's total: what this loop may run, as far as it is known when it starts.
    total = max_trials if max_trials is not None else expected
    bar = tqdm(total=total, disable=not progress, unit="trial", dynamic_ncols=True)
    try:
        while not stop.is_set():
            if max_trials is not None and stats.total >= max_trials:
                break
            if timeout is not None and time.monotonic() - start >= timeout:
                break
            if budget_s is not None and time.monotonic() - start + longest > budget_s:
                log.info("time budget: the next trial would not end within %.0f s", budget_s)
                break
            try:
                retry(
                    lambda: fail_stale_trials(study, storage, abandoned), "check for stale trials"
                )
                claimed = retry(lambda: claim_waiting_trial(study, storage), "claim a trial")
            except TRANSIENT_DB_ERRORS:
                if not stop.is_set():
                    raise
                log.warning("stopped while the database was unreachable; no trial claimed")
                break
            if claimed is None:
                if open_ended:
                    retry(lambda: study.enqueue_trial({}), "enqueue a trial")
                    continue
                running = retry(lambda: _running(study), "count running trials")
                if not running:
                    break
                # Trials still run elsewhere: if one of their workers died, its trial goes stale
                # and comes back as a retry that this worker should take. Wait and look again.
                if not waiting_logged:
                    log.info(
                        "no trial waiting; %d running elsewhere, watching for stale ones", running
                    )
                    waiting_logged = True
                stop.wait(poll_s)
                continue
            waiting_logged = False
            bar.set_description(f"trial {claimed.trial.number}")
            if progress:
                objective.on_phase = _describe(bar, f"trial {claimed.trial.number}")
            began = time.monotonic()
            state = run_one(study, storage, objective, claimed, db_timeout_s=db_timeout_s)
            objective.on_phase = None
            bar.set_description(f"trial {claimed.trial.number}")
            longest = max(longest, time.monotonic() - began)
            if state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
                # The trial's note and the study's plots in optuna-dashboard; only ever a warning.
                publish_trial_end(study, objective.space, claimed.trial_id)
            _count(stats, state)
            if state is TrialState.COMPLETE:
                frozen = retry(_reader(storage, claimed.trial_id), "read a trial")
                acc, lat = frozen.values
                bar.set_postfix_str(f"#{frozen.number} acc {acc:.4f} latency {lat:.3f} ms")
            bar.update(1)
    finally:
        bar.close()
    return stats
