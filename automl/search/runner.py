"""The trial loop shared by ``AutoMLStudy.optimize`` and the long-running worker.

Trials are *claimed*: every trial a study should run exists first as a WAITING trial (a ticket:
the baseline, ``n_trials`` empty ones, or the retry of a trial that went stale), and a worker
moves one from WAITING to RUNNING with the storage's atomic state transition. Two workers can
therefore never run the same trial, and a study asked for N trials runs exactly N, however many
workers share it. A claimed trial samples its parameters as usual (an empty ticket fixes none).
What one trial goes through is ``automl.search.trial``; this loop decides when to claim the next,
when to wait for others and when to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from automl.search.dedup import NOT_TRAINED
from automl.search.hooks import TrialEndHook
from automl.search.promotion import promotable
from automl.search.retries import fail_stale_trials, trial_key
from automl.search.scheduler import RungScheduler, early_stopper
from automl.search.startup import next_startup_ticket
from automl.search.trial import Claimed, TrialEnv, claim_waiting_trial, run_trial
from automl.store.attrs import TrialAttr
from automl.store.heartbeats import heartbeat_interval
from automl.store.retry import DEFAULT_TIMEOUT_S, TRANSIENT_DB_ERRORS, db_retry

__all__ = ["MAX_REPEATS_IN_A_ROW", "RunStats", "TrialRunner", "run_trials"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# How a claimed trial is run (``automl.search.trial.run_trial``; tests inject faults here).
TrialRunner = Callable[[TrialEnv, optuna.Study, BaseStorage, Claimed], TrialState]


# Trials in a row that found their configuration already trained (or training) before the loop
# decides the space is exhausted: a sampler that keeps proposing known configurations has nothing
# new left to try (a space of a few networks, or a sampler converged on its front).
MAX_REPEATS_IN_A_ROW = 25


@dataclass
class RunStats:
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    stopped: int = 0
    lost: int = 0
    # Trials that trained nothing: their configuration's outcome was reused, or it was training.
    reused: int = 0
    exhausted: bool = False
    # The final phase's own counts (promote mode with a time budget), when it ran.
    final: RunStats | None = None

    @property
    def total(self) -> int:
        return self.completed + self.pruned + self.failed + self.stopped + self.lost


def _publish(
    hooks: Sequence[TrialEndHook], study: optuna.Study, env: TrialEnv, trial_id: int
) -> None:
    for hook in hooks:
        try:
            hook(study, env.space, trial_id)
        except Exception as e:  # a view must never fail the search
            log.warning(
                "after trial id %d: %s failed: %s", trial_id, getattr(hook, "__name__", hook), e
            )


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


def _trained_nothing(frozen: FrozenTrial) -> bool:
    reason = str(frozen.user_attrs.get(TrialAttr.FAIL_REASON) or "")
    return frozen.user_attrs.get(TrialAttr.REUSED_FROM) is not None or reason.startswith(
        NOT_TRAINED
    )


def _promotion_rule(study: optuna.Study, env: TrialEnv) -> Callable[[FrozenTrial], bool] | None:
    """Promote mode: a paused trial's continuation is claimed once it is promotable."""
    scheduler = early_stopper(env.space)
    if not (isinstance(scheduler, RungScheduler) and scheduler.promote):
        return None
    rule: RungScheduler = scheduler
    return lambda t: promotable(study, t, rule)


def _describe(bar: Any, prefix: str) -> Callable[[str], None]:
    """The trial bar's description follows the trial's phase, so that a hang shows where."""
    return lambda what: bar.set_description(f"{prefix}: {what}", refresh=True)


def _at_a_limit(
    stats: RunStats,
    max_trials: int | None,
    timeout: float | None,
    budget_s: float | None,
    elapsed: float,
    longest: float,
) -> bool:
    """Whether the loop ends before claiming another trial: enough trials ran here, the timeout
    passed, or the longest trial so far would not end within the budget."""
    if max_trials is not None and stats.total >= max_trials:
        return True
    if timeout is not None and elapsed >= timeout:
        return True
    if budget_s is not None and elapsed + longest > budget_s:
        log.info("time budget: the next trial would not end within %.0f s", budget_s)
        return True
    return False


