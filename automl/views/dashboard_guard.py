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
* Read-only: every method that could change a study is refused, so the dashboard only shows; and
  the page says so in a bar at its top and hides the controls that would be refused (create,
  rename, delete, upload, note editing, marking trials), so nobody types a note to lose it.

It also fixes the order of the plots pushed to a study (``automl.views.dashboard.PLOT_ORDER``):
optuna-dashboard lists them through a set, in an order that changes between server processes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from automl.views.dashboard import PLOT_ORDER

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "LOOPBACK_NAMES",
    "READ_ONLY_MARK",
    "READ_ONLY_SCRIPT_PATH",
    "REFUSED_ICONS",
    "SAFE_METHODS",
    "DashboardGuard",
    "host_name",
    "order_plots",
]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# Methods that only read; everything else (POST, PUT, PATCH, DELETE, ...) may change a study.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

log = logging.getLogger(__name__)

# The study detail the dashboard polls: it carries the pushed plots.
_STUDY_DETAIL = re.compile(r"^/api/studies/\d+/?$")
# The id of the bar a read-only page shows (what the browser tests look for).
READ_ONLY_MARK = "automl-read-only"
# Buttons the read-only server would refuse, by their label in optuna-dashboard 0.21's UI.
_REFUSED_TEXT = (
    "Create",
    "Upload",
    "Edit",
    "Save",
    "Rename",
    "Delete",
    "Delete study",
    "Delete artifact",
    "Remove",
    "Fail Trial",
    "Complete Trial",
    "Prune Trial",
    "Submit",
    "Upload a New File",
    "Upload a New Image",
    "Insert an image",
    "Undo",
)
_REFUSED_LABELS = ("delete study", "rename study", "delete artifact", "skip trial")
# Icon buttons without a label (the note's pencil, uploads), by their MUI icon's test id.
REFUSED_ICONS = (
    "EditIcon",
    "ModeEditIcon",
    "DeleteIcon",
    "UploadFileIcon",
    "DriveFileRenameOutlineIcon",
    "SaveIcon",
    "AddBoxIcon",
)
_READ_ONLY_HEAD = (
    "<style>"
    + ", ".join(f"[aria-label='{a}']" for a in _REFUSED_LABELS)
    + ", "
    + ", ".join(f"button:has(svg[data-testid='{i}'])" for i in REFUSED_ICONS)
    + ", input[type=file] { display: none !important; }"
    f"#{READ_ONLY_MARK} {{ position: sticky; top: 0; z-index: 2000; background: #fff3cd; "
    "color: #664d03; padding: 6px 12px; font: 14px system-ui, sans-serif; "
    "border-bottom: 1px solid #e0c36a; }"
    "</style>"
)
# Served by the guard itself: the dashboard's Content-Security-Policy allows scripts from its own
# origin only, not inline ones.
READ_ONLY_SCRIPT_PATH = "/automl/read-only.js"
_READ_ONLY_BODY = (
    f"<div id='{READ_ONLY_MARK}'>This dashboard is read-only: it shows the studies and refuses "
    "every change (notes, uploads, deletions, trial states). Change studies with the automl "
    f"command line.</div><script src='{READ_ONLY_SCRIPT_PATH}'></script>"
)
_READ_ONLY_SCRIPT = (
    "(function () {"
    f"var refused = {json.dumps(list(_REFUSED_TEXT))};"
    "function hide() {"
    "  document.querySelectorAll('button, [role=button], label').forEach(function (b) {"
    "    var text = (b.textContent || '').trim();"
    "    if (refused.indexOf(text) >= 0 && b.style.display !== 'none') {"
    "      b.style.display = 'none';"
    "    }"
    "  });"
    "}"
    "new MutationObserver(hide).observe(document.documentElement,"
    " {childList: true, subtree: true});"
    "hide();"
    "})();"
).encode()


def order_plots(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` (a study's JSON from the dashboard's API) with its pushed plots in
    ``PLOT_ORDER``, any others after them by id: the page lists them in this order."""
    plots = detail.get("plotly_graph_objects")
    if isinstance(plots, dict):
        rank = {pid: i for i, pid in enumerate(PLOT_ORDER)}
        ordered = sorted(plots, key=lambda pid: (rank.get(pid, len(rank)), pid))
        detail["plotly_graph_objects"] = {pid: plots[pid] for pid in ordered}
    return detail


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
            method = str(environ.get("REQUEST_METHOD", "GET")).upper()
            path = str(environ.get("PATH_INFO", ""))
            if self.read_only and method == "GET" and path == READ_ONLY_SCRIPT_PATH:
                start_response(
                    "200 OK",
                    [
                        ("Content-Type", "application/javascript; charset=utf-8"),
                        ("Content-Length", str(len(_READ_ONLY_SCRIPT))),
                    ],
                )
                return [_READ_ONLY_SCRIPT]
            if method == "GET" and (_STUDY_DETAIL.match(path) or self.read_only):
                return self._rewritten(environ, start_response, path)
            return self.app(environ, start_response)
        log.warning("dashboard: %s", reason)
        body = json.dumps({"reason": reason}).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _rewritten(
        self, environ: WSGIEnvironment, start_response: StartResponse, path: str
    ) -> Iterable[bytes]:
        """The application's answer, with the plots in order (study detail) or, read-only, the
        page's bar and hidden write controls (HTML)."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            # The body comes back through the iterable: nothing is written directly.
            return lambda _data: None

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        headers: list[tuple[str, str]] = captured.get("headers", [])
        kind = next((v for k, v in headers if k.lower() == "content-type"), "")
        encoded = any(k.lower() == "content-encoding" for k, _ in headers)
        status = str(captured.get("status", "200 OK"))
        if not encoded and status.startswith("200"):
            if _STUDY_DETAIL.match(path) and kind.startswith("application/json"):
                # Not the JSON expected: passed on as it came.
                with contextlib.suppress(ValueError):
                    body = json.dumps(order_plots(json.loads(body))).encode()
            elif self.read_only and kind.startswith("text/html"):
                page = body.decode("utf-8", errors="replace")
                page = page.replace("</head>", _READ_ONLY_HEAD + "</head>", 1)
                page = re.sub(
                    r"(<body[^>]*>)", lambda m: m.group(1) + _READ_ONLY_BODY, page, count=1
                )
                body = page.encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]
