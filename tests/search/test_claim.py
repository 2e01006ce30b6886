"""The claim of a WAITING trial: exactly once under many concurrent claimers, in claim order, on
every storage (PostgreSQL's SKIP LOCKED statement, SQLite's conditional update, and the whole-trial
path that the gRPC proxy takes, here on Optuna's in-memory storage)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.trial import TrialState

from automl.search.promotion import CONTINUES, RESUMED_EPOCHS
from automl.search.trial import claim_order, claim_waiting_trial
from automl.store.attrs import TrialAttr
from tests.helpers import unpooled_storage


def _storage(url: str) -> optuna.storages.RDBStorage:
    """One claimer's own connection; SQLite waits for the file's lock as the workers do."""
    if not url.startswith("sqlite"):
        return unpooled_storage(url)
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs={"poolclass": sqlalchemy.pool.NullPool, "connect_args": {"timeout": 60}},
    )


def _study(storage: BaseStorage | str, name: str) -> optuna.Study:
    return optuna.create_study(
        storage=storage, study_name=name, directions=["maximize", "minimize"]
    )


def _ticket(study: optuna.Study, **system_attrs: object) -> int:
    study.add_trial(
        optuna.trial.create_trial(state=TrialState.WAITING, system_attrs=dict(system_attrs))
    )
    return study.get_trials(deepcopy=False)[-1].number


def _claim_all(study: optuna.Study, storage: BaseStorage) -> list[int]:
    got = []
    while (c := claim_waiting_trial(study, storage, lambda t: True)) is not None:
        got.append(c.trial.number)
    return got


def _mixed_queue(study: optuna.Study) -> list[int]:
    """Fresh tickets, retries and continuations, interleaved; their numbers in claim order."""
    numbers = []
    for i in range(3):
        numbers.append(_ticket(study))
        numbers.append(_ticket(study, failed_trial=i, retry_history=[i]))
        numbers.append(_ticket(study, **{CONTINUES: i, RESUMED_EPOCHS: 1}))
    # A retry of a continuation is a retry first.
    numbers.append(_ticket(study, failed_trial=1, **{CONTINUES: 1}))
    trials = study.get_trials(deepcopy=False)
    return sorted(numbers, key=lambda n: claim_order(trials[n]))


def _claims_in_order(storage: BaseStorage, name: str) -> None:
    study = _study(storage, name)
    expected = _mixed_queue(study)
    assert expected[:4] == [1, 4, 7, 9] and expected[4:7] == [2, 5, 8]  # the tiers, in order
    assert _claim_all(study, storage) == expected
    assert {t.state for t in study.get_trials(deepcopy=False)} == {TrialState.RUNNING}


def test_one_worker_claims_retries_then_continuations_then_fresh_tickets(
    storage_url: str, study_name: str
) -> None:
    _claims_in_order(_storage(storage_url), study_name)


def test_the_whole_trial_path_of_the_grpc_proxy_keeps_the_same_order() -> None:
    _claims_in_order(InMemoryStorage(), "in-memory")


def test_continuations_wait_for_their_promotion_and_only_eligible_takes_nothing_else(
    storage_url: str, study_name: str
) -> None:
    storage = _storage(storage_url)
    study = _study(storage, study_name)
    fresh = _ticket(study)
    cont = _ticket(study, **{CONTINUES: 0, RESUMED_EPOCHS: 1})
    assert claim_waiting_trial(study, storage, lambda t: False, only_eligible=True) is None
    first = claim_waiting_trial(study, storage)  # no rule: a continuation is never promoted
    assert first is not None and first.trial.number == fresh
    assert claim_waiting_trial(study, storage) is None
    got = claim_waiting_trial(study, storage, lambda t: t.number == cont, only_eligible=True)
    assert got is not None and got.trial.number == cont


def _race(url: str, name: str, workers: int) -> list[int]:
    """``workers`` claimers, each with its own connection, start together and claim until
    nothing waits; the trial numbers they got, all together."""
    got: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def claimer() -> None:
        try:
            storage = _storage(url)
            study = optuna.load_study(study_name=name, storage=storage)
            barrier.wait()
            for number in _claim_all(study, storage):
                with lock:
                    got.append(number)
        except BaseException as e:  # shown by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=claimer) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return got


def test_concurrent_claimers_take_every_trial_exactly_once(
    storage_url: str, study_name: str
) -> None:
    study = _study(storage_url, study_name)
    retries = [_ticket(study, failed_trial=0, retry_history=[0]) for _ in range(10)]
    for _ in range(110):
        study.enqueue_trial({})
    got = _race(storage_url, study_name, workers=16)
    doubled = [n for n, c in Counter(got).items() if c > 1]
    assert not doubled, f"claimed twice: {doubled}"
    assert sorted(got) == list(range(120)), "every trial claimed, none lost"
    states = Counter(t.state for t in study.get_trials(deepcopy=False))
    assert states == {TrialState.RUNNING: 120}
    # A fresh ticket is claimed only once no retry is left free: the tiers hold under load.
    started = {}
    for t in study.get_trials(deepcopy=False):
        assert t.datetime_start is not None
        started[t.number] = t.datetime_start
    assert max(started[n] for n in retries) <= min(
        v for n, v in started.items() if n not in retries
    )


def test_a_trial_locked_for_a_moment_is_waited_for_not_reported_as_none(
    pg_url: str, study_name: str
) -> None:
    storage = unpooled_storage(pg_url)
    study = _study(storage, study_name)
    study.enqueue_trial({})
    trial_id = study.get_trials(deepcopy=False)[0]._trial_id
    got: list[int | None] = []
    engine = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn, conn.begin():
        # Another worker writing to the waiting trial holds its row, as Optuna's writes do.
        conn.execute(
            sqlalchemy.text("SELECT 1 FROM trials WHERE trial_id = :i FOR UPDATE"), {"i": trial_id}
        )

        def claim() -> None:
            c = claim_waiting_trial(study, storage)
            got.append(None if c is None else c.trial_id)

        t = threading.Thread(target=claim)
        t.start()
        time.sleep(1.0)
        assert t.is_alive(), f"the claim returned {got} while the only waiting trial was held"
    t.join(timeout=30)
    engine.dispose()
    assert got == [trial_id]
    frozen = storage.get_trial(trial_id)
    assert frozen.state is TrialState.RUNNING and TrialAttr.WORKER_PROCESS in frozen.user_attrs
