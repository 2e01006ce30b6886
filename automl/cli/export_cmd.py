"""``automl export``: a trial of a study as a self-describing, checksummed bundle."""

from __future__ import annotations

import argparse

from automl.cli.argtypes import non_negative_float, positive_float, positive_int
from automl.cli.common import add_storage_args, resolve_study_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained trial as a bundle (TorchScript, torch.export or ONNX program)",
        description="Write weights, config, preprocessing, class names, metrics, latency and a "
        "program checked against PyTorch on real test images (atol 1e-4), sealed by a manifest "
        "of sha256 sums.",
    )
    add_storage_args(p)
    p.add_argument(
        "--trial",
        required=True,
        help="trial number, or 'best': the most accurate trial of the Pareto front whose "
        "latency fits --max-latency-ms",
    )
    p.add_argument("--out", required=True, help="bundle folder (new, empty or an earlier bundle)")
    p.add_argument(
        "--format",
        default="torchscript",
        choices=["torchscript", "exported-program", "onnx"],
        help="program format (default torchscript; onnx needs pip install -e '.[export]' in "
        "the checkout)",
    )
    p.add_argument(
        "--form",
        default="fused",
        choices=["fused", "divided"],
        help="fused: one grouped-convolution network (default); divided: the K member modules",
    )
    p.add_argument(
        "--members",
        type=positive_int,
        default=None,
        help="ship only the M members of best validation accuracy (default: all K)",
    )
    p.add_argument(
        "--max-latency-ms",
        type=positive_float,
        default=None,
        help="latency budget for --trial best",
    )
    p.add_argument(
        "--latency-s",
        type=non_negative_float,
        default=1.0,
        help="seconds spent timing the program in its runtime (0: skip the measurement)",
    )
    p.add_argument(
        "--latency-batch", type=positive_int, default=1, help="batch size of that measurement"
    )
    p.add_argument(
        "--latency-device",
        default="cpu",
        help="device of that measurement: cpu (default) or cuda[:i] where a GPU exists",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.export import LatencySettings, export_trial

    name = resolve_study_name(args.storage, args.study)
    latency = LatencySettings(
        batch_size=args.latency_batch,
        min_run_s=max(args.latency_s, 0.01),
        warmup_s=min(0.3, args.latency_s / 3),
        enabled=args.latency_s > 0,
        device=args.latency_device,
    )
    manifest = export_trial(
        args.storage,
        name,
        args.trial,
        args.out,
        fmt=args.format,
        form=args.form,
        members=args.members,
        max_latency_ms=args.max_latency_ms,
        artifact_dir=args.artifacts,
        latency=latency,
    )
    check = manifest["export_check"]
    src = manifest["source"]
    print(
        f"exported trial {src['trial']} of study {src['study']!r} to {args.out} "
        f"({manifest['format']}, {manifest['form']}, members {manifest['members']})"
    )
    print(
        f"check: max |program - pytorch| = {check['max_abs_diff']:.2e} <= atol {check['atol']:g} "
        f"on {check['images']} test images"
    )
    lat = manifest.get("latency")
    if lat:
        print(
            f"latency ({lat['runtime']}, {lat['device']}, batch {lat['batch_size']}): "
            f"{lat['program_ms']:.3g} ms; PyTorch eager {lat['eager_ms']:.3g} ms "
            f"(ratio {lat['program_over_eager']:.2f})"
        )
    return 0
