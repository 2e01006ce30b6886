"""Search methods on the table of networks: normalised hypervolume, compute to a target, rank tests.

Every method runs through ``automl.search.simulate`` on ``bench/data/fashion_networks.jsonl``
(``bench/tabulate_networks.py``): Optuna's real samplers, the project's real scheduler and, with
``+reuse``, the workers' rules of ``automl.search.dedup`` (a configuration already trained or
stopped is not trained again, each network timed once). A sampled width is the network it builds;
each trial draws one of its configuration's seed rows. Syne Tune's MOASHA, unpatched and with
``NonDominatedPriority`` corrected, comes from its own simulator
(``bench/peers/syne_tune_moasha.py``, run first with the peers' venv) and is scored alike.

    bench/.venv-peers/bin/python bench/peers/syne_tune_moasha.py \\
        --table bench/data/fashion_networks.jsonl --seeds 20 --workers 1 --full-trials 10 \\
        --out bench/data/moasha_networks.json
    python bench/search_benchmark.py --seeds 20

Scoring. The denoised table: each configuration's final validation (and test) accuracy averaged
over its seeds, each network's one latency. A search reports the front of the trials it trained to
the end, by the accuracies it observed (one seed each); that front is scored at its
configurations' denoised values, so a lucky seed does not score and a configuration found but
hidden by a lucky neighbour does not count. The hypervolume (accuracy up, latency down) is divided
by the hypervolume of the denoised table's own front, against one reference point (see
``reference``): 1.0 means the search reports the whole true front. Printed per method: the
median over seeds with a bootstrap 90% interval at 25, 50 and 100% of the compute, the compute
each seed needs to reach full-budget TPE's final median (median and 90% interval over seeds), and
a two-sided Mann-Whitney U test at equal compute against full-budget TPE and corrected MOASHA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl.search.hypervolume import hypervolume_2d, pareto_points
from automl.search.scheduler import RungScheduler
from automl.search.simulate import Table, finished_history, simulate
from automl.space import SamplerName, SearchSpace
from automl.space.params import Choice
from bench.simulate_search import make_space, sampler_for

POINTS = 100  # compute checkpoints per curve
FRACTIONS = (0.25, 0.5, 1.0)  # where the table reports the curves


@dataclasses.dataclass(frozen=True)
class Method:
    sampler: str
    scheduled: bool = False
    promote: bool = False
    final_share: float = 0.0
    reuse: bool = False
    baseline: bool = False  # the first trial is the space's baseline, as in a real study
    startup: bool = False  # [sampler] startup = "latency" (the baseline first, then the picks)
    n_startup: int | None = None  # [sampler] n_startup_trials, where not the space's


METHODS: dict[str, Method] = {
    "random": Method(SamplerName.RANDOM),
    "tpe": Method(SamplerName.TPE),
    "nsgaii": Method(SamplerName.NSGAII),
    "gp": Method(SamplerName.GP),
    "random+asha": Method(SamplerName.RANDOM, scheduled=True),
    "tpe+asha": Method(SamplerName.TPE, scheduled=True),
    "tpe+asha-promote+final": Method(SamplerName.TPE, True, True, 0.2),
    "random+reuse": Method(SamplerName.RANDOM, reuse=True),
    "tpe+reuse": Method(SamplerName.TPE, reuse=True),
    "random+asha+reuse": Method(SamplerName.RANDOM, scheduled=True, reuse=True),
    "tpe+asha+reuse": Method(SamplerName.TPE, scheduled=True, reuse=True),
    "tpe+asha-promote+final+reuse": Method(SamplerName.TPE, True, True, 0.2, reuse=True),
    "gp+reuse": Method(SamplerName.GP, reuse=True),
    "gp+asha-promote+final+reuse": Method(SamplerName.GP, True, True, 0.2, reuse=True),
    "tpe+reuse+baseline": Method(SamplerName.TPE, reuse=True, baseline=True),
    "gp+reuse+baseline": Method(SamplerName.GP, reuse=True, baseline=True),
    "tpe+reuse+latency-start": Method(SamplerName.TPE, reuse=True, startup=True),
    "gp+reuse+latency-start": Method(SamplerName.GP, reuse=True, startup=True),
    "survey+reuse": Method(SamplerName.SURVEY, reuse=True, startup=True),
    "survey3+reuse": Method(SamplerName.SURVEY, reuse=True, startup=True, n_startup=3),
    "survey2+reuse": Method(SamplerName.SURVEY, reuse=True, startup=True, n_startup=2),
    "survey4+reuse": Method(SamplerName.SURVEY, reuse=True, startup=True, n_startup=4),
    "survey+asha-promote+final+reuse": Method(
        SamplerName.SURVEY, True, True, 0.2, reuse=True, startup=True
    ),
    "tpe+asha-promote+final+reuse+latency-start": Method(
        SamplerName.TPE, True, True, 0.2, reuse=True, startup=True
    ),
}
BASELINE = "tpe"
PEER = "moasha-fixed"


def space_of(table: Table) -> SearchSpace:
    """The demo space with the table's epochs, searching only the K the table holds (a table
    still being filled may lack one)."""
    space = make_space(table)
    ks = {int(r.config["split_factor"]) for r in table.rows}
    held = tuple(k for k in space.search.split_factor.choices if int(k) in ks)
    search = dataclasses.replace(space.search, split_factor=Choice(held))
    return dataclasses.replace(space, search=search)


def budget_s(table: Table, full_trials: float) -> float:
    """``full_trials`` full-budget trials of the table's mean cost (one worker)."""
    return full_trials * statistics.fmean(r.full_cost for r in table.rows)


