"""(b) Inference latency, divided / undivided, every execution mode, batch 1 and 64.

python bench/latency_modes.py [--device cpu] [--batches 1 64]
"""

from __future__ import annotations

import argparse

import torch
from _common import SHAPE, machine, model_for, params_m

from automl.device import resolve_device
from automl.measure.latency import measure, supported_modes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--min-run", type=float, default=1.0)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"# inference latency, {machine()}, device {dev}")
    for batch in args.batches:
        x = torch.randn(batch, *SHAPE)
        base = measure(model_for(1), x, mode="sequential", device=dev, min_run_s=args.min_run)
        print(
            f"\nbatch {batch}: undivided (K=1 sequential) {base.median_ms:.3f} ms "
            f"(IQR {base.iqr_ms:.3f})"
        )
        print(f"{'K':>2} {'mode':>10} {'params(M)':>10} {'ms':>9} {'IQR':>7} {'ratio':>6}")
        for k in (1, 2, 4):
            model = model_for(k)
            for mode in supported_modes(dev, k):
                r = measure(model, x, mode=mode, device=dev, min_run_s=args.min_run)
                print(
                    f"{k:>2} {mode.value:>10} {params_m(model):>10.3f} {r.median_ms:>9.3f} "
                    f"{r.iqr_ms:>7.3f} {r.median_ms / base.median_ms:>6.2f}"
                )


if __name__ == "__main__":
    main()
