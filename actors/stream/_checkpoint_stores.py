"""Where checkpoints are kept: ``SqliteCheckpoints(path)`` (embedded, the tenant's data dir) and
``PostgresCheckpoints(dsn)`` (shared by hosts, so a tenant re-placed elsewhere resumes).

Both keep rows ``(tenant, graph, id, data)``; ``commit`` writes one checkpoint in one
transaction (durable when it returns) and removes all but the newest ``keep`` of that
(tenant, graph); ``load`` returns the newest. A checkpoint is one ``actors.codec`` document
(checked when decoded); the stores never unpickle anything. Both are safe from any thread
(one connection, under a lock). A transient fault (a locked database, a full disk, a lost
connection) is raised to the caller as it is: the checkpoint is not committed, nothing is
acknowledged, and the next one tries again.

Many tenants, few commits: ``commit_async(tenant, graph, cid, data, done)`` hands a checkpoint
to the store's ``GroupWriter`` (``actors.groupwrite``: one thread per store, started on first
use) and returns at once; the checkpoints of every tenant handed over within ``group_delay``
seconds are committed in one transaction, then each ``done(None)`` is called (``done(exc)``
for one that could not be committed: a failed group is retried checkpoint by checkpoint, so a
fault of one tenant's - a stale fence - fails that tenant's alone). ``Coordinator`` uses it when
the store has it, so 1,000 tenants checkpointing every 5 s cost a few commits a second, not 200,
and no actor waits for a disk. ``close()`` commits what is pending first.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, Callable

from .._checks import check_number
from ..groupwrite import GroupWriter

__all__ = ["SqliteCheckpoints", "PostgresCheckpoints"]

_TABLE = "stream_checkpoints"


def _keep(keep: Any) -> int:
    return check_number(keep, "checkpoints keep", integer=True, positive=True)


Entry = tuple[str, str, int, bytes]  # (tenant, graph, id, data)


class _Grouped:
    """``commit_async`` and ``flush`` through a lazily started ``GroupWriter`` whose
    ``write`` is the store's ``_commit_many`` (one transaction)."""

    group_delay = 0.05
    _writer: GroupWriter[Entry] | None = None
    _writer_lock: threading.Lock

    def _commit_many(self, entries: list[Entry]) -> None:
        raise NotImplementedError

    def commit_async(self, tenant: str, graph: str, cid: int, data: bytes,
                     done: Callable[[BaseException | None], Any]) -> None:
        """Commit checkpoint ``cid`` with other tenants' in the next group; returns at once.
        ``done(None)`` once it is on disk, ``done(exc)`` if it could not be committed (called
        from the store's writer thread). ``ValueError`` for a bad key, at once."""
        _key(tenant, graph)
        with self._writer_lock:
            writer = self._writer
            if writer is None:
                writer = self._writer = GroupWriter(
                    self._commit_many, name="checkpoints", delay=self.group_delay)
        writer.submit((tenant, graph, cid, data), done)

    def flush(self) -> None:
        """Block until every checkpoint handed to ``commit_async`` so far is done."""
        with self._writer_lock:
            writer = self._writer
        if writer is not None:
            writer.flush()

    def _close_writer(self) -> None:
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


def _key(tenant: Any, graph: Any) -> None:
    if type(tenant) is not str or type(graph) is not str or not graph:
        raise ValueError(f"checkpoint key must be (tenant str, graph name), got "
                         f"({tenant!r}, {graph!r})")


