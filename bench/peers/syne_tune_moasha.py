"""Peer baseline: Syne Tune's MOASHA on the tabulated grid, through Syne Tune's own simulator.

On the table of networks (``bench/tabulate_networks.py``: a JSON line per configuration and seed,
one per network's latency) MOASHA gets the same space as the project's study (K, width
log-uniform 0.5-2, co-training weight uniform 0-1, kind), and a blackbox that answers as
``automl.search.simulate`` does: the width is the network it builds, the nearest co-training
setting of the kind, one of the configuration's seed rows, each network's median epoch costs.

``--priority`` runs Syne Tune 0.16.0's ``NonDominatedPriority`` as it ships (``stock``, runs
labelled ``moasha``) and/or with that one function corrected (``corrected``, ``moasha-fixed``):
it returns the non-dominated sort's order of the items, where ASHA's rung rule reads each item's
rank, so a trial that dominates its rung is stopped whenever the item listed last is not among
the best. The correction is checked on a known case before any run.

The table (``bench/tabulate_grid.py``) becomes a Syne Tune ``BlackboxTabular`` (fidelity = epoch
1..9) replayed by ``UserBlackboxBackend`` (the blackbox repository's simulator backend) with its
``SimulatedTimeKeeper`` and ``SimulatorCallback``; ``MOASHA`` (grace 1, reduction factor 3,
max_t 9) tunes validation accuracy (as error = 1 - accuracy: this Syne Tune's MOASHA has one
``do_minimize`` for all metrics) and latency_ms until a simulated wallclock budget. A trial's
epoch e ends ``latency_seconds + sum(epoch_seconds[:e])`` simulated seconds after it starts, as in
``bench/simulate_search.py``. Each run's reports go to one JSON file for our own analysis.

Run it with the peers' venv (``python3 -m venv bench/.venv-peers``, ``pip install syne-tune
huggingface_hub``; no torch):

    bench/.venv-peers/bin/python bench/peers/syne_tune_moasha.py \
        --table bench/data/fashion_grid.jsonl --seeds 20 --workers 1 4 \
        --out bench/data/moasha_runs.json

By default the simulator is made exact: no start/report delays, a 0.05 s tuner tick and no real
(host) time leaking into simulated time; ``--stock`` keeps Syne Tune's defaults (0.05 s delays,
5 s tick, host time of the tuning loop added to simulated time).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd
from syne_tune import StoppingCriterion, Tuner
from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
from syne_tune.blackbox_repository import UserBlackboxBackend
from syne_tune.blackbox_repository.blackbox import Blackbox
from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
from syne_tune.config_space import choice, loguniform, randint, uniform
from syne_tune.constants import ST_TUNER_TIME
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import (
    NonDominatedPriority,
)
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import (
    nondominated_sort,
)
from syne_tune.tuner_callback import TunerCallback

SPLITS = (1, 2, 4)
WIDTHS = (0.5, 0.66, 0.87, 1.15, 1.52, 2.0)
COT_WEIGHTS = (0.0, 0.5, 1.0)
KINDS = ("js", "kl")
HPS = ("split_factor", "width_mult", "cot_weight", "cot_kind")
OBJECTIVES = ["val_error", "latency_ms", "val_accuracy", "elapsed_s"]
Event = dict[str, Any]


STOCK_PRIORITY = NonDominatedPriority.priority_unsafe


def corrected_priority(self: NonDominatedPriority, objectives: np.ndarray) -> np.ndarray:
    """Each item's rank in the non-dominated sort (0: picked first), as ``MOPriority`` promises;
    items past ``max_num_samples`` share the last rank."""
    order = nondominated_sort(X=objectives, dim=self.dim, max_items=self.max_num_samples)
    ranks = np.full(len(objectives), len(order), dtype=int)
    ranks[np.asarray(order, dtype=int)] = np.arange(len(order))
    return ranks


def set_priority(kind: str) -> None:
    """Install the stock or the corrected ``NonDominatedPriority.priority_unsafe``."""
    NonDominatedPriority.priority_unsafe = (  # type: ignore[method-assign]
        STOCK_PRIORITY if kind == "stock" else corrected_priority
    )


def check_priority() -> None:
    """The known case: 4 points (both objectives minimised) where the last dominates the others
    and they dominate one another in the order 1, 0, 2. Ranks are [2 1 3 0]; the stock function
    returns the order [3 1 0 2]."""
    points = np.array([[0.3, 0.3], [0.2, 0.2], [0.4, 0.4], [0.1, 0.1]])
    set_priority("stock")
    stock = NonDominatedPriority()(points).tolist()
    set_priority("corrected")
    fixed = NonDominatedPriority()(points).tolist()
    assert stock == [3, 1, 0, 2], f"the stock priority changed: {stock}"
    assert fixed == [2, 1, 3, 0], f"the corrected priority is wrong: {fixed}"


def canonical(config: dict[str, Any]) -> dict[str, Any]:
    """The table's config dict: K = 1 has no co-training keys."""
    out = {k: config[k] for k in HPS}
    if out["split_factor"] == 1:
        del out["cot_weight"], out["cot_kind"]
    return out


