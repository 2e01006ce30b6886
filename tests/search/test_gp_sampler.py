"""``[sampler] name = "gp"``: Optuna's Gaussian-process sampler drives a real study, reading the
constraints every trial stores (the size budget here prunes some networks before training)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

import automl
from automl.store.attrs import TrialAttr
from tests.helpers import write_space


def test_a_gp_study_searches_with_its_constraints(tmp_path: Path) -> None:
    path = write_space(tmp_path, epochs=1, steps=2)
    text = path.read_text().replace('name = "random"', 'name = "gp"\nn_startup_trials = 2')
    # 0.8 of the baseline's parameters: the narrow networks fit, the wide ones are pruned untrained.
    path.write_text(text + "\n[constraints]\nmax_params_ratio = 0.8\n")
    study = automl.create_study(
        path, storage=f"sqlite:///{tmp_path / 's.db'}", artifact_dir=tmp_path / "art"
    )
    sampler = study.optuna_study.sampler
    assert isinstance(sampler, optuna.samplers.GPSampler)
    assert sampler._n_startup_trials == 2
    stats = study.optimize(n_trials=6)
    trials = study.trials()
    assert len(trials) == 6 and stats.completed + stats.pruned == 6
    assert not [t for t in trials if t.state is TrialState.FAIL]
    over = [t for t in trials if t.state is TrialState.PRUNED]
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    assert done, "some networks fit the budget"
    for t in over:
        assert str(t.user_attrs[TrialAttr.PRUNED_REASON]).startswith("over budget")
    # Every trial carries its constraint, which the sampler reads for the trials after its start.
    assert all(t.system_attrs.get("constraints") for t in trials)
    assert all(
        (c <= 0) == (t.state is TrialState.COMPLETE)
        for t in trials
        for c in t.system_attrs["constraints"]
    )
