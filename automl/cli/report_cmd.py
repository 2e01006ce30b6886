"""``automl report``: DIR/index.html (the table and plots, offline), the PNGs and the tables."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from automl.cli.argtypes import positive_float
from automl.cli.common import add_storage_args, resolve_study_name
from automl.cli.targets import add_target_args
from automl.errors import AutoMLError, ConfigError
from automl.search.study import load_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write DIR/index.html (verdict per K, the model to ship, Pareto table, every trial "
        "plotted and tabled; opens offline), PNGs and tables",
    )
    add_storage_args(p)
    p.add_argument("--out", required=True, help="output folder")
    add_target_args(p)
    p.add_argument(
        "--max-latency-ms",
        type=positive_float,
        default=None,
        help="latency budget of the recommended model (default: the knee of the front)",
    )
    p.set_defaults(func=run)


def check_out_dir(out: str) -> tuple[Path, list[Path]]:
    """The --out folder, created and proven writable before the study is read, so that a wrong
    path fails at once and not after the plots were drawn; and the folders created for it, deepest
    first."""
    path = Path(out)
    created = [p for p in (path, *path.absolute().parents) if not p.exists()]
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"--out {out!r} is a file; the report is a folder of files, pass a folder path"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A real write, not os.access: it also catches read-only mounts and runs as root.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(
            f"--out {out!r} cannot be written: {e.strerror or type(e).__name__}; "
            "pass a folder you can write to"
        ) from None
    return path, created


def run(args: argparse.Namespace) -> int:
    from automl.views.report import write_report

    out, created = check_out_dir(args.out)
    try:
        name = resolve_study_name(args.storage, args.study)
        study = load_study(name, args.storage, artifact_dir=args.artifacts)
        # A target never measured is an error before anything is written.
        study.pareto_front(device=args.device, batch_size=args.batch_size)
    except AutoMLError:
        # No report to write: leave no empty folder behind either (rmdir never removes files).
        with contextlib.suppress(OSError):
            for folder in created:
                folder.rmdir()
        raise
    try:
        written = write_report(
            study,
            out,
            device=args.device,
            batch_size=args.batch_size,
            max_latency_ms=args.max_latency_ms,
        )
    except OSError as e:
        raise ConfigError(
            f"writing the report to --out {args.out!r} failed: "
            f"{e.strerror or type(e).__name__} ({e.filename or out}); free space or pick another "
            "folder"
        ) from None
    for path in written:
        print(path)
    return 0
