"""A WSGI server one client cannot stall: a thread per connection, with limits on time and size.

The standard library's ``wsgiref`` server (what ``optuna_dashboard.run_server`` uses) serves one
connection at a time, so a single client holding a request half-open blocks every other. Here:

* each connection gets its own thread, and at most ``max_connections`` are served at once (past
  that, a new connection is answered 503 at once and closed);
* the request line, the headers and the body must all arrive within ``request_timeout`` seconds of
  the connection opening, or the connection is cut: a slow or idle client holds one thread for at
  most that long;
* every read and write on the socket waits at most ``idle_timeout`` seconds (a client that stops
  reading its response is dropped);
* headers are limited to ``MAX_HEADER_BYTES`` in all (431), a body to ``max_body_bytes`` (413,
  refused from its Content-Length before it is read), and a chunked body is refused (411): the
  application only sees a request that is complete and bounded.

Each connection carries one request (HTTP/1.0 semantics, as in wsgiref), so an idle kept-alive
connection cannot hold a thread either.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
from socketserver import ThreadingMixIn
from typing import IO, TYPE_CHECKING, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "MAX_HEADER_BYTES",
    "READ_ONLY_MAX_BODY_BYTES",
    "ServerLimits",
    "make_threaded_server",
]

DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_IDLE_TIMEOUT_S = 20.0
DEFAULT_MAX_CONNECTIONS = 64
# The dashboard's largest legitimate body is an artifact upload (a plot or a small file); the
# whole body is held in memory, so connections x this is the most requests can take.
DEFAULT_MAX_BODY_BYTES = 16 << 20
# Without writes (read-only) no request needs a body beyond a small JSON query.
READ_ONLY_MAX_BODY_BYTES = 64 << 10
# A browser's request line and headers (cookies included) stay below 16 KiB.
MAX_HEADER_BYTES = 64 << 10


class ServerLimits:
    """How long and how much a client may take (see the module's docstring)."""

    def __init__(
        self,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes


class _Capped:
    """The request head read through a budget: past ``limit`` bytes it reads as ended, and
    ``exceeded`` says so (the parser would otherwise take a cut header as the end of headers)."""

    def __init__(self, raw: Any, limit: int) -> None:
        self.raw = raw
        self.left = limit
        self.exceeded = False

    def readline(self, size: int | None = -1) -> bytes:
        if self.left <= 0:
            self.exceeded = True
            return b""
        want = self.left + 1 if size is None or size < 0 else min(size, self.left + 1)
        line: bytes = self.raw.readline(want)
        self.left -= len(line)
        if self.left < 0:
            self.exceeded = True
        return line


class _Handler(WSGIRequestHandler):
    server: _ThreadedWSGIServer

    def setup(self) -> None:
        limits = self.server.limits
        super().setup()
        self.connection.settimeout(limits.idle_timeout)  # on every read and write of the socket
        self._receiving = True
        self._late = False
        self._lock = threading.Lock()
        self._deadline = threading.Timer(limits.request_timeout, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        """The request did not arrive in time: end the connection, which wakes the blocked read."""
        with self._lock:
            if not self._receiving:
                return
            self._late = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _received(self) -> bool:
        """Stop the clock once the whole request is in; False when it had already run out."""
        with self._lock:
            self._receiving = False
            late = self._late
        self._deadline.cancel()
        return not late

    def finish(self) -> None:
        self._deadline.cancel()
        with contextlib.suppress(OSError):  # the client went away, or the deadline cut it
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        # One stderr line per request drowns the refusals, which the guard logs itself.
        pass

    def handle(self) -> None:
        # A client too slow (idle_timeout) or gone: there is no one to answer.
        with contextlib.suppress(TimeoutError, ConnectionError):
            self._handle()

    def _handle(self) -> None:
        limits = self.server.limits
        head = _Capped(self.rfile, MAX_HEADER_BYTES)
        real = self.rfile
        self.rfile = head  # type: ignore[assignment]  # parse_request reads the head from rfile
        try:
            self.raw_requestline = head.readline(65537)
            if not self.raw_requestline:
                return  # closed, idle past the deadline, or nothing sent
            if head.exceeded or len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return
            if not self.parse_request():  # an error was sent
                return
        finally:
            self.rfile = real
        if head.exceeded:
            self.send_error(431, f"request headers longer than {MAX_HEADER_BYTES} bytes")
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(411, "send the body with a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(400, "bad Content-Length")
            return
        if length > limits.max_body_bytes:
            self.send_error(413, f"request body larger than {limits.max_body_bytes} bytes")
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length or not self._received():
            return  # the client stopped sending, or the deadline cut it off
        app = self.server.get_app()
        if app is None:  # set by make_threaded_server before the first connection
            raise RuntimeError("the server has no application")
        handler = ServerHandler(
            io.BytesIO(body),
            cast("IO[bytes]", self.wfile),
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back-pointer
        handler.run(app)


class _ThreadedWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    limits: ServerLimits
    _slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Full: answer at once instead of queueing behind the clients already served.
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Retry-After: 1\r\nConnection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_threaded_server(
    host: str, port: int, app: WSGIApplication, limits: ServerLimits | None = None
) -> WSGIServer:
    """Bind ``host:port`` (IPv4 or IPv6 literal, or a name) and serve ``app`` with ``limits``;
    binding errors are the caller's (``OSError``, ``socket.gaierror``)."""
    chosen = limits or ServerLimits()

    class Server(_ThreadedWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        limits = chosen
        _slots = threading.BoundedSemaphore(chosen.max_connections)

    server = Server((host, port), _Handler)
    server.set_app(app)
    return server
