"""The final phase's retrain: the most accurate configuration trained again on a longer schedule."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

import automl
import automl.search.study as study_module
import automl.search.trial as trial_module
from automl.errors import ConfigError
from automl.search.retrain import (
    FINAL_EPOCHS,
    RETRAIN_FILL,
    RETRAINS,
    enqueue_retrain,
    retrain_epochs,
    retrain_source,
)
from automl.search.retries import retry_later
from automl.search.trial import claim_waiting_trial
from automl.store.artifacts import WEIGHTS_ARTIFACT, download_trial_file, load_weights
from automl.store.attrs import TrialAttr
from automl.views.trials_table import final_phase_words
from tests.helpers import write_space

EPOCHS = 3


def _space(tmp_path: Path, scheduler: str) -> Path:
    path = write_space(tmp_path, epochs=EPOCHS, steps=3)
    path.write_text(path.read_text() + "\n[scheduler]\n" + scheduler)
    return path


def _done(number: int, acc: float, lat: float, **user_attrs: object) -> FrozenTrial:
    t = optuna.trial.create_trial(
        state=TrialState.COMPLETE,
        values=[acc, lat],
        user_attrs={TrialAttr.EPOCH_SECONDS: [2.0, 4.0, 3.0], **user_attrs},
    )
    t.number = number
    return t


def test_the_source_is_the_most_accurate_trial_that_trained_itself() -> None:
    trials = [
        _done(0, 0.90, 1.0),
        _done(1, 0.95, 2.0, **{TrialAttr.REUSED_FROM: 3}),  # a reuse: its source competes
        _done(2, 0.93, 3.0),
        _done(3, 0.95, 2.0),
        _done(4, 0.95, 1.5),  # as accurate as 3, and faster
    ]
    source = retrain_source(trials)
    assert source is not None and source.number == 4
    # Sized from the source's median epoch (3 s), to RETRAIN_FILL of the time left.
    assert retrain_epochs(source, 300.0) == int(RETRAIN_FILL * 300.0 / 3.0)
    assert retrain_source([_done(0, 0.9, 1.0, **{TrialAttr.EPOCH_SECONDS: []})]) is None


@pytest.mark.parametrize("final", ["retrain", "restart"])
def test_a_retrain_trains_its_own_schedule_and_takes_the_sources_place_on_the_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, final: str
) -> None:
    retrain_for = 2 * EPOCHS
    monkeypatch.setattr(study_module, "retrain_epochs", lambda source, seconds: retrain_for)
    # The weights each run starts from, seen by the real fit.
    starts: dict[int, dict[str, torch.Tensor]] = {}
    real_fit = trial_module.fit

    def spy(model: Any, data: Any, config: Any, **kw: Any) -> Any:
        starts[config.epochs] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return real_fit(model, data, config, **kw)

    monkeypatch.setattr(trial_module, "fit", spy)
    space = _space(tmp_path, f'kind = "none"\nfinal = "{final}"\nfinal_share = 0.5\n')
    study = automl.create_study(space, f"sqlite:///{tmp_path / 's.db'}")
    stats = study.optimize(n_trials=2, budget_s=600)
    assert stats.final is not None and stats.final.completed == 1
    *searched, retrain = study.trials()
    source = max((t for t in searched if t.values), key=lambda t: (t.values[0], -t.values[1]))
    assert retrain.state is TrialState.COMPLETE
    assert retrain.system_attrs[RETRAINS] == source.number
    assert retrain.system_attrs[FINAL_EPOCHS] == retrain_for
    assert retrain.params == source.params
    # A schedule of its own, from the first epoch: not the source's outcome reused.
    assert len(retrain.user_attrs[TrialAttr.CURVE]) == retrain_for
    assert TrialAttr.REUSED_FROM not in retrain.user_attrs
    assert retrain.user_attrs[TrialAttr.CONFIG] != source.user_attrs[TrialAttr.CONFIG]
    assert retrain.user_attrs[TrialAttr.NETWORK] == source.user_attrs[TrialAttr.NETWORK]
    words = final_phase_words(retrain.user_attrs)
    assert f"trial {source.number}'s configuration ({EPOCHS} epochs" in words
    how = "restarted from its weights" if final == "restart" else "trained again"
    assert f"{how} for {retrain_for} epochs, reached epoch {retrain_for}" in words
    # A restart begins from the weights its source stored; a retrain from a new initialisation.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS_ARTIFACT
        download_trial_file(study.storage, study.artifact_dir, source, WEIGHTS_ARTIFACT, path)
        ended = load_weights(path)["state_dict"]
    same = all(torch.equal(starts[retrain_for][k], v) for k, v in ended.items())
    assert same is (final == "restart")
    assert retrain.user_attrs[TrialAttr.FINAL_PHASE]["from_weights"] is (final == "restart")
    # One network, one latency: the retrain's point is the source's point or dominates it.
    assert retrain.values[1] == pytest.approx(source.values[1])
    front = [r.number for r in study.pareto_front()]
    if retrain.values[0] > source.values[0]:
        assert retrain.number in front and source.number not in front


def test_one_retrain_per_configuration_and_none_that_would_be_shorter(tmp_path: Path) -> None:
    space = _space(tmp_path, 'kind = "none"\nfinal = "retrain"\nfinal_share = 0.5\n')
    study = automl.create_study(space, f"sqlite:///{tmp_path / 's.db'}")
    study.optimize(n_trials=1)
    source = study.trials()[0]
    # Time for fewer epochs than the space's own schedule: no retrain.
    per_epoch = sorted(source.user_attrs[TrialAttr.EPOCH_SECONDS])[1]
    assert study._enqueue_retrain(0.5 * EPOCHS * per_epoch) is None
    assert len(study.trials()) == 1
    first = enqueue_retrain(study.optuna_study, source, 10)
    assert first == 1
    assert enqueue_retrain(study.optuna_study, source, 10) is None  # a second worker's try
    assert len(study.trials()) == 2


def test_continue_without_promote_is_refused(tmp_path: Path) -> None:
    space = _space(tmp_path, 'kind = "asha"\nmode = "stop"\nfinal_share = 0.2\n')
    with pytest.raises(ConfigError, match='final phase "continue" resumes paused trials'):
        automl.create_study(space, f"sqlite:///{tmp_path / 's.db'}")


def test_an_interrupted_retrain_is_retried_on_its_own_schedule(tmp_path: Path) -> None:
    space = _space(tmp_path, 'kind = "none"\nfinal = "retrain"\nfinal_share = 0.5\n')
    study = automl.create_study(space, f"sqlite:///{tmp_path / 's.db'}")
    study.optimize(n_trials=1)
    ticket = enqueue_retrain(study.optuna_study, study.trials()[0], 10)
    storage = study.optuna_study._storage
    first = claim_waiting_trial(study.optuna_study, storage)
    assert first is not None and first.trial.number == ticket
    # Its worker is stopped (or found dead): the retry keeps the schedule and the checkpoint key.
    assert retry_later(study.optuna_study, first.trial, "worker stopped: killed", None)
    again = claim_waiting_trial(study.optuna_study, storage)
    assert again is not None and again.key == first.key == ticket
    attrs = storage.get_trial(again.trial_id).system_attrs
    assert attrs[FINAL_EPOCHS] == 10 and attrs[RETRAINS] == 0


def test_a_restart_whose_source_weights_are_gone_trains_from_scratch_and_says_so(
    tmp_path: Path,
) -> None:
    space = _space(tmp_path, 'kind = "none"\nfinal = "restart"\nfinal_share = 0.5\n')
    study = automl.create_study(space, f"sqlite:///{tmp_path / 's.db'}")
    study.optimize(n_trials=1)
    source = study.trials()[0]
    ticket = enqueue_retrain(study.optuna_study, source, EPOCHS + 1, from_weights=True)
    assert ticket is not None
    # The artifact store lost the source's files (a wiped volume): the restart cannot start
    # from them, trains from a new initialisation, and its final_phase says so.
    for f in Path(study.artifact_dir).iterdir():
        if f.is_file():
            f.unlink()
    study.optimize(n_trials=1)
    restart = study.trials()[ticket]
    assert restart.state is TrialState.COMPLETE
    assert len(restart.user_attrs[TrialAttr.CURVE]) == EPOCHS + 1
    phase = restart.user_attrs[TrialAttr.FINAL_PHASE]
    assert phase["from_weights"] is False
    assert f"trial {source.number}'s weights could not be read" in phase["weights_error"]
    assert "from scratch (its weights could not be read)" in final_phase_words(restart.user_attrs)
