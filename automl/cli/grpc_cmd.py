"""``automl grpc-proxy``: an Optuna gRPC storage proxy in front of the study database.

For pools so large that every worker holding its own database connections would exhaust the
server. Workers then use ``--storage grpc://HOST:PORT``. Heartbeats (and so the retry of trials
whose worker died) need a direct database connection: keep at least one direct worker, or run
``automl status`` against the database now and then, which fails stale trials.
"""

from __future__ import annotations

import argparse

from automl.cli.argtypes import port
from automl.store.storage import default_storage_url, open_storage, redact


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grpc-proxy", help="serve the study database through Optuna's gRPC proxy")
    p.add_argument("--storage", default=None, help="database URL (default: $AUTOML_STORAGE)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=port, default=13000, help="TCP port, 1..65535 (default 13000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from optuna.storages import run_grpc_proxy_server

    url = default_storage_url() if args.storage is None else args.storage
    storage = open_storage(url)
    print(f"gRPC storage proxy for {redact(url)} on {args.host}:{args.port}", flush=True)
    run_grpc_proxy_server(storage, host=args.host, port=args.port)
    return 0
