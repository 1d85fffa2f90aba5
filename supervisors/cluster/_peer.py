"""``Peer``: what this node knows about one other node during one of its lives.

A ``Peer`` is made when a node (an id and an incarnation) becomes alive in this node's view,
and retired when it is declared dead; a node heard again afterwards gets a fresh ``Peer`` (new
outbox, no proxies, no pending asks), so nothing from before its death leaks into its new life.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

from ._conn import Connection, LinkStats
from ._outbox import Outbox

__all__ = ["Peer", "MemberInfo"]

MemberInfo = dict[str, Any]
"""``{"id", "inc", "data": [host, port], "hb": [host, port], "admin", "pid"}``: how to reach a
node and where it runs (``admin`` names the thespian system that can restart it)."""


class Peer:
    """One life of another node. ``pending`` holds this node's asks and lookups waiting for the
    peer's REPLY (lock: ``_lock``, dict updates only)."""

    def __init__(self, info: MemberInfo, *, can_block: Callable[[], bool], limit: int,
                 window: int, block_timeout: float) -> None:
        self.id: str = info["id"]
        self.incarnation: int = info["inc"]
        self.info = info
        self.alive = True
        self.outbox = Outbox(self.id, limit=limit, window=window, block_timeout=block_timeout)
        self.conn: Connection | None = None
        self.stats = LinkStats()
        self.can_block = can_block
        self.interest: dict[Any, dict[str, int]] = {}   # namespace -> {filter: count}
        self.next_dial = 0.0
        self.dial_backoff = 0.05
        self._lock = threading.Lock()
        self._corr = itertools.count(1)
        self._pending: dict[int, Any] = {}
        self.dead_letters = 0

    def __repr__(self) -> str:
        state = "alive" if self.alive else "dead"
        conn = "connected" if self.conn is not None else "unconnected"
        return f"<Peer {self.id}#{self.incarnation} {state} {conn} {self.outbox!r}>"

    @property
    def data_address(self) -> tuple[str, int]:
        host, port = self.info["data"]
        return host, int(port)

    @property
    def hb_address(self) -> tuple[str, int]:
        host, port = self.info["hb"]
        return host, int(port)

    def expect(self, waiter: Any) -> int:
        """Register a waiter for a REPLY; returns its correlation id."""
        corr = next(self._corr)
        with self._lock:
            self._pending[corr] = waiter
        return corr

    def forget(self, corr: int) -> None:
        with self._lock:
            self._pending.pop(corr, None)

    def resolve(self, corr: Any) -> Any:
        with self._lock:
            return self._pending.pop(corr, None)

    def take_pending(self) -> list[Any]:
        with self._lock:
            waiters = list(self._pending.values())
            self._pending.clear()
            return waiters

    def count_dead_letter(self) -> None:
        self.dead_letters += 1