def load_table(path: str) -> tuple[dict[str, dict[str, Any]], int]:
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    epochs = int(lines[0]["epochs"])
    rows = {json.dumps(r["config"], sort_keys=True): r for r in lines[1:]}
    return rows, epochs


def make_blackbox(
    rows: dict[str, dict[str, Any]], epochs: int, latency_cost: float = 1.0
) -> BlackboxTabular:
    """Every point of the full space (K = 1 repeated over the cot values) and its curves."""
    configs, evals = [], []
    for k, w, cw, kind in (
        (k, w, cw, kd) for k in SPLITS for w in WIDTHS for cw in COT_WEIGHTS for kd in KINDS
    ):
        config = {"split_factor": k, "width_mult": w, "cot_weight": cw, "cot_kind": kind}
        row = rows.get(json.dumps(canonical(config), sort_keys=True))
        if row is None:
            raise SystemExit(f"table has no row for {canonical(config)}: is it complete?")
        acc = np.asarray(row["val_accuracy"], dtype=float)
        elapsed = row["latency_seconds"] * latency_cost + np.cumsum(row["epoch_seconds"])
        lat = np.full(epochs, float(row["latency_ms"]))
        configs.append(config)
        evals.append(np.stack([1.0 - acc, lat, acc, elapsed], axis=-1))
    return BlackboxTabular(
        hyperparameters=pd.DataFrame(configs, columns=list(HPS)),
        configuration_space=config_space(),
        fidelity_space={"epoch": randint(1, epochs)},
        objectives_evaluations=np.asarray(evals)[:, None, :, :],  # (configs, seeds, epochs, obj)
        fidelity_values=np.arange(1, epochs + 1),
        objectives_names=OBJECTIVES,
    )


