"""The PostgreSQL queue's tables and transactions (the SQLite backend's ``_schema`` + ``_ops``).

Tables (names are ``<prefix>_...``, in ``schema`` when one is given; every value is a bound
parameter, identifiers are quoted by ``psycopg.sql``):

- ``<prefix>_messages``: one row per record, of every queue of every tenant. ``tenant`` is
  ``''`` for a queue without one. ``state``: 0 READY (deliverable once ``visible_at <= now``;
  a nacked or timed-out record waits here), 1 LEASED (in flight until ``visible_at``), 2 DEAD
  (``reason``). ``lease`` is the token of the last claim: a claim sets it, a lease that runs
  out keeps it (so a late ack whose record was not delivered again still succeeds), nack,
  dead-lettering and requeue clear it. ``size`` is what the record counts against
  ``max_bytes``. Times are wall-clock seconds (``clock.time()``), like the SQLite backend.
- ``<prefix>_counters``: per (tenant, queue): ``acked`` (records acked, ever) and ``bytes``
  (held against ``max_bytes``, dead letters included). A group that puts, acks or purges
  locks its queues' rows first, in (tenant, queue) order, so the bound is exact across
  processes and two groups never deadlock on them.
- ``<prefix>_meta``: ``schema_version``.
- ``<prefix>_ids``: the id sequence (ids are unique and increasing, never reused).

Concurrency: a claim picks rows with ``FOR UPDATE SKIP LOCKED`` and leases them in the same
statement, so consumers in many processes or hosts never get the same delivery and never wait
for one another; sweeps (expiry, leases that ran out) skip locked rows too. Settling matches
``(id, lease)``, so a stale settle changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from ._schema import RECORD_OVERHEAD
from ._types import QueueError, QueueFull

__all__ = ["SCHEMA_VERSION", "Refused", "Sql", "Tx", "ack", "claim", "dead_letters",
           "purge_dead", "put", "requeue_dead", "settle", "stats"]

SCHEMA_VERSION = 1
READY, LEASED, DEAD = 0, 1, 2
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")

_DDL = [
    "CREATE SEQUENCE IF NOT EXISTS {ids}",
    "CREATE TABLE IF NOT EXISTS {meta} (k text PRIMARY KEY, v bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {m} ("
    " id bigint PRIMARY KEY, tenant text NOT NULL, queue text NOT NULL,"
    " state smallint NOT NULL, visible_at double precision NOT NULL,"
    " attempts integer NOT NULL DEFAULT 0, lease bigint, expires_at double precision,"
    " reason text, error text, key text, payload bytea NOT NULL, size integer NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {m_ready} ON {m} (tenant, queue, id) WHERE state = 0",
    "CREATE INDEX IF NOT EXISTS {m_state} ON {m} (tenant, queue, state, visible_at)",
    "CREATE INDEX IF NOT EXISTS {m_ttl} ON {m} (tenant, queue, expires_at)"
    " WHERE state = 0 AND expires_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS {c} (tenant text NOT NULL, queue text NOT NULL,"
    " acked bigint NOT NULL DEFAULT 0, bytes bigint NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tenant, queue))",
    "INSERT INTO {meta} (k, v) VALUES ('schema_version', %s) ON CONFLICT (k) DO NOTHING",
]

_Q = "tenant = %(t)s AND queue = %(q)s"
_DONE = "(expires_at <= %(now)s OR attempts >= %(max)s)"  # old values, as SET sees them
_STATEMENTS = {
    "version": "SELECT v FROM {meta} WHERE k = 'schema_version'",
    "ensure_counter": "INSERT INTO {c} (tenant, queue) VALUES (%s, %s) ON CONFLICT DO NOTHING",
    "lock_counters": "SELECT c.tenant, c.queue, c.bytes FROM {c} AS c"
                     " JOIN unnest(%s::text[], %s::text[]) AS k(t, q)"
                     " ON c.tenant = k.t AND c.queue = k.q"
                     " ORDER BY c.tenant, c.queue FOR UPDATE OF c",
    "ensure_counters": "INSERT INTO {c} (tenant, queue) SELECT * FROM"
                       " unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
    "count": "UPDATE {c} SET acked = acked + %s, bytes = bytes + %s"
             " WHERE tenant = %s AND queue = %s",
    "next_ids": "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
    "insert": "INSERT INTO {m} (id, tenant, queue, state, visible_at, attempts, expires_at,"
              " key, payload, size)"
              " SELECT u.id, %s, %s, 0, %s, 0, %s, u.key, u.payload, u.size"
              " FROM unnest(%s::bigint[], %s::text[], %s::bytea[], %s::integer[])"
              " AS u(id, key, payload, size)",
    # One statement, one round trip: the two updates touch disjoint rows (state 0 / state 1).
    "sweep": "WITH expired AS ("
             "UPDATE {m} SET state = 2, reason = 'expired', lease = NULL, expires_at = NULL,"
             " visible_at = %(now)s WHERE id IN (SELECT id FROM {m} WHERE " + _Q +
             " AND state = 0 AND expires_at <= %(now)s FOR UPDATE SKIP LOCKED) RETURNING 1),"
             " over AS (UPDATE {m} SET"
                  f" state = CASE WHEN {_DONE} THEN 2 ELSE 0 END,"
                  " reason = CASE WHEN expires_at <= %(now)s THEN 'expired'"
                  f"  WHEN {_DONE} THEN 'max_deliveries' END,"
                  f" lease = CASE WHEN {_DONE} THEN NULL ELSE lease END,"
                  f" expires_at = CASE WHEN {_DONE} THEN NULL ELSE expires_at END,"
                  " visible_at = %(now)s"
                  " WHERE id IN (SELECT id FROM {m} WHERE " + _Q +
                  " AND state = 1 AND visible_at <= %(now)s FOR UPDATE SKIP LOCKED)"
                  " RETURNING 1)"
             " SELECT (SELECT count(*) FROM expired), (SELECT count(*) FROM over)",
    "claim": "UPDATE {m} AS m SET state = 1, attempts = m.attempts + 1, lease = %(lease)s,"
             " visible_at = %(until)s FROM (SELECT id FROM {m} WHERE " + _Q +
             " AND state = 0 AND visible_at <= %(now)s"
             " AND (expires_at IS NULL OR expires_at > %(now)s)"
             " ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED) AS c"
             " WHERE m.id = c.id RETURNING m.id, m.attempts, m.key, m.payload",
    "next_due": "SELECT min(visible_at) FROM {m} WHERE " + _Q + " AND state IN (0, 1)",
    # id = ANY(...) first: the primary key finds the rows; the join only checks the leases.
    "ack": "DELETE FROM {m} AS m USING unnest(%s::bigint[], %s::bigint[]) AS a(id, lease)"
           " WHERE m.id = ANY(%s::bigint[]) AND m.id = a.id AND m.lease = a.lease"
           " AND m.tenant = %s AND m.queue = %s AND m.state IN (0, 1)"
           " RETURNING m.id, m.lease, m.size",
    "settle": "UPDATE {m} SET"
              " state = CASE WHEN %(dead)s OR attempts >= %(max)s THEN 2 ELSE 0 END,"
              " reason = CASE WHEN %(dead)s OR attempts >= %(max)s THEN %(reason)s END,"
              " error = %(error)s, lease = NULL,"
              " expires_at = CASE WHEN %(dead)s OR attempts >= %(max)s THEN NULL"
              "  ELSE expires_at END,"
              " visible_at = CASE WHEN %(dead)s OR attempts >= %(max)s THEN %(now)s"
              "  ELSE %(later)s END"
              " WHERE id = %(id)s AND " + _Q + " AND lease = %(lease)s AND state IN (0, 1)"
              " RETURNING id",
    "dead": "SELECT id, payload, reason, attempts FROM {m} WHERE " + _Q +
            " AND state = 2 ORDER BY visible_at, id LIMIT %(limit)s",
    "requeue": "UPDATE {m} SET state = 0, attempts = 0, reason = NULL, error = NULL,"
               " lease = NULL, visible_at = %s, expires_at = %s"
               " WHERE id = ANY(%s::bigint[]) AND tenant = %s AND queue = %s AND state = 2",
    "purge": "DELETE FROM {m} WHERE id = ANY(%s::bigint[]) AND tenant = %s AND queue = %s"
             " AND state = 2 RETURNING size",
    "stats": "SELECT count(*) FILTER (WHERE state = 0 AND visible_at <= %(now)s),"
             " count(*) FILTER (WHERE state = 1),"
             " count(*) FILTER (WHERE state = 0 AND visible_at > %(now)s),"
             " count(*) FILTER (WHERE state = 2) FROM {m} WHERE " + _Q,
    "counters": "SELECT acked, bytes FROM {c} WHERE tenant = %s AND queue = %s",
    "notify": "SELECT pg_notify(%s, '')",
    "drop": "DROP TABLE IF EXISTS {m}, {c}, {meta}; DROP SEQUENCE IF EXISTS {ids}",
}


class Sql:
    """The statements with this schema's table names filled in, rendered once to text."""

    def __init__(self, conn: Any, schema: str | None, prefix: str) -> None:
        from psycopg import sql

        def ident(suffix: str) -> Any:
            name = prefix + suffix
            return sql.Identifier(schema, name) if schema else sql.Identifier(name)

        names = {"m": ident("_messages"), "c": ident("_counters"), "meta": ident("_meta"),
                 "ids": ident("_ids"), "m_ready": sql.Identifier(prefix + "_messages_ready"),
                 "m_state": sql.Identifier(prefix + "_messages_state"),
                 "m_ttl": sql.Identifier(prefix + "_messages_ttl")}

        def render(text: str) -> str:
            # The statements' %s placeholders survive: only {names} are formatted.
            return sql.SQL(text).format(**names).as_string(conn)

        self.ddl = [render(text) for text in _DDL]
        self.schema = (sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            sql.Identifier(schema)).as_string(conn) if schema else None)
        self.sequence = names["ids"].as_string(conn)  # for nextval(%s::regclass)
        self.lock_key = f"streamvisor-queue:{schema or ''}.{prefix}"
        # LISTEN takes an identifier, not a parameter: one channel per (schema, prefix).
        self.channel = f"{prefix}_wake" if not schema else f"{schema}__{prefix}_wake"
        self.listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)).as_string(conn)
        for key, text in _STATEMENTS.items():
            setattr(self, key, render(text))

    ensure_counter: str
    lock_counters: str
    ensure_counters: str
    count: str
    next_ids: str
    insert: str
    sweep: str
    claim: str
    next_due: str
    ack: str
    settle: str
    dead: str
    requeue: str
    purge: str
    stats: str
    counters: str
    version: str
    notify: str
    drop: str


