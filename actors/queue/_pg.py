"""``PostgresQueue``: the durable queue on PostgreSQL, same contract as the SQLite backend.

```python
from actors.queue import DurableQueue

with DurableQueue.postgres("postgresql://postgres@127.0.0.1:5432/test", "readings",
                           tenant="acme", max_deliveries=5, ttl=3600) as q:
    q.put({"device": "d1", "value": 21.5})           # returns once committed on the server
    for d in q.get(max_items=100, timeout=1.0):
        d.ack()                                       # buffered; d.ack(wait=True) / q.flush()
```

What is the same as ``DurableQueue`` on SQLite (the package docstring has the full contract):
put/put_many return ids (unique, increasing, never reused) once committed; ``get`` leases under
a fresh random token and counts the attempt durably; ``Delivery.ack/nack/reject`` are buffered
for the next group commit unless ``wait=True`` (``flush()`` waits), ``ack_many`` waits; a stale
settle changes nothing; visibility timeout, ``max_deliveries`` and TTL (wall-clock deadlines,
``clock.time()``) dead-letter with reasons ``"max_deliveries"``, ``"expired"``,
``"error: <text>"``; ``dead_letters``/``requeue_dead``/``purge_dead``; ``stats()`` with the same
keys; ``max_bytes`` refuses whole puts with ``QueueFull`` and counts them; ``QueueUnavailable``
for a passing fault; ``close()`` and the context manager.

What differs:
- Several processes and hosts consume one queue: claims use ``FOR UPDATE SKIP LOCKED``, so
  they never get the same delivery and never wait for each other.
- Many queues of many tenants share the tables (a ``tenant`` column); ``schema`` (created if
  missing) and ``prefix`` (``<prefix>_messages`` ...) choose the tables. Tables are created
  idempotently with a schema version row; every value is a bound parameter.
- Durability is the server's: "committed" means PostgreSQL acknowledged the COMMIT (with the
  server's default ``synchronous_commit=on``, flushed to its WAL).
- Connection loss or a server that is down raises ``QueueUnavailable`` (``errno``
  ECONNREFUSED/ECONNRESET, the message names ``host:port/db`` and the cause, never the
  password), never anything about corruption; the next call reconnects. A connection that
  fails during COMMIT leaves the outcome unknown (said in the message): a put may have been
  stored although it raised (at least once, as for any broker).
- A waiting ``get(timeout=)`` is woken at once by a put, nack or requeue committed by any
  process or host: each such group sends ``pg_notify`` on the tables' channel, and every engine
  LISTENs on it (one more connection and thread per engine). It also polls every
  ``poll_interval`` (default 0.5 s), which covers a listening connection that is down.
  ``recovery_report`` is always a clean ``RecoveryReport()``: nothing is ever salvaged.
- Durability of claims and buffered settlements: a group made only of claims, reads and
  buffered acks/nacks/rejects commits with ``synchronous_commit = off`` (nobody waits for it),
  like the SQLite backend skipping their fsync: a *server* crash can undo such a claim (the
  record comes back without that attempt counted) or settlement (delivered again); a crash of
  the client process cannot. Puts and every waited call commit synchronously.
- Threads: per engine (one per server, schema and prefix in a process, whatever the number of
  queues and tenants): the committer, a listener for notifications, and a watchdog that cuts a
  group blocked longer than ``io_timeout`` (default 60 s).
- Payloads are decoded with the full checks of ``codec.decode`` (they come from outside the
  process); an undecodable one is dead-lettered as ``"error: undecodable payload (...)"``.
"""

from __future__ import annotations

import secrets
from typing import Any

from .. import codec
from . import _pgengine, _pgops
from ._queue import (DEFAULT_DEAD_LETTER_LIMIT, DEFAULT_MAX_BYTES, DEFAULT_MAX_PAYLOAD,
                     DurableQueue, _check_limits, _check_names, _seconds)
from ._types import DeadLetter, Delivery, QueueClosed, QueueFull, RecoveryReport

__all__ = ["PostgresQueue"]

DEFAULT_PREFIX = "streamvisor_queue"


