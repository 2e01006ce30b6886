"""``automl worker``: join an existing study and run its waiting trials."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from automl.cli.argtypes import add_cpu_share_arg, non_negative_int, positive_int
from automl.cli.common import add_storage_args
from automl.errors import ConfigError
from automl.store.storage import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_MAX_RETRY, check_writable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="join an existing study (any host that reaches the database)")
    add_storage_args(p, study_required=True)
    p.add_argument(
        "--device", default=os.environ.get("AUTOML_DEVICE", "auto"), help="cpu, cuda:N or auto"
    )
    p.add_argument("--n-trials", type=positive_int, default=None, help="run at most N trials here")
    p.add_argument(
        "--heartbeat-interval",
        type=positive_int,
        default=None,
        help="seconds between heartbeats (default 60)",
    )
    p.add_argument(
        "--grace-period",
        type=positive_int,
        default=None,
        help="seconds before a silent trial is stale",
    )
    p.add_argument(
        "--max-retry",
        type=non_negative_int,
        default=DEFAULT_MAX_RETRY,
        help="retries of a trial whose worker died before it fails for good "
        f"(default {DEFAULT_MAX_RETRY})",
    )
    add_cpu_share_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--profile", action="store_true", help="store a profiler trace with each trial")
    p.add_argument(
        "--stats-json",
        default=None,
        metavar="FILE",
        help="write the counts of the trials run here (complete, pruned, failed, ...) as JSON",
    )
    p.set_defaults(func=run)


def check_timing(heartbeat_interval: int | None, grace_period: int | None) -> None:
    """A grace period no longer than the heartbeat interval fails live trials as stale."""
    interval = heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL
    if grace_period is not None and grace_period <= interval:
        raise ConfigError(
            f"--grace-period {grace_period} is not longer than the heartbeat interval "
            f"({interval} s): running trials would be failed as stale; use at least "
            f"{2 * interval} or a shorter --heartbeat-interval"
        )


def check_stats_path(path: str | None) -> None:
    """``--stats-json`` is written when the worker ends, perhaps hours later: a path that can
    never take it (a folder, a FIFO no one reads, a missing folder) is refused before any work."""
    if path is None:
        return
    from automl.files import describe

    p = Path(path)
    kind = describe(p)
    if kind is not None and kind != "a regular file":
        raise ConfigError(f"--stats-json {path!r} is {kind}; pass the path of a file to write")
    if kind is None and describe(p.parent) != "a folder":
        raise ConfigError(
            f"--stats-json {path!r}: folder {str(p.parent)!r} does not exist; create it first"
        )


def run(args: argparse.Namespace) -> int:
    from automl.search.worker import WorkerOptions, run_worker
    from automl.store.names import validate_study_name

    check_timing(args.heartbeat_interval, args.grace_period)
    check_stats_path(args.stats_json)
    # A worker only writes: a database it cannot write would be retried as if it were down.
    check_writable(args.storage)

    opts = WorkerOptions(
        storage=args.storage,
        study=validate_study_name(args.study),
        device=args.device,
        n_trials=args.n_trials,
        artifact_dir=args.artifacts,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        max_retry=args.max_retry,
        progress=not args.no_progress,
        profile=args.profile,
        cpu_share=args.cpu_share,
    )
    stats = run_worker(opts)
    if args.stats_json:
        counts = dataclasses.asdict(stats) | {"total": stats.total}
        Path(args.stats_json).write_text(json.dumps(counts))
    return 0
