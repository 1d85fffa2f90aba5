"""The queue's transactions: each function runs inside a group transaction on the committer's
connection and returns plain values. A ``Group`` carries what the operations of one transaction
share: the connection, ``now`` (wall-clock seconds, read once), and values read once and written
once at the end (the id high-water mark, queue cursors, acked counters). Fewer statements per
group matter more than cheaper ones: every SQLite call releases the GIL and may wait to get it
back while producer and consumer threads run Python.

Invariants they keep (states and tables are described in ``_schema``):
- a record is delivered only when FRESH (id >= the queue's cursor), or WAITING with
  ``visible_at <= now``, and never once its TTL deadline passed; every claim leases its records
  under one fresh random token and writes one ``leases`` row (deadline and ids);
- claiming FRESH records writes nothing to them: the cursor moves past them, and a record that
  is FRESH-state but below the cursor is in flight under the (only) lease row that lists it.
  Its delivery is counted in ``attempts`` when it is settled or its lease runs out, in the same
  transaction, so attempt counts survive crashes (the lease row is durable);
- ack/nack/reject match ``(id, lease)``: a LEASED or WAITING row whose ``lease`` column is that
  token, or a claimed FRESH-state row while its lease row still exists. nack, dead-lettering and
  requeue clear ``lease``, a new claim replaces it, so a stale settle matches nothing and a
  late ack whose record was not delivered again meanwhile still succeeds;
- a lease that runs out sends its unsettled records to WAITING (visible now), or to DEAD with
  ``"expired"`` / ``"max_deliveries"`` at once; the lease row is then deleted.
"""

from __future__ import annotations

import re
import sqlite3
import zlib
from typing import Any

from ._schema import RECORD_OVERHEAD
from ._types import QueueFull

__all__ = ["DamagedFile", "Group", "Refused", "ack", "claim", "dead_letters", "purge_dead", "put",
           "requeue_dead", "settle", "stats", "sweep"]

_IDS = "SELECT value FROM json_each(?)"
_NEXT_ID = ("SELECT max(coalesce((SELECT v FROM meta WHERE k = 'next_id'), 1),"
            " coalesce((SELECT max(id) FROM messages), 0) + 1)")
_SET_META = "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)"
_GET_META = "SELECT v FROM meta WHERE k = ?"
_EXPIRE = ("UPDATE messages INDEXED BY messages_ttl SET state = 2, reason = 'expired',"
           " lease = NULL, expires_at = NULL, visible_at = :now"
           " WHERE queue = :q AND expires_at <= :now AND state IN (0, 3)"
           " AND NOT (state = 0 AND id < :cursor)")  # claimed FRESH rows are in flight
_LEASES_DUE = "SELECT lease, ids FROM leases WHERE queue = ? AND until <= ?"
_DONE = "(expires_at <= :now OR attempts + (state = 0) >= :max)"  # old values, as SET sees them
_LEASE_OVER = (
    "UPDATE messages SET attempts = attempts + (state = 0),"
    f" state = CASE WHEN {_DONE} THEN 2 ELSE 3 END,"
    " reason = CASE WHEN expires_at <= :now THEN 'expired'"
    f"  WHEN {_DONE} THEN 'max_deliveries' END,"
    f" lease = CASE WHEN {_DONE} THEN NULL ELSE :lease END,"
    f" expires_at = CASE WHEN {_DONE} THEN NULL ELSE expires_at END, visible_at = :now"
    f" WHERE id IN ({_IDS.replace('?', ':ids')})"
    " AND (state = 0 OR (state = 1 AND lease = :lease))")
_CLAIM = ("UPDATE messages SET state = 1, attempts = attempts + 1, lease = ?, visible_at = ?"
          " WHERE id IN ({}) RETURNING id, attempts, key, crc, payload")
_CLAIM_WAITING = _CLAIM.format("SELECT id FROM messages WHERE queue = ? AND state = 3"
                                " AND visible_at <= ? ORDER BY visible_at, id LIMIT ?")
