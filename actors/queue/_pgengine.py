"""The PostgreSQL queue's engine: one connection and one committer thread per (server, schema,
prefix) in the process, shared by every queue (of any name or tenant) opened on it.

Group commit, as in the SQLite backend: callers ``submit`` an operation and block until the
transaction holding it committed; the thread takes every pending operation (up to ``max_group``
rows of work) into one transaction and one commit (one WAL flush on the server). Acks can be
*buffered* (``buffer_ack``) and settlements *posted* (``post``): they return at once and ride
with the next group; ``flush()`` blocks until everything buffered before it is committed, and
raises if some of it could not be (those records are simply delivered again).

Faults: a connection that fails (server down, restarted, network gone, connection terminated)
raises ``QueueUnavailable`` (an ``OSError``, the message names the server and the cause) from
the calls in that group, and the next group reconnects. A group whose connection broke before
it sent ``COMMIT`` is retried once on a fresh connection (nothing of it was committed); one that
broke during ``COMMIT`` is reported as unavailable with an unknown outcome (a put may have been
stored: at least once). A full disk raises ``QueueFull``; a lock wait beyond ``lock_timeout``,
a cancelled statement, a read-only server or missing privileges raise ``QueueUnavailable``;
deadlocks and serialisation failures retry the group (bounded). Nothing is ever treated as
corruption: the server owns the bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from typing import Any, Callable

from . import _log, _pgops
from ._groupcommit import WAKES as _WAKES, GroupCommitBase, Registry
from ._types import QueueClosed, QueueError, QueueFull, QueueUnavailable

__all__ = ["PgEngine", "acquire", "describe", "open_engines", "release"]

_COUNTED = frozenset({"put", "ack", "buffered-ack", "purge"})  # kinds that change counters
_RETRIES = 3  # deadlock / serialisation failure retries per group
ACK_DELAY = 0.010  # seconds a lone buffered ack waits for company (see ``_take``)
# A group made only of these commits without waiting for the server's WAL flush: nobody waits
# for their durability (claims, reads, buffered settlements). A server crash can undo such a
# claim (the record comes back without that attempt counted) or settlement (delivered again),
# never a put or a waited call; the next synchronous commit makes them durable too.
_LAZY = frozenset({"claim", "read", "buffered-ack", "buffered-nack", "buffered-reject"})


class _Op:
    __slots__ = ("kind", "fn", "qk", "args", "weight", "now", "locks", "result", "error", "done")

    def __init__(self, kind: str, fn: Callable[..., Any], qk: Any, args: tuple[Any, ...],
                 weight: int, now: float, locks: tuple[Any, ...] = ()) -> None:
        self.kind, self.fn, self.qk, self.args, self.weight, self.now = \
            kind, fn, qk, args, weight, now
        # The queues whose counter rows the op changes (locked first, in order, by its group).
        self.locks = locks or ((qk,) if kind in _COUNTED else ())
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


def _nothing(tx: Any, qk: Any) -> None:
    return None


def describe(conninfo: str) -> str:
    """``host:port/dbname`` of a connection string, without secrets (for messages)."""
    try:
        from psycopg.conninfo import conninfo_to_dict
        d = conninfo_to_dict(conninfo)
    except Exception:
        return "PostgreSQL (unparsable connection string)"
    host = d.get("host") or d.get("hostaddr") or "localhost"
    return f"PostgreSQL {host}:{d.get('port') or 5432}/{d.get('dbname') or d.get('user') or ''}"


def classify(exc: BaseException) -> str | None:
    """``"broken"`` (the connection failed), ``"retry"`` (deadlock, serialisation),
    ``"full"``, ``"unavailable"`` (a passing fault), or None (anything else)."""
    import psycopg
    from psycopg import errors as e

    if isinstance(exc, QueueFull):
        return "full"
    if isinstance(exc, QueueUnavailable):
        return "unavailable"
    if isinstance(exc, (e.DeadlockDetected, e.SerializationFailure)):
        return "retry"
    if isinstance(exc, e.DiskFull):
        return "full"
    if isinstance(exc, (e.LockNotAvailable, e.QueryCanceled, e.ReadOnlySqlTransaction,
                        e.InsufficientPrivilege, e.InsufficientResources,
                        e.CannotConnectNow, e.TooManyConnections)):
        return "unavailable"
    if isinstance(exc, (e.AdminShutdown, e.CrashShutdown, e.ConnectionException)):
        return "broken"
    if isinstance(exc, psycopg.OperationalError):
        return "broken"
    if isinstance(exc, psycopg.InterfaceError):
        return "broken"  # e.g. "the connection is closed"
    if isinstance(exc, OSError):
        return "unavailable"
    return None


def unavailable(where: str, doing: str, exc: BaseException, *,
                unknown: bool = False) -> QueueUnavailable:
    """The error for a passing fault ``exc`` (``QueueFull`` for a full disk); names the
    server and the cause. ``unknown``: the fault hit the commit, its outcome is unknown."""
    if isinstance(exc, QueueUnavailable):
        return exc
    from psycopg import errors as e

    name = type(exc).__name__
    text = f"{where} unavailable while {doing}: {name}: {str(exc).strip() or 'no detail'}"
    if unknown:
        text += " (the connection failed during COMMIT: the outcome is unknown)"
    err: QueueUnavailable
    if classify(exc) == "full":
        err = QueueFull(f"disk full: {text}")
    else:
        code = errno.EIO
        if isinstance(exc, (e.LockNotAvailable, e.TooManyConnections, e.CannotConnectNow)):
            code = errno.EBUSY
        elif isinstance(exc, (e.InsufficientPrivilege, e.ReadOnlySqlTransaction)):
            code = errno.EACCES
        elif classify(exc) == "broken":
            code = errno.ECONNREFUSED if "refused" in str(exc).lower() else errno.ECONNRESET
        err = QueueUnavailable(text, code)
    err.__cause__ = exc
    return err


class PgEngine(GroupCommitBase):
    """One connection + committer thread; see the module docstring. Use ``acquire``."""

    def __init__(self, conninfo: str, schema: str | None, prefix: str, *,
                 connect_timeout: float, lock_timeout: float, io_timeout: float,
                 max_group: int = 20_000) -> None:
        self.conninfo, self.schema, self.prefix = conninfo, schema, prefix
        self.where = describe(conninfo)
        self.connect_timeout, self.lock_timeout = connect_timeout, lock_timeout
        self.io_timeout = io_timeout
        self._busy_since = 0.0  # monotonic start of the running group (0: idle)
        self.watchdog_cuts = 0
        self.key = (conninfo, schema, prefix)
        self.users = 0
        self._max_group = max_group
        self._conn: Any = None
        self.sql: _pgops.Sql | None = None
        self._connect()  # raises QueueUnavailable: the caller sees it at open
        self._cond = threading.Condition(threading.Lock())
        self._records = self._cond  # what get() waits on (GroupCommitBase)
        self._pending: list[_Op] = []
        self._acks: dict[Any, dict[int, list[int]]] = {}
        self._waiting = False
        self._closing = False
        self.generation = 0
        self.groups = self.ops = self.reconnects = 0
        self.acks_buffered = self.ack_failures = 0
        self.last_ack_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"streamvisor-pgqueue:{prefix}")
        self._thread.start()
        self._stopped = threading.Event()
        self.wakeups = 0  # notifications received from the server
        self.listening = threading.Event()  # set while the LISTEN connection is up
        self._listener = threading.Thread(target=self._listen, daemon=True,
                                          name=f"streamvisor-pgqueue-listen:{prefix}")
        self._listener.start()
        # Bounded: without LISTEN the queue still works, waiting gets poll instead.
        self.listening.wait(self.connect_timeout)
        self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                          name=f"streamvisor-pgqueue-watchdog:{prefix}")
        self._watchdog.start()

    def _watch(self) -> None:
        """Bound every group in time: a server that stopped answering without closing the
        connection (a partition, a frozen host) would otherwise block the committer, and every
        caller, for as long as TCP keeps trying. After ``io_timeout`` the connection's socket
        is shut down; the blocked call fails and its callers get ``QueueUnavailable``."""
        tick = min(1.0, self.io_timeout / 4)
        while not self._stopped.wait(tick):  # its own event: not woken by every submit
            if not self._thread.is_alive():
                return
            since, conn = self._busy_since, self._conn
            if since and conn is not None and time.monotonic() - since > self.io_timeout:
                self._cut(conn)

    def _listen(self) -> None:
        """LISTEN on the tables' channel and wake waiting ``get`` calls on each notification
        (puts, nacks and requeues committed by any process). A failed listening connection is
        retried every few seconds; meanwhile ``get`` falls back to polling."""
        import psycopg

        assert self.sql is not None
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo_with_defaults(), autocommit=True) as conn:
                    conn.execute(self.sql.listen)
                    self.listening.set()
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=0.1):
                            self.wakeups += 1
                            with self._cond:
                                self.generation += 1
                                self._cond.notify_all()
            except Exception as exc:  # the listener boundary: log, back off, retry
                self.listening.clear()
                if self._stopped.is_set():
                    return
                _log.logger().info("queue.listen_failed", server=self.where, error=str(exc))
                self._stopped.wait(2.0)

    def _cut(self, conn: Any) -> None:
        try:
            fd = conn.pgconn.socket
        except Exception:
            return
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
            self.watchdog_cuts += 1
            _log.logger().warning("queue.server_unresponsive", server=self.where,
                                  io_timeout=self.io_timeout)

    # ------------------------------------------------------------------ connection

    def _connect(self) -> None:
        """(Re)connect and make sure the schema exists. Raises ``QueueUnavailable`` for a
        passing fault, ``QueueError`` for a schema this version cannot use."""
        import psycopg

        try:
            conn = psycopg.connect(self._conninfo_with_defaults(), autocommit=False)
        except Exception as exc:  # the connect boundary: classify, never leak psycopg errors
            raise unavailable(self.where, "connecting", exc) from exc
        try:
            conn.execute("SELECT set_config('lock_timeout', %s, false)",
                         (f"{int(self.lock_timeout * 1000)}ms",))
            # Plans for the values at hand: a generic plan of the prepared statements (chosen
            # after a few runs, on a young table without statistics) can turn an ack of 1,000
            # ids by primary key into a scan of the whole table.
            conn.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', false)")
            conn.commit()
            if self.sql is None:
                self.sql = _pgops.Sql(conn, self.schema, self.prefix)
            self._create_schema(conn)
        except Exception as exc:  # the setup boundary
            with contextlib.suppress(Exception):
                conn.close()
            if isinstance(exc, QueueError):
                raise
            if classify(exc) is not None:
                raise unavailable(self.where, "creating the queue schema", exc) from exc
            raise QueueError(f"{self.where}: cannot create the queue schema: {exc}") from exc
        self._conn = conn

    def _conninfo_with_defaults(self) -> str:
        """The connection string plus what it does not set itself: ``connect_timeout``, TCP
        keepalives (a peer that vanished is noticed in ~25 s) and ``tcp_user_timeout``."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        given = conninfo_to_dict(self.conninfo)
        defaults = {"connect_timeout": max(1, round(self.connect_timeout)),
                    "application_name": "streamvisor-queue", "keepalives": 1,
                    "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                    "tcp_user_timeout": int(self.io_timeout * 1000)}
        return make_conninfo(self.conninfo,
                             **{k: v for k, v in defaults.items() if k not in given})

    def _create_schema(self, conn: Any) -> None:
        s = self.sql
        assert s is not None
        with conn.cursor() as cur:
            # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalogue: serialise.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (s.lock_key,))
            if s.schema:
                cur.execute(s.schema)
            for statement in s.ddl[:-1]:
                cur.execute(statement)
            cur.execute(s.ddl[-1], (_pgops.SCHEMA_VERSION,))
            version = cur.execute(s.version).fetchone()[0]
        conn.commit()
        if version > _pgops.SCHEMA_VERSION:
            raise QueueError(f"{self.where}: queue tables {self.prefix!r} have schema version "
                             f"{version}, newer than this streamvisor's "
                             f"{_pgops.SCHEMA_VERSION}: upgrade streamvisor")

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # ------------------------------------------------------------------ callers

    def submit(self, kind: str, fn: Callable[..., Any], qk: Any, *args: Any, weight: int = 1,
               now: float = 0.0, locks: tuple[Any, ...] = ()) -> Any:
        """Run ``fn(tx, qk, *args)`` in the next group (``tx.now = now``); block until it
        committed. ``locks``: the queues whose counters it changes (default: ``qk`` for puts,
        acks and purges). Raises ``QueueClosed``, ``QueueFull``, ``QueueUnavailable``,
        ``QueueError`` or what ``fn`` raised."""
        op = _Op(kind, fn, qk, args, weight, now, locks)
        with self._cond:
            if self._closing:
                raise QueueClosed("the queue is closed")
            self._pending.append(op)
            self._cond.notify_all()
        op.done.acquire()
        if op.error is not None:
            raise op.error
        return op.result

    def post(self, kind: str, fn: Callable[..., Any], qk: Any, *args: Any,
             now: float = 0.0) -> None:
        """Like ``submit`` but returns at once; a failure is counted and logged."""
        op = _Op("buffered-" + kind, fn, qk, args, 1, now)
        with self._cond:
            if self._closing:
                raise QueueClosed("the queue is closed")
            self._pending.append(op)
            self._cond.notify_all()

    def buffer_ack(self, qk: Any, lease: int, id: int) -> None:
        """Ack ``id`` (leased under ``lease``) in the next group; returns at once."""
        with self._cond:
            if self._closing:
                raise QueueClosed("the queue is closed")
            self._acks.setdefault(qk, {}).setdefault(lease, []).append(id)
            self.acks_buffered += 1
            if self._waiting:
                self._waiting = False
                self._cond.notify_all()

    def flush(self) -> None:
        """Block until everything buffered before this call is committed; raise the error of
        buffered work that could not be (its records will be delivered again)."""
        with self._cond:
            before = self.ack_failures
        after = self.submit("flush", _nothing, None)
        if after > before and self.last_ack_error is not None:
            raise self.last_ack_error

    def wait_for_records(self, generation: int, timeout: float) -> None:
        with self._cond:
            if self.generation == generation and not self._closing:
                self._cond.wait(timeout)

    def close(self) -> None:
        """Finish pending and buffered work, stop the thread, close the connection."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._stopped.set()
        if self._listener is not threading.current_thread():
            self._listener.join(timeout=2.0)  # it sees the event within 0.1 s

    # ------------------------------------------------------------------ committer thread

    def _take(self) -> list[_Op] | None:
        delayed = False
        while True:
            while not self._pending and not self._acks and not self._closing:
                self._waiting = True
                self._cond.wait()
            self._waiting = False
            if self._pending or self._closing or delayed:
                break
            # Only buffered acks: give them up to ACK_DELAY to ride with the next call's group
            # (a consumer's next get) instead of a commit of their own; any submit ends the wait.
            delayed = True
            self._cond.wait(ACK_DELAY)
        if not self._pending and not self._acks:
            return None
        return self._next_batch(
            lambda qk, by_lease, n: _Op("buffered-ack", _pgops.ack, qk, (by_lease,), n, 0.0))

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    batch = self._take()
                if batch is None:
                    return
                self._group(batch)
                self._account(batch)
        finally:
            self._drop_connection()

    def _log_lost(self, op: _Op) -> None:
        _log.logger().warning("queue.buffered_settlements_lost", server=self.where,
                              kind=op.kind, n=op.weight, error=str(op.error))

    def _group(self, batch: list[_Op]) -> None:
        self._busy_since = time.monotonic()
        try:
            self._group_inner(batch)
        finally:
            self._busy_since = 0.0

    def _group_inner(self, batch: list[_Op]) -> None:
        fresh = False  # retried once on a fresh connection already
        retries = 0
        while True:
            committing = False
            try:
                if self._conn is None or self._conn.closed:
                    self._drop_connection()
                    fresh = True  # one connection attempt per group
                    self._connect()
                    self.reconnects += 1
                results = self._transaction(batch)
                committing = True
                self._conn.commit()
            except Exception as exc:  # the group boundary: roll back, then decide
                fault = classify(exc)
                broken = fault == "broken" or self._conn is None or self._conn.broken
                if broken:
                    self._drop_connection()
                    if not committing and not fresh:
                        fresh = True  # e.g. the server restarted since the last group
                        continue
                    _log.logger().warning("queue.unavailable", server=self.where,
                                          error=str(exc), committing=committing)
                    for op in batch:
                        op.error = unavailable(self.where, f"running {op.kind!r}", exc,
                                               unknown=committing)
                    return
                with contextlib.suppress(Exception):
                    self._conn.rollback()
                if fault == "retry" and retries < _RETRIES:
                    retries += 1
                    continue
                if len(batch) > 1 and fault not in ("full", "unavailable"):
                    for op in batch:  # isolate the culprit: one transaction each
                        self._group_inner([op])
                    return
                for op in batch:
                    op.error = self._translate(op.kind, exc)
                return
            for op, result in zip(batch, results):
                if op.error is None:
                    op.result = result
            return

    def _transaction(self, batch: list[_Op]) -> list[Any]:
        assert self.sql is not None
        with self._conn.cursor() as cur:
            tx = _pgops.Tx(cur, self.sql)
            if all(op.kind in _LAZY for op in batch):
                cur.execute("SET LOCAL synchronous_commit = off")
            tx.lock_counters(sorted({qk for op in batch for qk in op.locks}),
                             reads=any(op.kind == "put" for op in batch))
            results = []
            for op in batch:
                op.error = None
                tx.now = op.now
                try:
                    results.append(op.fn(tx, op.qk, *op.args))
                except _pgops.Refused as refused:  # wrote nothing: the group goes on
                    op.error = refused.error
                    results.append(None)
            tx.finish()
            if any(op.kind in _WAKES and op.error is None for op in batch):
                # Delivered at COMMIT to every engine LISTENing on these tables (other
                # processes and hosts): their waiting get() claims at once instead of polling.
                cur.execute(self.sql.notify, (self.sql.channel,))
        return results

    def _translate(self, kind: str, exc: BaseException) -> BaseException:
        if classify(exc) is not None:
            return unavailable(self.where, f"running {kind!r}", exc)
        import psycopg
        if isinstance(exc, psycopg.Error):
            err = QueueError(f"{self.where}: storage error in {kind!r}: {exc}")
            err.__cause__ = exc
            return err
        return exc


_registry = Registry()


def acquire(conninfo: str, schema: str | None, prefix: str, *, connect_timeout: float,
            lock_timeout: float, io_timeout: float) -> PgEngine:
    """The engine of (conninfo, schema, prefix), connected on first use; pair with
    ``release``. Raises ``QueueUnavailable`` when the server cannot be reached."""
    engine: PgEngine = _registry.acquire(
        (conninfo, schema, prefix),
        lambda: PgEngine(conninfo, schema, prefix, connect_timeout=connect_timeout,
                         lock_timeout=lock_timeout, io_timeout=io_timeout))
    return engine


def release(engine: PgEngine) -> None:
    """One user fewer; the last one finishes the engine's work and closes it (blocks)."""
    if _registry.release(engine):
        engine.close()


def _forget_in_child() -> None:
    # A forked child inherits the registry but not the engine's threads, and must never speak
    # on the parent's PostgreSQL connections (two processes interleaving one protocol stream):
    # its queues open engines, and connections, of their own.
    _registry.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def open_engines() -> dict[Any, int]:
    return _registry.users(lambda key: key[1:])
