"""``automl report``: the Pareto table and plots as HTML and PNG."""

from __future__ import annotations

import argparse

from automl.cli.common import add_storage_args, resolve_study_name
from automl.study import load_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the Pareto table, Pareto plot and hypervolume history")
    add_storage_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.report import write_report

    name = resolve_study_name(args.storage, args.study)
    study = load_study(name, args.storage, artifact_dir=args.artifacts)
    for path in write_report(study, args.out):
        print(path)
    return 0