class PostgresQueue(DurableQueue):
    """A durable at-least-once queue in PostgreSQL tables; see the module docstring.

    A ``DurableQueue`` (so ``QueueSource``/``QueueSink`` accept it); build it with
    ``DurableQueue.postgres(dsn, name, ...)``. Every method is safe from any thread; in one
    process, every queue on the same (dsn, schema, prefix) shares one connection and one
    committer thread.
    """

    def __init__(self, dsn: str, name: str = "default", *, tenant: str | None = None,
                 max_deliveries: int = 5, ttl: float | None = None,
                 visibility_timeout: float = 30.0, clock: Any = None,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
                 max_bytes: int | None = DEFAULT_MAX_BYTES,
                 schema: str | None = None, prefix: str = DEFAULT_PREFIX,
                 connect_timeout: float = 5.0, lock_timeout: float = 30.0,
                 io_timeout: float = 60.0, poll_interval: float = 0.5) -> None:
        if type(dsn) is not str or not dsn:
            raise ValueError(f"dsn must be a non-empty PostgreSQL connection string, got {dsn!r}")
        _check_names(name, tenant)
        for what, ident in (("schema", schema), ("prefix", prefix)):
            if (ident is not None or what == "prefix") and (
                    type(ident) is not str or not _pgops.IDENT.fullmatch(ident)):
                raise ValueError(f"{what} must be an identifier of 1-40 letters, digits and "
                                 f"underscores (not starting with a digit), got {ident!r}")
        clock = _check_limits(max_deliveries, max_payload_bytes, clock)
        self.dsn = dsn
        self.schema, self.prefix = schema, prefix
        self._key = (tenant or "", name)
        self._set_options(name, tenant, max_deliveries, ttl, visibility_timeout,
                          max_payload_bytes, poll_interval, clock, max_bytes)
        self._closed = True  # until the engine is acquired (close() is then a no-op)
        self._engine = _pgengine.acquire(
            dsn, schema, prefix,
            connect_timeout=_seconds("connect_timeout", connect_timeout, positive=True),
            lock_timeout=_seconds("lock_timeout", lock_timeout, positive=True),
            io_timeout=_seconds("io_timeout", io_timeout, positive=True))
        self._writer = self._engine
        self._closed = False
        try:
            self._submit("open", _ensure_counter)
        except BaseException:
            self.close()
            raise

    _OPS: Any = _pgops
    _ENGINES: Any = _pgengine
    _NUL_IN_ERROR = False  # PostgreSQL text cannot hold NUL
    _new_lease = staticmethod(lambda: secrets.randbits(63))

    @property
    def path(self) -> str:  # type: ignore[override]  # a DSN, not a file
        """Where the queue lives: ``host:port/db`` (no secrets) and the tables' prefix."""
        return f"{self._engine.where} {self.schema + '.' if self.schema else ''}{self.prefix}"

    @property
    def recovery_report(self) -> RecoveryReport:  # type: ignore[override]  # no file to recover
        """Always clean: the server owns the bytes, nothing is ever salvaged here."""
        return RecoveryReport()

    def _submit(self, kind: str, fn: Any, *args: Any, weight: int = 1) -> Any:
        if self._closed:
            raise QueueClosed(f"the queue {self.name!r} is closed")
        return self._engine.submit(kind, fn, self._key, *args, weight=weight,
                                   now=self._clock.time())

    def _post(self, kind: str, fn: Any, *args: Any) -> None:
        self._engine.post(kind, fn, self._key, *args, now=self._clock.time())

    # ------------------------------------------------------------------ producing

    def _encode(  # type: ignore[override]
            self, payload: Any, key: str | None) -> tuple[bytes, str | None]:
        return self._encoded(payload, key), key

    def _put(self, items: list[tuple[bytes, str | None]]) -> list[int]:  # type: ignore[override]  # PostgreSQL puts carry no size
        sizes = [_pgops.record_size(p, k) for p, k in items]
        try:
            return self._submit("put", _pgops.put, items, self.ttl, self.max_bytes, sizes,
                                weight=len(items))
        except QueueFull:
            self.refused_full += len(items)
            raise

    @staticmethod
    def _put_each(entries: list[tuple[int, Any, Any]]) -> list[tuple[int, Any]]:
        """``put_each`` for ``(index, queue, payloads)`` entries whose queues share one engine:
        one transaction for all; per entry the ids or the exception that refused it
        (``QueueFull``, ``QueueClosed``, an encoding error). Raises what the transaction
        raised (``QueueUnavailable``): then nothing of them was written."""
        out: list[tuple[int, Any]] = []
        parts, owners = [], []
        for index, q, payloads in entries:
            if q._closed:
                out.append((index, QueueClosed(f"the queue {q.name!r} is closed")))
                continue
            try:
                items = [q._encode(p, None) for p in payloads]
            except (TypeError, ValueError) as exc:
                out.append((index, exc))
                continue
            parts.append((q._key, q._clock.time(), items, q.ttl, q.max_bytes,
                          [_pgops.record_size(p, k) for p, k in items]))
            owners.append((index, q))
        if not parts:
            return out
        engine = owners[0][1]._engine
        results = engine.submit("put", _put_all, None, parts,
                                weight=max(1, sum(len(p[2]) for p in parts)),
                                locks=tuple(sorted({p[0] for p in parts})))
        for (index, q), part, (ids, error) in zip(owners, parts, results):
            if isinstance(error, QueueFull):
                q.refused_full += len(part[2])
            out.append((index, ids if error is None else error))
        return out

    # ------------------------------------------------------------------ consuming

    def _deliveries(self, rows: list[tuple[Any, ...]], lease: int) -> list[Delivery]:
        out = []
        for id_, attempts, key, payload in rows:
            try:
                value = codec.decode(payload)
            except codec.DecodeError as exc:
                self._submit("reject", _pgops.settle, id_, lease, "reject", 0.0,
                             f"undecodable payload ({exc})", self.max_deliveries)
                continue
            out.append(Delivery(self, id_, value, attempts, key, lease))
        return out

    # ------------------------------------------------------------------ dead letters, stats

    def dead_letters(self, limit: int = DEFAULT_DEAD_LETTER_LIMIT) -> list[DeadLetter]:
        """Dead records, oldest first, at most ``limit``. Sweeps expiries first."""
        if type(limit) is not int or limit < 0:
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        rows = self._submit("read", _pgops.dead_letters, self.max_deliveries, limit)
        out = []
        for id_, payload, reason, attempts in rows:
            value: Any = payload
            try:
                value = codec.decode(payload)
            except codec.DecodeError:
                pass  # kept as raw bytes; its reason says it was undecodable
            out.append(DeadLetter(id_, value, reason, attempts))
        return out

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "PostgresQueue":
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        who = "" if self.tenant is None else f" tenant={self.tenant!r}"
        return (f"<PostgresQueue {self.name!r}{who} at {self.path} {state} "
                f"groups={self._engine.groups} ops={self._engine.ops}>")


