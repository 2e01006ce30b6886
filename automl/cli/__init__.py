"""The ``automl`` command line: one module per subcommand, each a thin layer over the stages.

Subcommands: ``train``, ``search``, ``worker``, ``status``, ``report``, ``trace``, ``dashboard``,
``export``, ``predict``, ``remeasure``, ``grpc-proxy``. What it guarantees: a user's mistake (a
malformed space, an unknown model, a wrong URL, a missing data set) is one line, ``automl: error:
...``, and exit code 2, with nothing stored touched; an interrupt exits 128 + the signal.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from automl.errors import AutoMLError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    from automl.cli import (
        dashboard_cmd,
        export_cmd,
        grpc_cmd,
        predict_cmd,
        remeasure_cmd,
        report_cmd,
        search_cmd,
        status_cmd,
        trace_cmd,
        train_cmd,
        worker_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="automl",
        description="Find the best accuracy/latency trade-off of divide-and-co-training networks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Optuna's own log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        train_cmd,
        search_cmd,
        worker_cmd,
        status_cmd,
        report_cmd,
        remeasure_cmd,
        trace_cmd,
        dashboard_cmd,
        grpc_cmd,
        export_cmd,
        predict_cmd,
    ):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    try:
        code: int = args.func(args)
    except AutoMLError as e:
        print(f"automl: error: {e}", file=sys.stderr)
        return 2
    except optuna.exceptions.StorageInternalError as e:
        # Optuna words every failed commit as "invalid data"; a database that refuses writes
        # (a read-only file, a read-only replica) is the user's to fix, so say that in one line.
        cause = _refused_write(e)
        if cause is None:
            raise
        print(
            f"automl: error: the study database refused a write ({cause}); make it writable, "
            "or point --storage at one that is",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("automl: interrupted", file=sys.stderr)
        return 130
    return code


_READ_ONLY = ("readonly database", "read-only transaction", "read only")


def _refused_write(e: BaseException) -> str | None:
    """The database's own words when ``e`` (or what caused it) is a refused write."""
    seen: BaseException | None = e
    while seen is not None:
        text = str(getattr(seen, "orig", None) or seen).strip()
        first = text.splitlines()[0] if text else ""
        if any(words in first.lower() for words in _READ_ONLY):
            return first
        seen = seen.__cause__ or seen.__context__
    return None


if __name__ == "__main__":
    raise SystemExit(main())
