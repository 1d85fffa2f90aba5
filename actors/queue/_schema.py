"""The queue's SQLite schema, connection settings and row checksum.

One table holds every record of every queue name in the file. ``state`` is

- 0 FRESH: never delivered. Not indexed: a per-queue cursor (``meta['cursor:<queue>']``) marks
  the lowest id not yet claimed; claims read fresh records in id order from it and move it on
  without writing the records (below the cursor, a FRESH-state record is in flight);
- 3 WAITING: to be delivered again at ``visible_at`` (after a nack, a lease that ran out, or
  ``requeue_dead``); partial index ``messages_wait``;
- 1 LEASED: delivered under ``lease``; the ``leases`` table holds one row per claim (token,
  deadline, the ids it leased), so that a lease that runs out is found through its row, not by
  indexing every in-flight record;
- 2 DEAD: a dead letter with its ``reason``; partial index ``messages_dead``.

Putting, claiming and acking a fresh record thus touch no secondary index: an insert and a
delete per record, plus one lease row per claimed batch. ``meta['next_id']`` is the id
high-water mark (ids are never reused). Times are wall-clock seconds (``time.time()`` or the
injected clock) so that they survive restarts and are shared by processes. ``crc`` covers the
immutable columns (queue, key, payload, id): silent corruption is detected at delivery and
during salvage. The mutable columns (state, times, attempts) are not covered.

``counters`` holds, per queue, the acked count and ``bytes``: what the queue's records (dead
letters included) count against its ``max_bytes`` (``record_size``: encoded payload + key bytes +
``RECORD_OVERHEAD``), kept up to date by every transaction that inserts or deletes records.

A queue's name in the file (the ``queue`` column) is ``name`` for a queue without a tenant and
``tenant + "\x1f" + name`` for a tenant's queue (``queue_key``); neither part may contain
``"\x1f"``, so one tenant's rows are exactly the key range ``[tenant + "\x1f", tenant + "\x20")``.

Versions: 2 (no ``bytes`` column) is upgraded in place at open (``create_schema``): the column is
added and filled from the records in one transaction.
"""

from __future__ import annotations

import sqlite3
import zlib

__all__ = ["COLUMNS", "DEAD", "FRESH", "LEASED", "RECORD_OVERHEAD", "SCHEMA_VERSION", "SEP",
           "WAITING", "configure", "create_schema", "payload_crc", "queue_key", "recount",
           "record_size", "row_crc", "tolerant_text"]

SCHEMA_VERSION = 3
RECORD_OVERHEAD = 64  # bytes counted per record besides its payload and key (row, index)
SEP = "\x1f"          # between tenant and name in the queue column
FRESH, LEASED, DEAD, WAITING = 0, 1, 2, 3

# Column order is the on-disk record order (the raw salvage scanner relies on it).
COLUMNS = ("id", "queue", "state", "visible_at", "attempts", "lease", "expires_at",
           "reason", "error", "key", "crc", "payload")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY,
    queue       TEXT    NOT NULL,
    state       INTEGER NOT NULL,
    visible_at  REAL    NOT NULL,
    attempts    INTEGER NOT NULL,
    lease       INTEGER,
    expires_at  REAL,
    reason      TEXT,
    error       TEXT,
    key         TEXT,
    crc         INTEGER NOT NULL,
    payload     BLOB    NOT NULL
);
DROP INDEX IF EXISTS messages_due;
CREATE INDEX IF NOT EXISTS messages_wait ON messages(queue, visible_at) WHERE state = 3;
CREATE INDEX IF NOT EXISTS messages_dead ON messages(queue, visible_at) WHERE state = 2;
CREATE INDEX IF NOT EXISTS messages_ttl ON messages(queue, expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS leases (
    lease INTEGER PRIMARY KEY,
    queue TEXT    NOT NULL,
    until REAL    NOT NULL,
    ids   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_until ON leases(queue, until);
CREATE TABLE IF NOT EXISTS counters (
    queue TEXT PRIMARY KEY,
    acked INTEGER NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (k, v) VALUES ('next_id', 1);
"""


def tolerant_text(raw: bytes) -> str:
    """``text_factory`` for damaged files: invalid UTF-8 becomes surrogates (and then fails the
    row checksum) instead of raising in the middle of a fetch."""
    return raw.decode("utf-8", "surrogateescape")


def configure(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Durability and concurrency settings of every connection the queue opens.

    WAL + ``synchronous=FULL``: a commit returns after the WAL is fsynced (acknowledged means on
    disk). ``busy_timeout`` lets several processes share the file. The WAL is checkpointed every
    4,000 pages and truncated to 64 MiB afterwards (its bound).
    """
    conn.text_factory = tolerant_text
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA wal_autocheckpoint = 4000")
    conn.execute("PRAGMA journal_size_limit = 67108864")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -16384")


_SIZE_SQL = f"length(payload) + coalesce(length(CAST(key AS BLOB)), 0) + {RECORD_OVERHEAD}"


def _statements() -> list[str]:
    return [part.strip() for part in _SCHEMA.split(";") if part.strip()]


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing, upgrade an older format, stamp the version: one transaction, and
    no write at all when the file is current (so opening needs no write lock). Raises
    ``sqlite3.Error``. ``conn`` must be in autocommit mode with no open transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    if current and conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN"
                                " ('messages', 'leases', 'counters', 'meta')").fetchone()[0] == 4:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(counters)")]
        for sql in _statements():
            conn.execute(sql)
        if columns and "bytes" not in columns:  # version 2: no byte accounting yet
            conn.execute("ALTER TABLE counters ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0")
        recount(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def recount(conn: sqlite3.Connection) -> None:
    """Set every queue's ``bytes`` counter from its records (inside the caller's transaction)."""
    conn.execute("UPDATE counters SET bytes = 0")
    conn.execute(f"INSERT INTO counters (queue, acked, bytes) SELECT queue, 0, sum({_SIZE_SQL})"
                 " FROM messages WHERE true GROUP BY queue"
                 " ON CONFLICT (queue) DO UPDATE SET bytes = excluded.bytes")


def queue_key(tenant: str | None, name: str) -> str:
    """The ``queue`` column value of queue ``name`` of ``tenant`` (see the module docstring)."""
    return name if tenant is None else f"{tenant}{SEP}{name}"


def record_size(payload: bytes, key: str | None) -> int:
    """What one record counts against ``max_bytes``."""
    return len(payload) + (0 if key is None else len(key.encode("utf-8"))) + RECORD_OVERHEAD


def payload_crc(queue: str, key: str | None, payload: bytes) -> int:
    """The id-independent part of ``row_crc`` (computed by the producer, off the committer)."""
    head = f"{queue}\x00{'' if key is None else key}\x00{0 if key is None else 1}\x00"
    return zlib.crc32(payload, zlib.crc32(head.encode("utf-8", "surrogatepass")))


def row_crc(id: int, queue: str, key: str | None, payload: bytes) -> int:
    """CRC32 of the immutable columns of one record: queue, key, payload, then the id."""
    return zlib.crc32(b"%d" % id, payload_crc(queue, key, payload))
