"""Pure decisions of the cluster: where tenants run, and which nodes are alive.

``place(tenants, nodes)`` is rendezvous (highest-random-weight) hashing: each tenant goes to the
node with the highest ``hash(tenant, node)``. Every node computes the same table from the same
set of live nodes, without talking; when a node leaves, only its tenants move (each to the node
that was its second choice), and when it comes back they move back.

``Detector`` is heartbeat bookkeeping with time as a parameter: a member not heard from for
``timeout`` seconds is dead. If the detector itself was not run for ``timeout / 2`` (this
process was paused: SIGSTOP, a debugger, a swapped-out machine), silence proves nothing about
the others: every member gets a fresh grace period instead of being declared dead.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

__all__ = ["place", "owner", "Detector"]


def _weight(tenant: str, node: str) -> int:
    digest = hashlib.blake2b(f"{tenant}\x00{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(tenant: str, nodes: Iterable[str]) -> str | None:
    """The node that runs ``tenant`` among ``nodes`` (None when there is none). Pure."""
    best: tuple[int, str] | None = None
    for node in nodes:
        key = (_weight(tenant, node), node)
        if best is None or key > best:
            best = key
    return None if best is None else best[1]


def place(tenants: Iterable[str], nodes: Iterable[str]) -> dict[str, str]:
    """``{tenant: node}`` for every tenant (empty when there is no node). Pure."""
    members = sorted(set(nodes))
    if not members:
        return {}
    return {t: owner(t, members) for t in tenants}  # type: ignore[misc]  # never None: members is not empty


class Detector:
    """Which members are alive, from when each was last heard. Not thread-safe: one owner."""

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"heartbeat timeout must be positive, got {timeout!r}")
        self.timeout = timeout
        self._last: dict[str, float] = {}
        self._alive: set[str] = set()
        self._last_tick: float | None = None

    def __repr__(self) -> str:
        return f"<Detector alive={sorted(self._alive)} timeout={self.timeout}>"

    def add(self, member: str, now: float) -> None:
        """A new member, alive with a full grace period."""
        self._last[member] = now
        self._alive.add(member)

    def heard(self, member: str, now: float) -> bool:
        """A heartbeat from ``member``; True if it was dead (it is alive again)."""
        self._last[member] = now
        if member in self._alive:
            return False
        self._alive.add(member)
        return True

    def forget(self, member: str) -> None:
        self._last.pop(member, None)
        self._alive.discard(member)

    def is_alive(self, member: str) -> bool:
        return member in self._alive

    def alive(self) -> set[str]:
        return set(self._alive)

    def last_heard(self, member: str) -> float | None:
        return self._last.get(member)

    def tick(self, now: float) -> list[str]:
        """The members that just died (sorted); call it a few times per ``timeout``."""
        paused = self._last_tick is not None and now - self._last_tick > self.timeout / 2
        self._last_tick = now
        if paused:
            for member in self._alive:
                self._last[member] = max(self._last[member], now)
            return []
        dead = sorted(m for m in self._alive if now - self._last[m] > self.timeout)
        self._alive.difference_update(dead)
        return dead
