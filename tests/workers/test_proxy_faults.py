"""Workers behind the gRPC storage proxy (``automl grpc-proxy``), real processes against the real
PostgreSQL: a worker killed outright there has its trial found stale by its heartbeats, which
reach Optuna's heartbeat table through the proxy, and retried from its checkpoint by another
worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.pool import NullPool

from automl.store.attrs import TrialAttr
from automl.store.heartbeats import heartbeat_ages
from tests.helpers import free_port, spawn_worker, unpooled_storage
from tests.workers.test_faults import EPOCHS, HEARTBEAT, _study, _wait_for_epochs

# The same group as the other worker fault tests: real worker processes on the one server.
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("pg-workers")]


@pytest.fixture
def proxy_url(pg_url: str, tmp_path: Path) -> Iterator[str]:
    """``automl grpc-proxy`` in front of the test server, as a process of its own (its output
    in a file: a pipe nobody reads would stop it once full)."""
    port = free_port()
    with open(tmp_path / "proxy.log", "w") as log:
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "automl",
                "grpc-proxy",
                "--storage",
                pg_url,
                "--port",
                f"{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port).wait_server_ready(60)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


def test_kill_9_behind_the_grpc_proxy_is_found_by_its_heartbeats_and_resumed(
    pg_url: str, proxy_url: str, study_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _study(pg_url, study_name, tmp_path, n=1)
    # A worker that does not get on shows where it stands when aborted (its threads' stacks).
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    a = spawn_worker(proxy_url, study_name, tmp_path, *HEARTBEAT)
    try:
        _wait_for_epochs(pg_url, study_name, 0, 2)
    except AssertionError as e:
        a.send_signal(signal.SIGABRT)
        raise AssertionError(f"{e}; worker A said:\n{a.communicate()[0]}") from e
    storage = unpooled_storage(pg_url)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), 0
    )
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    watcher = optuna.storages.RDBStorage(
        pg_url, engine_kwargs={"poolclass": NullPool}, heartbeat_interval=1, grace_period=3
    )
    # Its heartbeats reached Optuna's table, the one direct workers judge by.
    assert heartbeat_ages(watcher, study_name)[0].age_s is not None, "no heartbeat through it"
    # As if worker A had run on another host: this machine cannot see that its process is gone
    # (automl.store.liveness), so only the heartbeat can tell.
    storage.set_trial_user_attr(trial_id, TrialAttr.WORKER_PROCESS, "elsewhere|boot|1")
    b = spawn_worker(proxy_url, study_name, tmp_path, *HEARTBEAT)
    out = b.communicate(timeout=300)[0]
    assert b.returncode == 0, out
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    states = [t.state for t in trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE], states
    assert "sent no heartbeat" in trials[0].user_attrs[TrialAttr.FAIL_REASON]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == 0
    assert retry.state is TrialState.COMPLETE and retry.params == trials[0].params
    assert retry.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] >= 2
    assert len(retry.user_attrs[TrialAttr.CURVE]) == EPOCHS
