"""A worker killed in the middle of re-enqueueing its trial (a ``docker stop`` whose grace ran out)
never loses the trial and never leaves it to be trained twice: the retry is enqueued before the
trial is failed, and the stale sweep adds no second retry to a trial that already has one."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from automl.search.retries import fail_stale_trials, retry_later
from automl.search.trial import claim_waiting_trial
from automl.store.storage import StorageSettings, open_storage

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
