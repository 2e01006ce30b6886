"""(c) Measurement stability: the coefficient of variation of repeated measurements of one model,
and the rank correlation of 8 architectures' latencies measured in two separate passes.

    python bench/latency_stability.py [--repeats 10] [--min-run 1.0]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import SHAPE, machine, model_for
from scipy.stats import spearmanr

from automl.latency import measure

ARCHS = [
    ("convnet_s", 1, 1.0),
    ("convnet_s", 2, 1.0),
    ("convnet_s", 4, 1.0),
    ("convnet_m", 1, 1.0),
    ("convnet_m", 2, 2.0),
    ("convnet_m", 1, 2.0),
    ("convnet_m", 4, 2.0),
    ("convnet_m", 1, 3.0),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--min-run", type=float, default=1.0, help="seconds per measurement")
    args = ap.parse_args()
    print(f"# latency stability, batch {args.batch}, {args.min_run} s per measurement, {machine()}")
    x = torch.randn(args.batch, *SHAPE)
    model = model_for(2)
    medians = [
        measure(model, x, mode="fused", min_run_s=args.min_run).median_ms
        for _ in range(args.repeats)
    ]
    cv = statistics.stdev(medians) / statistics.mean(medians)
    print(
        f"one model (convnet_m x2, K=2, fused), {args.repeats} measurements: "
        f"median {statistics.median(medians):.3f} ms, CV {cv * 100:.2f}%"
    )
    passes = []
    for p in range(2):
        lat = []
        for name, k, w in ARCHS:
            lat.append(
                measure(model_for(k, name, w), x, mode="auto", min_run_s=args.min_run).median_ms
            )
        passes.append(lat)
        print(f"pass {p + 1}: " + ", ".join(f"{v:.3f}" for v in lat))
    rho = spearmanr(passes[0], passes[1]).statistic
    print(f"rank correlation (Spearman) between passes over {len(ARCHS)} architectures: {rho:.3f}")


if __name__ == "__main__":
    main()
