"""Search methods side by side on the tabulated grid: hypervolume against compute, many seeds.

Every method runs through ``automl.search.simulate`` (Optuna's real samplers, the project's real
scheduler) on ``bench/data/fashion_grid.jsonl``; Syne Tune's MOASHA comes from its own simulator
(``bench/peers/syne_tune_moasha.py``, run first with the peers' venv) and is scored the same way.

    bench/.venv-peers/bin/python bench/peers/syne_tune_moasha.py --seeds 20 --workers 1 4
    python bench/simulate_search.py --seeds 20 --workers 1 4

Each run gets the same simulated wall clock as the MOASHA runs (60 full-budget trials' worth of
the table's mean cost, divided by the workers). Printed: median and IQR over seeds of the
validation hypervolume (and the test hypervolume of the same trials) at 25, 50 and 100% of the
compute, the compute each method needs to reach full-budget TPE's final median hypervolume, and
a PNG of the median curves with their IQR bands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna

from automl.search.samplers import make_sampler
from automl.search.scheduler import RungScheduler
from automl.search.simulate import Table, hypervolume_history, simulate
from automl.space import SamplerName, SearchSpace, load_space

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "fashion_mnist_cpu.toml"
FULL_TRIALS = 20  # the budget: this many full-budget trials of the table's mean cost
POINTS = 40  # compute checkpoints per curve

# name -> (sampler, scheduled, promote mode, final phase share)
METHODS: dict[str, tuple[str, bool, bool, float]] = {
    "random": (SamplerName.RANDOM, False, False, 0.0),
    "tpe": (SamplerName.TPE, False, False, 0.0),
    "nsgaii": (SamplerName.NSGAII, False, False, 0.0),
    "random+asha": (SamplerName.RANDOM, True, False, 0.0),
    "tpe+asha": (SamplerName.TPE, True, False, 0.0),
    "tpe+asha-promote": (SamplerName.TPE, True, True, 0.0),
    "tpe+asha-promote+final": (SamplerName.TPE, True, True, 0.2),
}


def make_space(table: Table) -> SearchSpace:
    space = load_space(SPACE)
    return dataclasses.replace(space, train=dataclasses.replace(space.train, epochs=table.epochs))


def sampler_for(space: SearchSpace, name: str, seed: int) -> optuna.samplers.BaseSampler:
    # The project's own construction of each sampler (its TPE options), seeded per run.
    sm = dataclasses.replace(space.sampler, name=str(name), seed=seed)
    return make_sampler(dataclasses.replace(space, sampler=sm))


def budget_s(table: Table, n_workers: int, full_trials: float = FULL_TRIALS) -> float:
    mean = statistics.fmean(r.full_cost for r in table.rows)
    return full_trials * mean / n_workers


def run_one(args: tuple[str, str, int, int, float, float]) -> dict[str, Any]:
    table_path, method, seed, n_workers, full_trials, latency_cost = args
    table = Table.load(table_path).with_latency_cost(latency_cost)
    space = make_space(table)
    sampler_name, scheduled, promote, final_share = METHODS[method]
    stopper = (
        RungScheduler(eta=3, min_epochs=1, epochs=table.epochs, promote=promote)
        if scheduled
        else None
    )
    t0 = time.perf_counter()
    events = simulate(
        table,
        space,
        sampler_for(space, sampler_name, seed),
        stopper=stopper,
        n_workers=n_workers,
        wallclock_s=budget_s(table, n_workers, full_trials),
        final_share=final_share,
    )
    return {
        "method": method,
        "seed": seed,
        "n_workers": n_workers,
        "seconds": time.perf_counter() - t0,
        "events": [e.to_dict() for e in events],
    }


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return q[0], statistics.median(values), q[2]


def compute_to_reach(curve: list[float], grid: list[float], target: float) -> float | None:
    for c, hv in zip(grid, curve, strict=True):
        if hv >= target:
            return c
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="bench/data/fashion_grid.jsonl")
    ap.add_argument("--moasha", default="bench/data/moasha_runs.json")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument(
        "--latency-cost",
        type=float,
        default=1.0,
        help="scale of each latency measurement's recorded cost (0: free)",
    )
    ap.add_argument(
        "--full-trials",
        type=float,
        default=FULL_TRIALS,
        help="the budget: this many full-budget trials of the table's mean cost",
    )
    ap.add_argument("--png", default="bench/data/search_hypervolume.png")
    ap.add_argument("--json", default="bench/data/search_summary.json")
    args = ap.parse_args()
    table = Table.load(args.table).with_latency_cost(args.latency_cost)
    print(f"table: {len(table.rows)} configs, {table.epochs} epochs, {table.header.get('machine')}")
    ft = args.full_trials
    jobs = [
        (args.table, m, s, n, ft, args.latency_cost)
        for n in args.workers
        for m in args.methods
        for s in range(args.seeds)
    ]
    t0 = time.perf_counter()
    with Pool(args.processes) as pool:
        runs = pool.map(run_one, jobs)
    print(f"{len(runs)} simulated searches in {time.perf_counter() - t0:.0f} s")
    if Path(args.moasha).exists():
        peer = json.loads(Path(args.moasha).read_text())
        print(f"Syne Tune {peer['syne_tune_version']} MOASHA runs from {args.moasha}")
        runs += [r for r in peer["runs"] if r["n_workers"] in args.workers]
    else:
        print(f"no {args.moasha}: MOASHA left out (run bench/peers/syne_tune_moasha.py first)")

    summary: dict[str, Any] = {"table": table.header, "reference": table.reference_point()}
    curves: dict[tuple[int, str], dict[str, Any]] = {}
    for n in args.workers:
        total = budget_s(table, n, ft) * n
        grid = [total * (i + 1) / POINTS for i in range(POINTS)]
        for method in sorted({r["method"] for r in runs if r["n_workers"] == n}):
            val, test = [], []
            for r in runs:
                if r["n_workers"] == n and r["method"] == method:
                    v, t = hypervolume_history(r["events"], table, grid)
                    val.append(v)
                    test.append(t)
            curves[(n, method)] = {"grid": grid, "val": val, "test": test}
    lines = []
    for n in args.workers:
        tpe = curves[(n, "tpe")]
        target = statistics.median(v[-1] for v in tpe["val"])
        lines.append(f"\n{n} worker(s): budget {budget_s(table, n, ft):.0f} s simulated wall clock")
        lines.append(
            f"{'method':<24}{'val HV 25%':>24}{'val HV 50%':>24}{'val HV 100%':>24}"
            f"{'test HV 100%':>24}{'to TPE final':>14}"
        )
        for (nw, method), c in sorted(curves.items()):
            if nw != n:
                continue
            cells = []
            for frac, key in ((0.25, "val"), (0.5, "val"), (1.0, "val"), (1.0, "test")):
                i = max(0, round(frac * POINTS) - 1)
                lo, med, hi = quartiles([v[i] for v in c[key]])
                cells.append(f"{med:.4f} [{lo:.4f},{hi:.4f}]")
            med_curve = [statistics.median(v[i] for v in c["val"]) for i in range(POINTS)]
            reach = compute_to_reach(med_curve, c["grid"], target)
            frac_s = "never" if reach is None else f"{reach / c['grid'][-1]:.0%}"
            lines.append(f"{method:<24}" + "".join(f"{x:>24}" for x in cells) + f"{frac_s:>14}")
            summary[f"{n}w/{method}"] = {
                "median_val_curve": med_curve,
                "compute_to_tpe_final": reach,
                "final_val": quartiles([v[-1] for v in c["val"]]),
                "final_test": quartiles([v[-1] for v in c["test"]]),
                "seeds": len(c["val"]),
            }
    lines += stopping_evidence(table, runs)
    print("\n".join(lines))
    Path(args.json).write_text(json.dumps(summary, indent=1))
    plot(curves, args.workers, Path(args.png))
    print(f"wrote {args.json} and {args.png}")


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        for pos, i in enumerate(order):
            r[i] = float(pos)
        return r

    return statistics.correlation(ranks(a), ranks(b))


def stopping_evidence(table: Table, runs: list[dict[str, Any]]) -> list[str]:
    """Why stopping for good is enough here: how well a rung's accuracy ranks the final one, and
    how many stopped trials would have ended on the table's true front (what pausing them for a
    later promotion could have saved)."""
    final = [r.val_accuracy[-1] for r in table.rows]
    out = ["", "rank correlation (Spearman) of validation accuracy at epoch e with the final one:"]
    out.append(
        "  "
        + ", ".join(
            f"e={e}: {spearman([r.val_accuracy[e - 1] for r in table.rows], final):.3f}"
            for e in range(1, table.epochs)
        )
    )
    true_front = {
        json.dumps(r.config, sort_keys=True)
        for r in table.rows
        if not any(
            o.val_accuracy[-1] >= r.val_accuracy[-1]
            and o.latency_ms <= r.latency_ms
            and (o.val_accuracy[-1] > r.val_accuracy[-1] or o.latency_ms < r.latency_ms)
            for o in table.rows
        )
    }
    out.append(f"the table's true validation front: {len(true_front)} of {len(table.rows)} configs")
    for method in sorted({r["method"] for r in runs if "asha" in r["method"]}):
        stopped = on_front = found = 0
        for r in (r for r in runs if r["method"] == method):
            last: dict[int, dict[str, Any]] = {}
            for e in r["events"]:
                last[e["trial"]] = e
            ends = [e for e in last.values() if e["epoch"] < table.epochs]
            stopped += len(ends)
            on_front += sum(json.dumps(e["config"], sort_keys=True) in true_front for e in ends)
            finished = {
                json.dumps(e["config"], sort_keys=True)
                for e in last.values()
                if e["epoch"] == table.epochs
            }
            found += len(finished & true_front)
        n_runs = max(1, sum(1 for r in runs if r["method"] == method))
        out.append(
            f"{method}: {stopped} trials stopped early (or cut by the budget), "
            f"{on_front} of them ({on_front / max(stopped, 1):.1%}) configs of the true front; "
            f"true-front configs trained to the end: {found / n_runs:.1f} per run"
        )
    return out


def plot(curves: dict[tuple[int, str], dict[str, Any]], workers: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(workers), figsize=(6 * len(workers), 4.2), squeeze=False)
    for ax, n in zip(axes[0], workers, strict=True):
        for (nw, method), c in sorted(curves.items()):
            if nw != n:
                continue
            x = [g / 3600 for g in c["grid"]]
            q: Callable[[int], tuple[float, float, float]] = lambda i, c=c: quartiles(  # noqa: E731
                [v[i] for v in c["val"]]
            )
            qs = [q(i) for i in range(len(x))]
            (line,) = ax.plot(x, [m for _, m, _ in qs], label=method)
            ax.fill_between(
                x,
                [lo for lo, _, _ in qs],
                [hi for _, _, hi in qs],
                alpha=0.15,
                color=line.get_color(),
            )
        ax.set_title(f"{n} worker(s): median and IQR over seeds")
        ax.set_xlabel("compute spent (CPU-hours of the table, 2 cores)")
        ax.set_ylabel("validation hypervolume (accuracy up, latency ms down)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
