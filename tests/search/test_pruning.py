from __future__ import annotations

import optuna
from optuna.trial import TrialState

from automl.search.pruning import ParetoPruner
from automl.store.attrs import TrialAttr


def _done(number: int, curve: list[float | None], latency: float) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(
        values=[curve[-1] or 0.0, latency],
        user_attrs={TrialAttr.CURVE: curve, TrialAttr.LATENCY_MS: latency},
        state=TrialState.COMPLETE,
    )
    t.number = number
    return t


def test_only_faster_and_clearly_better_trials_dominate() -> None:
    p = ParetoPruner(warmup_epochs=1, margin=0.02, min_dominators=2)
    trials = [
        _done(0, [0.80, 0.90], 1.0),  # as fast, better by 0.05 at epoch 1: dominates
        _done(1, [0.80, 0.88], 0.5),  # faster, better by 0.03: dominates
        _done(2, [0.80, 0.95], 3.0),  # better but slower: does not
        _done(3, [0.80, 0.86], 0.5),  # faster but only 0.01 better: does not
        _done(4, [0.80, None], 0.1),  # a resumed trial's unrecorded epoch: ignored
    ]
    assert p.dominators(trials, 1, 0.85, 1.0) == [0, 1]
    assert p.dominators(trials, 2, 0.85, 1.0) == []  # no curve reaches epoch 2


def test_should_prune_needs_enough_dominators_after_warm_up() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, (acc, lat) in enumerate([(0.9, 1.0), (0.91, 0.9), (0.5, 0.1)]):
        study.add_trial(_done(i, [acc - 0.1, acc], lat))
    p = ParetoPruner(warmup_epochs=1, margin=0.02, min_dominators=2)
    assert p.should_prune(study, 0, 0.5, 1.0) is None  # warm-up epoch
    assert p.should_prune(study, 1, 0.85, 1.0) == [0, 1]
    assert p.should_prune(study, 1, 0.89, 1.0) is None  # only trial 1 is 0.02 better
    assert ParetoPruner(enabled=False).should_prune(study, 1, 0.1, 5.0) is None
