"""automl's gRPC storage proxy, served in this process on every storage: heartbeats reach Optuna's
heartbeat table through it, claims are made by the proxy (in order, each trial once), and a
plain Optuna proxy is refused with the way out."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from automl.errors import StorageError
from automl.search.promotion import CONTINUES, RESUMED_EPOCHS
from automl.search.retries import fail_stale_trials
from automl.search.trial import claim_waiting_trial
from automl.store.attrs import TrialAttr
from automl.store.grpc_proxy import HeartbeatProxy, start_proxy_server
from automl.store.storage import StorageSettings, open_storage
from tests.helpers import free_port

FAST = StorageSettings(heartbeat_interval=1, grace_period=1)


@pytest.fixture
def served(storage_url: str) -> Iterator[tuple[RDBStorage, str]]:
    """The database (opened directly) and the URL of automl's proxy in front of it."""
    rdb = open_storage(storage_url, FAST)
    assert isinstance(rdb, RDBStorage)
    port = free_port()
    server = start_proxy_server(rdb, "127.0.0.1", port)
    try:
        yield rdb, f"grpc://127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def _client(url: str) -> HeartbeatProxy:
    client = open_storage(url, FAST)
    assert isinstance(client, HeartbeatProxy)
    return client


def _study(storage: BaseStorage, name: str) -> optuna.Study:
    return optuna.create_study(
        storage=storage, study_name=name, directions=["maximize", "minimize"]
    )


def test_claims_through_the_proxy_keep_the_order_and_take_each_trial_once(
    served: tuple[RDBStorage, str], study_name: str
) -> None:
    rdb, url = served
    study = _study(rdb, study_name)
    for _ in range(40):
        study.enqueue_trial({})
    retry = {"failed_trial": 0, "retry_history": [0]}
    for attrs in (retry, {CONTINUES: 0, RESUMED_EPOCHS: 1}, retry):
        study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs=attrs))
    client = _client(url)
    mine = optuna.load_study(study_name=study_name, storage=client)
    first = [claim_waiting_trial(mine, client, lambda t: True) for _ in range(4)]
    assert [c.trial.number for c in first if c is not None] == [40, 42, 41, 0]
    got: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        c = _client(url)
        s = optuna.load_study(study_name=study_name, storage=c)
        while (claimed := claim_waiting_trial(s, c)) is not None:
            with lock:
                got.append(claimed.trial.number)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not [n for n, k in Counter(got).items() if k > 1], "claimed twice"
    assert sorted(got) == list(range(1, 40)), "every trial claimed, none lost"


def test_a_heartbeat_through_the_proxy_is_judged_by_every_worker(
    served: tuple[RDBStorage, str], study_name: str
) -> None:
    rdb, url = served
    study = _study(rdb, study_name)
    study.enqueue_trial({})
    study.enqueue_trial({})
    client = _client(url)
    mine = optuna.load_study(study_name=study_name, storage=client)
    silent = claim_waiting_trial(mine, client)
    beating = claim_waiting_trial(mine, client)
    assert silent is not None and beating is not None  # both have a heartbeat from the claim
    assert (
        client.worker_tags(mine._study_id)[silent.trial_id]
        == (rdb.get_trial(silent.trial_id).user_attrs[TrialAttr.WORKER_PROCESS])
    )
    assert client._get_stale_trial_ids(mine._study_id) == []
    # Past the grace period by the database's clock (SQLite's counts whole seconds).
    time.sleep(2.5)
    client.record_heartbeat(beating.trial_id)
    # A direct worker sees the proxied heartbeats in Optuna's own table...
    assert rdb._get_stale_trial_ids(mine._study_id) == [silent.trial_id]
    # ...and a proxied worker asks the proxy, with its own grace period.
    assert client._get_stale_trial_ids(mine._study_id) == [silent.trial_id]
    fail_stale_trials(mine, client)
    states = {t._trial_id: t.state for t in rdb.get_all_trials(mine._study_id)}
    assert states[silent.trial_id] is TrialState.FAIL
    assert states[beating.trial_id] is TrialState.RUNNING
    retry = rdb.get_all_trials(mine._study_id)[-1]
    assert retry.state is TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    assert (
        "sent no heartbeat for 1 s"
        in rdb.get_trial(silent.trial_id).user_attrs[TrialAttr.FAIL_REASON]
    )


def test_a_plain_optuna_proxy_is_refused_with_the_way_out(tmp_path: Path) -> None:
    from optuna.storages._grpc.server import make_server

    rdb = open_storage(f"sqlite:///{tmp_path / 'p.db'}")
    port = free_port()
    server = make_server(rdb, "127.0.0.1", port)
    server.start()
    try:
        with pytest.raises(StorageError, match="plain Optuna gRPC proxy.*automl grpc-proxy"):
            open_storage(f"grpc://127.0.0.1:{port}")
    finally:
        server.stop(grace=None)
