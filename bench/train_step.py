"""(a) Training step time, divided / undivided at equal parameters, K in {2, 4}, loop vs fused.

Rounds interleave the configurations so that machine noise hits them alike; medians are quoted.
    python bench/train_step.py [--batch 64] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import machine, median_time, model_for, params_m, train_step_fn

from automl.device import resolve_device
from automl.models import fuse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"# training step, batch {args.batch}, {machine()}, device {dev}")
    configs = {}
    for k in (1, 2, 4):
        divided = model_for(k).to(dev)
        configs[(k, "loop")] = (params_m(divided), train_step_fn(divided, k, args.batch, dev))
        if k > 1:
            fused = fuse(model_for(k).to(dev))
            configs[(k, "fused")] = (params_m(fused), train_step_fn(fused, k, args.batch, dev))
    times: dict[tuple[int, str], list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c, (_, fn) in configs.items():
            times[c].append(median_time(fn, dev, warmup=2, repeats=5))
    base = statistics.median(times[(1, "loop")])
    print(f"{'K':>2} {'form':>6} {'params(M)':>10} {'ms/step':>9} {'ratio':>6}")
    for (k, form), (pm, _) in configs.items():
        t = statistics.median(times[(k, form)])
        print(f"{k:>2} {form:>6} {pm:>10.3f} {t * 1e3:>9.2f} {t / base:>6.2f}")
    for k in (2, 4):
        best = min(statistics.median(times[(k, f)]) for f in ("loop", "fused"))
        print(f"best K={k} step / undivided: {best / base:.2f}")
    torch.set_num_threads(torch.get_num_threads())


if __name__ == "__main__":
    main()
