"""The compose stack's init job (``automl search --enqueue-only``) can run again: a second ``up``
adds no trials, so a study asked for N trials runs N however often the stack is brought up."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl.cli import main
from tests.helpers import write_space


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny", storage=url).get_trials(deepcopy=False)


def test_enqueue_only_tops_the_study_up_to_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["search", "--space", str(space), "--storage", url, "--enqueue-only"]
    assert main([*argv, "--n-trials", "4"]) == 0
    assert "4 trials waiting for workers" in capsys.readouterr().out
    # The stack brought up again: the same command adds nothing.
    assert main([*argv, "--n-trials", "4"]) == 0
    assert len(_trials(url)) == 4
    # One trial ran and another is running (a worker claimed it): still nothing to add.
    storage = optuna.storages.get_storage(url)
    first, second = _trials(url)[:2]
    storage.set_trial_state_values(first._trial_id, TrialState.RUNNING)
    storage.set_trial_state_values(first._trial_id, TrialState.COMPLETE, values=[0.5, 1.0])
    storage.set_trial_state_values(second._trial_id, TrialState.RUNNING)
    assert main([*argv, "--n-trials", "4"]) == 0
    assert len(_trials(url)) == 4
    # A larger target adds the difference only.
    assert main([*argv, "--n-trials", "6"]) == 0
    trials = _trials(url)
    assert len(trials) == 6
    assert sum(t.state is TrialState.WAITING for t in trials) == 4
