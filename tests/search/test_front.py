"""The front over configurations: repeats one point, noise no trade-off, noisy latencies never
picked silently. Built from in-memory trials (``optuna.trial.create_trial``): no storage needed."""

from __future__ import annotations

from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from automl.search.front import (
    NOISY_SPREAD_RATIO,
    configurations,
    denoise,
    knee,
    network_front,
    pick,
)
from automl.store.attrs import TrialAttr

_DIST = {
    "split_factor": CategoricalDistribution([1, 2, 4]),
    "width_mult": FloatDistribution(0.5, 2.0),
}


def trial(
    number: int,
    acc: float,
    lat: float,
    *,
    k: int = 1,
    width: float = 1.0,
    iqr: float = 0.001,
    state: TrialState = TrialState.COMPLETE,
    **attrs: Any,
) -> FrozenTrial:
    t = create_trial(
        state=state,
        values=[acc, lat] if state is TrialState.COMPLETE else None,
        params={"split_factor": k, "width_mult": width},
        distributions=_DIST,
        user_attrs={TrialAttr.LATENCY_MS: lat, TrialAttr.LATENCY_IQR_MS: iqr, **attrs},
    )
    t.number = number
    return t


def test_repeats_of_one_network_are_one_point_with_their_spread() -> None:
    trials = [
        trial(0, 0.80, 1.00, network="convnet_s/k1/16-32"),
        trial(1, 0.84, 0.98, width=1.05, network="convnet_s/k1/16-32"),  # same channels
        trial(2, 0.82, 1.02, width=1.02, network="convnet_s/k1/16-32"),
        trial(3, 0.90, 2.00, width=2.0, network="convnet_s/k1/32-64"),
    ]
    points = configurations(trials)
    assert [p.trials for p in points] == [(0, 1, 2), (3,)]
    one = points[0]
    assert one.number == 0 and one.accuracy == pytest.approx(0.82)
    assert one.latency_ms == pytest.approx(1.00)  # the median
    assert one.accuracy_spread == pytest.approx(0.04)
    front = network_front(trials)
    assert [p.trials for p in front] == [(0, 1, 2), (3,)]


def test_seeds_of_one_trial_and_reused_outcomes_count_once() -> None:
    trials = [
        trial(0, 0.80, 1.0, network="n1", repeat_accuracies=[0.78, 0.82]),
        trial(1, 0.80, 1.0, network="n1", reused_from=0),
    ]
    (point,) = configurations(trials)
    assert point.trials == (0,) and point.reused == (1,)
    assert point.accuracies == (0.78, 0.82) and point.accuracy == pytest.approx(0.80)


def test_other_training_settings_are_another_configuration() -> None:
    a = trial(0, 0.80, 1.0, network="n1")
    b = trial(1, 0.81, 1.0, network="n1")
    b.params["cot_weight"] = 0.5
    assert len(configurations([a, b])) == 2
    # With a stored configuration id, that id decides.
    c = trial(2, 0.80, 1.0, network="n1", config="n1|cot=0.5")
    d = trial(3, 0.82, 1.0, network="n1", config="n1|cot=0.5")
    assert [p.trials for p in configurations([c, d])] == [(2, 3)]


def test_a_point_inside_its_neighbours_latency_spread_is_not_a_trade_off() -> None:
    # 1 is 0.02 ms faster than 2 while both spread 0.05 ms: its speed is noise, 2 stands for both.
    trials = [
        trial(0, 0.70, 0.50, iqr=0.01),
        trial(1, 0.80, 1.00, iqr=0.05),
        trial(2, 0.85, 1.02, iqr=0.05),
        trial(3, 0.90, 2.00, iqr=0.05),
    ]
    front = network_front(trials)
    assert [p.number for p in front] == [0, 2, 3]
    assert front[1].absorbed == (1,)
    # Without the spread the same four points are four trade-offs.
    quiet = [trial(t.number, t.values[0], t.values[1], iqr=0.001) for t in trials]
    assert [p.number for p in network_front(quiet)] == [0, 1, 2, 3]


def test_extra_accuracy_inside_the_repeats_spread_is_not_a_trade_off() -> None:
    trials = [
        trial(0, 0.80, 1.0, network="a", repeat_accuracies=[0.76, 0.84]),
        trial(1, 0.82, 1.5, network="b", repeat_accuracies=[0.81, 0.83]),
        trial(2, 0.95, 3.0, network="c"),
    ]
    front = network_front(trials)
    assert [p.number for p in front] == [0, 2]
    assert front[0].absorbed == (1,)


def test_denoise_keeps_separate_points_apart() -> None:
    points = configurations([trial(0, 0.7, 1.0), trial(1, 0.8, 2.0)])
    assert denoise(points) == points


def test_stopped_failed_and_over_budget_trials_are_not_on_the_front() -> None:
    over = trial(2, 0.99, 0.1)
    over.system_attrs["constraints"] = [1.0]
    trials = [
        trial(0, 0.8, 1.0),
        trial(1, 0.0, 0.05, state=TrialState.PRUNED),
        over,
    ]
    assert [p.number for p in network_front(trials)] == [0]


def test_best_under_a_budget_skips_a_noisy_latency_and_says_so() -> None:
    # Trial 1 looks 6x faster than the baseline, with a spread of 891% of its median.
    trials = [
        trial(0, 0.80, 0.25, iqr=0.01),
        trial(1, 0.86, 0.039, iqr=0.3475),
        trial(2, 0.90, 0.60, iqr=0.01),
    ]
    points = configurations(trials)
    assert [p.number for p in network_front(trials)] == [1, 2]  # it hides trial 0
    chosen = pick(points, 0.3)
    assert chosen.point is not None and chosen.point.number == 0
    assert [p.number for p in chosen.skipped_noisy] == [1]
    assert "#1 (IQR 891%)" in chosen.warnings[0] and "--allow-noisy" in chosen.warnings[0]
    asked = pick(points, 0.3, allow_noisy=True)
    assert asked.point is not None and asked.point.number == 1
    assert "cannot be trusted" in asked.warnings[0]
    # A quiet pick carries no warning.
    calm = pick(points, 1.0)
    assert calm.point is not None and calm.point.number == 2
    assert calm.skipped_noisy == () and calm.warnings == ()


def test_spread_threshold_is_a_quarter_of_the_median() -> None:
    at = network_front([trial(0, 0.8, 1.0, iqr=NOISY_SPREAD_RATIO)])
    over = network_front([trial(0, 0.8, 1.0, iqr=NOISY_SPREAD_RATIO + 0.01)])
    assert not at[0].noisy and over[0].noisy


def test_nothing_fits_the_budget() -> None:
    chosen = pick(configurations([trial(0, 0.8, 1.0)]), 0.5)
    assert chosen.point is None and "fastest takes 1 ms" in chosen.reason
    assert pick([], None).reason == "the study has no completed trial yet"


def test_without_a_budget_the_pick_is_the_knee() -> None:
    trials = [
        trial(0, 0.50, 1.0),
        trial(1, 0.85, 1.5),  # most accuracy per ms
        trial(2, 0.88, 3.0),
        trial(3, 0.90, 5.0),
    ]
    chosen = pick(configurations(trials), None)
    assert chosen.point is not None and chosen.point.number == 1
    assert knee(network_front(trials)) == chosen.point
