"""A trial's retries: the stale ones failed and re-enqueued, an interrupted one re-enqueued at once.

A retry is a new WAITING trial with the failed attempt's parameters and attributes and
``failed_trial`` / ``retry_history`` system attributes, as Optuna's own retry callback makes it;
``trial_key`` (the original trial's number) is what every attempt shares: its checkpoint and its
seed. Every step reads the storage first, so two workers racing to retry the same trial leave one
retry, and a step repeated after a lost connection does nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from automl.store.attrs import TrialAttr
from automl.store.grpc_proxy import HeartbeatProxy
from automl.store.liveness import gone_here, worker_tags
from automl.store.storage import (
    DEFAULT_MAX_RETRY,
    RETRY_PROMISED,
    StaleTrialRetry,
    retried,
    retried_numbers,
)

__all__ = [
    "RECONNECT_WAIT_S",
    "enqueue_retry",
    "fail_stale_trials",
    "max_retry_of",
    "retried",
    "retry_later",
    "retry_orphans",
    "trial_key",
]

log = logging.getLogger(__name__)


def trial_key(trial: FrozenTrial) -> int:
    """The number of the original trial, equal for every retry of it and every continuation of
    it after a pause (checkpoints, seeds)."""
    original = trial.system_attrs.get("continues", trial.system_attrs.get("failed_trial"))
    return int(original) if original is not None else int(trial.number)


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

    Workers behind the gRPC proxy beat into the same table through it (``automl.store.
    grpc_proxy``), so a pool of direct and proxied workers retries each other's trials.
    """
    if not isinstance(storage, BaseHeartbeat):
        return
    callback = storage.get_heartbeat_stale_trial_callback()
    study_id = storage.get_study_id_from_name(study.study_name)
    # The method BaseHeartbeat storages implement for Optuna's own fail_stale_trials.
    stale: dict[int, str | None] = dict.fromkeys(storage._get_stale_trial_ids(study_id))
    # Trials whose process ran on this machine and is gone need not wait for the grace period;
    # for those the process's absence is the more precise reason, whatever the heartbeat says.
    for trial_id, tag in _worker_tags(storage, study_id).items():
        pid = gone_here(tag)
        if pid is not None:
            stale[trial_id] = (
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
            if on_abandoned is not None and not retried(study, failed):
                on_abandoned(failed)
    if isinstance(callback, StaleTrialRetry):
        retry_orphans(study, storage, callback.max_retry)


# The sweep that wins a stale trial's failure enqueues its retry milliseconds later; a failed
# trial still promised a retry after this long lost its sweeper in between (killed). Longer than
# any plausible clock difference between the hosts of a pool: the failure time is the sweeper's.
ORPHAN_AFTER_S = 60.0


def retry_orphans(study: optuna.Study, storage: BaseStorage, max_retry: int | None) -> None:
    """Enqueue the retry of every stale trial whose sweeper failed it and died before enqueueing
    the retry (the failure is the atomic claim among sweepers, so it must come first). Two
    sweepers that find the same orphan at once both enqueue; the later retry is withdrawn."""
    study_id = storage.get_study_id_from_name(study.study_name)
    now = datetime.now()
    promised = [
        t
        for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,))
        if RETRY_PROMISED in str(t.user_attrs.get(TrialAttr.FAIL_REASON, ""))
        and t.datetime_complete is not None
        and (now - t.datetime_complete).total_seconds() >= ORPHAN_AFTER_S
    ]
    if not promised:
        return
    # One read of the whole study for every candidate (this runs before every claim).
    done = retried_numbers(study.get_trials(deepcopy=False))
    for t in promised:
        if t.number in done or not enqueue_retry(study, t, max_retry):
            continue
        log.warning("trial %d was failed as stale without its retry: retried now", t.number)
        withdraw_extra_retries(study, storage, t.number)


def withdraw_extra_retries(study: optuna.Study, storage: BaseStorage, number: int) -> None:
    """Keep the first retry of trial ``number`` and fail the later ones that no worker claimed
    yet (the claim is the storage's atomic WAITING to RUNNING, so two sweepers withdraw each
    one once). One already claimed by a worker trains: a repeat, not a loss."""
    retries = sorted(
        (
            t
            for t in study.get_trials(deepcopy=False)
            if t.system_attrs.get("retry_history", [])[-1:] == [number]
        ),
        key=lambda t: t.number,
    )
    for extra in retries[1:]:
        if extra.state is not TrialState.WAITING:
            continue
        if not storage.set_trial_state_values(extra._trial_id, state=TrialState.RUNNING):
            continue
        storage.set_trial_user_attr(
            extra._trial_id,
            TrialAttr.FAIL_REASON,
            f"withdrawn: a second retry of trial {number} (trial {retries[0].number} is its "
            "retry), enqueued by two sweeps at once",
        )
        storage.set_trial_state_values(extra._trial_id, state=TrialState.FAIL)


def _worker_tags(storage: BaseStorage, study_id: int) -> dict[int, object]:
    """The process tag of every running trial, read alone where the storage can (every worker
    looks before every claim), else from the whole trials."""
    if isinstance(storage, RDBStorage):
        return worker_tags(storage, study_id)
    if isinstance(storage, HeartbeatProxy):
        return storage.worker_tags(study_id)
    running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    return {t._trial_id: t.user_attrs.get(TrialAttr.WORKER_PROCESS) for t in running}


def max_retry_of(storage: BaseStorage) -> int | None:
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
            # Whether it resumed is the retry's own to say: its checkpoint may be gone.
            user_attrs={
                k: v for k, v in failed.user_attrs.items() if k != TrialAttr.RESUMED_FROM_EPOCH
            },
            system_attrs=system_attrs,
        )
    )
    return True


# How long a trial that lost its connection waits for the database before it is left to go stale.
RECONNECT_WAIT_S = 60.0


def retry_later(
    study: optuna.Study, trial: optuna.Trial, reason: str, max_retry: int | None
) -> bool:
    """Fail a trial now with ``reason`` and enqueue its retry at once, instead of leaving it to go
    stale; returns whether a retry is waiting (not when its retries are used up).

    The retry is enqueued before the trial is failed: a worker killed between the two steps (a
    ``docker stop`` whose grace runs out) leaves a RUNNING trial that goes stale and already has
    its retry (the stale retry then adds none, ``StaleTrialRetry``), never a failed trial that
    nobody retries. Safe to call again after a lost connection: each step checks whether it was
    already done."""
    frozen = study.get_trials(deepcopy=True)[trial.number]
    if frozen.state is TrialState.RUNNING:
        retries = len(frozen.system_attrs.get("retry_history", []))
        if max_retry is not None and retries >= max_retry:
            reason += f"; not retried: it already failed {retries} time(s)"
        else:
            reason += "; retried from its checkpoint"
        trial.set_user_attr(TrialAttr.FAIL_REASON, reason[:600])
        frozen = study.get_trials(deepcopy=True)[trial.number]
        waiting = retried(study, frozen) or enqueue_retry(study, frozen, max_retry)
        study.tell(trial, state=TrialState.FAIL)
        return waiting
    return retried(study, frozen) or enqueue_retry(study, frozen, max_retry)
