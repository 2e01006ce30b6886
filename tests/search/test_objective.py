"""Unit tests of the objective's epoch reporter: curves of resumed trials, pruning, stopping."""

from __future__ import annotations

import threading

import optuna
import pytest
from optuna.study import StudyDirection

from automl.attrs import TrialAttr
from automl.objective import EpochReporter, StopRequested
from automl.pruning import ParetoPruner
from automl.training import EpochRecord

DIRECTIONS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]


def _record(epoch: int, accuracy: float, seconds: float = 1.0) -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        train_loss=1.0,
        train_ce=1.0,
        train_cot=0.0,
        cot_weight=0.0,
        lr=0.1,
        val_accuracy=accuracy,
        member_val_accuracies=[accuracy],
        seconds=seconds,
    )


def _reporter(
    trial: optuna.Trial,
    *,
    epochs: int = 4,
    pruner: ParetoPruner | None = None,
    stop: threading.Event | None = None,
) -> EpochReporter:
    return EpochReporter(
        trial,
        latency_ms=1.0,
        pruner=pruner or ParetoPruner(enabled=False),
        epochs=epochs,
        stop_event=stop or threading.Event(),
    )


def test_curve_and_epoch_times_are_stored_after_every_epoch() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    trial = study.ask()
    report = _reporter(trial)
    report(_record(0, 0.5, seconds=1.23456))
    report(_record(1, 0.6, seconds=2.0))
    frozen = study.trials[0]
    assert frozen.user_attrs[TrialAttr.CURVE] == [0.5, 0.6]
    assert frozen.user_attrs[TrialAttr.EPOCH_SECONDS] == [1.235, 2.0]


def test_a_resumed_trial_keeps_epoch_indices_from_the_interrupted_run() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    study.enqueue_trial(
        {}, user_attrs={TrialAttr.CURVE: [0.1, 0.2, 0.3], TrialAttr.EPOCH_SECONDS: [1.0, 2.0]}
    )
    trial = study.ask()
    report = _reporter(trial)
    report(_record(2, 0.35, seconds=3.0))  # resumed from the checkpoint of epoch 2
    attrs = study.trials[0].user_attrs
    assert attrs[TrialAttr.CURVE] == [0.1, 0.2, 0.35]
    assert attrs[TrialAttr.EPOCH_SECONDS] == [1.0, 2.0, 3.0]
    report(_record(3, 0.4))
    assert study.trials[0].user_attrs[TrialAttr.CURVE] == [0.1, 0.2, 0.35, 0.4]


def test_epochs_no_run_recorded_are_none() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    report = _reporter(study.ask())
    report(_record(2, 0.7))
    assert study.trials[0].user_attrs[TrialAttr.CURVE] == [None, None, 0.7]


def test_a_stop_request_ends_the_trial_after_the_epoch_but_not_after_the_last() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    stop = threading.Event()
    stop.set()
    report = _reporter(study.ask(), epochs=2, stop=stop)
    with pytest.raises(StopRequested, match="stopped after epoch 1"):
        report(_record(0, 0.5))
    report(_record(1, 0.6))  # the last epoch: the trial is done, nothing left to stop
    assert study.trials[0].user_attrs[TrialAttr.CURVE] == [0.5, 0.6]


def test_a_dominated_trial_is_pruned_with_its_reason() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    for _ in range(2):
        study.add_trial(
            optuna.trial.create_trial(
                values=[0.9, 0.5],
                user_attrs={TrialAttr.CURVE: [0.8, 0.9], TrialAttr.LATENCY_MS: 0.5},
            )
        )
    pruner = ParetoPruner(warmup_epochs=0, margin=0.05, min_dominators=2)
    report = _reporter(study.ask(), pruner=pruner)
    with pytest.raises(optuna.TrialPruned, match="dominated at epoch 1"):
        report(_record(0, 0.3))
    reason = study.trials[2].user_attrs[TrialAttr.PRUNED_REASON]
    assert reason.startswith("dominated at epoch 1: trials [0, 1]")
