"""(c) Measurement stability, unpaired against paired, side by side in one run: the coefficient
of variation of repeated measurements of one model, and the rank correlation of 8 architectures'
latencies measured in two separate passes.

Paired: every block of the candidate is timed next to a block of a reference network (the
family's undivided baseline, settled once at the start as a worker does), and the latency kept
is the median ratio times the reference's settled median. Both protocols get the same time per
measurement (``--min-run`` per mode and layout timed).

    python bench/latency_stability.py [--repeats 10] [--min-run 1.0]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import SHAPE, machine, model_for
from scipy.stats import spearmanr

from automl.measure.latency import measure, settle_reference

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


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--min-run", type=float, default=1.0, help="seconds per mode and layout")
    args = ap.parse_args()
    print(f"# latency stability, batch {args.batch}, {args.min_run} s per measurement, {machine()}")
    x = torch.randn(args.batch, *SHAPE)
    reference = settle_reference(model_for(1), x)
    print(f"reference (convnet_m x2, K=1) settled at {reference.median_ms:.3f} ms")
    model = model_for(2)
    plain: list[float] = []
    paired: list[float] = []
    for _ in range(args.repeats):
        # Alternated, so that both protocols see the same phases of the machine.
        plain.append(measure(model, x, mode="fused", min_run_s=args.min_run).median_ms)
        paired.append(
            measure(model, x, mode="fused", min_run_s=args.min_run, reference=reference).median_ms
        )
    for name, values in (("unpaired", plain), ("paired", paired)):
        print(
            f"one model (convnet_m x2, K=2, fused), {args.repeats} measurements, {name}: "
            f"median {statistics.median(values):.3f} ms, CV {cv(values) * 100:.2f}%"
        )
    passes: dict[str, list[list[float]]] = {"unpaired": [], "paired": []}
    for p in range(2):
        lat: dict[str, list[float]] = {"unpaired": [], "paired": []}
        for name, k, w in ARCHS:
            m = model_for(k, name, w)
            lat["unpaired"].append(measure(m, x, mode="auto", min_run_s=args.min_run).median_ms)
            lat["paired"].append(
                measure(m, x, mode="auto", min_run_s=args.min_run, reference=reference).median_ms
            )
        for kind, values in lat.items():
            passes[kind].append(values)
            print(f"pass {p + 1} {kind}: " + ", ".join(f"{v:.3f}" for v in values))
    for kind, (first, second) in passes.items():
        rho = spearmanr(first, second).statistic
        print(
            f"rank correlation (Spearman) between passes over {len(ARCHS)} architectures, "
            f"{kind}: {rho:.3f}"
        )


if __name__ == "__main__":
    main()
