"""``automl dashboard``: optuna-dashboard on the study storage and artifact folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from automl.cli.common import add_storage_args
from automl.storage import default_storage_url, normalize_url, open_storage, redact


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve optuna-dashboard for the storage")
    add_storage_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=run)


def artifact_dir_for(storage_url: str, explicit: str | None) -> Path:
    from automl.study import default_artifact_dir

    return Path(explicit).resolve() if explicit else default_artifact_dir(storage_url)


def run(args: argparse.Namespace) -> int:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    url = normalize_url(default_storage_url() if args.storage is None else args.storage)
    storage = open_storage(url, must_exist=True)
    art = artifact_dir_for(url, args.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    print(
        f"optuna-dashboard for {redact(url)} (artifacts {art}) on http://{args.host}:{args.port}/"
    )
    run_server(
        storage, host=args.host, port=args.port, artifact_store=FileSystemArtifactStore(str(art))
    )
    return 0
