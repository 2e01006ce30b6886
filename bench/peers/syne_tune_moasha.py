"""Peer baseline: Syne Tune's MOASHA on the tabulated grid, through Syne Tune's own simulator.

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
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd
from syne_tune import StoppingCriterion, Tuner
from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
from syne_tune.blackbox_repository import UserBlackboxBackend
from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
from syne_tune.config_space import choice, randint
from syne_tune.constants import ST_TUNER_TIME
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.tuner_callback import TunerCallback

SPLITS = (1, 2, 4)
WIDTHS = (0.5, 0.66, 0.87, 1.15, 1.52, 2.0)
COT_WEIGHTS = (0.0, 0.5, 1.0)
KINDS = ("js", "kl")
HPS = ("split_factor", "width_mult", "cot_weight", "cot_kind")
OBJECTIVES = ["val_error", "latency_ms", "val_accuracy", "elapsed_s"]
Event = dict[str, Any]


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

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_trial_result(
        self, trial: Any, status: str, result: dict[str, Any], decision: str
    ) -> None:
        self.events.append(
            {
                "trial": int(trial.trial_id),
                "config": canonical(trial.config),
                "epoch": int(result["epoch"]),
                "time": float(result[ST_TUNER_TIME]),
                "val_accuracy": float(result["val_accuracy"]),
                "latency_ms": float(result["latency_ms"]),
            }
        )


def run_one(
    bb: BlackboxTabular, seed: int, n: int, budget: float, args: argparse.Namespace
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
        config_space(), ["val_error", "latency_ms"], True, "epoch", random_seed=seed, **rungs
    )
    recorder = Recorder()
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
    args = p.parse_args()
    logging.getLogger("syne_tune").setLevel(logging.ERROR)
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
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                events = run_one(bb, seed, n, budget, args)
                run = dict(method="moasha", seed=seed, n_workers=n, max_wallclock_s=budget)
                runs.append({**run, "events": events})
                trials = len({e["trial"] for e in events})
                wall = time.perf_counter() - t0
                print(f"  seed {seed}: {len(events)} reports, {trials} trials, {wall:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(args.out, "w") as f:
        tick = None if args.stock else args.tick
        head = dict(syne_tune_version=version("syne-tune"), stock_simulator=args.stock, tick_s=tick)
        json.dump({**head, "runs": runs}, f)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