class SqliteCheckpoints(_Grouped):
    """Checkpoints in an SQLite file (created 0600; WAL, ``synchronous=FULL``: a commit that
    returned survives a power cut), the newest ``keep`` per (tenant, graph)."""

    def __init__(self, path: str | os.PathLike[str], keep: int = 3) -> None:
        self.path = os.fspath(path)
        self.keep = _keep(keep)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._writer_lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (tenant TEXT NOT NULL, "
                           "graph TEXT NOT NULL, id INTEGER NOT NULL, data BLOB NOT NULL, "
                           "PRIMARY KEY (tenant, graph, id))")

    def load(self, tenant: str, graph: str) -> tuple[int, bytes] | None:
        _key(tenant, graph)
        with self._lock:
            row = self._conn.execute(
                f"SELECT id, data FROM {_TABLE} WHERE tenant = ? AND graph = ? "
                "ORDER BY id DESC LIMIT 1", (tenant, graph)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def commit(self, tenant: str, graph: str, cid: int, data: bytes) -> None:
        _key(tenant, graph)
        self._commit_many([(tenant, graph, cid, data)])

    def _commit_many(self, entries: list[Entry]) -> None:
        """Every entry in one transaction (all or nothing)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(f"INSERT OR REPLACE INTO {_TABLE} (tenant, graph, id, data) "
                                 "VALUES (?, ?, ?, ?)", entries)
                conn.executemany(f"DELETE FROM {_TABLE} WHERE tenant = ? AND graph = ? AND "
                                 "id <= ?", [(t, g, cid - self.keep) for t, g, cid, _ in entries])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def ids(self, tenant: str, graph: str) -> list[int]:
        """The ids kept for (tenant, graph), oldest first."""
        with self._lock:
            return [r[0] for r in self._conn.execute(
                f"SELECT id FROM {_TABLE} WHERE tenant = ? AND graph = ? ORDER BY id",
                (tenant, graph))]

    def close(self) -> None:
        self._close_writer()  # what was handed to commit_async is committed first
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteCheckpoints({self.path!r}, keep={self.keep})"


class PostgresCheckpoints(_Grouped):
    """Checkpoints in PostgreSQL table ``stream_checkpoints`` keyed (tenant, graph, id), the
    newest ``keep`` per (tenant, graph). ``dsn``: ``postgresql://...``. ``fence(conn, tenant)``,
    if given, runs inside each commit's transaction before the write; whatever it raises aborts
    the commit, nothing written (a cluster checks there that this node still holds the tenant's
    lease epoch, so a node that lost the tenant cannot commit over the new owner's state)."""

    def __init__(self, dsn: str, keep: int = 3,
                 fence: Callable[[Any, str], None] | None = None) -> None:
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"PostgresCheckpoints needs a postgresql:// URL, got {dsn!r}")
        import psycopg
        self.dsn = dsn
        self.keep = _keep(keep)
        self.fence = fence
        self._lock = threading.Lock()
        self._writer_lock = threading.Lock()
        self._conn: Any = psycopg.connect(dsn, autocommit=True)
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (tenant TEXT NOT NULL, "
                           "graph TEXT NOT NULL, id BIGINT NOT NULL, data BYTEA NOT NULL, "
                           "PRIMARY KEY (tenant, graph, id))")

    def load(self, tenant: str, graph: str) -> tuple[int, bytes] | None:
        _key(tenant, graph)
        with self._lock:
            row = self._conn.execute(
                f"SELECT id, data FROM {_TABLE} WHERE tenant = %s AND graph = %s "
                "ORDER BY id DESC LIMIT 1", (tenant, graph)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def commit(self, tenant: str, graph: str, cid: int, data: bytes) -> None:
        _key(tenant, graph)
        self._commit_many([(tenant, graph, cid, data)])

    def _commit_many(self, entries: list[Entry]) -> None:
        """Every entry in one transaction, each tenant's fence checked in it first."""
        with self._lock, self._conn.transaction():
            if self.fence is not None:
                for tenant in dict.fromkeys(t for t, _g, _c, _d in entries):
                    self.fence(self._conn, tenant)
            for tenant, graph, cid, data in entries:
                self._conn.execute(
                    f"INSERT INTO {_TABLE} (tenant, graph, id, data) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (tenant, graph, id) DO UPDATE SET data = excluded.data",
                    (tenant, graph, cid, data))
                self._conn.execute(f"DELETE FROM {_TABLE} WHERE tenant = %s AND graph = %s "
                                   "AND id <= %s", (tenant, graph, cid - self.keep))

    def ids(self, tenant: str, graph: str) -> list[int]:
        with self._lock:
            return [r[0] for r in self._conn.execute(
                f"SELECT id FROM {_TABLE} WHERE tenant = %s AND graph = %s ORDER BY id",
                (tenant, graph)).fetchall()]

    def close(self) -> None:
        self._close_writer()  # what was handed to commit_async is committed first
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return "PostgresCheckpoints(<dsn>)"
