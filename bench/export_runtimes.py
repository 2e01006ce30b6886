"""(e) Exported runtimes side by side: PyTorch eager vs TorchScript, torch.export, ONNX Runtime.

A front-like model (convnet_m, K members, fused form, as ``automl export`` ships it by default) is
exported to every format and timed with the project's protocol
(``automl.measure.latency.time_callables``, interleaved rounds) at batch 1 and 64. Ratios are
relative to PyTorch eager of the same form. The CUDA provider / device is used only where a GPU
exists (--device cuda).

python bench/export_runtimes.py [--k 2] [--width 1.0] [--batches 1 64] [--min-run 1.0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import SHAPE, machine, model_for, params_m

from automl.export import Format, LatencySettings, ProbabilityHead
from automl.export.programs import PROGRAM_FILE, load_program, write_program
from automl.export.runtime_latency import runtime_name, time_runtimes
from automl.models import fuse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--min-run", type=float, default=1.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    divided = model_for(args.k, width=args.width).eval()
    fused = fuse(divided).eval()
    head = ProbabilityHead(fused).eval()
    print(
        f"# exported runtimes, {machine()}, device {dev}; convnet_m K={args.k} width "
        f"{args.width} ({params_m(divided):.3f}M params), fused form, min_run {args.min_run}s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        example = torch.randn(4, *SHAPE)
        runners = {
            "eager divided": lambda x: ProbabilityHead(divided).eval().to(dev)(x.to(dev)),
            "eager fused": lambda x: head.to(dev)(x.to(dev)),
        }
        for fmt in Format:
            path = Path(tmp) / PROGRAM_FILE[fmt]
            write_program(head, example, fmt, path)
            runner = load_program(fmt, path, args.device, torch.get_num_threads())
            with torch.inference_mode():
                diff = float((runner(example).float().cpu() - head(example)).abs().max())
            name = runtime_name(fmt, args.device)
            print(f"#   {name}: max |program - eager| = {diff:.1e} on 4 random images")
            runners[name] = runner
        for batch in args.batches:
            x = torch.randn(batch, *SHAPE)
            settings = LatencySettings(batch_size=batch, min_run_s=args.min_run, warmup_s=0.2)
            times = time_runtimes(runners, x, dev, settings)
            base = times["eager fused"]["median_ms"]
            print(f"\nbatch {batch}")
            print(f"{'runtime':<34} {'ms':>9} {'IQR':>8} {'ratio':>6}")
            for name, t in times.items():
                print(
                    f"{name:<34} {t['median_ms']:>9.3f} {t['iqr_ms']:>8.3f} "
                    f"{t['median_ms'] / base:>6.2f}"
                )


if __name__ == "__main__":
    main()
