"""Two CPU workers on one host against one: latencies and throughput, side by side in one run.

The smoke space on PostgreSQL, the same architectures enqueued in each run (so latencies compare
architecture by architecture): one worker alone, then two workers splitting the cores
(``--cpu-share auto``, the default), and with ``--with-off`` two workers that do not split
(each runs an OpenMP pool as wide as the machine, the behaviour before the split).

    python bench/host_share_workers.py [--storage postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
from _common import machine

import automl

REPO = Path(__file__).resolve().parent.parent
ARCHS = [(k, w) for k in (1, 2, 4) for w in (0.5, 1.0, 2.0)]


def run(
    storage: str, workers: int, share: str, tmp: Path, args_repeat: int
) -> tuple[float, dict[tuple, float], dict[tuple, float]]:
    name = f"bench-share-{workers}-{share}-{uuid.uuid4().hex[:6]}"
    study = automl.create_study(
        REPO / "search_spaces" / "smoke.toml",
        storage=storage,
        study_name=name,
        artifact_dir=tmp / name,
    )
    for k, w in ARCHS * args_repeat:
        study.optuna_study.enqueue_trial(
            {
                "split_factor": k,
                "width_mult": w,
                "cot_weight": 0.5,
                "cot_kind": "js",
                "cot_warmup_epochs": 0,
            }
        )
    # One host folder for every run, as on a real host: the runs share the host's settled
    # reference time, so their latencies compare (the first run settles it).
    env = {**os.environ, "AUTOML_HOST_DIR": str(tmp / "host")}
    cmd = [
        sys.executable,
        "-m",
        "automl",
        "worker",
        "--storage",
        storage,
        "--study",
        name,
        "--no-progress",
        "--cpu-share",
        share,
        "--artifacts",
        str(tmp / name),
    ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(workers)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed: {err.decode()[-2000:]}")
    wall = time.perf_counter() - start
    done_trials = [t for t in study.trials() if t.values]

    def arch(t: optuna.trial.FrozenTrial) -> tuple:
        return (t.params.get("split_factor"), round(t.params.get("width_mult", 1.0), 3))

    lat = {arch(t): t.values[1] for t in done_trials}
    ratio = {arch(t): t.user_attrs["latency_ratio"] for t in done_trials}
    done = len(study.trials())
    print(
        f"{workers} worker(s), --cpu-share {share}: {done} trials in {wall:.1f} s, "
        f"{done / wall * 60:.2f} trials/min"
    )
    return done / wall * 60, lat, ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--with-off", action="store_true", help="also two workers without the split")
    ap.add_argument("--repeat", type=int, default=3, help="times each architecture is enqueued")
    args = ap.parse_args()
    print(
        f"# two workers on one host, smoke space, {len(ARCHS) * args.repeat + 1} trials, "
        f"{machine()}, {len(os.sched_getaffinity(0))} cores"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one_rate, one, one_ratio = run(args.storage, 1, "auto", tmp, args.repeat)
        variants = [("auto", *run(args.storage, 2, "auto", tmp, args.repeat))]
        if args.with_off:
            variants.append(("off", *run(args.storage, 2, "off", tmp, args.repeat)))
    for share, rate, lat, ratio in variants:
        ratios = [lat[a] / one[a] for a in one if a in lat]
        paired = [ratio[a] / one_ratio[a] for a in one if a in ratio]
        print(
            f"2 workers ({share}) vs 1, ratios to the reference per architecture: median "
            f"{statistics.median(paired):.3f}, "
            f"worst {max(abs(r - 1) for r in paired) * 100:.1f}% off"
        )
        worst = max(abs(r - 1) for r in ratios)
        print(
            f"2 workers ({share}) vs 1: throughput x{rate / one_rate:.2f}; latency ratio per "
            f"architecture median {statistics.median(ratios):.3f}, worst {worst * 100:.1f}% off "
            f"({len(ratios)} architectures)"
        )
        for a in sorted(one):
            if a in lat:
                print(f"  K={a[0]} width {a[1]}: {one[a]:.3f} ms alone, {lat[a]:.3f} ms with two")


if __name__ == "__main__":
    main()
