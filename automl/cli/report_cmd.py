"""``automl report``: the Pareto table and plots as HTML and PNG."""

from __future__ import annotations

import argparse

from automl.cli.common import add_storage_args
from automl.cli.status_cmd import _study_names
from automl.errors import StorageError
from automl.study import load_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the Pareto table, Pareto plot and hypervolume history")
    add_storage_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.report import write_report

    name = args.study
    if name is None:
        names = _study_names(args.storage)
        if len(names) != 1:
            raise StorageError(
                f"pass --study NAME; this storage holds: {', '.join(names) or 'none'}"
            )
        name = names[0]
    study = load_study(name, args.storage, artifact_dir=args.artifacts)
    for path in write_report(study, args.out):
        print(path)
    return 0
