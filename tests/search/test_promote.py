"""Pause and promote (``[scheduler] mode = "promote"``) and the final phase: a trial that does not
earn the next rung is paused with its checkpoint, resumed where it stopped once enough trials rank
below it, and the final phase trains the front's paused networks to the end."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

import automl
from automl.search.checkpoints import TrialCheckpoint
from automl.search.promotion import (
    CONTINUES,
    RESUMED_EPOCHS,
    enqueue_continuation,
    evict_paused,
    final_order,
)
from automl.search.retries import retry_later
from automl.search.trial import claim_waiting_trial
from automl.store.attrs import TrialAttr
from tests.helpers import unpooled_storage, write_space

EPOCHS = 3  # one rung, at epoch 1


def _space(tmp_path: Path, extra: str = "") -> Path:
    path = write_space(tmp_path, epochs=EPOCHS, steps=3)
    path.write_text(
        path.read_text()
        + '\n[scheduler]\nkind = "asha"\nmode = "promote"\nmin_epochs = 1\neta = 3\n'
        + extra
    )
    return path


def _fake(study: optuna.Study, acc: float, lat: float, state: TrialState) -> None:
    """A finished trial that reached the rung with ``acc`` at ``lat`` ms."""
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=[acc, lat] if state is TrialState.COMPLETE else None,
            user_attrs={TrialAttr.CURVE: [acc] * EPOCHS, TrialAttr.LATENCY_MS: lat},
        )
    )


def _paused_baseline(tmp_path: Path) -> automl.AutoMLStudy:
    """A study whose baseline (trial 0) was paused at rung 1: three finished trials there are
    both faster and more accurate."""
    study = automl.create_study(_space(tmp_path), f"sqlite:///{tmp_path / 's.db'}")
    for _ in range(3):
        _fake(study.optuna_study, 1.0, 1e-6, TrialState.COMPLETE)
    study.optimize()
    return study


@pytest.mark.parametrize("checkpoint", ["kept", "gone"])
def test_a_paused_trial_is_promoted_and_resumes_where_it_stopped(
    tmp_path: Path, checkpoint: str
) -> None:
    study = _paused_baseline(tmp_path)
    paused = study.trials()[0]
    assert paused.state is TrialState.PRUNED and paused.user_attrs[TrialAttr.PAUSED]
    assert paused.user_attrs[TrialAttr.PRUNED_REASON].startswith("paused at rung 1 of 1")
    assert len(paused.user_attrs[TrialAttr.CURVE]) == 1
    ckpt = TrialCheckpoint.of(study.artifact_dir, study.optuna_study, 0).path
    assert ckpt.is_file()
    [ticket] = study.paused_trials()
    assert ticket.system_attrs[CONTINUES] == 0 and ticket.system_attrs[RESUMED_EPOCHS] == 1
    assert study.waiting_trials() == 0  # a paused trial is not new work

    # Not promotable yet: another run leaves it paused.
    study.optimize()
    assert [t.number for t in study.paused_trials()] == [ticket.number]

    # Eight trials at the rung that it dominates: it is among the best third there now.
    for _ in range(8):
        _fake(study.optuna_study, 0.0, 1e6, TrialState.PRUNED)
    if checkpoint == "gone":
        ckpt.unlink()
    study.optimize()
    resumed = study.trials()[ticket.number]
    assert resumed.state is TrialState.COMPLETE, resumed.user_attrs.get(TrialAttr.FAIL_REASON)
    curve = resumed.user_attrs[TrialAttr.CURVE]
    assert len(curve) == EPOCHS
    if checkpoint == "kept":
        assert resumed.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] == 1
        assert curve[0] == paused.user_attrs[TrialAttr.CURVE][0]
        assert TrialAttr.RESTARTED not in resumed.user_attrs
    else:
        assert not resumed.user_attrs.get(TrialAttr.RESUMED_FROM_EPOCH)
        assert "trained again from epoch 0" in resumed.user_attrs[TrialAttr.RESTARTED]
    assert not ckpt.exists()
    assert study.paused_trials() == []


def _race(url: str, name: str) -> list[int | None]:
    """Two workers, each with its own connection, claim at the same instant; what each got."""
    got: list[int | None] = []
    barrier = threading.Barrier(2)

    def claim() -> None:
        storage = unpooled_storage(url)
        s = optuna.load_study(study_name=name, storage=storage)
        barrier.wait()
        c = claim_waiting_trial(s, storage, lambda t: True)
        got.append(None if c is None else c.trial.number)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_two_workers_racing_for_one_promotion_resume_it_once(storage_url: str) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(
        storage=storage_url, study_name=name, directions=["maximize", "minimize"]
    )
    try:
        ticket = _paused_ticket(study, 0.9, 1.0, 0)
        for _ in range(5):  # five rounds of two workers on one ticket each
            got = _race(storage_url, name)
            assert got.count(ticket.number) == 1 and got.count(None) == 1, got
            ticket = _paused_ticket(study, 0.9, 1.0, ticket.number + 1)
    finally:
        optuna.delete_study(study_name=name, storage=storage_url)


def _paused_ticket(study: optuna.Study, acc: float, lat: float, key: int) -> FrozenTrial:
    _fake(study, acc, lat, TrialState.PRUNED)
    paused = study.get_trials()[-1]
    enqueue_continuation(study, paused, key, 1)
    return study.get_trials()[-1]


def test_the_disk_budget_evicts_the_most_dominated_paused_checkpoint(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    good = _paused_ticket(study, 0.9, 1.0, 0)
    bad = _paused_ticket(study, 0.5, 2.0, 2)  # dominated by the first
    other = _paused_ticket(study, 0.95, 3.0, 4)  # a trade-off: not dominated
    discarded: list[int] = []
    assert evict_paused(study, storage, 3, lambda t: discarded.append(t.number)) == []
    assert evict_paused(study, storage, 2, lambda t: discarded.append(t.number)) == [bad.number]
    assert discarded == [bad.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[bad.number] is TrialState.FAIL
    assert states[good.number] is states[other.number] is TrialState.WAITING
    reason = study.get_trials()[bad.number].user_attrs[TrialAttr.FAIL_REASON]
    assert "max_paused_checkpoints" in reason


def test_the_final_phase_takes_the_highest_rung_then_its_front() -> None:
    def ticket(number: int, rung: int, acc: float, lat: float) -> FrozenTrial:
        return optuna.trial.create_trial(
            state=TrialState.WAITING,
            user_attrs={TrialAttr.CURVE: [acc] * rung, TrialAttr.LATENCY_MS: lat},
            system_attrs={CONTINUES: number, RESUMED_EPOCHS: rung},
        )

    tickets = [
        ticket(0, 1, 0.99, 0.1),  # the best at rung 1
        ticket(1, 3, 0.80, 0.5),  # dominated at rung 3
        ticket(2, 3, 0.85, 0.4),  # front of rung 3
        ticket(3, 3, 0.90, 0.9),  # front of rung 3, more accurate
    ]
    for n, t in enumerate(tickets):
        t.number = n
    assert final_order(tickets) == [3, 2, 1, 0]


def test_the_final_phase_trains_the_paused_front_to_the_end(tmp_path: Path) -> None:
    path = _space(tmp_path)
    path.write_text(path.read_text() + "final_share = 0.5\n")
    study = automl.create_study(path, f"sqlite:///{tmp_path / 's.db'}")
    for _ in range(3):
        _fake(study.optuna_study, 1.0, 1e-6, TrialState.COMPLETE)
    stats = study.optimize(n_trials=1, budget_s=240)
    assert stats.final is not None and stats.final.completed == 1
    paused, *_, final = study.trials()
    assert paused.user_attrs[TrialAttr.PAUSED]
    assert final.system_attrs[CONTINUES] == 0 and final.state is TrialState.COMPLETE
    phase = final.user_attrs[TrialAttr.FINAL_PHASE]
    assert phase["epochs_before"] == 1
    assert phase["accuracy_before"] == paused.user_attrs[TrialAttr.CURVE][0]
    assert len(final.user_attrs[TrialAttr.CURVE]) == EPOCHS
    assert final.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] == 1


def test_a_resumed_trial_whose_worker_dies_is_retried_from_the_same_checkpoint(
    tmp_path: Path,
) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    ticket = _paused_ticket(study, 0.9, 1.0, 0)
    study.enqueue_trial({})  # new work waiting beside it
    resumed = claim_waiting_trial(study, storage, lambda t: True)
    assert resumed is not None and resumed.trial.number == ticket.number and resumed.key == 0
    # Its worker is stopped (or found dead): the attempt fails and its retry is enqueued.
    assert retry_later(study, resumed.trial, "worker stopped: killed", None)
    again = claim_waiting_trial(study, storage)  # a retry goes before the new trial
    assert again is not None and again.trial.number == ticket.number + 2
    assert again.key == 0  # the paused trial's checkpoint and seed, not the attempt's number
    frozen = storage.get_trial(again.trial_id)
    assert frozen.system_attrs[CONTINUES] == 0 and frozen.system_attrs[RESUMED_EPOCHS] == 1
