"""SQL stores for readings: ``SqliteStore`` (embedded default, sqlite3) and ``PostgresStore``
(psycopg 3, the ``postgres`` extra), one table ``readings(tenant, device, ts, temp, hum)``.

Idempotent: ``(tenant, device, ts)`` is the primary key and every insert is ``ON CONFLICT DO
NOTHING``, so inserting a batch twice (a redelivery) never creates a duplicate row. A batch is
one transaction: ``insert`` returns once it is committed (PostgreSQL: its commit; SQLite: WAL
with ``synchronous=FULL``), so acking the durable queue afterwards never loses a row.

Errors, as the writer needs them: ``StoreUnavailable`` (connection lost, database locked,
server down - retry the same batch later; the store reconnects on the next call) and
``RowRejected`` (the database refused the data itself - isolate and dead-letter the rows).
Both keep the original error as ``__cause__``. Each store is used by one actor at a time;
``insert`` blocks for the round trip and the commit.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from typing import Any, Protocol, Sequence

__all__ = ["PostgresStore", "ReadingStore", "RowRejected", "SqliteStore", "StoreUnavailable",
           "validate_identifier"]

Row = tuple[str, str, float, float, float]
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")


class StoreUnavailable(Exception):
    """The database cannot take the batch now (nothing was committed); retry later."""


class RowRejected(ValueError):
    """The database refused a row's data (nothing of the batch was committed)."""


def validate_identifier(name: str, what: str) -> str:
    """A lower-case SQL identifier of 1-63 characters (``[a-z_][a-z0-9_]*``), else ``ValueError``."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"{what} must match [a-z_][a-z0-9_]{{0,62}}, got {name!r}")
    return name


class ReadingStore(Protocol):
    """What the writer needs: ``insert(rows) -> newly inserted`` (committed), ``count()``,
    ``close()``."""

    def insert(self, rows: Sequence[Row]) -> int: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class SqliteStore:
    """Readings in an SQLite file (WAL, ``synchronous=FULL``), batched with ``executemany``."""

    def __init__(self, path: str | os.PathLike[str], table: str = "readings", *,
                 busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.table = validate_identifier(table, "table")
        self._lock = threading.Lock()  # the connection is used by one caller at a time
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (tenant TEXT NOT NULL, device TEXT NOT NULL,"
            " ts REAL NOT NULL, temp REAL NOT NULL, hum REAL NOT NULL,"
            " PRIMARY KEY (tenant, device, ts)) WITHOUT ROWID")
        self._sql = (f"INSERT INTO {self.table} (tenant, device, ts, temp, hum) VALUES "
                     "(?, ?, ?, ?, ?) ON CONFLICT (tenant, device, ts) DO NOTHING")

    def insert(self, rows: Sequence[Row]) -> int:
        """Insert and commit; returns how many rows were new. Raises ``StoreUnavailable``
        (locked, I/O error) or ``RowRejected`` (constraint on the data)."""
        if not rows:
            return 0
        with self._lock:
            conn = self._conn
            before = conn.total_changes
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(self._sql, rows)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError,
                                    sqlite3.InterfaceError)):
                    raise RowRejected(str(exc)) from exc
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
            return conn.total_changes - before

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path} table={self.table}>"


class PostgresStore:
    """Readings in PostgreSQL through psycopg 3. ``method="copy"`` (default) streams a batch
    with binary ``COPY`` into a session temp table and moves it with one ``INSERT ... SELECT
    ... ON CONFLICT DO NOTHING``; ``method="executemany"`` uses psycopg's pipelined
    ``executemany``. ``schema`` (created if missing) and ``table`` are validated identifiers.
    Connects in the constructor (``StoreUnavailable`` if it cannot) and again, lazily, after
    an error."""

    def __init__(self, conninfo: str, table: str = "readings", *, schema: str | None = None,
                 method: str = "copy", connect_timeout: float = 5.0) -> None:
        if method not in ("copy", "executemany"):
            raise ValueError(f"method must be 'copy' or 'executemany', got {method!r}")
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("PostgresStore needs psycopg 3: pip install "
                              "'streamvisor[postgres]'") from exc
        self._pg, self._sql = psycopg, sql
        self.conninfo = conninfo
        self.table = validate_identifier(table, "table")
        self.schema = None if schema is None else validate_identifier(schema, "schema")
        self.method = method
        self._timeout = max(1, int(connect_timeout))
        name = sql.Identifier(self.table) if schema is None else sql.Identifier(schema, table)
        self._name = name
        self._staging = sql.Identifier(f"sv_staging_{self.table}")
        self._lock = threading.Lock()  # the connection is used by one caller at a time
        self._conn: Any = None
        with self._lock:
            self._connect()

    def _connect(self) -> Any:
        sql = self._sql
        try:
            conn = self._pg.connect(self.conninfo, connect_timeout=self._timeout)
            with conn.transaction():
                if self.schema is not None:
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.schema)))
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (tenant text NOT NULL, device text NOT NULL,"
                    " ts double precision NOT NULL, temp double precision NOT NULL,"
                    " hum double precision NOT NULL, PRIMARY KEY (tenant, device, ts))"
                ).format(self._name))
                conn.execute(sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (tenant text, device text,"
                    " ts double precision, temp double precision, hum double precision)"
                    " ON COMMIT DELETE ROWS").format(self._staging))
        except self._pg.Error as exc:
            raise StoreUnavailable(f"postgres: cannot connect or create {self._where()}: "
                                   f"{exc}") from exc
        self._conn = conn
        return conn

    def _where(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def insert(self, rows: Sequence[Row]) -> int:
        """Insert and commit one batch; returns how many rows were new. Raises
        ``StoreUnavailable`` (connection or server trouble: the next call reconnects) or
        ``RowRejected`` (the server refused the data)."""
        if not rows:
            return 0
        pg, sql = self._pg, self._sql
        with self._lock:
            conn = self._conn if self._conn is not None and not self._conn.closed else self._connect()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if self.method == "copy":
                        with cur.copy(sql.SQL(
                                "COPY {} (tenant, device, ts, temp, hum) FROM STDIN "
                                "(FORMAT BINARY)").format(self._staging)) as copy:
                            copy.set_types(["text", "text", "float8", "float8", "float8"])
                            for row in rows:
                                copy.write_row(row)
                        cur.execute(sql.SQL(
                            "INSERT INTO {} SELECT * FROM {} ON CONFLICT (tenant, device, ts) "
                            "DO NOTHING").format(self._name, self._staging))
                        return max(0, int(cur.rowcount))
                    cur.executemany(sql.SQL(
                        "INSERT INTO {} (tenant, device, ts, temp, hum) VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (tenant, device, ts) DO NOTHING").format(self._name),
                        rows, returning=False)
                    return max(0, int(cur.rowcount))
            except (pg.errors.DataError, pg.errors.IntegrityError) as exc:
                raise RowRejected(str(exc).strip()) from exc
            except pg.Error as exc:
                self._drop()
                raise StoreUnavailable(f"postgres {self._where()}: {str(exc).strip()}") from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except self._pg.Error:
                pass

    def count(self) -> int:
        with self._lock:
            conn = self._conn if self._conn is not None and not self._conn.closed else self._connect()
            with conn.transaction():
                row = conn.execute(self._sql.SQL("SELECT count(*) FROM {}").format(self._name)).fetchone()
            return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"<PostgresStore {self._where()} method={self.method}>"
