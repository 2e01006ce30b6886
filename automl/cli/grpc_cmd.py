"""``automl grpc-proxy``: an Optuna gRPC storage proxy in front of the study database.

For pools so large that every worker holding its own database connections would exhaust the
server. Workers then use ``--storage grpc://HOST:PORT``; their heartbeats pass through the proxy
as trial attributes (``automl.store.grpc_proxy``), so a worker killed outright has its trial
retried by the others, direct or proxied, after the grace period.

The proxy serves the database through Optuna's cached storage, as Optuna's documentation of the
server asks: every client's read of the trials then costs the database only the unfinished and
new ones, not the whole study. Its limits are Optuna's and gRPC's: 10 threads serve the calls
(the others queue), and a request may hold at most 4 MB.
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
    from optuna.storages import get_storage, run_grpc_proxy_server

    url = default_storage_url() if args.storage is None else args.storage
    storage = get_storage(open_storage(url))
    print(f"gRPC storage proxy for {redact(url)} on {args.host}:{args.port}", flush=True)
    run_grpc_proxy_server(storage, host=args.host, port=args.port)
    return 0
