"""``automl trace``: a trial's profiler traces as a TensorBoard run."""

from __future__ import annotations

import argparse
import contextlib

from automl.cli.argtypes import non_negative_int
from automl.cli.common import add_storage_args, resolve_study_name
from automl.cli.report_cmd import check_out_dir
from automl.errors import AutoMLError
from automl.search.study import load_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="lay out a trial's profiler traces (--profile) as a TensorBoard run",
        description="Copies the traces stored by 'automl search/worker --profile' to "
        "OUT/<study>-trial<N>/<worker>.<span>.pt.trace.json, the layout TensorBoard's "
        "torch-tb-profiler plugin reads: tensorboard --logdir OUT",
    )
    add_storage_args(p)
    p.add_argument("--trial", required=True, type=non_negative_int, help="trial number")
    p.add_argument("--out", required=True, help="TensorBoard log folder (created if missing)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.views.traces import lay_out_traces

    name = resolve_study_name(args.storage, args.study)
    study = load_study(name, args.storage, artifact_dir=args.artifacts)
    out, created = check_out_dir(args.out)
    try:
        written = lay_out_traces(study, args.trial, out)
    except AutoMLError:
        # Nothing to lay out: leave no empty folder behind (rmdir never removes files).
        with contextlib.suppress(OSError):
            for folder in created:
                folder.rmdir()
        raise
    for path in written:
        print(path)
    print(f"view: tensorboard --logdir {out}")
    return 0
