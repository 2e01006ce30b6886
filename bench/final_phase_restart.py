"""The final phase's two ways to spend N more epochs on the search's best network: a new run from
scratch on an N-epoch schedule, or the search's 27-epoch model restarted on a new N-epoch
warm-up and cosine (a warm restart: the finished schedule is not stretched, a new one begins).

For each seed: the demo space's default network (``convnet_s``, K = 1, width 1.0) is trained on the
space's own 27-epoch recipe (the search's trial), then N epochs from scratch, then N epochs from the
27-epoch weights; test accuracy of each on the same 5,000 test images, and the wall time.

    python bench/final_phase_restart.py --epochs 100 --seeds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl.models import create_model
from automl.models.ensemble import Ensemble
from automl.space import load_space
from automl.training import evaluate, fit
from bench._common import machine
from bench.demo_vs_single_run import SPACE, baseline_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100, help="N, the final phase's epochs")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0, help="to add seeds to an earlier run")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    space = load_space(SPACE)
    data = space.data.load()
    params = baseline_params(space)
    print(machine())

    def new_model(seed: int) -> Ensemble:
        torch.manual_seed(seed)
        return create_model(
            space.model.name,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            split_factor=1,
            width_mult=params.width_mult,
            **space.model.options,
        )

    def run(model: Ensemble, epochs: int, seed: int) -> tuple[float, float]:
        cfg = dataclasses.replace(space.train_config(params, seed=seed), epochs=epochs)
        t0 = time.perf_counter()
        fit(model, data, cfg)
        return evaluate(model, data.test).accuracy, time.perf_counter() - t0

    rows: list[dict[str, Any]] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        source = new_model(seed)
        acc27, s27 = run(source, space.train.epochs, seed)
        scratch, s_scratch = run(new_model(seed + 100), args.epochs, seed + 100)
        warm = new_model(seed + 100)
        warm.load_state_dict(source.state_dict())
        restarted, s_warm = run(warm, args.epochs, seed + 100)
        row = {
            "seed": seed,
            "source_test": acc27,
            "source_s": round(s27, 1),
            "epochs": args.epochs,
            "scratch_test": scratch,
            "scratch_s": round(s_scratch, 1),
            "restart_test": restarted,
            "restart_s": round(s_warm, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    gain = [r["restart_test"] - r["scratch_test"] for r in rows]
    print(
        f"restart minus scratch at {args.epochs} epochs, test accuracy points: "
        + ", ".join(f"{100 * g:+.2f}" for g in gain)
        + f" (median {100 * statistics.median(gain):+.2f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
