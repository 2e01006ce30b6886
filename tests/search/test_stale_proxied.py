"""Heartbeats of workers behind the gRPC proxy, written as a trial attribute: a trial whose
attribute stops changing for the grace period is failed and retried, by any worker, judged on the
judging process's own clock (hosts' clocks may differ)."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from automl.search.retries import fail_stale_trials
from automl.store.attrs import TrialAttr
from automl.store.heartbeats import PROXIED_HEARTBEAT, record_proxied_heartbeat
from automl.store.storage import StorageSettings, open_storage


def test_a_direct_worker_retries_a_proxied_trial_whose_heartbeat_stopped(tmp_path: Path) -> None:
    storage = open_storage(
        f"sqlite:///{tmp_path / 's.db'}", StorageSettings(heartbeat_interval=1, grace_period=1)
    )
    assert isinstance(storage, optuna.storages.RDBStorage)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    for _ in range(4):
        study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING))
    silent, beating, copied, direct = (t._trial_id for t in study.get_trials())
    for trial_id in (silent, beating):
        record_proxied_heartbeat(storage, trial_id)
    # A retry or a continuation carries its predecessor's attribute: no heartbeat of its own.
    storage.set_trial_system_attr(copied, PROXIED_HEARTBEAT, [silent, time.time() - 3600])
    storage.record_heartbeat(direct)  # a direct worker's, in Optuna's table
    fail_stale_trials(study, storage)  # the first look: nothing has been silent long enough
    assert {t.state for t in study.get_trials()} == {TrialState.RUNNING}
    time.sleep(1.5)
    record_proxied_heartbeat(storage, beating)
    storage.record_heartbeat(direct)
    fail_stale_trials(study, storage)
    states = {t._trial_id: t.state for t in study.get_trials()}
    assert states[silent] is TrialState.FAIL
    assert states[beating] is states[copied] is states[direct] is TrialState.RUNNING
    retry = study.get_trials()[-1]
    assert retry.state is TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    reason = storage.get_trial(silent).user_attrs[TrialAttr.FAIL_REASON]
    assert "sent no heartbeat for 1 s" in reason and "retried" in reason
