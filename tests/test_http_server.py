"""The node's HTTP server under attack: DNS rebinding (a foreign ``Host``), idle connections
that would each hold a thread, a client that drips its request, and a remote bind. Each test
fails on a plain ``ThreadingHTTPServer``."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from actors import ManualClock
from actors.testing import wait_until
from streamvisor._http import HttpServer


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> Iterator[HttpServer]:
    routes = {"/ping": lambda: (b"pong", "text/plain")}
    with HttpServer("127.0.0.1", 0, routes, max_concurrent=2, request_timeout=30.0,
                    clock=clock) as s:
        yield s


def get(server: HttpServer, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.putrequest("GET", "/ping", skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def idle_connection(server: HttpServer) -> socket.socket:
    """A connection that sends half a request line and then nothing."""
    s = socket.create_connection((server.host, server.port), timeout=10)
    s.sendall(b"GET /pi")
    return s


@pytest.mark.parametrize("host", [None, "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_requests_naming_this_server_are_answered(server, host):
    status, body = get(server, host.format(port=server.port) if host else None)
    assert (status, body) == (200, b"pong")


@pytest.mark.parametrize("host", ["attacker.example:{port}", "127.0.0.1.nip.io:{port}",
                                  "localhost:1", "", "127.0.0.1"])
def test_a_foreign_host_header_is_refused_and_counted(server, host):
    status, _ = get(server, host.format(port=server.port))
    assert status == 421
    assert server.statistics().refused_host == 1
    assert server.statistics().served == 0


def test_an_allowed_proxy_name_is_accepted(clock):
    with HttpServer("127.0.0.1", 0, {"/ping": lambda: (b"pong", "text/plain")},
                    allowed_hosts=("status.internal",), clock=clock) as s:
        assert get(s, "status.internal")[0] == 200
        assert get(s, f"status.internal:{s.port}")[0] == 200


def test_past_the_cap_requests_are_refused_at_once_without_a_thread(server):
    held = [idle_connection(server) for _ in range(2)]
    try:
        wait_until(lambda: server.statistics().in_progress == 2, message="two held requests")
        status, body = get(server)
        assert (status, body) == (503, b"too many requests\n")
        assert server.statistics().refused_busy == 1
    finally:
        for s in held:
            s.close()
    wait_until(lambda: server.statistics().in_progress == 0, message="released slots")
    assert get(server)[0] == 200


def test_a_connection_past_its_deadline_is_shut_and_frees_its_slot(server, clock):
    slow = [idle_connection(server) for _ in range(2)]
    try:
        wait_until(lambda: server.statistics().in_progress == 2, message="two held requests")
        clock.advance(59.0)  # within 2 x request_timeout: still held
        assert get(server)[0] == 503
        clock.advance(2.0)
        for s in slow:  # the server shuts them: the client reads EOF (or a 400 for the half line)
            s.settimeout(10)
            data = s.recv(4096)
            assert data == b"" or data.startswith(b"HTTP/1.0 400")
        wait_until(lambda: server.statistics().in_progress == 0, message="slots freed")
        assert server.statistics().timed_out == 2
        assert get(server)[0] == 200
    finally:
        for s in slow:
            s.close()


def test_a_remote_bind_needs_allow_remote():
    with pytest.raises(ValueError, match="not a loopback address"):
        HttpServer("0.0.0.0", 0, {})


@pytest.mark.parametrize("kwargs, field", [({"max_concurrent": 0}, "max_concurrent"),
                                           ({"max_concurrent": True}, "max_concurrent"),
                                           ({"request_timeout": 0}, "request_timeout")])
def test_bad_bounds_are_refused_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        HttpServer("127.0.0.1", 0, {}, **kwargs)