_READ_FRESH = ("SELECT id, attempts + 1, key, crc, payload FROM messages"
               " WHERE id >= ? AND queue = ? AND state = 0 ORDER BY id LIMIT ?")
_ADD_LEASE = "INSERT INTO leases (lease, queue, until, ids) VALUES (?, ?, ?, ?)"
_SETTLEABLE = ("FROM messages WHERE id IN (SELECT value FROM json_each(:ids))"  # named: the
               " AND (lease = :lease AND state IN (1, 3)"                  # lease is used twice
               " OR state = 0 AND EXISTS (SELECT 1 FROM leases WHERE lease = :lease))")
_ID_LIST = re.compile(r"\[(?:\d+(?:,\d+)*)?\]")
_COUNT = ("INSERT INTO counters (queue, acked, bytes) VALUES (?, ?, ?) ON CONFLICT (queue)"
          " DO UPDATE SET acked = acked + excluded.acked, bytes = bytes + excluded.bytes")
_SIZE = f"length(payload) + coalesce(length(CAST(key AS BLOB)), 0) + {RECORD_OVERHEAD}"
_TO_DEAD = ("UPDATE messages SET state = 2, attempts = ?, reason = ?, error = ?, lease = NULL,"
            " expires_at = NULL, visible_at = ? WHERE id = ?")
_TO_WAITING = ("UPDATE messages SET state = 3, attempts = ?, lease = NULL, visible_at = ?,"
               " error = ? WHERE id = ?")


class Refused(Exception):
    """An operation refused before it wrote anything (its group goes on without it); ``error``
    is what its caller gets."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class DamagedFile(Exception):
    """An operation found data that SQLite's checks cannot see is damaged (a lease row that
    no longer lists ids): the committer repairs the file (move aside, salvage) and retries."""


class Group:
    """One group transaction's shared state; ``finish()`` writes what was deferred."""

    __slots__ = ("conn", "now", "next_id", "first_id", "cursors", "acked", "swept", "bytes",
                 "bytes_delta")

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn, self.now = conn, now
        self.next_id = self.first_id = 0  # 0: not read yet
        self.cursors: dict[str, tuple[int, int]] = {}  # queue -> (read, current)
        self.acked: dict[str, int] = {}
        self.swept: set[str] = set()
        self.bytes: dict[str, int] = {}        # queue -> bytes counted when first read
        self.bytes_delta: dict[str, int] = {}  # queue -> change in this group

    def used(self, queue: str) -> int:
        """Bytes that ``queue`` holds now (its counter plus this group's changes)."""
        if queue not in self.bytes:
            row = self.conn.execute("SELECT bytes FROM counters WHERE queue = ?",
                                    (queue,)).fetchone()
            self.bytes[queue] = row[0] if row else 0
        return self.bytes[queue] + self.bytes_delta.get(queue, 0)

    def add_bytes(self, queue: str, n: int) -> None:
        if n:
            self.bytes_delta[queue] = self.bytes_delta.get(queue, 0) + n

    def take_ids(self, n: int) -> int:
        if not self.next_id:
            self.next_id = self.first_id = self.conn.execute(_NEXT_ID).fetchone()[0]
        first, self.next_id = self.next_id, self.next_id + n
        return first

    def cursor(self, queue: str) -> int:
        if queue not in self.cursors:
            row = self.conn.execute(_GET_META, ("cursor:" + queue,)).fetchone()
            self.cursors[queue] = (row[0], row[0]) if row else (0, 0)
        return self.cursors[queue][1]

    def move_cursor(self, queue: str, to: int) -> None:
        self.cursors[queue] = (self.cursors[queue][0], to)

    def finish(self) -> None:
        """Write the deferred values (before COMMIT). Raises ``sqlite3.Error``."""
        conn = self.conn
        if self.next_id != self.first_id:
            conn.execute(_SET_META, ("next_id", self.next_id))
        for queue, (read, current) in self.cursors.items():
            if current != read:
                conn.execute(_SET_META, ("cursor:" + queue, current))
        for queue in self.acked.keys() | self.bytes_delta.keys():
            acked, size = self.acked.get(queue, 0), self.bytes_delta.get(queue, 0)
            if acked or size:
                conn.execute(_COUNT, (queue, acked, size))


