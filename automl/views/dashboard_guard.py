"""A WSGI guard in front of optuna-dashboard: Host-header check, cross-origin writes, read-only.

optuna-dashboard has no authentication: whoever can send it a request can tell trials, delete
studies and upload artifacts. The guard narrows who that is:

* Host header: a web page on another site can point its own domain name at 127.0.0.1 (DNS
  rebinding) and then talk to a loopback dashboard as "same origin". The browser still sends that
  domain in ``Host``, so only the names the dashboard is meant to be reached by are answered.
  IP literals are always accepted: a page whose origin is an IP address was served by that address,
  so no foreign site can use one.
* Origin header on writes: a foreign page can still make a browser send a form POST to the
  dashboard (CSRF); browsers name the page's origin on such requests, and a foreign one is refused.
* Read-only: every method that could change a study is refused, so the dashboard only shows.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["LOOPBACK_NAMES", "SAFE_METHODS", "DashboardGuard", "host_name"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# Methods that only read; everything else (POST, PUT, PATCH, DELETE, ...) may change a study.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

log = logging.getLogger(__name__)


def host_name(header: str | None) -> str | None:
    """The host part of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower-cased;
    None when the header is missing or malformed."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        name = header[1:end]
    else:
        name, _, port = header.partition(":")
        if port and not port.isdigit():
            return None
    name = name.rstrip(".")
    return name or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class DashboardGuard:
    """Wraps a WSGI application; refused requests get 403 with a JSON ``reason`` (what the
    dashboard's UI shows of a failed request)."""

    def __init__(
        self, app: WSGIApplication, *, allowed_hosts: Iterable[str], read_only: bool
    ) -> None:
        self.app = app
        self.allowed_hosts = LOOPBACK_NAMES | {
            n for h in allowed_hosts if (n := host_name(h)) is not None
        }
        self.read_only = read_only

    def host_allowed(self, name: str | None) -> bool:
        return name is not None and (name in self.allowed_hosts or _is_ip(name))

    def refusal(self, environ: WSGIEnvironment) -> str | None:
        """Why the request is refused, or None to pass it on."""
        raw_host = environ.get("HTTP_HOST")
        if not self.host_allowed(host_name(raw_host)):
            return (
                f"Host {raw_host!r} is not a name this dashboard answers to; open it as "
                "localhost or 127.0.0.1, or start it with --allowed-host NAME"
            )
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method in SAFE_METHODS:
            return None
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not self.host_allowed(urlsplit(origin).hostname):
            return f"{method} from the page at {origin!r} refused: cross-site requests cannot write"
        if self.read_only:
            return (
                f"this dashboard is read-only: {method} {environ.get('PATH_INFO', '')} refused; "
                "change studies with the automl CLI, or serve without --read-only"
            )
        return None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        reason = self.refusal(environ)
        if reason is None:
            return self.app(environ, start_response)
        log.warning("dashboard: %s", reason)
        body = json.dumps({"reason": reason}).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