def survey_draw(table_path: str, table: Table, seed: int) -> dict[str, float]:
    """Each network's latency as one survey would read it: one of the network's repeated
    measurements in the table (``latency_samples_ms``), drawn per seed; the table's latency
    where it kept none."""
    samples: dict[str, list[float]] = {}
    for line in Path(table_path).read_text().splitlines()[1:]:
        r = json.loads(line)
        if r.get("kind") == "latency" and r.get("latency_samples_ms"):
            samples[r["network"]] = [float(v) for v in r["latency_samples_ms"]]
    rng = random.Random(seed)
    out: dict[str, float] = {}
    for row in table.rows:
        net = str(row.network)
        if net not in out:
            out[net] = rng.choice(samples[net]) if net in samples else row.latency_ms
    return out


def run_one(job: tuple[str, str, int, float]) -> dict[str, Any]:
    table_path, name, seed, full_trials = job
    table = Table.load(table_path)
    space = space_of(table)
    m = METHODS[name]
    if m.n_startup is not None:
        sampler = dataclasses.replace(space.sampler, n_startup_trials=m.n_startup)
        space = dataclasses.replace(space, sampler=sampler)
    stopper = (
        RungScheduler(eta=3, min_epochs=1, epochs=table.epochs, promote=m.promote)
        if m.scheduled
        else None
    )
    t0 = time.perf_counter()
    events = simulate(
        table,
        space,
        sampler_for(space, m.sampler, seed),
        stopper=stopper,
        n_workers=1,
        wallclock_s=budget_s(table, full_trials),
        final_share=m.final_share,
        reuse=m.reuse,
        seed=seed,
        baseline=m.baseline,
        survey_ms=survey_draw(table_path, table, seed) if m.startup else None,
    )
    return {
        "method": name,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "trials": len({e.trial for e in events if e.trial >= 0}),
        "events": [e.to_dict() for e in events],
    }


def key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Denoised:
    """Per configuration: mean final validation and test accuracy over seeds, latency."""

    val: dict[str, float]
    test: dict[str, float]
    latency: dict[str, float]

    @classmethod
    def of(cls, table: Table) -> Denoised:
        groups: dict[str, list[Any]] = {}
        for r in table.rows:
            groups.setdefault(key(r.config), []).append(r)
        return cls(
            {k: statistics.fmean(r.val_accuracy[-1] for r in rs) for k, rs in groups.items()},
            {k: statistics.fmean(r.test_accuracy for r in rs) for k, rs in groups.items()},
            {k: rs[0].latency_ms for k, rs in groups.items()},
        )

    def reference(self, test: bool, tight: bool) -> tuple[float, float]:
        """The worst accuracy and the slowest latency of the denoised table; ``tight``: the
        median accuracy and the median latency instead (configurations worse than the median
        in either objective then count nothing)."""
        acc = list((self.test if test else self.val).values())
        lat = list(self.latency.values())
        if tight:
            return statistics.median(acc), statistics.median(lat)
        return min(acc), max(lat)

    def score(self, configs: list[str], test: bool, ref: tuple[float, float]) -> float:
        acc = self.test if test else self.val
        return hypervolume_2d([(acc[c], self.latency[c]) for c in configs], ref)


