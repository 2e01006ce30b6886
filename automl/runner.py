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
from dataclasses import dataclass, field

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm.auto import tqdm

from automl.errors import TrainingError
from automl.objective import Objective, StopRequested, TrialAttr, trial_key
from automl.retry import TRANSIENT_DB_ERRORS, db_retry

__all__ = ["Claimed", "RunStats", "claim_waiting_trial", "run_one", "run_trials"]

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    stopped: int = 0
    lost: int = 0
    numbers: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.completed + self.pruned + self.failed + self.stopped + self.lost


def _storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage  # the storage the study was opened with


@dataclass(frozen=True)
class Claimed:
    """A trial this worker moved from WAITING to RUNNING."""

    trial: optuna.Trial
    key: int
    trial_id: int


def claim_waiting_trial(study: optuna.Study) -> Claimed | None:
    """Atomically take one WAITING trial of ``study``; ``None`` when there is none."""
    storage = _storage(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        return Claimed(optuna.Trial(study, trial_id), trial_key(frozen), trial_id)
    return None


class _Heartbeat:
    """Records the running trial's heartbeat; a failed write (database away) is retried later."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self.storage = storage
        self.trial_id = trial_id
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.interval = float(interval) if interval else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="automl-heartbeat")

    def _loop(self) -> None:
        assert self.interval is not None
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)  # type: ignore[attr-defined]
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


def _retry_later(study: optuna.Study, trial: optuna.Trial) -> None:
    """Fail a stopped trial now and enqueue its retry, instead of waiting for it to go stale."""
    storage = _storage(study)
    study.tell(trial, state=TrialState.FAIL)
    callback = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    if callback is not None:
        callback(study, study.get_trials(deepcopy=True)[trial.number])


def run_one(study: optuna.Study, objective: Objective, claimed: Claimed) -> TrialState:
    """Run a claimed trial to its end and record the outcome; returns the final state."""
    trial, key = claimed.trial, claimed.key
    with _Heartbeat(_storage(study), claimed.trial_id):
        try:
            values = objective.run(trial, key)
        except optuna.TrialPruned:
            db_retry(
                lambda: study.tell(trial, state=TrialState.PRUNED), what="record a pruned trial"
            )
            return TrialState.PRUNED
        except StopRequested as e:
            why = f"worker stopped: {e}; retried from checkpoint"
            db_retry(
                lambda: trial.set_user_attr(TrialAttr.FAIL_REASON, why),
                what="record a stopped trial",
            )
            db_retry(lambda: _retry_later(study, trial), what="re-enqueue a stopped trial")
            return TrialState.WAITING
        except (TrainingError, torch.OutOfMemoryError) as e:
            # The trial's own fault (divergence, a model too big for this device): record why,
            # fail this trial only and go on with the next.
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            db_retry(
                lambda: trial.set_user_attr(TrialAttr.FAIL_REASON, reason), what="record a failure"
            )
            db_retry(lambda: study.tell(trial, state=TrialState.FAIL), what="record a failure")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning("trial %d failed: %s", trial.number, reason)
            return TrialState.FAIL
        except TRANSIENT_DB_ERRORS as e:
            # The database went away mid-trial and did not come back in time. The trial stays
            # RUNNING without heartbeats, so it goes stale and is retried from its checkpoint.
            log.warning(
                "trial %d lost its database connection (%s); it will be retried", trial.number, e
            )
            return TrialState.RUNNING
        except BaseException as e:
            reason = (
                f"{type(e).__name__}: {e}".splitlines()[0][:500] if str(e) else type(e).__name__
            )
            try:
                trial.set_user_attr(TrialAttr.FAIL_REASON, reason)
                study.tell(trial, state=TrialState.FAIL)
            except Exception:
                log.error(
                    "could not record the failure of trial %d:\n%s",
                    trial.number,
                    traceback.format_exc(),
                )
            raise
        # A finished trial is the expensive part: wait out a database restart rather than lose it.
        db_retry(lambda: study.tell(trial, list(values)), what=f"record trial {trial.number}")
        return TrialState.COMPLETE


def _running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _reader(study: optuna.Study, trial_id: int) -> Callable[[], optuna.trial.FrozenTrial]:
    return lambda: _storage(study).get_trial(trial_id)


def run_trials(
    study: optuna.Study,
    objective: Objective,
    *,
    max_trials: int | None = None,
    timeout: float | None = None,
    open_ended: bool = False,
    stop_event: threading.Event | None = None,
    progress: bool = False,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    wait_for_running: bool = True,
    expected: int | None = None,
) -> RunStats:
    """Claim and run WAITING trials until none is left, ``max_trials`` ran here, the ``timeout``
    (seconds, checked between trials) passed or ``stop_event`` was set.

    With ``open_ended`` a worker that finds no waiting trial enqueues one for itself (a study
    with no target, e.g. ``automl search --timeout``). Otherwise, with ``wait_for_running``, a
    worker that finds no waiting trial while others still run waits for them, so that the retry
    of a trial whose worker died is picked up.
    """
    stop = stop_event or threading.Event()
    stats = RunStats()
    waiting_logged = False
    storage = _storage(study)
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    # Idle workers look again often enough to exit soon after the last trial ends elsewhere.
    poll_s = min(float(interval), 5.0) if interval else 5.0
    start = time.monotonic()
    # The bar's total: what this loop may run, as far as it is known when it starts.
    total = max_trials if max_trials is not None else expected
    bar = tqdm(total=total, disable=not progress, unit="trial", dynamic_ncols=True)
    try:
        while not stop.is_set():
            if max_trials is not None and stats.total >= max_trials:
                break
            if timeout is not None and time.monotonic() - start >= timeout:
                break
            db_retry(
                lambda: optuna.storages.fail_stale_trials(study), what="check for stale trials"
            )
            claimed = db_retry(lambda: claim_waiting_trial(study), what="claim a trial")
            if claimed is None:
                if open_ended:
                    db_retry(lambda: study.enqueue_trial({}), what="enqueue a trial")
                    continue
                running = db_retry(lambda: _running(study), what="count running trials")
                if not running or not wait_for_running:
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
            trial = claimed.trial
            bar.set_description(f"trial {trial.number}")
            state = run_one(study, objective, claimed)
            frozen = db_retry(_reader(study, claimed.trial_id), what="read a trial")
            if state is TrialState.COMPLETE:
                stats.completed += 1
                acc, lat = frozen.values
                bar.set_postfix_str(f"#{trial.number} acc {acc:.4f} latency {lat:.3f} ms")
            elif state is TrialState.PRUNED:
                stats.pruned += 1
            elif state is TrialState.FAIL:
                stats.failed += 1
            elif state is TrialState.RUNNING:
                stats.lost += 1
            else:
                stats.stopped += 1
            stats.numbers.append(trial.number)
            bar.update(1)
            if on_trial is not None:
                on_trial(frozen)
    finally:
        bar.close()
    return stats
