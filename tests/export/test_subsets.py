"""Operating points for free: a K=2 trial stores its 1-member point; the front can include it."""

from __future__ import annotations

import automl
from automl.store.attrs import TrialAttr
from tests.export.conftest import Trained


def test_subset_points_are_stored_and_reproducible(trained: Trained) -> None:
    study = automl.load_study(trained.study, trained.url)
    t0, t1 = study.trials()[:2]
    assert TrialAttr.SUBSET_POINTS not in t0.user_attrs  # K = 1: nothing to drop
    points = t1.user_attrs[TrialAttr.SUBSET_POINTS]
    assert [p["members"] for p in points] == [1]
    p = points[0]
    assert 0.0 <= p["accuracy"] <= 1.0 and p["latency_ms"] > 0
    accs = t1.user_attrs["member_accuracies"]
    best = max(range(2), key=lambda i: (accs[i], -i))
    assert p["member_indices"] == [best]
    # One member's accuracy is that member's validation accuracy (combine of one is identity).
    assert p["accuracy"] == accs[best]
    assert automl.load_model(trained.url, trained.study, 1, members=1).members == [best]


def test_pareto_front_with_subsets(trained: Trained) -> None:
    study = automl.load_study(trained.study, trained.url)
    plain = study.pareto_front()
    assert all(r.subset_members is None for r in plain)
    front = study.pareto_front(include_subsets=True)
    assert front == sorted(front, key=lambda r: r.latency_ms)
    points = [(r.accuracy, r.latency_ms) for r in front]
    for a, lat in points:  # non-dominated among themselves
        assert not any(a2 >= a and l2 <= lat and (a2 > a or l2 < lat) for a2, l2 in points)
    t1 = study.trials()[1]
    p = t1.user_attrs[TrialAttr.SUBSET_POINTS][0]
    subset = [r for r in front if r.subset_members is not None]
    for r in subset:
        assert r.number == 1 and r.subset_members == 1
        assert (r.accuracy, r.latency_ms) == (p["accuracy"], p["latency_ms"])
    # Either the subset point is on the front, or something on it dominates the point.
    if not subset:
        assert any(r.accuracy >= p["accuracy"] and r.latency_ms <= p["latency_ms"] for r in front)
