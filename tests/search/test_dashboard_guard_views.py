"""What the guard changes in the dashboard's answers: the pushed plots in a fixed order, and a
read-only page that says so and hides the controls the server would refuse."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from automl.views.dashboard import CURVES_PLOT_ID, FRONT_PLOT_ID, HYPERVOLUME_PLOT_ID
from automl.views.dashboard_guard import (
    READ_ONLY_MARK,
    READ_ONLY_SCRIPT_PATH,
    DashboardGuard,
    order_plots,
)

PAGE = b"<!DOCTYPE html><html><head><title>Optuna Dashboard</title></head><body><div id='dashboard'></div></body></html>"


def _app(kind: str, body: bytes) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    return app


def _get(guard: DashboardGuard, path: str) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda _b: None

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "HTTP_HOST": "127.0.0.1:8080"}
    body = b"".join(guard(env, start_response))
    return seen["status"], seen["headers"], body


def test_plots_come_in_a_fixed_order_whatever_order_the_storage_gives() -> None:
    shuffled = {
        "zz-user-plot": "{}",
        HYPERVOLUME_PLOT_ID: "{}",
        CURVES_PLOT_ID: "{}",
        FRONT_PLOT_ID: "{}",
    }
    detail = {"name": "s", "plotly_graph_objects": shuffled}
    guard = DashboardGuard(
        _app("application/json", json.dumps(detail).encode()), allowed_hosts=(), read_only=False
    )
    status, headers, body = _get(guard, "/api/studies/1")
    order = list(json.loads(body)["plotly_graph_objects"])
    assert order == [FRONT_PLOT_ID, CURVES_PLOT_ID, HYPERVOLUME_PLOT_ID, "zz-user-plot"]
    assert headers["Content-Length"] == str(len(body)) and status == "200 OK"
    assert list(order_plots({"plotly_graph_objects": {}})["plotly_graph_objects"]) == []


def test_a_read_only_page_says_so_and_hides_what_it_would_refuse() -> None:
    guard = DashboardGuard(_app("text/html; charset=utf-8", PAGE), allowed_hosts=(), read_only=True)
    _, headers, body = _get(guard, "/dashboard/studies/1")
    page = body.decode()
    assert f"<body><div id='{READ_ONLY_MARK}'>This dashboard is read-only" in page
    assert "[aria-label='delete study']" in page and "input[type=file]" in page
    # The script that hides the refused buttons, served by the guard (no inline script: the
    # dashboard's Content-Security-Policy would block it).
    assert f"<script src='{READ_ONLY_SCRIPT_PATH}'></script>" in page
    _, js_headers, script = _get(guard, READ_ONLY_SCRIPT_PATH)
    assert js_headers["Content-Type"].startswith("application/javascript")
    assert b'"Upload"' in script and b'"Edit"' in script and b"MutationObserver" in script
    assert page.index("</style></head>") < page.index(f"<div id='{READ_ONLY_MARK}'>")
    assert headers["Content-Length"] == str(len(body))
    # A writable dashboard's page is left as it is.
    writable = DashboardGuard(_app("text/html", PAGE), allowed_hosts=(), read_only=False)
    assert _get(writable, "/dashboard/studies/1")[2] == PAGE
