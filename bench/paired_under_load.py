"""Paired latency of a network timed against itself, on a quiet machine and beside a process that
keeps every core busy: the true ratio is 1, so the distance from 1 is the estimator's bias.

Two estimators of the same rounds, side by side: the ratio of a block to the *mean* of the two
reference blocks around it, and the pooled ratios to *each* of them (what ``time_paired`` keeps).
On a loaded machine a block is either preempted or not; a mean of two blocks is hit twice as often
as the block between them, which pulls the first estimator below 1.

    python bench/paired_under_load.py [--measurements 40] [--run-s 0.6] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
from _common import SHAPE, machine, model_for

from automl.measure.latency import time_paired

LOAD = (
    "import time, torch\n"
    "torch.set_num_threads({threads})\n"
    "a = torch.randn(512, 512)\n"
    "end = time.time() + {seconds}\n"
    "while time.time() < end:\n"
    "    a @ a\n"
)


def estimates(n: int, run_s: float) -> tuple[list[float], list[float]]:
    """Median ratio per measurement, by the mean of neighbours and by pooled neighbours."""
    net = model_for(1).eval()
    x = torch.randn(4, *SHAPE)

    def call() -> object:
        return net(x)

    by_mean: list[float] = []
    pooled: list[float] = []
    with torch.inference_mode():
        for _ in range(n):
            ratios, seconds, _ = time_paired(
                {"same": call}, call, torch.device("cpu"), warmup_s=0.05, run_s=run_s
            )
            t, ref = seconds["same"], seconds["reference"]
            by_mean.append(
                statistics.median(2 * t[i] / (ref[2 * i] + ref[2 * i + 1]) for i in range(len(t)))
            )
            pooled.append(statistics.median(ratios["same"]))
    return by_mean, pooled


def summary(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10)
    off = sum(1 for v in values if not 0.8 <= v <= 1.25)
    return (
        f"median {statistics.median(values):.3f}  10-90% [{q[0]:.3f}, {q[-1]:.3f}]  "
        f"outside [0.8, 1.25]: {off}/{len(values)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measurements", type=int, default=40)
    ap.add_argument("--run-s", type=float, default=0.6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(f"{args.measurements} measurements of {args.run_s} s, the K=1 bench model against itself")
    for label in ("quiet", "loaded"):
        load = None
        if label == "loaded":
            code = LOAD.format(threads=torch.get_num_threads(), seconds=3600)
            load = subprocess.Popen([sys.executable, "-c", code])
            time.sleep(1.0)
        try:
            by_mean, pooled = estimates(args.measurements, args.run_s)
        finally:
            if load is not None:
                load.kill()
                load.wait()
        print(f"{label}: ratio to the mean of both neighbours  {summary(by_mean)}")
        print(f"{label}: ratios to each neighbour, pooled     {summary(pooled)}")


if __name__ == "__main__":
    main()
