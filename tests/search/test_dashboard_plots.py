"""What optuna-dashboard shows of a study: pushed plots, trial notes, constraints, learning curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects
from optuna_dashboard._note import get_note_from_system_attrs

from automl import create_study
from automl.cli.dashboard_cmd import _publish
from automl.search.progress import reference_point
from automl.space import load_space
from automl.store.attrs import TrialAttr
from automl.store.storage import open_storage
from automl.views.dashboard import (
    CURVES_PLOT_ID,
    FRONT_PLOT_ID,
    HYPERVOLUME_PLOT_ID,
    publish_trial_end,
    trial_note,
)
from tests.helpers import write_space

# The tiny space with a parameter budget and the early stopper: some trials complete, some stop.
BUDGET_AND_ASHA = """
[constraints]
max_params_ratio = 1.5

[scheduler]
kind = "asha"
eta = 2
min_epochs = 1
"""


def _plots(study: optuna.Study) -> dict[str, Any]:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return {k: json.loads(v) for k, v in get_plotly_graph_objects(attrs).items()}


def _note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return str(get_note_from_system_attrs(attrs, trial._trial_id)["body"])


def test_a_search_pushes_plots_notes_constraints_and_curves(tmp_path: Path) -> None:
    path = write_space(tmp_path, epochs=2, steps=3)
    path.write_text(path.read_text() + BUDGET_AND_ASHA)
    study = create_study(path, storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    stats = study.optimize(n_trials=3)
    ost = study.optuna_study
    trials = ost.get_trials()
    assert stats.total == 3 and any(t.state is TrialState.COMPLETE for t in trials)

    plots = _plots(ost)
    assert set(plots) == {FRONT_PLOT_ID, CURVES_PLOT_ID, HYPERVOLUME_PLOT_ID}
    front = plots[FRONT_PLOT_ID]
    names = [tr["name"] for tr in front["data"]]
    assert "baseline (K = 1, default width)" in names and "K = 1 finished" in names
    device = trials[0].user_attrs[TrialAttr.DEVICE]
    assert front["layout"]["xaxis"]["title"]["text"] == (
        f"latency ms, {device}, batch 1 (lower is better)"
    )
    assert front["layout"]["yaxis"]["title"]["text"] == "validation accuracy (higher is better)"
    # The baseline's star is at trial 0's values.
    [star] = [tr for tr in front["data"] if tr["name"].startswith("baseline")]
    assert trials[0].values is not None
    assert (star["x"][0], star["y"][0]) == (trials[0].values[1], trials[0].values[0])
    # One curve per trial that trained an epoch, in the curve attribute's values.
    curves = plots[CURVES_PLOT_ID]["data"]
    assert len(curves) == len(trials)
    assert curves[0]["y"] == trials[0].user_attrs[TrialAttr.CURVE]
    title = plots[HYPERVOLUME_PLOT_ID]["layout"]["title"]["text"]
    ref = reference_point(ost)
    assert f"accuracy {ref[0]:g}, latency {ref[1]:.3g} ms" in title and "1.1 x the slowest" in title

    for t in trials:
        note = _note(ost, t)
        assert note.startswith(f"## Trial {t.number}: convnet_s, K = {t.params['split_factor']}")
        assert "latency per execution mode: sequential" in note
        assert "budgets: params_ratio" in note
        # What optuna-dashboard 0.21 reads for feasibility: a list, one value per budget.
        assert t.system_attrs["constraints"] == [t.constraints["params_ratio"]]
        curve = t.user_attrs[TrialAttr.CURVE]
        if t.state is TrialState.COMPLETE:
            assert "members' validation accuracy" in note
            assert t.intermediate_values == dict(enumerate(curve))
        else:
            assert t.state is TrialState.PRUNED
            assert f"**Stopped early**: {t.user_attrs[TrialAttr.PRUNED_REASON]}" in note
            # See record_intermediate_values: TPE cannot rank pruned trials that have them.
            assert t.intermediate_values == {}


def _tpe_study() -> optuna.Study:
    # The sampler the spaces default to (automl.search.samplers.make_sampler), past its startup trials.
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=2, multivariate=True, group=True)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    dists = {
        "split_factor": CategoricalDistribution([1, 2]),
        "width_mult": FloatDistribution(0.5, 1.0),
    }
    for i in range(3):
        study.add_trial(
            create_trial(
                params={"split_factor": 1 + i % 2, "width_mult": 0.6 + 0.1 * i},
                distributions=dists,
                values=[0.5 + 0.1 * i, 1.0 + i],
                intermediate_values={0: 0.3, 1: 0.5 + 0.1 * i},
            )
        )
    return study


def test_tpe_samples_two_objective_studies_as_the_objective_leaves_them() -> None:
    """Completed trials with intermediate values and pruned trials without: TPE samples."""
    study = _tpe_study()
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"split_factor": 2, "width_mult": 0.9},
            distributions={
                "split_factor": CategoricalDistribution([1, 2]),
                "width_mult": FloatDistribution(0.5, 1.0),
            },
        )
    )
    trial = study.ask()
    assert trial.suggest_categorical("split_factor", [1, 2]) in (1, 2)
    assert 0.5 <= trial.suggest_float("width_mult", 0.5, 1.0) <= 1.0


def test_tpe_cannot_rank_pruned_trials_with_intermediate_values() -> None:
    """Why pruned trials get no intermediate values. If this starts to pass sampling, Optuna's TPE
    handles them and record_intermediate_values may write them for pruned trials too."""
    study = _tpe_study()
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"split_factor": 2, "width_mult": 0.9},
            distributions={
                "split_factor": CategoricalDistribution([1, 2]),
                "width_mult": FloatDistribution(0.5, 1.0),
            },
            intermediate_values={0: 0.2},
        )
    )
    with pytest.raises(RuntimeError, match="multi-objective"):
        study.ask().suggest_float("width_mult", 0.5, 1.0)


def _ended(state: TrialState, **user_attrs: Any) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        params={"split_factor": 2, "width_mult": 0.75},
        distributions={
            "split_factor": CategoricalDistribution([1, 2]),
            "width_mult": FloatDistribution(0.5, 1.0),
        },
        user_attrs=user_attrs,
        constraints={"params_ratio": 0.25},
    )


def test_notes_say_why_a_trial_stopped_or_failed(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path))
    pruned = trial_note(
        _ended(
            TrialState.PRUNED,
            **{TrialAttr.PRUNED_REASON: "over budget: params_ratio 1.9 > 1.5"},
            **{TrialAttr.CURVE: [0.4, None, 0.5]},
        ),
        space,
    )
    assert pruned.startswith("## Trial -1: convnet_s, K = 2, width 0.75\n")  # in no study
    assert "2 co-trained member(s); state pruned" in pruned
    assert "validation accuracy per epoch: 0.4000, -, 0.5000" in pruned
    assert "budgets: params_ratio 25.0% over its limit" in pruned
    assert pruned.rstrip().endswith("**Stopped early**: over budget: params_ratio 1.9 > 1.5")
    failed = trial_note(_ended(TrialState.FAIL, **{TrialAttr.FAIL_REASON: "loss is nan"}), space)
    assert failed.rstrip().endswith("**Failed**: loss is nan")
    assert "**Failed**: no reason stored" in trial_note(_ended(TrialState.FAIL), space)


def test_a_failed_push_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = create_study(write_space(tmp_path), storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with caplog.at_level(logging.WARNING, logger="automl.views.dashboard"):
        publish_trial_end(study.optuna_study, study.space, trial_id=12345)
    assert "could not push dashboard plots or the note of trial id 12345" in caplog.text


def test_the_dashboard_pushes_plots_and_missing_notes_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = create_study(write_space(tmp_path), storage=url)
    ost = study.optuna_study
    # A trial ended by a worker of an older automl: no note, no plots yet; one note a user wrote.
    ost.add_trial(
        create_trial(
            params={"split_factor": 2, "width_mult": 0.8},
            distributions={
                "split_factor": CategoricalDistribution([1, 2]),
                "width_mult": FloatDistribution(0.5, 1.0),
            },
            values=[0.9, 2.0],
            user_attrs={TrialAttr.CURVE: [0.5, 0.9], TrialAttr.DEVICE: "cpu"},
        )
    )
    ost.add_trial(_ended(TrialState.FAIL, **{TrialAttr.FAIL_REASON: "boom"}))
    from optuna_dashboard import save_note

    user_trial = ost.get_trials()[2]
    save_note(optuna.Trial(ost, user_trial._trial_id), "my own note")
    # A study made by plain Optuna in the same storage is left as it is.
    plain = optuna.create_study(storage=url, study_name="plain")
    plain.add_trial(create_trial(value=1.0))

    _publish(open_storage(url, must_exist=True), None)

    assert set(_plots(ost)) == {FRONT_PLOT_ID, CURVES_PLOT_ID, HYPERVOLUME_PLOT_ID}
    waiting, done, failed = ost.get_trials()
    assert _note(ost, waiting) == ""  # the baseline has not run
    assert _note(ost, done).startswith("## Trial 1: convnet_s, K = 2, width 0.8")
    assert _note(ost, failed) == "my own note"
    assert _plots(plain) == {} and _note(plain, plain.get_trials()[0]) == ""


def test_the_pushed_front_shows_every_trial_stopped_ones_hollow(tmp_path: Path) -> None:
    from automl.views.dashboard import front_figure
    from tests.study_builders import finish_trial, start_trial, tiny_study

    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 1.0)
    noisy = finish_trial(
        study, 0.82, 0.5, params={"split_factor": 2, "width_mult": 0.8}, iqr_ms=0.4
    )
    t = start_trial(study, {"split_factor": 2, "width_mult": 0.9})
    t.set_user_attr(TrialAttr.LATENCY_MS, 0.7)
    t.set_user_attr(TrialAttr.CURVE, [0.3, 0.5])
    study.optuna_study.tell(t, state=TrialState.PRUNED)
    fig = front_figure(study.optuna_study.get_trials(), study.space)
    names = [tr.name for tr in fig.data]
    assert names == [
        "K = 1 finished",
        "K = 2 finished",
        "K = 2 stopped early (hollow: last accuracy)",
        "noisy latency (IQR > 25% of median)",
        "Pareto front (configurations, denoised)",
        "baseline (K = 1, default width)",
    ]
    hollow = fig.data[2]
    assert hollow.marker.symbol == "circle-open" and list(hollow.y) == [0.5]
    crossed = fig.data[3]
    assert list(crossed.x) == [0.5] and list(crossed.y) == [0.82]
    note = trial_note(study.optuna_study.trials[noisy], study.space)
    assert "**NOISY latency**" in note
