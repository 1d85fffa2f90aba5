"""Heartbeats over UDP: liveness that does not wait behind data.

Every ``interval`` seconds each node sends every other known node one datagram: an
``actors.codec`` frame ``[[cluster, id, incarnation, info, view]]`` followed by an HMAC-SHA256
tag under the cluster cookie (a datagram without a valid tag is dropped and counted). ``view``
lists the members the sender believes alive, so that a node learns about members through
others (gossip). The data plane's TCP connections play no part: a peer stuck behind a full
window, or paused with SIGSTOP, stops heart-beating and is declared dead after ``timeout``.

One thread owns the socket; it calls ``on_datagram(info, view)`` for each authentic heartbeat
and ``on_tick(now)`` a few times per ``timeout``.
"""

from __future__ import annotations

import hashlib
import hmac
import select
import socket
import threading
import time
from typing import Any, Callable

from actors import get_logger
from actors.codec import DecodeError, decode_frame, encode_frame

__all__ = ["Heartbeats"]

_TAG = 32
_log = get_logger(component="cluster.heartbeat")


class Heartbeats:
    def __init__(self, *, cluster: str, cookie: bytes, me: Callable[[], dict[str, Any]],
                 view: Callable[[], list[dict[str, Any]]],
                 targets: Callable[[], list[tuple[str, int]]],
                 on_datagram: Callable[[dict[str, Any], list[dict[str, Any]]], None],
                 on_tick: Callable[[float], None], bind: tuple[str, int], interval: float,
                 name: str) -> None:
        self._cluster = cluster
        self._cookie = cookie
        self._me = me
        self._view = view
        self._targets = targets
        self._on_datagram = on_datagram
        self._on_tick = on_tick
        self.interval = interval
        self.rejected = 0
        self.received = 0
        self.sent = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(bind)
        self._sock.setblocking(False)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"{name}-heartbeat")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._sock.close()

    def _datagram(self) -> bytes:
        me = self._me()
        body = encode_frame([[self._cluster, me["id"], me["inc"], me, self._view()]])
        return body + hmac.new(self._cookie, body, hashlib.sha256).digest()

    def _loop(self) -> None:
        next_send = time.monotonic()
        tick_every = min(self.interval, 0.1)
        next_tick = next_send
        while not self._stop.is_set():
            now = time.monotonic()
            wait = max(0.0, min(next_send, next_tick) - now)
            try:
                ready, _, _ = select.select([self._sock], [], [], wait)
            except (OSError, ValueError):
                return
            if ready:
                self._receive()
            now = time.monotonic()
            if now >= next_send:
                next_send = now + self.interval
                self._send()
            if now >= next_tick:
                next_tick = now + tick_every
                self._on_tick(now)

    def _send(self) -> None:
        try:
            data = self._datagram()
        except Exception as exc:  # noqa: BLE001 - a bad member table must not stop liveness
            _log.error("heartbeat not built", error=repr(exc))
            return
        for target in self._targets():
            try:
                self._sock.sendto(data, target)
                self.sent += 1
            except OSError:
                pass  # unreachable: its silence is the detector's business

    def _receive(self) -> None:
        while True:
            try:
                data, _addr = self._sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            body, tag = data[:-_TAG], data[-_TAG:]
            if len(data) <= _TAG or not hmac.compare_digest(
                    tag, hmac.new(self._cookie, body, hashlib.sha256).digest()):
                self.rejected += 1
                continue
            try:
                records = decode_frame(body)
                cluster, node_id, inc, info, view = records[0]
                if (cluster != self._cluster or not isinstance(node_id, str)
                        or not isinstance(inc, int) or not isinstance(info, dict)
                        or not isinstance(view, list)):
                    raise ValueError("malformed heartbeat")
            except (DecodeError, ValueError, TypeError, IndexError):
                self.rejected += 1
                continue
            self.received += 1
            self._on_datagram(info, view)
