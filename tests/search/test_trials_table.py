"""Every trial as one row: state words, the rung of rungs, stopped trials' last accuracy, seeds'
range, reused outcomes and a paused trial's final phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from automl.space import load_space
from automl.store.attrs import TrialAttr
from automl.views.trials_table import COLUMNS, format_rows, trial_rows
from tests.helpers import write_space

ASHA = '\n[scheduler]\nkind = "asha"\neta = 3\nmin_epochs = 1\n'
_DIST = {
    "split_factor": CategoricalDistribution([1, 2]),
    "width_mult": FloatDistribution(0.5, 2.0),
}


def _trial(number: int, state: TrialState, **attrs: Any) -> FrozenTrial:
    t = create_trial(
        state=state,
        values=[0.9, 1.0] if state is TrialState.COMPLETE else None,
        params={"split_factor": 2, "width_mult": 0.8},
        distributions=_DIST,
        user_attrs={TrialAttr.LATENCY_MS: 1.0, TrialAttr.LATENCY_IQR_MS: 0.5, **attrs},
    )
    t.number = number
    return t


def test_rows_say_what_each_trial_went_through(tmp_path: Path) -> None:
    path = write_space(tmp_path, epochs=9)
    path.write_text(path.read_text() + ASHA)
    space = load_space(path)
    trials = [
        _trial(0, TrialState.COMPLETE, val_accuracy_curve=[0.5] * 9, rung=3,
               repeat_accuracies=[0.88, 0.92]),
        _trial(1, TrialState.PRUNED, val_accuracy_curve=[0.4, 0.5, 0.55], rung=3,
               pruned_reason="stopped at rung 2 of 2 (epoch 3)"),
        _trial(2, TrialState.PRUNED, val_accuracy_curve=[0.6], paused=True,
               pruned_reason="paused at rung 1"),
        _trial(3, TrialState.COMPLETE, val_accuracy_curve=[0.5] * 9, reused_from=0),
        _trial(4, TrialState.COMPLETE, val_accuracy_curve=[0.6] + [0.7] * 8,
               final_phase={"epochs_before": 1, "accuracy_before": 0.6}),
    ]  # fmt: skip
    rows = trial_rows(trials, space)
    assert [r.state for r in rows] == ["complete", "stopped", "paused", "complete", "complete"]
    # The stored rung is an epoch count; the row says which rung of how many.
    assert rows[1].rung == 2 and rows[1].rungs == 2 and rows[1].rung_text == "2 of 2 (epoch 3)"
    assert rows[1].accuracy == 0.55 and rows[1].epochs == 3 and rows[1].stopped
    assert (rows[0].accuracy_low, rows[0].accuracy_high) == (0.88, 0.92)
    assert rows[2].stopped and "final phase" not in rows[2].cells()["why"]
    assert (
        rows[4]
        .cells()["why"]
        .endswith(
            "final phase: resumed at epoch 1 (val accuracy 0.6000), trained to epoch 9 "
            "(val accuracy 0.7000)"
        )
    )
    assert rows[3].reused_from == 0 and "outcome reused from trial #0" in rows[3].why
    assert all(r.noisy for r in rows)  # IQR half the median
    assert rows[0].cells()["IQR ms"] == "0.5 NOISY (50%)"
    text = format_rows(rows).splitlines()
    assert text[0].split()[:2] == ["trial", "K"] and len(text) == 6
    assert set(rows[0].cells()) == set(COLUMNS)
