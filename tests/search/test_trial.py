"""One trial: its epoch reporter (curves of resumed trials, pruning, stopping), the model it
builds from the space, and what it stores."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
import torch
from optuna.study import StudyDirection
from optuna.trial import TrialState
from torch import nn

import automl
from automl.search.promotion import enqueue_continuation
from automl.search.pruning import ParetoPruner
from automl.search.reporter import EpochReporter, StopRequested
from automl.search.retries import enqueue_retry
from automl.search.scheduler import EarlyStopper
from automl.search.trial import TrialEnv, claim_waiting_trial, run_trial
from automl.space import SearchSpace, TrialParams, load_space
from automl.store.attrs import TrialAttr
from automl.training import EpochRecord
from automl.views.report import format_front
from tests.helpers import write_space
from tests.study_builders import life_of

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
    stopper: EarlyStopper | None = None,
    stop: threading.Event | None = None,
) -> EpochReporter:
    return EpochReporter(
        trial,
        latency_ms=1.0,
        stopper=stopper,
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
    # Said at its first epoch, so that a resumed run stopped at a rung (which never reaches the
    # store step of a completed trial) says it resumed too.
    assert study.trials[0].user_attrs[TrialAttr.RESUMED_FROM_EPOCH] == 2


def test_a_run_from_epoch_0_does_not_say_it_resumed() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    report = _reporter(study.ask())
    report(_record(0, 0.5))
    report(_record(1, 0.6))
    assert TrialAttr.RESUMED_FROM_EPOCH not in study.trials[0].user_attrs


def test_retries_and_continuations_do_not_inherit_a_resume() -> None:
    """A retry or a continuation says for itself whether it resumed: its checkpoint may be gone,
    and then it trains from epoch 0 and must not carry the earlier attempt's resume."""
    study = optuna.create_study(directions=DIRECTIONS)
    trial = study.ask()
    trial.set_user_attr(TrialAttr.CURVE, [0.5, 0.6])
    _reporter(trial)(_record(2, 0.7))  # a resumed attempt...
    study.tell(trial, state=TrialState.FAIL)  # ...that failed
    failed = study.trials[0]
    assert failed.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] == 2
    assert enqueue_retry(study, failed, max_retry=None)
    enqueue_continuation(study, failed, failed.number, 2)
    for ticket in study.trials[1:]:
        assert ticket.state is TrialState.WAITING
        assert TrialAttr.RESUMED_FROM_EPOCH not in ticket.user_attrs
        assert ticket.user_attrs[TrialAttr.CURVE] == [0.5, 0.6, 0.7]


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
    report = _reporter(study.ask(), stopper=pruner)
    with pytest.raises(optuna.TrialPruned, match="dominated at epoch 1"):
        report(_record(0, 0.3))
    reason = study.trials[2].user_attrs[TrialAttr.PRUNED_REASON]
    assert reason.startswith("dominated at epoch 1: trials [0, 1]")


def _space_with_options(tmp_path: Path, options: str) -> SearchSpace:
    path = write_space(tmp_path)
    text = path.read_text().replace(
        '[model]\nname = "convnet_s"\n',
        f'[model]\nname = "resnet110"\n[model.options]\n{options}\n',
    )
    path.write_text(text)
    return load_space(path)


def test_model_options_of_the_space_reach_the_built_model(tmp_path: Path) -> None:
    # resnet110's default leaves the last BatchNorm of each branch at 1; the option zeroes it.
    space = _space_with_options(tmp_path, "zero_init_last_bn = true")
    env = TrialEnv(space, device=torch.device("cpu"), artifact_dir=tmp_path / "art")
    study = optuna.create_study(directions=DIRECTIONS)
    trial = study.ask()
    params = TrialParams(1, 1.0, 0.0, "js", 0, 0.05, 5e-4, True)
    model = life_of(env, study, trial).build(params, env.data())
    assert model.model_config["options"] == {"zero_init_last_bn": True}
    assert any(isinstance(m, nn.BatchNorm2d) and not m.weight.any() for m in model.modules())
    # The baseline of relative budgets is the same network (options included) at K = 1.
    assert env.baseline_size() == (
        trial.user_attrs[TrialAttr.N_PARAMS],
        trial.user_attrs[TrialAttr.FLOPS],
        trial.user_attrs[TrialAttr.MACS],
    )


def test_a_trial_stores_macs_beside_flops(tmp_path: Path) -> None:
    study = automl.create_study(
        write_space(tmp_path, epochs=1, steps=1),
        storage=f"sqlite:///{tmp_path / 's.db'}",
        artifact_dir=tmp_path / "art",
    )
    study.optimize(n_trials=1)
    attrs = study.optuna_study.trials[0].user_attrs
    macs, flops = attrs[TrialAttr.MACS], attrs[TrialAttr.FLOPS]
    # The paper's MACs add 2 ops per BatchNorm output to the multiply-adds (FLOPs / 2).
    assert flops // 2 < macs < flops
    record = study.pareto_front()[0]
    assert record.macs == macs
    table = format_front([record])
    assert "MMACs" in table and "MACs (paper's GFLOPs)" in table and "FLOPs = 2 x MACs" in table


def test_a_stop_during_the_measurement_re_enqueues_the_trial_before_it_trains(
    tmp_path: Path,
) -> None:
    study = automl.create_study(
        write_space(tmp_path, epochs=2, steps=2),
        storage=f"sqlite:///{tmp_path / 's.db'}",
        artifact_dir=tmp_path / "art",
    )
    stop = threading.Event()
    stop.set()  # asked to stop before the trial's first epoch
    env = TrialEnv(
        study.space, device=torch.device("cpu"), artifact_dir=tmp_path / "art", stop_event=stop
    )
    claimed = claim_waiting_trial(study.optuna_study, study.storage)
    assert claimed is not None
    state = run_trial(env, study.optuna_study, study.storage, claimed)
    assert state is TrialState.WAITING  # stopped and re-enqueued
    first, retry = study.trials()
    assert first.state is TrialState.FAIL and not first.user_attrs.get(TrialAttr.CURVE)
    assert "stopped before its first epoch" in first.user_attrs[TrialAttr.FAIL_REASON]
    assert first.user_attrs[TrialAttr.LATENCY_MS] > 0  # measured, then stopped
    assert retry.state is TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
