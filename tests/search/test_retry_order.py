"""A worker or a stale sweep killed in the middle of re-enqueueing a trial (a ``docker stop`` whose
grace ran out) never loses the trial and never leaves it to be trained twice: a worker enqueues
the retry before it fails the trial, the stale sweep adds no second retry to a trial that already
has one, and a stale trial failed by a sweep that died before enqueueing its retry is retried by
a later sweep (two at once leave one retry)."""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from automl.search import retries as retries_module
from automl.search.retries import fail_stale_trials, retry_later, retry_orphans
from automl.search.trial import claim_waiting_trial
from automl.store.attrs import TrialAttr
from automl.store.storage import StaleTrialRetry, StorageSettings, open_storage

FAST = StorageSettings(heartbeat_interval=1, grace_period=1)
# Where the kill lands: after the retry was enqueued (the trial is not failed yet), or before.
KILLED_AT = ("tell", "add_trial")


class Killed(BaseException):
    """What the process sees of a SIGKILL: nothing after this point runs."""


def _killed(*args: object, **kwargs: object) -> None:
    raise Killed


def test_a_worker_killed_while_re_enqueueing_leaves_exactly_one_retry(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(storage_url, FAST)
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=["maximize", "minimize"]
    )
    for _ in KILLED_AT:
        study.enqueue_trial({})
    # Both claimed first: a retry waiting would be claimed before a fresh trial.
    claims = [claim_waiting_trial(study, storage) for _ in KILLED_AT]
    numbers = {}
    for step, claimed in zip(KILLED_AT, claims, strict=True):
        assert claimed is not None
        numbers[step] = claimed.trial.number
        with monkeypatch.context() as m:
            m.setattr(study, step, _killed)
            with pytest.raises(Killed):
                retry_later(study, claimed.trial, "worker stopped: SIGTERM", None)
        # Nothing failed yet: the trial is still RUNNING and goes stale, whichever step was cut.
        assert storage.get_trial(claimed.trial_id).state is TrialState.RUNNING

    # Past the grace period by the database's clock (SQLite's counts whole seconds).
    time.sleep(2.5)
    other = optuna.load_study(study_name=study_name, storage=open_storage(storage_url, FAST))
    fail_stale_trials(other, other._storage)
    trials = other.get_trials()
    for step, number in numbers.items():
        assert trials[number].state is TrialState.FAIL
        retries = [t for t in trials if number in t.system_attrs.get("retry_history", [])]
        assert len(retries) == 1, (step, [(t.number, t.state, t.system_attrs) for t in trials])
        assert retries[0].state is TrialState.WAITING
        assert retries[0].system_attrs["retry_history"] == [number]


def _stale_trial(
    storage_url: str, study_name: str, settings: StorageSettings = FAST
) -> tuple[optuna.Study, int]:
    """A study whose one trial was claimed by a worker that then died (no heartbeat since), as
    another worker's sweep sees it."""
    storage = open_storage(storage_url, settings)
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=["maximize", "minimize"]
    )
    study.enqueue_trial({})
    claimed = claim_waiting_trial(study, storage)
    assert claimed is not None
    # Past the grace period by the database's clock (SQLite's counts whole seconds).
    time.sleep(2.5)
    sweeper = optuna.load_study(study_name=study_name, storage=open_storage(storage_url, settings))
    return sweeper, claimed.trial.number


def _orphaned(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[optuna.Study, int]:
    """A stale trial failed by a sweep that was killed right after the failure, before the
    retry callback enqueued its retry."""
    study, number = _stale_trial(storage_url, study_name)
    with monkeypatch.context() as m:
        m.setattr(StaleTrialRetry, "__call__", _killed)
        with pytest.raises(Killed):
            fail_stale_trials(study, study._storage)
    return study, number


def _retries_of(study: optuna.Study, number: int) -> list[optuna.trial.FrozenTrial]:
    return [
        t for t in study.get_trials() if t.system_attrs.get("retry_history", [])[-1:] == [number]
    ]


def test_a_sweeper_killed_after_failing_a_stale_trial_leaves_it_to_the_next_sweep(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, number = _orphaned(storage_url, study_name, monkeypatch)
    assert study.get_trials()[number].state is TrialState.FAIL
    assert _retries_of(study, number) == []
    # Within the sweeper's milliseconds no other sweep takes it over; past them the next does.
    fail_stale_trials(study, study._storage)
    assert _retries_of(study, number) == []
    monkeypatch.setattr(retries_module, "ORPHAN_AFTER_S", 0.0)
    fail_stale_trials(study, study._storage)
    fail_stale_trials(study, study._storage)
    assert [t.state for t in _retries_of(study, number)] == [TrialState.WAITING]


def test_two_sweeps_that_retry_one_orphan_at_once_leave_one_retry(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, number = _orphaned(storage_url, study_name, monkeypatch)
    monkeypatch.setattr(retries_module, "ORPHAN_AFTER_S", 0.0)
    enqueue = retries_module.enqueue_retry

    def the_other_sweep_first(*args: Any, **kwargs: Any) -> bool:
        # The other sweep enqueues between this one's read (no retry yet) and its own enqueue.
        enqueue(*args, **kwargs)
        return enqueue(*args, **kwargs)

    monkeypatch.setattr(retries_module, "enqueue_retry", the_other_sweep_first)
    retry_orphans(study, study._storage, None)
    first, second = _retries_of(study, number)
    assert first.state is TrialState.WAITING
    assert second.state is TrialState.FAIL
    assert second.user_attrs[TrialAttr.FAIL_REASON].startswith(
        f"withdrawn: a second retry of trial {number}"
    )


def test_a_stale_trial_out_of_retries_is_not_taken_for_an_orphan(
    storage_url: str, study_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_retry = StorageSettings(heartbeat_interval=1, grace_period=1, max_retry=0)
    study, number = _stale_trial(storage_url, study_name, no_retry)
    monkeypatch.setattr(retries_module, "ORPHAN_AFTER_S", 0.0)
    fail_stale_trials(study, study._storage)
    fail_stale_trials(study, study._storage)
    [trial] = study.get_trials()
    assert trial.number == number
    assert (
        trial.state is TrialState.FAIL and "not retried" in trial.user_attrs[TrialAttr.FAIL_REASON]
    )