class Refused(Exception):
    """An operation refused before it wrote anything (its group goes on without it)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


QKey = tuple[str, str]  # (tenant or '', queue name)


class Tx:
    """One group transaction's shared state: the cursor, the statements, ``now`` of the op
    being run, the queues swept, and the counter changes written by ``finish()``."""

    __slots__ = ("cur", "sql", "now", "swept", "bytes", "delta", "acked")

    def __init__(self, cur: Any, statements: Sql) -> None:
        self.cur, self.sql, self.now = cur, statements, 0.0
        self.swept: set[QKey] = set()
        self.bytes: dict[QKey, int] = {}   # locked counter rows: bytes at the start
        self.delta: dict[QKey, int] = {}
        self.acked: dict[QKey, int] = {}

    def lock_counters(self, qkeys: list[QKey], *, reads: bool = True) -> None:
        """Lock the counter rows of ``qkeys`` (sorted), creating missing ones. Not needed for
        one row that nothing reads (acks only: ``finish`` locks it), a round trip saved."""
        if not qkeys or (len(qkeys) == 1 and not reads):
            return
        tenants, queues = [t for t, _q in qkeys], [q for _t, q in qkeys]
        for _ in range(2):
            rows = self.cur.execute(self.sql.lock_counters, (tenants, queues)).fetchall()
            self.bytes = {(t, q): b for t, q, b in rows}
            if len(rows) == len(qkeys):
                return
            self.cur.execute(self.sql.ensure_counters, (tenants, queues))
        raise QueueError(f"cannot create the counter rows of queues {qkeys!r}")

    def used(self, qk: QKey) -> int:
        return self.bytes.get(qk, 0) + self.delta.get(qk, 0)

    def finish(self) -> None:
        for qk in sorted(self.delta.keys() | self.acked.keys()):
            acked, size = self.acked.get(qk, 0), self.delta.get(qk, 0)
            if acked or size:
                self.cur.execute(self.sql.count, (acked, size, qk[0], qk[1]))


def _args(tx: Tx, qk: QKey, **more: Any) -> dict[str, Any]:
    return {"t": qk[0], "q": qk[1], "now": tx.now, **more}


def put(tx: Tx, qk: QKey, items: list[tuple[bytes, str | None]], ttl: float | None,
        max_bytes: int | None, sizes: list[int]) -> list[int]:
    """Insert READY records; ids are taken from the sequence, in order. Refused whole
    (``Refused(QueueFull)``) before writing anything when it would pass ``max_bytes``."""
    size = sum(sizes)
    if max_bytes is not None:
        used = tx.used(qk)
        if used + size > max_bytes:
            name = qk[1] if not qk[0] else f"{qk[1]!r} of tenant {qk[0]!r}"
            raise Refused(QueueFull(
                f"queue {name!r} is full: {used} of max_bytes={max_bytes} bytes used, "
                f"{len(items)} record(s) of {size} bytes refused (nothing was written)"))
    cur, now = tx.cur, tx.now
    ids = sorted(r[0] for r in cur.execute(tx.sql.next_ids, (tx.sql.sequence, len(items))))
    cur.execute(tx.sql.insert, (qk[0], qk[1], now, None if ttl is None else now + ttl, ids,
                                [k for _p, k in items], [p for p, _k in items], sizes))
    tx.delta[qk] = tx.delta.get(qk, 0) + size
    return ids


def sweep(tx: Tx, qk: QKey, max_deliveries: int) -> None:
    """Dead-letter READY records past their TTL, and settle every lease that ran out (READY
    again, or DEAD with ``"expired"``/``"max_deliveries"``). Once per group and queue."""
    if qk in tx.swept:
        return
    tx.swept.add(qk)
    tx.cur.execute(tx.sql.sweep, _args(tx, qk, max=max_deliveries))


def claim(tx: Tx, qk: QKey, n: int, visibility: float, max_deliveries: int,
          lease: int) -> tuple[list[tuple[Any, ...]], float | None]:
    """Lease up to ``n`` deliverable records, oldest id first. Returns rows ``(id, attempt,
    key, payload)`` sorted by id and, when none, the earliest time something may become
    deliverable (None: nothing pending)."""
    sweep(tx, qk, max_deliveries)
    args = _args(tx, qk, lease=lease, until=tx.now + visibility, n=n)
    rows = tx.cur.execute(tx.sql.claim, args, binary=True).fetchall()
    if rows:
        rows.sort()
        return rows, None
    return rows, tx.cur.execute(tx.sql.next_due, args).fetchone()[0]


def ack(tx: Tx, qk: QKey, by_lease: dict[int, list[int]]) -> dict[int, set[int] | None]:
    """Delete the records whose ``(id, lease)`` still match; per lease, None when all of its
    ids were acked, else the set of those that were."""
    ids = [i for ids in by_lease.values() for i in ids]
    leases = [lease for lease, ids in by_lease.items() for _ in ids]
    rows = tx.cur.execute(tx.sql.ack, (ids, leases, ids, qk[0], qk[1])).fetchall()
    got: dict[int, set[int]] = {}
    size = 0
    for id_, lease, n in rows:
        got.setdefault(lease, set()).add(id_)
        size += n
    if rows:
        tx.acked[qk] = tx.acked.get(qk, 0) + len(rows)
        tx.delta[qk] = tx.delta.get(qk, 0) - size
    return {lease: None if len(got.get(lease, ())) == len(set(ids)) else got.get(lease, set())
            for lease, ids in by_lease.items()}


def settle(tx: Tx, qk: QKey, id: int, lease: int, action: str, delay: float,
           error: str | None, max_deliveries: int) -> bool:
    """nack (READY again after ``delay``, or DEAD on the last allowed delivery) or reject."""
    reason = "max_deliveries" if error is None else f"error: {error}"
    row = tx.cur.execute(tx.sql.settle, _args(
        tx, qk, dead=action == "reject", max=max_deliveries, reason=reason, error=error,
        later=tx.now + delay, id=id, lease=lease)).fetchone()
    return row is not None


def dead_letters(tx: Tx, qk: QKey, max_deliveries: int, limit: int) -> list[tuple[Any, ...]]:
    """Rows ``(id, payload, reason, attempts)`` of dead records, oldest first."""
    sweep(tx, qk, max_deliveries)
    return tx.cur.execute(tx.sql.dead, _args(tx, qk, limit=limit), binary=True).fetchall()


def requeue_dead(tx: Tx, qk: QKey, ids: list[int], ttl: float | None) -> int:
    now = tx.now
    cur = tx.cur.execute(tx.sql.requeue, (now, None if ttl is None else now + ttl, ids,
                                          qk[0], qk[1]))
    return cur.rowcount


def purge_dead(tx: Tx, qk: QKey, ids: list[int]) -> int:
    rows = tx.cur.execute(tx.sql.purge, (ids, qk[0], qk[1])).fetchall()
    tx.delta[qk] = tx.delta.get(qk, 0) - sum(r[0] for r in rows)
    return len(rows)


def stats(tx: Tx, qk: QKey, max_deliveries: int) -> dict[str, int]:
    sweep(tx, qk, max_deliveries)
    ready, in_flight, delayed, dead = tx.cur.execute(tx.sql.stats, _args(tx, qk)).fetchone()
    row = tx.cur.execute(tx.sql.counters, qk).fetchone() or (0, 0)
    return {"ready": ready, "in_flight": in_flight, "delayed": delayed, "dead": dead,
            "acked": row[0], "bytes": row[1]}


def record_size(payload: bytes, key: str | None) -> int:
    """What one record counts against ``max_bytes`` (as in the SQLite backend)."""
    return len(payload) + (0 if key is None else len(key.encode("utf-8"))) + RECORD_OVERHEAD
