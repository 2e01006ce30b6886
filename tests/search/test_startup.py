"""``[sampler] startup = "latency"``: the baseline's worker times every network of the space and
fixes the start's networks at evenly spaced ranks of the latency order, fastest first."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import automl
from automl.cli.status_cmd import networks_line
from automl.errors import ConfigError
from automl.search.samplers import make_sampler
from automl.search.simulate import Table, simulate
from automl.search.startup import (
    SurveyPoint,
    latency_spread,
    run_survey,
    stored_survey,
    survey_widths,
)
from automl.search.survey_sampler import SurveySampler, expected_improvement
from automl.space import load_space, parse_space
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
    # `automl status` says what was timed and how the start used it.
    line = networks_line(study, study.trials())
    assert f"all {n_networks} timed before training" in line
    assert "3 trials of the start spread over them" in line


def test_an_open_ended_search_enqueues_the_start(tmp_path: Path) -> None:
    path = _latency_space(tmp_path)
    study = automl.create_study(
        path, storage=f"sqlite:///{tmp_path / 's.db'}", artifact_dir=tmp_path / "art"
    )
    n_networks = sum(len(c.widths) for c in space_networks(study.space))
    study.optimize(timeout=600, max_trials_here=4)
    _check_start(study, n_networks)


def test_expected_improvement_is_the_area_a_point_adds() -> None:
    front = [(0.9, 1.0)]
    ref = (0.8, 2.0)
    # Sure of its accuracy: the strip it adds below the front's latency.
    assert expected_improvement(front, 0.5, 0.85, 1e-9, ref) == pytest.approx(0.05 * 0.5)
    # Slower and less accurate than the front: nothing, unless it may turn out better.
    assert expected_improvement(front, 1.5, 0.85, 1e-9, ref) == pytest.approx(0.0)
    assert expected_improvement(front, 1.5, 0.85, 0.05, ref) > 0.0
    # The gain grows with the accuracy expected.
    low = expected_improvement(front, 0.5, 0.84, 0.01, ref)
    assert low < expected_improvement(front, 0.5, 0.86, 0.01, ref)


def test_the_survey_sampler_trains_networks_it_has_not_tried(tmp_path: Path) -> None:
    path = write_space(tmp_path, epochs=1, steps=2)
    path.write_text(
        path.read_text().replace('name = "random"', 'name = "survey"\nn_startup_trials = 2')
    )
    study = automl.create_study(
        path, storage=f"sqlite:///{tmp_path / 's.db'}", artifact_dir=tmp_path / "art"
    )
    assert isinstance(study.optuna_study.sampler, SurveySampler)
    study.optimize(n_trials=5)
    trials = sorted(study.trials(), key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    survey = stored_survey(study.optuna_study)
    assert survey is not None  # the sampler surveys whatever [sampler] startup says
    widths = {(p["split_factor"], p["width_mult"]) for p in survey["points"]}
    nets = [t.user_attrs[TrialAttr.NETWORK] for t in trials]
    assert len(set(nets)) == 5, "each trial a network not tried before"
    # After the start (the baseline and one end of the latency order), each trial's K and width are a
    # surveyed network's, as the sampler chose them (a random width would not be one).
    for t in trials[2:]:
        assert (t.params["split_factor"], t.params["width_mult"]) in widths
        assert TrialAttr.STARTUP not in t.user_attrs


def _network_table(tmp_path: Path) -> Table:
    """Six networks (K = 1 and 2 at widths 0.5, 0.7, 0.9), one seed row each: wider is more
    accurate and slower; the survey costs 2 s a network."""
    lines = [json.dumps({"table": "synthetic networks", "epochs": 3})]
    for k, w in itertools.product((1, 2), (0.5, 0.7, 0.9)):
        net = f"k{k}-w{w}"
        top = 0.7 + 0.2 * w - 0.01 * k
        config: dict[str, object] = {"split_factor": k, "width_mult": w}
        if k > 1:
            config |= {"cot_weight": 0.5, "cot_kind": "js"}
        lines.append(
            json.dumps(
                {
                    "kind": "train",
                    "config": config,
                    "seed": 0,
                    "network": net,
                    "val_accuracy": [top - 0.1, top - 0.05, top],
                    "epoch_seconds": [10.0 * w * k] * 3,
                    "test_accuracy": top,
                }
            )
        )
        lat = round(0.4 * w * k, 4)
        lines.append(
            json.dumps(
                {"kind": "latency", "network": net, "latency_ms": lat, "latency_seconds": 2.0}
            )
        )
    path = tmp_path / "networks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return Table.load(path)


def test_the_simulator_replays_the_survey_and_its_sampler(tmp_path: Path) -> None:
    table = _network_table(tmp_path)
    text = write_space(tmp_path, epochs=3).read_text()
    text = text.replace('name = "random"', 'name = "survey"\nn_startup_trials = 3')
    space = parse_space(text.replace('cot_kind = ["js", "kl"]', 'cot_kind = ["js"]'), source="s")
    survey_ms = {str(r.network): r.latency_ms for r in table.rows}
    events = simulate(
        table,
        space,
        make_sampler(space),
        stopper=None,
        n_workers=1,
        wallclock_s=10_000.0,
        reuse=True,
        survey_ms=survey_ms,
    )
    # Every network's measurement is paid for first, once.
    assert events[0].trial == -1 and events[0].cost == pytest.approx(6 * 2.0)
    firsts = [e for e in events if e.epoch == 1]
    nets = [(e.config["split_factor"], e.config["width_mult"]) for e in firsts]
    # The baseline (K = 1, width 1.0 builds the 0.9 network), then the fastest and the slowest.
    assert nets[:3] == [(1, 0.9), (1, 0.5), (2, 0.9)]
    # Then the sampler's choices: the networks not tried yet, before any repeat; none timed again.
    assert sorted(nets[:6]) == sorted(itertools.product((1, 2), (0.5, 0.7, 0.9)))
    for e in firsts:
        assert e.cost == pytest.approx(10.0 * e.config["width_mult"] * e.config["split_factor"])


def test_a_network_the_device_cannot_time_is_left_out_of_the_survey() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    counts = [NetworkCount(1, (0.5, 1.0), True), NetworkCount(2, (0.5,), True)]

    def time_model(model: str) -> dict[str, object]:
        if model == "k2-0.5":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {TrialAttr.LATENCY_MS: 0.3 if model == "k1-0.5" else 0.5}

    points = run_survey(
        study,
        counts,
        lambda k, w: (f"net-k{k}-{w}", f"k{k}-{w}"),
        time_model,
        ("net-k1-1.0", {TrialAttr.LATENCY_MS: 0.4}),
        ("host", "cpu@b1"),
    )
    # The baseline's own measurement is kept, not timed again; the one that failed is left out.
    assert [(p.network, p.latency_ms) for p in points] == [("net-k1-0.5", 0.3), ("net-k1-1.0", 0.4)]
    survey = stored_survey(study)
    assert survey is not None and [p["network"] for p in survey["points"]] == [
        "net-k1-0.5",
        "net-k1-1.0",
    ]
