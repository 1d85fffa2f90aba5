"""What the two group-commit engines (SQLite ``_committer``/``_engine``, PostgreSQL
``_pgengine``) share: how the next group is taken and the bookkeeping after it ran
(``GroupCommitBase``), and the per-process registry of engines counted by their users
(``Registry``).

The groups themselves differ and stay with each backend: SQLite runs a group in the caller's
thread when none is running, repairs a damaged file and has raw (outside a transaction) ops;
PostgreSQL reconnects, retries serialisation failures and notifies other hosts.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

__all__ = ["GroupCommitBase", "Registry"]

# Kinds that make records deliverable: a waiting get() is woken after a group holding one.
WAKES = frozenset({"put", "nack", "buffered-nack", "requeue"})


class GroupCommitBase:
    """Mixin for an engine that commits groups of ops. The engine sets ``generation``,
    ``groups``, ``ops``, ``ack_failures`` (0), ``last_ack_error`` (None), ``_records`` (a
    Condition that blocking ``get`` waits on), ``_pending`` (ops waiting, oldest first),
    ``_acks`` (buffered acks: queue -> lease -> ids) and ``_max_group``, and defines
    ``_log_lost(op)``. An op has ``kind``, ``weight``, ``result``, ``error`` and ``done`` (a
    held lock, released when it is finished)."""

    generation: int
    groups: int
    ops: int
    ack_failures: int
    last_ack_error: BaseException | None
    _records: threading.Condition
    _pending: list[Any]
    _acks: dict[Any, dict[int, list[int]]]
    _max_group: int

    def _log_lost(self, op: Any) -> None:
        raise NotImplementedError

    def _next_batch(self, ack_op: Callable[[Any, dict[int, list[int]], int], Any]) -> list[Any]:
        """Take the next group (the caller holds the lock): one ``ack_op(queue, by_lease, n)``
        per queue with buffered acks, then pending ops while the group weighs less than
        ``_max_group`` (at least one op), stopping before a ``raw:`` op (it runs alone)."""
        batch: list[Any] = []
        weight = 0
        for queue, by_lease in self._acks.items():
            n = sum(map(len, by_lease.values()))
            batch.append(ack_op(queue, by_lease, n))
            weight += n
        self._acks = {}
        pending, taken = self._pending, 0
        while (taken < len(pending) and (not batch or weight < self._max_group)
               and not pending[taken].kind.startswith("raw:")):
            weight += pending[taken].weight
            taken += 1
        batch += pending[:taken]
        del pending[:taken]
        return batch

    def _account(self, batch: list[Any]) -> None:
        """After a group ran: count it, count and log the buffered settlements it lost (their
        records are delivered again), give each ``flush`` the failure count, wake waiting
        ``get`` calls when records became deliverable, then release every caller."""
        self.groups += 1
        self.ops += len(batch)
        wake = False
        for op in batch:
            if op.error is None:
                wake = wake or op.kind in WAKES
            elif op.kind.startswith("buffered-"):
                self.ack_failures += 1
                self.last_ack_error = op.error
                self._log_lost(op)
            if op.kind == "flush":
                op.result = self.ack_failures
        if wake:
            with self._records:
                self.generation += 1
                self._records.notify_all()
        for op in batch:
            op.done.release()


class Registry:
    """Engines of one process by key, each counted by its users (``engine.users``,
    ``engine.key``): one engine per file or server, whatever the number of queues on it."""

    def __init__(self) -> None:
        self._engines: dict[Any, Any] = {}
        self._lock = threading.Lock()  # guards _engines and every engine's users

    def acquire(self, key: Any, make: Callable[[], Any]) -> Any:
        """The engine of ``key`` (``make()`` on first use, raising what it raises), with one
        user more."""
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = make()
            engine.users += 1
            return engine

    def release(self, engine: Any) -> bool:
        """One user fewer; True when that was the last one (the caller then closes it)."""
        with self._lock:
            engine.users -= 1
            if engine.users > 0:
                return False
            key = engine.key
            if self._engines.get(key) is engine:
                del self._engines[key]
            return True

    def users(self, label: Callable[[Any], Any] = lambda key: key) -> dict[Any, int]:
        """``{label(key): users}`` of the open engines."""
        with self._lock:
            return {label(key): engine.users for key, engine in self._engines.items()}

    def forget(self) -> None:
        """In a forked child: forget the parent's engines (their threads did not fork)."""
        self._lock = threading.Lock()
        self._engines.clear()
