"""``automl dashboard`` under clients that misbehave, over real sockets on 127.0.0.1: one client
holding a request half-open, trickling it, or sitting idle does not stall the others and is cut
at the request deadline; oversized headers and bodies are refused before they are read; past the
connection limit a client is told 503 at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from automl import create_study
from tests.helpers import REPO, free_port, write_space

REQUEST_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 4


class Dashboard:
    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def get(self, path: str = "/api/meta", timeout: float = 5.0) -> int:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return int(r.status)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    root = tmp_path_factory.mktemp("dashboard-server")
    url = f"sqlite:///{root / 'studies.db'}"
    create_study(write_space(root), storage=url, artifact_dir=root / "art")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    argv = ["dashboard", "--storage", url, "--port", str(port), "--read-only"]
    argv += ["--request-timeout", str(REQUEST_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl", *argv],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    d = Dashboard(port)
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dashboard exited {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if d.get() == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("dashboard did not answer within 90 s")
                time.sleep(0.3)
        yield d
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def _closed_by_server(s: socket.socket, within: float) -> float:
    """Seconds until the server ends the connection (read returns nothing or resets)."""
    start = time.monotonic()
    s.settimeout(within)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def _status(s: socket.socket) -> int:
    s.settimeout(10)
    head = s.recv(4096)
    return int(head.split(b" ", 2)[1])


def test_a_half_open_request_does_not_stall_others_and_is_cut(dashboard: Dashboard) -> None:
    held = dashboard.connect()
    held.sendall(b"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: never ends
    trickle = dashboard.connect()
    trickle.sendall(b"GET /api/meta HTTP/1.1\r\n")
    try:
        started = time.monotonic()
        for _ in range(3):
            assert dashboard.get(timeout=5) == 200
        served_in = time.monotonic() - started
        # A byte every 0.2 s keeps every read short of the idle timeout; the request deadline
        # still ends it.
        cut_at = None
        for _ in range(int(4 * REQUEST_TIMEOUT_S / 0.2)):
            try:
                trickle.sendall(b"X")
            except OSError:
                cut_at = time.monotonic() - started
                break
            time.sleep(0.2)
        assert cut_at is not None and cut_at < 3 * REQUEST_TIMEOUT_S, cut_at
        assert _closed_by_server(held, within=3 * REQUEST_TIMEOUT_S) < 3 * REQUEST_TIMEOUT_S
    finally:
        held.close()
        trickle.close()
    assert served_in < REQUEST_TIMEOUT_S, "the other requests waited for the half-open one"


def test_an_idle_connection_is_closed_at_the_deadline(dashboard: Dashboard) -> None:
    with dashboard.connect() as idle:
        waited = _closed_by_server(idle, within=5 * REQUEST_TIMEOUT_S)
    assert REQUEST_TIMEOUT_S * 0.8 <= waited < 3 * REQUEST_TIMEOUT_S, waited


def test_oversized_heads_and_bodies_are_refused_before_they_are_read(
    dashboard: Dashboard,
) -> None:
    with dashboard.connect() as s:
        filler = b"".join(b"X-Fill-%d: %s\r\n" % (i, b"a" * 1000) for i in range(80))
        s.sendall(b"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1\r\n" + filler + b"\r\n")
        assert _status(s) == 431
    with dashboard.connect() as s:
        # 10 GiB announced, nothing sent: refused from the header alone.
        s.sendall(
            b"POST /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10737418240\r\n\r\n"
        )
        assert _status(s) == 413
    with dashboard.connect() as s:
        s.sendall(
            b"POST /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        assert _status(s) == 411
    assert dashboard.get() == 200


def test_past_the_connection_limit_a_client_is_told_at_once(dashboard: Dashboard) -> None:
    held = [dashboard.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        for s in held:
            s.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.3)  # the server has taken them all
        with dashboard.connect() as extra:
            started = time.monotonic()
            assert _status(extra) == 503
            assert time.monotonic() - started < REQUEST_TIMEOUT_S
    finally:
        for s in held:
            s.close()
    # The slots come back as soon as those clients are gone.
    deadline = time.monotonic() + 3 * REQUEST_TIMEOUT_S
    while True:
        try:
            assert dashboard.get() == 200
            break
        except urllib.error.HTTPError as e:
            if e.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