def _record_end(
    study: optuna.Study,
    storage: BaseStorage,
    env: TrialEnv,
    claimed: Claimed,
    state: TrialState,
    on_trial_end: Sequence[TrialEndHook],
    retry: Callable[[Callable[[], FrozenTrial], str], FrozenTrial],
    bar: tqdm,
) -> bool | None:
    """Publish a trial that ended (complete, pruned, failed) and show its values; whether it
    trained nothing (took a stored outcome). ``None`` for a trial that did not end (stopped,
    lost): it may have no database to read."""
    if state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        return None
    # E.g. the trial's note and the study's plots in optuna-dashboard.
    _publish(on_trial_end, study, env, claimed.trial_id)
    frozen = retry(_reader(storage, claimed.trial_id), "read a trial")
    if state is TrialState.COMPLETE:
        acc, lat = frozen.values
        bar.set_postfix_str(f"#{frozen.number} acc {acc:.4f} latency {lat:.3f} ms")
    return _trained_nothing(frozen)


def run_trials(
    study: optuna.Study,
    storage: BaseStorage,
    env: TrialEnv,
    *,
    max_trials: int | None = None,
    timeout: float | None = None,
    open_ended: bool = False,
    stop_event: threading.Event | None = None,
    progress: bool = False,
    expected: int | None = None,
    db_timeout_s: float = DEFAULT_TIMEOUT_S,
    budget_s: float | None = None,
    run: TrialRunner = run_trial,
    on_trial_end: Sequence[TrialEndHook] = (),
    eligible: Callable[[FrozenTrial], bool] | None = None,
    only_eligible: bool = False,
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

    ``run`` takes each claimed trial to its end state; ``on_trial_end`` is called after every
    trial that ended (complete, pruned, failed), never failing the loop.

    A continuation of a paused trial (promote mode) is claimed when ``eligible`` says so; by
    default when it is promotable at its rung (``automl.search.promotion``). With
    ``only_eligible`` no other trial is claimed either (the final phase).
    """
    stop = stop_event or threading.Event()
    longest = 0.0
    stats = RunStats()
    waiting_logged = False
    interval = heartbeat_interval(storage)
    # Idle workers look again often enough to exit soon after the last trial ends elsewhere.
    poll_s = min(interval, 5.0) if interval else 5.0
    start = time.monotonic()
    repeats_in_a_row = 0

    def retry(fn: Callable[[], T], what: str) -> T:
        return db_retry(fn, what=what, timeout_s=db_timeout_s, stop_event=stop)

    def abandoned(frozen: FrozenTrial) -> None:
        env.checkpoint(study, trial_key(frozen)).discard()

    if eligible is None:
        eligible = _promotion_rule(study, env)

    # The bar's total: what this loop may run, as far as it is known when it starts.
    total = max_trials if max_trials is not None else expected
    bar = tqdm(total=total, disable=not progress, unit="trial", dynamic_ncols=True)
    try:
        while not stop.is_set():
            if _at_a_limit(stats, max_trials, timeout, budget_s, time.monotonic() - start, longest):
                break
            try:
                retry(
                    lambda: fail_stale_trials(study, storage, abandoned), "check for stale trials"
                )
                claimed = retry(
                    lambda: claim_waiting_trial(study, storage, eligible, only_eligible),
                    "claim a trial",
                )
            except TRANSIENT_DB_ERRORS:
                if not stop.is_set():
                    raise
                log.warning("stopped while the database was unreachable; no trial claimed")
                break
            if claimed is None:
                if open_ended:
                    # The start's next pick (automl.search.startup) if one is left, else a
                    # ticket for the sampler.
                    placed = env.space.surveys_latency and retry(
                        lambda: next_startup_ticket(study), "enqueue a start's pick"
                    )
                    if not placed:
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
                env.on_phase = _describe(bar, f"trial {claimed.trial.number}")
            began = time.monotonic()
            state = run(env, study, storage, claimed)
            env.on_phase = None
            bar.set_description(f"trial {claimed.trial.number}")
            longest = max(longest, time.monotonic() - began)
            _count(stats, state)
            nothing = _record_end(study, storage, env, claimed, state, on_trial_end, retry, bar)
            if nothing is not None:
                stats.reused += nothing
                repeats_in_a_row = repeats_in_a_row + 1 if nothing else 0
            bar.update(1)
            if repeats_in_a_row >= MAX_REPEATS_IN_A_ROW:
                stats.exhausted = True
                log.warning(
                    "the last %d trials all found their configuration already trained: every "
                    "configuration the sampler proposes has been tried; stopping",
                    repeats_in_a_row,
                )
                break
    finally:
        bar.close()
    return stats
