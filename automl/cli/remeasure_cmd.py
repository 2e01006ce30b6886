"""``automl remeasure``: time a study's architectures on this machine's device, for the front on
a deployment target the study was not trained on."""

from __future__ import annotations

import argparse

from automl.cli.argtypes import add_cpu_share_arg, positive_float, positive_int
from automl.cli.common import add_storage_args, resolve_study_name
from automl.views.report import format_front


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "remeasure",
        help="time every completed trial's architecture on this device (no retraining)",
        description="Latency does not depend on the weights: each completed trial's "
        "architecture is rebuilt and timed here, and stored per target, so that "
        "`automl status --device`, `automl report --device` and "
        "`AutoMLStudy.pareto_front(device=...)` give the front on this device.",
    )
    add_storage_args(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="latency batch size (default: the space's [objectives] latency_batch_size)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="the target's label (default: 'cpu' or 'cuda:<GPU model>'); name a box, e.g. "
        "'edge-box', to keep the fronts of two CPU machines apart",
    )
    p.add_argument(
        "--min-run",
        type=positive_float,
        default=None,
        metavar="S",
        help="seconds per execution mode timed (default: the space's latency_min_run_s)",
    )
    p.add_argument(
        "--force", action="store_true", help="time again the trials already measured there"
    )
    add_cpu_share_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.measure.host_share import HostShare
    from automl.search.remeasure import remeasure
    from automl.search.study import load_study
    from automl.store.storage import check_writable

    name = resolve_study_name(args.storage, args.study)
    check_writable(args.storage)  # the new latencies are stored
    study = load_study(name, args.storage, artifact_dir=args.artifacts)
    with HostShare(args.cpu_share) as share:
        result = remeasure(
            study,
            args.device,
            batch_size=args.batch_size,
            name=args.name,
            force=args.force,
            min_run_s=args.min_run,
            progress=not args.no_progress,
            host_share=share,
        )
    print(
        f"timed {result.measured} architectures on {result.key} "
        f"({result.skipped} already measured there)"
    )
    print(f"Pareto front on {result.key} (validation accuracy vs latency):")
    print(format_front(study.pareto_front(device=result.key)))
    return 0
