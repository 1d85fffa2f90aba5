"""Heartbeats over UDP: liveness that does not wait behind data.

Every ``interval`` seconds each node sends every other known node one datagram: an
``actors.codec`` frame ``[[cluster, id, incarnation, info, view, counter, timestamp]]`` followed
by an HMAC-SHA256 tag under the cluster cookie (a datagram without a valid tag is dropped and
counted). Replay protection: ``counter`` starts at the sender's wall clock in nanoseconds and
grows by one per datagram, so ``(incarnation, counter)`` only ever grows for one node id; a
receiver drops (and counts) a datagram that does not beat the last one it accepted from that id,
or whose ``timestamp`` is more than ``clock_window`` seconds (10) away from its own clock. A
heartbeat captured and replayed later is refused; one an attacker captured and kept from ever
arriving can be played once, within the clock window. ``view``
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

from ._ratelog import RateLimitedLog

__all__ = ["Heartbeats"]

_TAG = 32
_log = get_logger(component="cluster.heartbeat")


class Heartbeats:
    def __init__(self, *, cluster: str, cookie: bytes, me: Callable[[], dict[str, Any]],
                 view: Callable[[], list[dict[str, Any]]],
                 targets: Callable[[], list[tuple[str, int]]],
                 on_datagram: Callable[[dict[str, Any], list[dict[str, Any]]], None],
                 on_tick: Callable[[float], None], bind: tuple[str, int], interval: float,
                 name: str, clock_window: float = 10.0,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._cluster = cluster
        self._cookie = cookie
        self._me = me
        self._view = view
        self._targets = targets
        self._on_datagram = on_datagram
        self._on_tick = on_tick
        self.interval = interval
        self.rejected = 0
        self.reasons: dict[str, int] = {}           # rejected, by reason
        self.received = 0
        self.sent = 0
        self.clock_window = clock_window
        self._wall = wall_clock
        self._counter = time.time_ns()
        self._last: dict[str, tuple[int, int]] = {}   # node id -> (incarnation, counter) accepted
        self._warn = RateLimitedLog(_log)
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
        self._counter += 1
        body = encode_frame([[self._cluster, me["id"], me["inc"], me, self._view(),
                              self._counter, int(self._wall() * 1e9)]])
        return body + hmac.new(self._cookie, body, hashlib.sha256).digest()

    def _reject(self, reason: str, **fields: Any) -> None:
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self._warn.warning(reason, "heartbeat rejected", reason=reason,
                           count=self.reasons[reason], **fields)

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
        except Exception as exc:
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
                self._reject("bad_mac", source=str(_addr[0]))
                continue
            try:
                records = decode_frame(body)
                cluster, node_id, inc, info, view, counter, stamp = records[0]
                if (cluster != self._cluster or not isinstance(node_id, str)
                        or not isinstance(inc, int) or not isinstance(info, dict)
                        or not isinstance(view, list) or not isinstance(counter, int)
                        or not isinstance(stamp, int) or info.get("id") != node_id
                        or info.get("inc") != inc):
                    raise ValueError("malformed heartbeat")
            except (DecodeError, ValueError, TypeError, IndexError):
                self._reject("malformed")
                continue
            skew = self._wall() - stamp / 1e9
            if abs(skew) > self.clock_window:
                self._reject("stale", node=node_id, skew=round(skew, 3))
                continue
            last = self._last.get(node_id)
            if last is not None and (inc, counter) <= last:
                self._reject("replayed", node=node_id)
                continue
            self._last[node_id] = (inc, counter)
            self.received += 1
            self._on_datagram(info, view)
