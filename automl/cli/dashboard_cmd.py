"""``automl dashboard``: optuna-dashboard on the study storage and artifact folder.

Served on loopback unless ``--allow-remote`` says otherwise, behind a guard that checks the Host
header and, with ``--read-only``, refuses every request that could change a study (see
``automl.views.dashboard_guard``).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from automl.cli.argtypes import port, positive_float, positive_int
from automl.cli.common import add_storage_args
from automl.cli.http_server import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT_S,
    READ_ONLY_MAX_BODY_BYTES,
    ServerLimits,
    make_threaded_server,
)
from automl.errors import ConfigError, StorageError
from automl.store.attrs import StudyAttr
from automl.store.storage import default_storage_url, normalize_url, open_storage, redact

if TYPE_CHECKING:
    from collections.abc import Iterable
    from wsgiref.simple_server import WSGIServer

    import optuna
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve optuna-dashboard for the storage",
        description="optuna-dashboard has no login: whoever reaches the port can read and, "
        "unless --read-only, change every study in the storage.",
    )
    add_storage_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=port, default=8080, help="TCP port, 1..65535 (default 8080)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (anyone who reaches it can use the dashboard)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="refuse every request that would change a study (tell, delete, notes, uploads)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the dashboard may be opened by, besides localhost and IP addresses "
        "(repeatable; e.g. the machine's DNS name behind --allow-remote)",
    )
    p.add_argument(
        "--request-timeout",
        type=positive_float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        metavar="S",
        help="seconds a client has to send a whole request before its connection is cut "
        f"(default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections served at once; more are answered 503 at once "
        f"(default {DEFAULT_MAX_CONNECTIONS})",
    )
    p.set_defaults(func=run)


def artifact_dir_for(storage_url: str, explicit: str | None) -> Path:
    from automl.search.study import default_artifact_dir

    return Path(explicit).resolve() if explicit else default_artifact_dir(storage_url)


def _bind_name(host: str) -> str:
    # "[::1]" is how people write an IPv6 address next to a port; sockets want it bare.
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    name = _bind_name(host)
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except socket.gaierror:
        raise ConfigError(
            f"--host {host!r} is not an address of this machine and does not resolve; "
            "use 127.0.0.1 (or an address of this machine with --allow-remote)"
        ) from None
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _server(host: str, port_: int, app: WSGIApplication, limits: ServerLimits) -> WSGIServer:
    """Bind a threaded server with time and size limits (``automl.cli.http_server``: one slow
    client cannot stall the others), with binding errors as one line each."""
    name = _bind_name(host)
    try:
        return make_threaded_server(name, port_, app, limits)
    except socket.gaierror:
        raise ConfigError(
            f"--host {host!r} does not resolve; use 127.0.0.1 or an address of this machine"
        ) from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"--port {port_} is already in use on {host} (another dashboard?); "
                "pick a free one with --port"
            ) from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"--host {host!r} is not an address of this machine; use 127.0.0.1 or one of its "
                "own addresses"
            ) from None
        if e.errno == errno.EACCES:
            raise ConfigError(
                f"--port {port_} needs privileges to bind; pick one above 1023"
            ) from None
        raise ConfigError(
            f"cannot serve on {host}:{port_}: {e.strerror or type(e).__name__}; "
            "check --host and --port"
        ) from None


def _study_id(storage: optuna.storages.BaseStorage, name: str, url: str) -> int:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        names = [s.study_name for s in storage.get_all_studies()]
        raise StorageError(
            f"no study named {name!r} in {redact(url)}; existing studies: "
            f"{', '.join(names) or 'none'} (drop --study to serve them all)"
        ) from None


def _opening_on(app: WSGIApplication, study_id: int) -> WSGIApplication:
    """``app`` with its root redirected to the study's page: the URL printed at start (and the
    one a browser is pointed at) opens on ``--study``; the home button still lists every study."""
    target = f"/dashboard/studies/{study_id}"

    def redirecting(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") in ("", "/"):
            start_response("302 Found", [("Location", target), ("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)

    return redirecting


def _publish(storage: optuna.storages.BaseStorage, only: str | None) -> None:
    """Push automl's plots and missing trial notes to every automl study served (``only``: that
    one), so that they show even for studies whose workers predate them. Studies made by plain
    Optuna hold no space and are left as they are."""
    import optuna

    from automl.space import SearchSpace
    from automl.views.dashboard import publish_study

    for summary in storage.get_all_studies():
        raw = summary.user_attrs.get(StudyAttr.SPACE)
        if raw is None or (only is not None and summary.study_name != only):
            continue
        try:
            space = SearchSpace.from_dict(raw)
        except Exception as e:  # a space stored by another automl version: show the study anyway
            print(f"automl: warning: study {summary.study_name!r}: {e}", file=sys.stderr)
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if not publish_study(study, space):
            print(
                f"automl: warning: could not push plots of study {summary.study_name!r}; "
                "the dashboard shows it without them",
                file=sys.stderr,
            )


def run(args: argparse.Namespace) -> int:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    from automl.views.dashboard_guard import DashboardGuard

    local = is_loopback(args.host)
    if not local and not args.allow_remote:
        raise ConfigError(
            f"--host {args.host} would serve the dashboard beyond this machine, and it has no "
            "login; add --allow-remote (with --read-only) to mean it, or use --host 127.0.0.1"
        )
    url = normalize_url(default_storage_url() if args.storage is None else args.storage)
    # Read-write, the dashboard stores plots, notes and tells: the database must take writes.
    storage = open_storage(url, must_exist=True, write=not args.read_only)
    study_id = _study_id(storage, args.study, url) if args.study else None
    if not args.read_only:
        # --read-only promises no write to the studies; the workers push the plots after every
        # trial anyway.
        _publish(storage, args.study)
    art = artifact_dir_for(url, args.artifacts)
    if not args.read_only:
        try:
            art.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"artifact folder {art} cannot be created: {e.strerror}; pass --artifacts"
            ) from None
    allowed = list(args.allowed_host)
    if not local:
        # The machine's own name is how colleagues open a remote dashboard.
        allowed.append(socket.gethostname())
    allowed.append(_bind_name(args.host))
    served = wsgi(storage, artifact_store=FileSystemArtifactStore(str(art)))
    app = DashboardGuard(
        served if study_id is None else _opening_on(served, study_id),
        allowed_hosts=allowed,
        read_only=args.read_only,
    )
    limits = ServerLimits(
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
        max_body_bytes=READ_ONLY_MAX_BODY_BYTES if args.read_only else DEFAULT_MAX_BODY_BYTES,
    )
    server = _server(args.host, args.port, app, limits)
    if not local:
        print(
            f"automl: warning: the dashboard listens on {args.host}:{args.port}: anyone who can "
            "reach this port can read"
            + (" every study" if args.read_only else " and change every study (no --read-only)"),
            file=sys.stderr,
            flush=True,
        )
    name = "127.0.0.1" if _is_unspecified(args.host) else _bind_name(args.host)
    shown = f"[{name}]" if ":" in name else name
    base = f"http://{shown}:{args.port}"
    mode = "read-only" if args.read_only else "read-write"
    print(f"optuna-dashboard ({mode}) for {redact(url)} (artifacts {art}) on {base}/", flush=True)
    if study_id is not None:
        # The root redirects there too (_opening_on).
        print(f"study {args.study!r}: {base}/dashboard/studies/{study_id}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _is_unspecified(host: str) -> bool:
    """0.0.0.0 or ::, which listen everywhere but cannot be opened in a browser."""
    try:
        return ipaddress.ip_address(_bind_name(host)).is_unspecified
    except ValueError:
        return False
