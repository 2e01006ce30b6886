"""``automl grpc-proxy``: a gRPC storage proxy in front of the study database.

For pools so large that every worker holding its own database connections would exhaust the
server. Workers then use ``--storage grpc://HOST:PORT``. It is Optuna's proxy with automl's calls
beside it (``automl.store.grpc_proxy``): the workers' heartbeats reach Optuna's heartbeat table
through it, so a worker killed outright has its trial retried by the others, direct or proxied,
after the grace period, and a claim costs one call.
"""

from __future__ import annotations

import argparse

from automl.cli.argtypes import port
from automl.errors import StorageError
from automl.store.grpc_proxy import start_proxy_server
from automl.store.storage import default_storage_url, open_storage, redact


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grpc-proxy", help="serve the study database through a gRPC proxy")
    p.add_argument("--storage", default=None, help="database URL (default: $AUTOML_STORAGE)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=port, default=13000, help="TCP port, 1..65535 (default 13000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from optuna.storages import RDBStorage

    url = default_storage_url() if args.storage is None else args.storage
    storage = open_storage(url)
    if not isinstance(storage, RDBStorage):
        raise StorageError(f"--storage {redact(url)} is itself a proxy; give the database's URL")
    server = start_proxy_server(storage, args.host, args.port)
    print(f"gRPC storage proxy for {redact(url)} on {args.host}:{args.port}", flush=True)
    server.wait_for_termination()
    return 0
