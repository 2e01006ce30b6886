"""The simulated backend: a tabulated search replayed through the real sampler and scheduler."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import optuna
import pytest

from automl.errors import ConfigError
from automl.search.hypervolume import hypervolume_2d, pareto_points
from automl.search.scheduler import RungScheduler
from automl.search.simulate import Table, hypervolume_history, simulate
from automl.space import SearchSpace, parse_space
from tests.helpers import write_space

EPOCHS = 9


def _table(tmp_path: Path) -> Table:
    """A small synthetic grid: wider learns faster and answers slower; costs grow with width."""
    rng = random.Random(0)
    lines = [json.dumps({"table": "synthetic", "epochs": EPOCHS})]
    for k, w in itertools.product((1, 2), (0.5, 0.7, 1.0)):
        kinds = [{}] if k == 1 else [{"cot_weight": c, "cot_kind": "js"} for c in (0.0, 1.0)]
        for extra in kinds:
            top = 0.7 + 0.2 * w + 0.02 * k + rng.uniform(-0.01, 0.01)
            curve = [round(top - 0.3 / (e + 1), 4) for e in range(EPOCHS)]
            row = {
                "config": {"split_factor": k, "width_mult": w, **extra},
                "latency_ms": round(0.5 * w / k + 0.1 * k, 4),
                "latency_seconds": 1.0,
                "val_accuracy": curve,
                "epoch_seconds": [round(2.0 * w, 3)] * EPOCHS,
                "test_accuracy": round(curve[-1] - 0.01, 4),
            }
            lines.append(json.dumps(row))
    path = tmp_path / "grid.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return Table.load(path)


def _space(tmp_path: Path) -> SearchSpace:
    text = write_space(tmp_path, epochs=EPOCHS).read_text()
    text = text.replace('cot_kind = ["js", "kl"]', 'cot_kind = ["js"]')
    text = text.replace("split_factor = [1, 2]", "split_factor = [1, 2]\n")
    return parse_space(text, source="sim.toml")


def test_the_table_is_looked_up_at_the_nearest_grid_point(tmp_path: Path) -> None:
    table = _table(tmp_path)
    assert table.lookup({"split_factor": 1, "width_mult": 0.95}).config == {
        "split_factor": 1,
        "width_mult": 1.0,
    }
    row = table.lookup({"split_factor": 2, "width_mult": 0.55, "cot_weight": 0.8, "cot_kind": "js"})
    assert row.config == {"split_factor": 2, "width_mult": 0.5, "cot_weight": 1.0, "cot_kind": "js"}
    with pytest.raises(ConfigError, match="no configuration with K = 4"):
        table.lookup({"split_factor": 4, "width_mult": 1.0})
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"epochs": 9}) + "\n")
    with pytest.raises(ConfigError, match="no configuration"):
        Table.load(empty)


def test_hypervolume_of_a_staircase() -> None:
    pts = [(0.9, 3.0), (0.8, 1.0), (0.85, 2.0), (0.7, 2.5), (0.95, 5.0)]
    assert pareto_points(pts) == [(0.8, 1.0), (0.85, 2.0), (0.9, 3.0), (0.95, 5.0)]
    # (0.95, 5.0) is slower than the reference: it adds nothing.
    # By hand against the reference (0.5, 4.0): strips from latency 1 to 2, 2 to 3, 3 to 4.
    expected = 0.3 * 1.0 + 0.35 * 1.0 + 0.4 * 1.0
    assert hypervolume_2d(pts, (0.5, 4.0)) == pytest.approx(expected)
    # A dense grid count of the dominated cells agrees.
    cells = 0
    n = 400
    for i, j in itertools.product(range(n), range(n)):
        acc = 0.5 + 0.5 * (i + 0.5) / n
        lat = 4.0 * (j + 0.5) / n
        cells += any(a >= acc and la <= lat for a, la in pts)
    assert hypervolume_2d(pts, (0.5, 4.0)) == pytest.approx(cells * (0.5 / n) * (4.0 / n), abs=2e-3)
    assert hypervolume_2d([], (0.5, 4.0)) == 0.0


@pytest.mark.parametrize("n_workers", [1, 3])
def test_a_replayed_search_follows_the_table_and_the_scheduler(
    tmp_path: Path, n_workers: int
) -> None:
    table = _table(tmp_path)
    space = _space(tmp_path)
    budget = 400.0
    sched = RungScheduler(eta=3, min_epochs=1, epochs=EPOCHS)
    events = simulate(
        table,
        space,
        optuna.samplers.RandomSampler(seed=3),
        stopper=sched,
        n_workers=n_workers,
        wallclock_s=budget,
    )
    assert events and [e.time for e in events] == sorted(e.time for e in events)
    assert max(e.time for e in events) <= budget
    by_trial: dict[int, list[int]] = {}
    for e in events:
        row = table.row_of(e.config)
        by_trial.setdefault(e.trial, []).append(e.epoch)
        assert e.val_accuracy == row.val_accuracy[e.epoch - 1]
        assert e.cost == pytest.approx(row.cost(e.epoch))
        assert (e.test_accuracy is not None) == (e.epoch == EPOCHS)
    # Every trial reports its epochs in order; one that stopped early (not one still running
    # when the budget ran out) stopped at a rung.
    stopped = []
    for trial, epochs in by_trial.items():
        assert epochs == list(range(1, len(epochs) + 1))
        last = next(e.time for e in events if e.trial == trial and e.epoch == epochs[-1])
        row = table.row_of(next(e.config for e in events if e.trial == trial))
        running = epochs[-1] < EPOCHS and last + row.epoch_seconds[epochs[-1]] > budget
        if epochs[-1] < EPOCHS and not running:
            stopped.append(epochs[-1])
    assert stopped and set(stopped) <= set(sched.rungs)
    # n workers: the compute spent is close to n x the wall clock (at most one epoch idle each).
    spent = sum(e.cost for e in events)
    longest = max(r.full_cost for r in table.rows)
    assert n_workers * budget - n_workers * longest <= spent <= n_workers * budget
    # Full budget: every trial that ends before the budget trains all its epochs.
    full = simulate(
        table,
        space,
        optuna.samplers.RandomSampler(seed=3),
        stopper=None,
        n_workers=n_workers,
        wallclock_s=budget,
    )
    done = {e.trial for e in full if e.epoch == EPOCHS}
    assert done and all(max(x.epoch for x in full if x.trial == t) == EPOCHS for t in done)
    # The hypervolume only grows with compute, and the test one is scored on the same trials.
    grid = [spent * (i + 1) / 10 for i in range(10)]
    val, test = hypervolume_history([e.to_dict() for e in events], table, grid)
    assert val == sorted(val) and test == sorted(test) and val[-1] > 0


@pytest.mark.parametrize("sampler", ["tpe", "nsgaii"])
def test_the_scheduler_works_with_model_based_samplers(tmp_path: Path, sampler: str) -> None:
    table = _table(tmp_path)
    space = _space(tmp_path)
    samplers = {
        "tpe": optuna.samplers.TPESampler(
            seed=0, n_startup_trials=4, multivariate=True, group=True
        ),
        "nsgaii": optuna.samplers.NSGAIISampler(seed=0, population_size=4),
    }
    sched = RungScheduler(eta=3, min_epochs=1, epochs=EPOCHS)
    events = simulate(
        table, space, samplers[sampler], stopper=sched, n_workers=2, wallclock_s=600.0
    )
    last: dict[int, int] = {}
    for e in events:
        last[e.trial] = e.epoch
    assert any(epoch == EPOCHS for epoch in last.values()), "some trials train to the end"
    assert any(epoch in sched.rungs for epoch in last.values()), "and some stop at a rung"


def test_promote_mode_and_the_final_phase_replay_with_the_real_rules(tmp_path: Path) -> None:
    table = _table(tmp_path)
    space = _space(tmp_path)
    budget = 600.0
    sched = RungScheduler(eta=3, min_epochs=1, epochs=EPOCHS, promote=True)
    events = simulate(
        table,
        space,
        optuna.samplers.RandomSampler(seed=3),
        stopper=sched,
        n_workers=1,
        wallclock_s=budget,
        final_share=0.25,
    )
    first: dict[int, tuple[int, float]] = {}
    for e in events:
        first.setdefault(e.trial, (e.epoch, e.time))
    # Continuations resume after a rung: their first epoch is the one after it.
    resumed = {t: ep for t, (ep, _) in first.items() if ep > 1}
    assert resumed and set(resumed.values()) <= {r + 1 for r in sched.rungs}
    # The final phase (the last quarter of the clock) starts no new trial, only resumes.
    assert all(ep > 1 for ep, time in first.values() if time > 0.75 * budget + 2 * 2.0 + 1.0)
    # A trial resumed in the final phase is not stopped at a rung again.
    finals = [t for t, (ep, time) in first.items() if ep > 1 and time > 0.75 * budget]
    assert finals
    for t in finals:
        mine = [e for e in events if e.trial == t]
        row = table.row_of(mine[0].config)
        last = mine[-1]
        assert last.epoch == EPOCHS or last.time + row.epoch_seconds[last.epoch] > budget
    spent = sum(e.cost for e in events)
    assert budget - max(r.full_cost for r in table.rows) <= spent <= budget