def reported_front(done: list[dict[str, Any]]) -> list[str]:
    """The configurations on the front of what a search observed (accuracy up, latency down)."""
    points = [(float(e["val_accuracy"]), float(e["latency_ms"])) for e in done]
    front = set(pareto_points(points))
    return sorted({key(e["config"]) for e, p in zip(done, points, strict=True) if p in front})


def curves(
    runs: list[dict[str, Any]], table: Table, den: Denoised, grid: list[float], tight: bool
) -> dict[str, dict[str, list[list[float]]]]:
    """Per method: the normalised validation and test hypervolume curve of every seed."""
    refs = {t: den.reference(t, tight) for t in (False, True)}
    full = {t: den.score(list(den.val), t, refs[t]) for t in (False, True)}
    out: dict[str, dict[str, list[list[float]]]] = {}
    for r in runs:
        c = out.setdefault(r["method"], {"val": [], "test": []})
        fronts = [reported_front(done) for done in finished_history(r["events"], table, grid)]
        for name, t in (("val", False), ("test", True)):
            c[name].append([den.score(f, t, refs[t]) / full[t] for f in fronts])
    return out


def bootstrap_median(values: list[float], n: int = 2000) -> tuple[float, float, float]:
    """The median and a percentile-bootstrap 90% interval of it (fixed generator)."""
    a = np.asarray(values, dtype=float)
    rng = np.random.default_rng(0)
    meds = np.median(rng.choice(a, size=(n, len(a)), replace=True), axis=1)
    return float(np.median(a)), float(np.percentile(meds, 5)), float(np.percentile(meds, 95))


def order_stat(values: list[float], q: float) -> float:
    """The ``q`` quantile as an order statistic (``inf`` allowed: a seed that never gets there)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def reach(curve: list[float], target: float) -> float:
    """The share of the compute at which a seed's curve first reaches ``target`` (inf: never)."""
    for i, hv in enumerate(curve):
        if hv >= target - 1e-12:
            return (i + 1) / len(curve)
    return math.inf


def pct(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0%}"


