"""``automl export``: a trial of a study as a self-describing, checksummed bundle."""

from __future__ import annotations

import argparse
import sys

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
        help="trial number, or 'best': the most accurate configuration of the Pareto front "
        "whose latency fits --max-latency-ms; trials whose latency spread is over a quarter of "
        "its median are left out (with a warning) unless --allow-noisy",
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
        "--allow-noisy",
        action="store_true",
        help="let --trial best pick a trial whose latency spread is over a quarter of its median "
        "(warned about either way)",
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
    trial = args.trial
    if str(trial) == "best":
        trial = _best(args, name)
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
        trial,
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


def _best(args: argparse.Namespace, name: str) -> int:
    """The trial ``--trial best`` names, its warnings printed first: a noisy latency is never
    picked (or left out) without the user being told."""
    from automl.export.errors import TrialSelectionError
    from automl.search.front import configurations, pick
    from automl.search.study import load_study

    study = load_study(name, args.storage, artifact_dir=args.artifacts)
    chosen = pick(
        configurations(study.trials()),
        args.max_latency_ms,
        allow_noisy=args.allow_noisy,
        at_knee=False,
    )
    for warning in chosen.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if chosen.point is None:
        budget = args.max_latency_ms
        raise TrialSelectionError(
            f"no trial of study {name!r} "
            + (f"fits --max-latency-ms {budget:g}" if budget else "to export")
            + f": {chosen.reason}"
            + ("; pass --allow-noisy to consider them" if chosen.skipped_noisy else "")
        )
    p = chosen.point
    print(
        f"--trial best: trial {p.number} (K = {p.split_factor}, accuracy {p.accuracy:.4f}, "
        f"latency {p.latency_ms:.3g} ms"
        + (f", within {args.max_latency_ms:g} ms" if args.max_latency_ms else "")
        + ")"
    )
    return p.number