def _json(ids: list[int]) -> str:
    return "[" + ",".join(map(str, ids)) + "]"


def _literal(value: str | float | None) -> str:
    if value is None:
        return "NULL"
    if not isinstance(value, str):  # a float
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def put(g: Group, queue: str, items: list[tuple[bytes, str | None, int]],
        ttl: float | None, max_bytes: int | None = None, size: int = 0) -> list[int]:
    """Insert FRESH records ``(encoded payload, key, payload_crc)``; ids are consecutive and
    never reused. ``size`` is their ``record_size`` total: a put that would take the queue past
    ``max_bytes`` is refused whole (``Refused(QueueFull)``), before anything is written.
    Values shared by the call are SQL literals: fewer bound parameters per row is the cheapest
    speed-up there is (the statement is cached for the rest of the group)."""
    if max_bytes is not None:
        used = g.used(queue)
        if used + size > max_bytes:
            raise Refused(QueueFull(
                f"queue {queue!r} is full: {used} of max_bytes={max_bytes} bytes used, "
                f"{len(items)} record(s) of {size} bytes refused (nothing was written)"))
    g.add_bytes(queue, size)
    conn, now = g.conn, g.now
    first = g.take_ids(len(items))
    head = (f"INSERT INTO messages (id, queue, state, visible_at, attempts, expires_at, key, crc,"
            f" payload) VALUES (?, {_literal(queue)}, 0, {_literal(now)}, 0,"
            f" {_literal(None if ttl is None else now + ttl)}")
    crc32 = zlib.crc32
    if any(key is not None for _p, key, _c in items):
        conn.executemany(head + ", ?, ?, ?)", [
            (first + i, key, crc32(b"%d" % (first + i), pcrc), payload)
            for i, (payload, key, pcrc) in enumerate(items)])
    else:
        conn.executemany(head + ", NULL, ?, ?)", [
            (first + i, crc32(b"%d" % (first + i), pcrc), payload)
            for i, (payload, _key, pcrc) in enumerate(items)])
    return list(range(first, first + len(items)))


def sweep(g: Group, queue: str, max_deliveries: int) -> None:
    """Dead-letter what expired while not in flight, and settle every lease that ran out.
    Runs at most once per group and queue name."""
    if queue in g.swept:
        return
    g.swept.add(queue)
    conn, now = g.conn, g.now
    conn.execute(_EXPIRE, {"now": now, "q": queue, "cursor": g.cursor(queue)})
    for lease, ids in conn.execute(_LEASES_DUE, (queue, now)).fetchall():
        if type(ids) is not str or not _ID_LIST.fullmatch(ids):
            raise DamagedFile(f"lease {lease} of queue {queue!r} has a damaged id list")
        conn.execute(_LEASE_OVER, {"now": now, "max": max_deliveries, "ids": ids, "lease": lease})
        conn.execute("DELETE FROM leases WHERE lease = ?", (lease,))