class NetworkTable:
    """The table of networks as ``automl.search.simulate.Table`` reads it (no torch here)."""

    def __init__(self, path: str) -> None:
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        self.epochs = int(lines[0]["epochs"])
        latency = {r["network"]: r for r in lines[1:] if r.get("kind") == "latency"}
        train = [
            r
            for r in lines[1:]
            if r.get("kind") == "train"
            and r["network"] in latency
            and len(r["val_accuracy"]) >= self.epochs
        ]
        by_net: dict[str, list[dict[str, Any]]] = {}
        for r in train:
            by_net.setdefault(r["network"], []).append(r)
        # Each epoch of a network costs the 10th percentile of all its epochs (trained at idle
        # priority on a shared machine: the slow epochs are the machine's), as our simulator.
        self.costs = {
            n: [float(np.percentile([s for r in rs for s in r["epoch_seconds"]], 10))] * self.epochs
            for n, rs in by_net.items()
        }
        self.latency = latency
        self.rows: dict[str, list[dict[str, Any]]] = {}
        for r in train:
            self.rows.setdefault(json.dumps(r["config"], sort_keys=True), []).append(r)

    def lookup(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The configuration a sampled point trains and its seed rows: the width is the network
        it builds (the last one starting at or below it), then the network's nearest
        co-training setting (the kind if the table has it there, the nearest weight)."""
        k = int(params["split_factor"])
        configs = [json.loads(c) for c in self.rows]
        configs = [c for c in configs if c["split_factor"] == k]
        starts = sorted({float(c["width_mult"]) for c in configs})
        width = float(params["width_mult"])
        start = max((w for w in starts if w <= width + 1e-9), default=starts[0])
        configs = [c for c in configs if float(c["width_mult"]) == start]
        kind, cw = params.get("cot_kind", "js"), float(params.get("cot_weight", 0.0))
        best = min(
            configs,
            key=lambda c: (
                c.get("cot_kind", kind) != kind,
                abs(float(c.get("cot_weight", 0)) - cw),
            ),
        )
        return best, self.rows[json.dumps(best, sort_keys=True)]

    def full_cost(self, latency_cost: float) -> float:
        """The mean cost of a configuration trained to the end, over the seed rows."""
        return float(
            np.mean(
                [
                    self.latency[r["network"]]["latency_seconds"] * latency_cost
                    + sum(self.costs[r["network"]])
                    for rs in self.rows.values()
                    for r in rs
                ]
            )
        )


class NetworkBlackbox(Blackbox):
    """MOASHA's view of the table of networks: the project's space, the table's answers."""

    def __init__(self, table: NetworkTable, latency_cost: float) -> None:
        space = network_space(sorted({json.loads(c)["split_factor"] for c in table.rows}))
        super().__init__(space, {"epoch": randint(1, table.epochs)}, OBJECTIVES)
        self.table = table
        self.latency_cost = latency_cost
        self.num_fidelities = table.epochs

    @property
    def fidelity_values(self) -> np.ndarray:
        return np.arange(1, self.table.epochs + 1)

    def _objective_function(
        self,
        configuration: dict[str, Any],
        fidelity: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        # The backend draws seeds for tabular blackboxes only: a trial's one call draws its row
        # here, from numpy's generator that each run seeds.
        _, rows = self.table.lookup(configuration)
        row = rows[np.random.randint(len(rows)) if seed is None else seed % len(rows)]
        lat = self.table.latency[row["network"]]
        acc = np.asarray(row["val_accuracy"], dtype=float)
        elapsed = lat["latency_seconds"] * self.latency_cost + np.cumsum(
            self.table.costs[row["network"]]
        )
        evals = np.stack([1.0 - acc, np.full_like(acc, lat["latency_ms"]), acc, elapsed], axis=-1)
        if fidelity is None:
            return evals
        return dict(zip(OBJECTIVES, evals[int(fidelity["epoch"]) - 1], strict=True))


def network_space(splits: list[int]) -> dict[str, Any]:
    """The demo space's searched parameters (the table ignores the co-training warm-up), with
    the K the table holds (a table still being filled may lack one)."""
    return {
        "split_factor": choice(splits),
        "width_mult": loguniform(0.5, 2.0),
        "cot_weight": uniform(0.0, 1.0),
        "cot_kind": choice(list(KINDS)),
    }


def config_space() -> dict[str, Any]:
    return {
        "split_factor": choice(list(SPLITS)),
        "width_mult": choice(list(WIDTHS)),
        "cot_weight": choice(list(COT_WEIGHTS)),
        "cot_kind": choice(list(KINDS)),
    }


class ExactBackend(UserBlackboxBackend):
    """The stock backend, minus host time spent in the tuning loop counted as simulated time."""

    def _advance_by_outside_time(self) -> None:
        pass


class Recorder(TunerCallback):
    """Every report the tuner passes to the scheduler, with its simulated time."""

    def __init__(self, to_config: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.events: list[Event] = []
        self.to_config = to_config  # a sampled point -> the table's configuration

    def on_trial_result(
        self, trial: Any, status: str, result: dict[str, Any], decision: str
    ) -> None:
        self.events.append(
            {
                "trial": int(trial.trial_id),
                "config": self.to_config(trial.config),
                "epoch": int(result["epoch"]),
                "time": float(result[ST_TUNER_TIME]),
                "val_accuracy": float(result["val_accuracy"]),
                "latency_ms": float(result["latency_ms"]),
            }
        )


def run_one(
    bb: Blackbox, seed: int, n: int, budget: float, args: argparse.Namespace
) -> list[Event]:
    """One MOASHA run: its reports up to the budget, in simulated time order."""
    random.seed(seed)
    np.random.seed(seed)  # MOASHA samples configs and brackets from numpy's global generator
    backend: UserBlackboxBackend
    if args.stock:
        backend = UserBlackboxBackend(blackbox=bb, elapsed_time_attr="elapsed_s")
    else:
        exact = SimulatorConfig(0, 0, 0, 0, 0)
        backend = ExactBackend(bb, "elapsed_s", simulator_config=exact, tuner_sleep_time=args.tick)
    rungs = dict(max_t=bb.num_fidelities, grace_period=1, reduction_factor=3)
    scheduler = MOASHA(
        bb.configuration_space, ["val_error", "latency_ms"], True, "epoch", random_seed=seed,
        **rungs
    )  # fmt: skip
    table = bb.table if isinstance(bb, NetworkBlackbox) else None
    recorder = Recorder(canonical if table is None else lambda c: table.lookup(c)[0])
    quiet = dict(print_update_interval=1e9, results_update_interval=1e9, save_tuner=False)
    tuner = Tuner(
        backend, scheduler, StoppingCriterion(max_wallclock_time=budget), n, sleep_time=0,
        callbacks=[SimulatorCallback(), recorder], tuner_name=f"moasha-s{seed}-w{n}", **quiet
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        tuner.run()
    return sorted((e for e in recorder.events if e["time"] <= budget), key=lambda e: e["time"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default="bench/data/fashion_grid.jsonl")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    p.add_argument("--max-wallclock", type=float, help="simulated s; default: --full-trials / n")
    p.add_argument("--latency-cost", type=float, default=1.0, help="scale of latency_seconds")
    p.add_argument("--full-trials", type=float, default=20, help="budget in mean full trials")
    p.add_argument("--tick", type=float, default=0.05, help="simulated tuner sleep (s)")
    p.add_argument("--stock", action="store_true", help="Syne Tune's default simulator settings")
    p.add_argument("--out", default="bench/data/moasha_runs.json")
    p.add_argument(
        "--priority",
        nargs="+",
        choices=["stock", "corrected"],
        default=["stock", "corrected"],
        help="NonDominatedPriority as shipped (runs 'moasha') and/or corrected ('moasha-fixed')",
    )
    args = p.parse_args()
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    check_priority()
    bb: Blackbox
    with open(args.table) as f:
        networks = any('"kind":"latency"' in line.replace(" ", "") for line in f)
    if networks:
        table = NetworkTable(args.table)
        bb = NetworkBlackbox(table, args.latency_cost)
        full = table.full_cost(args.latency_cost)
    else:
        rows, epochs = load_table(args.table)
        bb = make_blackbox(rows, epochs, args.latency_cost)
        full = float(
            np.mean(
                [
                    r["latency_seconds"] * args.latency_cost + sum(r["epoch_seconds"])
                    for r in rows.values()
                ]
            )
        )
    tmp = tempfile.mkdtemp(prefix="syne-tune-")
    os.environ["SYNETUNE_FOLDER"] = tmp  # the tuner's own result folders go here, then away
    runs = []
    try:
        for n in args.workers:
            budget = args.max_wallclock or args.full_trials * full / n
            print(f"n_workers={n}: max_wallclock_s={budget:.1f} (mean full trial {full:.1f} s)")
            for kind, seed in ((k, s) for k in args.priority for s in range(args.seeds)):
                set_priority(kind)
                method = "moasha" if kind == "stock" else "moasha-fixed"
                t0 = time.perf_counter()
                events = run_one(bb, seed, n, budget, args)
                run = dict(method=method, seed=seed, n_workers=n, max_wallclock_s=budget)
                runs.append({**run, "events": events})
                trials = len({e["trial"] for e in events})
                wall = time.perf_counter() - t0
                print(
                    f"  {method} seed {seed}: {len(events)} reports, {trials} trials, {wall:.1f} s"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(args.out, "w") as f:
        tick = None if args.stock else args.tick
        head = dict(syne_tune_version=version("syne-tune"), stock_simulator=args.stock, tick_s=tick)
        json.dump({**head, "runs": runs}, f)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