def _put_all(tx: _pgops.Tx, _qk: None, parts: list[tuple[Any, ...]]) -> list[Any]:
    out: list[Any] = []
    for qk, now, items, ttl, max_bytes, sizes in parts:
        tx.now = now
        try:
            out.append((_pgops.put(tx, qk, items, ttl, max_bytes, sizes), None))
        except _pgops.Refused as refused:  # wrote nothing for this queue; the others go on
            out.append((None, refused.error))
    return out


def _ensure_counter(tx: _pgops.Tx, qk: tuple[str, str]) -> None:
    tx.cur.execute(tx.sql.ensure_counter, qk)


def drop_tables(dsn: str, *, schema: str | None = None, prefix: str = DEFAULT_PREFIX) -> None:
    """Drop the queue tables of (schema, prefix) (and the schema, when given and empty then).
    For tests and tear-down; every queue on them must be closed."""
    import psycopg

    for what, ident in (("schema", schema), ("prefix", prefix)):
        if (ident is not None or what == "prefix") and (
                type(ident) is not str or not _pgops.IDENT.fullmatch(ident)):
            raise ValueError(f"bad {what} {ident!r}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        statements = _pgops.Sql(conn, schema, prefix)
        conn.execute(statements.drop)
        left = schema and conn.execute(
            "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON c.relnamespace = n.oid"
            " WHERE n.nspname = %s", (schema,)).fetchone()[0]
        if schema and not left:
            from psycopg import sql
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} RESTRICT").format(
                sql.Identifier(schema)))