def claim(g: Group, queue: str, n: int, visibility: float, max_deliveries: int,
          lease: int) -> tuple[list[tuple[Any, ...]], float | None]:
    """Lease up to ``n`` records under ``lease``: WAITING ones that are due first, then FRESH
    ones in id order (read, not written: the cursor moves past them). Returns rows ``(id,
    attempt, key, crc, payload)`` sorted by id and, when none, the earliest time something may
    become deliverable (None: nothing is pending)."""
    conn, now = g.conn, g.now
    sweep(g, queue, max_deliveries)
    until = now + visibility
    rows = conn.execute(_CLAIM_WAITING, (lease, until, queue, now, n)).fetchall()
    if len(rows) < n:
        fresh = conn.execute(_READ_FRESH, (g.cursor(queue), queue, n - len(rows))).fetchall()
        if fresh:
            g.move_cursor(queue, fresh[-1][0] + 1)
            rows += fresh
    if rows:
        rows.sort()
        conn.execute(_ADD_LEASE, (lease, queue, until, _json([r[0] for r in rows])))
        return rows, None
    due = conn.execute("SELECT min(visible_at) FROM messages WHERE queue = ? AND state = 3",
                       (queue,)).fetchone()[0]
    ends = conn.execute("SELECT min(until) FROM leases WHERE queue = ?", (queue,)).fetchone()[0]
    return rows, min((t for t in (due, ends) if t is not None), default=None)


def ack(g: Group, queue: str, by_lease: dict[int, list[int]]) -> dict[int, set[int] | None]:
    """Delete the records whose ``(id, lease)`` still match and count them as acked.
    ``by_lease`` maps a lease token to ids; returns, per lease, None when all of its ids were
    acked, else the set of those that were."""
    conn = g.conn
    done: dict[int, set[int] | None] = {}
    count = size = 0
    for lease, ids in by_lease.items():
        args = {"ids": _json(ids), "lease": lease}
        deleted = conn.execute(f"DELETE {_SETTLEABLE} RETURNING id, {_SIZE}", args).fetchall()
        size += sum(r[1] for r in deleted)
        count += len(deleted)
        done[lease] = None if len(deleted) == len(set(ids)) else {r[0] for r in deleted}
    if count:
        g.acked[queue] = g.acked.get(queue, 0) + count
        g.add_bytes(queue, -size)
    return done


def settle(g: Group, queue: str, id: int, lease: int, action: str, delay: float,
           error: str | None, max_deliveries: int) -> bool:
    """nack (deliver again after ``delay``, or dead-letter on the last try) or reject."""
    conn, now = g.conn, g.now
    row = conn.execute("SELECT state, attempts " + _SETTLEABLE,
                       {"ids": _json([id]), "lease": lease}).fetchone()
    if row is None:
        return False
    attempts = row[1] + (row[0] == 0)  # a claimed FRESH row counts its delivery now
    if action == "reject" or attempts >= max_deliveries:
        reason = "max_deliveries" if error is None else f"error: {error}"
        conn.execute(_TO_DEAD, (attempts, reason, error, now, id))
    else:
        conn.execute(_TO_WAITING, (attempts, now + delay, error, id))
    return True


def dead_letters(g: Group, queue: str, max_deliveries: int, limit: int) -> list[tuple[Any, ...]]:
    """Rows ``(id, payload, reason, attempts, key, crc)`` of dead records, oldest first."""
    sweep(g, queue, max_deliveries)
    return g.conn.execute(
        "SELECT id, payload, reason, attempts, key, crc FROM messages"
        " WHERE queue = ? AND state = 2 ORDER BY visible_at, id LIMIT ?", (queue, limit)).fetchall()


def requeue_dead(g: Group, queue: str, ids: list[int], ttl: float | None) -> int:
    """Make dead records deliverable now, with a fresh attempt count and TTL; returns how many."""
    now = g.now
    expires = None if ttl is None else now + ttl
    cur = g.conn.executemany(
        "UPDATE messages SET state = 3, attempts = 0, reason = NULL, error = NULL, lease = NULL,"
        " visible_at = ?, expires_at = ? WHERE id = ? AND queue = ? AND state = 2",
        [(now, expires, i, queue) for i in ids])
    return cur.rowcount


