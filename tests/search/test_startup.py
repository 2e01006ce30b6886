"""``[sampler] startup = "latency"``: the baseline's worker times every network of the space and
fixes the start's networks at evenly spaced ranks of the latency order, fastest first."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

import automl
from automl.errors import ConfigError
from automl.search.startup import SurveyPoint, latency_spread, stored_survey, survey_widths
from automl.space import load_space
from automl.space.networks import space_networks
from automl.space.widths import NetworkCount
from automl.store.attrs import TrialAttr
from tests.helpers import write_space


def _points(n: int) -> list[SurveyPoint]:
    # Listed out of order: the spread sorts them by latency.
    return [SurveyPoint(1 + i % 2, 0.5 + i / 100, f"net{i}", 1.0 + ((7 * i) % n)) for i in range(n)]


def test_the_picks_sit_at_evenly_spaced_latency_ranks_fastest_first() -> None:
    points = _points(17)
    by_latency = sorted(points, key=lambda p: p.latency_ms)
    # The baseline at rank 5: of the ranks 0, 3, 6, 10, 13, 16 it takes 6's place (the nearest).
    baseline = by_latency[5].network
    picks = latency_spread(points, 6, baseline)
    assert [by_latency.index(p) for p in picks] == [0, 3, 10, 13, 16]
    assert baseline not in {p.network for p in picks}
    # A baseline already on a rank replaces nothing.
    picks = latency_spread(points, 6, by_latency[3].network)
    assert [by_latency.index(p) for p in picks] == [0, 6, 10, 13, 16]
    # Next to the fastest, the baseline takes the next inner rank's place: the extremes stay.
    picks = latency_spread(points, 6, by_latency[1].network)
    assert [by_latency.index(p) for p in picks] == [0, 6, 10, 13, 16]
    picks = latency_spread(points, 6, by_latency[16].network)
    assert [by_latency.index(p) for p in picks] == [0, 3, 6, 10, 13]


def test_a_space_no_larger_than_the_start_is_taken_whole() -> None:
    points = _points(4)
    picks = latency_spread(points, 6, "net0")
    assert sorted(p.network for p in picks) == ["net1", "net2", "net3"]
    assert [p.latency_ms for p in picks] == sorted(p.latency_ms for p in picks)
    assert latency_spread(points, 1, "net0") == [] and latency_spread(points, 0, "net0") == []


def test_a_large_space_is_surveyed_at_spread_widths_of_each_k() -> None:
    counts = [
        NetworkCount(1, tuple(0.5 + i / 100 for i in range(60)), True),
        NetworkCount(2, tuple(0.5 + i / 100 for i in range(30)), True),
    ]
    widths = survey_widths(counts, limit=12)
    assert [k for k, _ in widths].count(1) == 8 and [k for k, _ in widths].count(2) == 4
    # Each K keeps its narrowest and widest network.
    assert (1, 0.5) in widths and (1, 0.5 + 59 / 100) in widths and (2, 0.5 + 29 / 100) in widths
    assert survey_widths(counts, limit=100) == [
        (k, w) for c in counts for k, w in ((c.split_factor, x) for x in c.widths)
    ]


def test_startup_must_be_random_or_latency(tmp_path: Path) -> None:
    path = write_space(tmp_path)
    path.write_text(path.read_text().replace("seed = 0", 'seed = 0\nstartup = "grid"'))
    with pytest.raises(ConfigError, match="startup"):
        load_space(path)


def _latency_space(tmp_path: Path) -> Path:
    path = write_space(tmp_path, epochs=1, steps=2)
    path.write_text(
        path.read_text().replace("seed = 0", 'seed = 0\nstartup = "latency"\nn_startup_trials = 4')
    )
    return path


def _check_start(study: automl.AutoMLStudy, n_networks: int) -> None:
    trials = sorted(study.trials(), key=lambda t: t.number)
    assert not [t for t in trials if t.state is TrialState.FAIL]
    survey = stored_survey(study.optuna_study)
    assert survey is not None and len(survey["points"]) == n_networks
    surveyed = {p["network"]: p["latency_ms"] for p in survey["points"]}
    base = trials[0]
    assert base.params == {"split_factor": 1, "width_mult": 1.0}
    assert TrialAttr.STARTUP not in base.user_attrs
    picked = [t for t in trials if TrialAttr.STARTUP in t.user_attrs]
    assert [t.number for t in picked] == [1, 2, 3]
    assert [t.user_attrs[TrialAttr.STARTUP]["pick"] for t in picked] == [2, 3, 4]
    nets = [t.user_attrs[TrialAttr.NETWORK] for t in picked]
    assert len(set(nets)) == 3 and base.user_attrs[TrialAttr.NETWORK] not in nets
    # Fastest first, each at the latency the survey measured, not timed again.
    lat = [t.user_attrs[TrialAttr.LATENCY_MS] for t in picked]
    assert lat == sorted(lat)
    for t in picked:
        assert t.user_attrs[TrialAttr.LATENCY_FROM] == "survey"
        assert t.user_attrs[TrialAttr.LATENCY_MS] == surveyed[t.user_attrs[TrialAttr.NETWORK]]
        assert t.params["width_mult"] == pytest.approx(
            next(p["width_mult"] for p in survey["points"] if p["network"] == nets[picked.index(t)])
        )
    # The fastest and the slowest network of the space are always in the start.
    for end in (min(surveyed, key=surveyed.__getitem__), max(surveyed, key=surveyed.__getitem__)):
        assert end in nets or end == base.user_attrs[TrialAttr.NETWORK]


def test_a_counted_search_puts_the_start_on_its_waiting_tickets(tmp_path: Path) -> None:
    path = _latency_space(tmp_path)
    study = automl.create_study(
        path, storage=f"sqlite:///{tmp_path / 's.db'}", artifact_dir=tmp_path / "art"
    )
    n_networks = sum(len(c.widths) for c in space_networks(study.space))
    study.optimize(n_trials=5)
    assert len(study.trials()) == 5  # the trials asked for, not one more
    _check_start(study, n_networks)
    assert study.trials()[4].user_attrs.get(TrialAttr.STARTUP) is None


def test_an_open_ended_search_enqueues_the_start(tmp_path: Path) -> None:
    path = _latency_space(tmp_path)
    study = automl.create_study(
        path, storage=f"sqlite:///{tmp_path / 's.db'}", artifact_dir=tmp_path / "art"
    )
    n_networks = sum(len(c.widths) for c in space_networks(study.space))
    study.optimize(timeout=600, max_trials_here=4)
    _check_start(study, n_networks)
