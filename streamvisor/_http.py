"""A small, bounded HTTP server of GET routes: the node's ``/metrics`` and ``/status.json``.

What it promises, each against a named attack (``tests/test_http_server.py``):

| attack                                    | defence                                           |
|-------------------------------------------|---------------------------------------------------|
| a web page in the operator's browser reads | the ``Host`` header must name this server         |
| the status through DNS rebinding           | (its address, ``localhost`` or an allowed name):  |
|                                           | otherwise 421, counted                            |
| many idle connections (one thread each)   | at most ``max_concurrent`` requests in progress;  |
|                                           | past it 503 at once, no thread started, counted   |
| a client that sends one byte at a time    | ``request_timeout`` per read and a total deadline |
| (slowloris)                               | per connection: overdue ones are shut, counted    |
| a huge request line or header block       | the stdlib's bounds (64 KiB line, 100 headers)    |
| exposing the status beyond the host       | a non-loopback bind needs ``allow_remote=True``   |

Threads: ``serve_forever`` on one daemon thread, plus one thread per request in progress (so at
most ``max_concurrent`` of them). Routes run on the request's thread; they must not block for
long (see ``streamvisor.top``). ``statistics()`` is safe from any thread.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from actors.lowlevel import check_number

__all__ = ["HttpServer", "HttpStatistics", "Route", "is_loopback"]

Route = Callable[[], tuple[bytes, str]]
_REFUSAL = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 18\r\nConnection: close\r\n\r\ntoo many requests\n")


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or an address) resolves to a loopback address."""
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class HttpStatistics:
    """Counters since the server started: requests answered, refused for the concurrency cap,
    refused for a foreign ``Host`` header, and connections shut for overrunning their deadline."""

    served: int
    refused_busy: int
    refused_host: int
    timed_out: int
    in_progress: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: "HttpServer", address: tuple[str, int], handler: Any) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.owner._admit(request):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._release(request)

    def service_actions(self) -> None:  # the serve_forever thread, every poll interval
        self.owner._expire()


class HttpServer:
    """Serve ``routes`` (``{"/path": () -> (body, content type)}``) on ``host:port``.

    ``allowed_hosts``: more names that clients may put in the ``Host`` header (a reverse proxy's
    name, say); the bound address, ``localhost``, ``127.0.0.1`` and ``[::1]`` (with this port)
    are always allowed. ``max_concurrent`` requests run at once; ``request_timeout`` seconds
    bound each read, and ``request_timeout * 2`` a whole connection. ``clock`` is for tests
    (a ``ManualClock`` drives the deadline). Returns once listening; raises ``OSError`` if the
    port is taken and ``ValueError`` for a non-loopback host without ``allow_remote``."""

    def __init__(self, host: str, port: int, routes: dict[str, Route], *,
                 allow_remote: bool = False, allowed_hosts: tuple[str, ...] = (),
                 max_concurrent: int = 8, request_timeout: float = 5.0,
                 clock: Any = None) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to serve node status on {host!r}: not a loopback "
                             "address (pass allow_remote=True to expose it)")
        check_number(max_concurrent, "max_concurrent", integer=True, low=1, high=1024)
        check_number(request_timeout, "request_timeout", positive=True, high=300, unit="seconds")
        self._now: Callable[[], float] = clock.now if clock is not None else time.monotonic
        self._deadline = 2.0 * float(request_timeout)
        self._max = max_concurrent
        # _lock guards _active (socket -> when it was admitted) and the counters below.
        self._lock = threading.Lock()
        self._active: dict[Any, float] = {}
        self._served = self._refused_busy = self._refused_host = self._timed_out = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            timeout = float(request_timeout)  # each read of the request: slow clients end here

            def do_GET(self) -> None:
                if not owner._host_allowed(self.headers.get("Host")):
                    owner._count("_refused_host")
                    self._send(421, b"the Host header does not name this server\n", "text/plain")
                    return
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self._send(404, b"not found; try " + " ".join(routes).encode(), "text/plain")
                    return
                try:
                    body, ctype = route()
                except Exception as exc:  # one failed request must not stop the server
                    self._send(500, f"{type(exc).__name__}: {exc}".encode(), "text/plain")
                    return
                owner._count("_served")
                self._send(200, body, ctype)

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(self, (host, port), Handler)
        host_seen, self.port = self._server.server_address[:2]
        self.host = host_seen.decode() if isinstance(host_seen, bytes) else str(host_seen)
        self.url = f"http://{self.host}:{self.port}"
        names = {str(self.host), "localhost", "127.0.0.1", "[::1]", *allowed_hosts}
        self._hosts = frozenset(f"{n.lower()}:{self.port}" for n in names) | frozenset(
            n.lower() for n in allowed_hosts)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,),
                                        name=f"streamvisor-http-{self.port}", daemon=True)
        self._thread.start()

    # -- bounds ----------------------------------------------------------------------------------
    def _host_allowed(self, host: str | None) -> bool:
        # HTTP/1.0 clients may omit Host; browsers (the rebinding attack) always send it.
        return host is None or host.strip().lower() in self._hosts

    def _admit(self, request: Any) -> bool:
        with self._lock:
            if len(self._active) < self._max:
                self._active[request] = self._now()
                return True
            self._refused_busy += 1
        try:  # a short answer on the accepting thread: no thread is started for it
            request.settimeout(0.5)
            request.sendall(_REFUSAL)
        except OSError:
            pass
        return False

    def _release(self, request: Any) -> None:
        with self._lock:
            self._active.pop(request, None)

    def _expire(self) -> None:
        """Shut connections older than the deadline (their thread then sees EOF and ends)."""
        now = self._now()
        with self._lock:
            overdue = [s for s, t in self._active.items() if now - t > self._deadline]
            self._timed_out += len(overdue)
            for s in overdue:
                self._active[s] = float("inf")  # counted once; released by its thread
        for s in overdue:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def statistics(self) -> HttpStatistics:
        with self._lock:
            return HttpStatistics(self._served, self._refused_busy, self._refused_host,
                                  self._timed_out, len(self._active))

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving and close the socket; blocks up to ~0.2 s. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5.0)
        self._server.server_close()

    def __enter__(self) -> "HttpServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<HttpServer {self.url} in_progress={s.in_progress}/{self._max}>"