def purge_dead(g: Group, queue: str, ids: list[int]) -> int:
    """Delete dead records for good; returns how many."""
    rows = g.conn.execute(f"DELETE FROM messages WHERE id IN ({_IDS}) AND queue = ? AND state = 2"
                          f" RETURNING {_SIZE}", (_json(ids), queue)).fetchall()
    g.add_bytes(queue, -sum(r[0] for r in rows))
    return len(rows)


def stats(g: Group, queue: str, max_deliveries: int) -> dict[str, int]:
    """Counts by state after a sweep (so a lease that ran out counts as ready). Reads the fresh
    records from the cursor on, and the partial indexes; in-flight ones through the leases."""
    conn, now = g.conn, g.now
    sweep(g, queue, max_deliveries)
    cursor = g.cursor(queue)

    def one(sql: str, *args: Any) -> int:
        value: int = conn.execute(sql, args).fetchone()[0]
        return value

    due = one("SELECT count(*) FROM messages WHERE queue = ? AND state = 3 AND visible_at <= ?",
              queue, now)
    return {
        "ready": due + one("SELECT count(*) FROM messages"
                           " WHERE id >= ? AND queue = ? AND state = 0", cursor, queue),
        "in_flight": one("SELECT count(*) FROM messages WHERE state IN (0, 1) AND id IN"
                         " (SELECT j.value FROM leases, json_each(leases.ids) AS j"
                         "  WHERE leases.queue = ?)", queue),
        "delayed": one("SELECT count(*) FROM messages WHERE queue = ? AND state = 3", queue) - due,
        "dead": one("SELECT count(*) FROM messages WHERE queue = ? AND state = 2", queue),
        "acked": (conn.execute("SELECT acked FROM counters WHERE queue = ?", (queue,)).fetchone()
                  or (0,))[0] + g.acked.get(queue, 0),  # acks earlier in this group count
        "bytes": g.used(queue),
    }


_STATS_MANY = (
    "SELECT m.queue,"
    " sum(m.state = 0 AND m.id >= coalesce(c.v, 0)) + sum(m.state = 3 AND m.visible_at <= :now),"
    " sum(m.state = 1 OR (m.state = 0 AND m.id < coalesce(c.v, 0))),"
    " sum(m.state = 3 AND m.visible_at > :now),"
    " sum(m.state = 2)"
    " FROM messages AS m LEFT JOIN meta AS c ON c.k = 'cursor:' || m.queue{where}"
    " GROUP BY m.queue")


def stats_many(g: Group, keys: list[str] | None) -> dict[str, dict[str, int]]:
    """Counts of many queues (``keys``: queue column values; None: every queue in the file)
    read in this one transaction: ``ready``, ``in_flight``, ``delayed``, ``dead``, ``acked``,
    ``bytes``. No sweep: a record whose lease or TTL ran out but was not swept yet still counts
    where it was (so every record counts exactly once). One pass over the records."""
    conn = g.conn
    empty = {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 0, "acked": 0, "bytes": 0}
    out: dict[str, dict[str, int]] = {k: dict(empty) for k in keys or ()}
    where, args = "", dict[str, Any](now=g.now)
    if keys is not None:
        where, args["keys"] = " WHERE m.queue IN (SELECT value FROM json_each(:keys))", \
            _json_text(keys)
    for queue, ready, in_flight, delayed, dead in conn.execute(
            _STATS_MANY.format(where=where), args):
        row = out.setdefault(queue, dict(empty))
        row.update(ready=ready, in_flight=in_flight, delayed=delayed, dead=dead)
    counters = "SELECT queue, acked, bytes FROM counters"
    if keys is not None:
        counters += " WHERE queue IN (SELECT value FROM json_each(:keys))"
    for queue, acked, size in conn.execute(counters, args):
        row = out.setdefault(queue, dict(empty))
        row["acked"] = acked + g.acked.get(queue, 0)
        row["bytes"] = size + g.bytes_delta.get(queue, 0)
    return out


def _json_text(texts: list[str]) -> str:
    import json
    return json.dumps(texts)