def report(c: dict[str, dict[str, list[list[float]]]], label: str) -> tuple[list[str], Any]:
    tpe_final = [v[-1] for v in c[BASELINE]["val"]]
    target = statistics.median(tpe_final)
    lines = [
        f"\n## {label}: target = full-budget TPE's final median normalised val HV {target:.4f}",
        "| method | seeds | "
        + " | ".join(f"val HV {f:.0%}" for f in FRACTIONS)
        + " | test HV 100% | compute to target: median [5%, 95%] (seeds reaching) "
        + f"| p vs {BASELINE} | p vs {PEER} |",
        "|---" * (6 + len(FRACTIONS)) + "|",
    ]
    summary: dict[str, Any] = {"target": target}
    for method in c:
        val, test = c[method]["val"], c[method]["test"]
        cells = []
        for f in FRACTIONS:
            i = max(0, round(f * POINTS) - 1)
            m, lo, hi = bootstrap_median([v[i] for v in val])
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        tm, tlo, thi = bootstrap_median([v[-1] for v in test])
        reaches = [reach(v, target) for v in val]
        n_ok = sum(not math.isinf(x) for x in reaches)
        r_med, r_lo, r_hi = (order_stat(reaches, q) for q in (0.5, 0.05, 0.95))
        final = [v[-1] for v in val]
        ps = []
        for other in (BASELINE, PEER):
            if other not in c or other == method:
                ps.append("–")
                continue
            ref = [v[-1] for v in c[other]["val"]]
            ps.append(f"{mannwhitneyu(final, ref, alternative='two-sided').pvalue:.3g}")
        lines.append(
            f"| {method} | {len(val)} | "
            + " | ".join(cells)
            + f" | {tm:.3f} [{tlo:.3f}, {thi:.3f}] | {pct(r_med)} [{pct(r_lo)}, {pct(r_hi)}] "
            + f"({n_ok}/{len(val)}) | {ps[0]} | {ps[1]} |"
        )
        summary[method] = {
            "final_val": [m for m in bootstrap_median(final)],
            "final_test": [tm, tlo, thi],
            "reach": [r_med, r_lo, r_hi],
            "reached": n_ok,
            "seeds": len(val),
            "median_val_curve": [statistics.median(v[i] for v in val) for i in range(POINTS)],
        }
    return lines, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="bench/data/fashion_networks.jsonl")
    ap.add_argument("--peers", default="bench/data/moasha_networks.json")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (a held-out set)"
    )
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--full-trials", type=float, default=10.0, help="budget in mean full trials")
    ap.add_argument("--runs", default=None, help="a file to cache the runs in (megabytes)")
    ap.add_argument("--json", default="bench/data/search_networks_summary.json")
    args = ap.parse_args()
    table = Table.load(args.table)
    den = Denoised.of(table)
    n_rows = len(table.rows)
    print(f"table: {len(den.val)} configurations, {n_rows} seed rows, {table.epochs} epochs")
    budget = budget_s(table, args.full_trials)
    print(f"budget: {args.full_trials:g} mean full trials = {budget:.0f} s of one worker")

    # With --runs, runs are cached per (method, seed) for one table and budget: a rerun adds
    # only what is missing.
    stamp = {"table": args.table, "rows": n_rows, "full_trials": args.full_trials}
    cache = Path(args.runs) if args.runs else None
    runs: list[dict[str, Any]] = []
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("stamp") == stamp:
            runs = stored["runs"]
    have = {(r["method"], r["seed"]) for r in runs}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [
        (args.table, m, s, args.full_trials)
        for m in args.methods
        for s in seeds
        if (m, s) not in have
    ]
    t0 = time.perf_counter()
    if jobs:
        with Pool(args.processes) as pool:
            for i, r in enumerate(pool.imap_unordered(run_one, jobs)):
                runs.append(r)
                if i % 20 == 19 or i == len(jobs) - 1:
                    if cache is not None:
                        cache.write_text(json.dumps({"stamp": stamp, "runs": runs}))
                    print(f"  {i + 1}/{len(jobs)} searches, {time.perf_counter() - t0:.0f} s")
    runs = [r for r in runs if r["method"] in args.methods and r["seed"] in seeds]
    for name in args.methods:
        secs = [r["seconds"] for r in runs if r["method"] == name]
        trials = [r["trials"] for r in runs if r["method"] == name]
        print(f"{name}: {statistics.median(trials):.0f} trials per search (median), "
              f"{statistics.fmean(secs):.1f} s per simulated search")  # fmt: skip
    peers = Path(args.peers)
    if peers.exists():
        peer = json.loads(peers.read_text())
        print(f"Syne Tune {peer['syne_tune_version']} MOASHA runs from {peers}")
        theirs = {round(float(r["max_wallclock_s"])) for r in peer["runs"]}
        if theirs != {round(budget)}:
            raise SystemExit(f"{peers} ran with budgets {theirs} s, not {budget:.0f} s: rerun it")
        runs += [r for r in peer["runs"] if r["seed"] in seeds]
    else:
        print(f"no {peers}: MOASHA left out (run bench/peers/syne_tune_moasha.py first)")

    grid = [budget * (i + 1) / POINTS for i in range(POINTS)]
    summary: dict[str, Any] = {"table": table.header, "budget_s": budget, **stamp}
    out: list[str] = []
    for tight in (False, True):
        label = "tight reference (median accuracy, median latency)" if tight else "reference"
        refs = (den.reference(False, tight), den.reference(True, tight))
        print(f"{label}: val {refs[0]}, test {refs[1]}")
        lines, s = report(curves(runs, table, den, grid, tight), label)
        out += lines
        summary["tight" if tight else "loose"] = s
    print("\n".join(out))
    Path(args.json).write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
