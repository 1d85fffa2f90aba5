"""Group commit: one thread owns the connection and turns many calls into one transaction.

One ``Committer`` serves every queue of one database file in the process (``_engine`` shares
it). Callers ``submit(kind, fn, *args)`` and block until the transaction holding their operation
has committed (WAL fsynced: acknowledged means on disk) or failed. Acks may instead be
*buffered* (``buffer_ack``): they return at once and ride with the next group (they are taken
together with the pending operations, so ``flush()`` - a no-op submitted and waited for - makes
every ack buffered before it durable, or raises if one could not be committed). A lost buffered
ack (a crash, a failed group) only means a redelivery. The committer takes every
pending operation (up to ``max_group`` rows of work), runs them between ``BEGIN IMMEDIATE`` and
``COMMIT``, then wakes the callers. If anything in a group fails, the group is rolled back and
its operations are retried one per transaction, so one refused put (disk full) never fails or
falsely acknowledges its neighbours. Groups that hold only claims, reads and buffered
settlements are committed without an fsync (``_LIGHT``: safe from a process crash, made durable
against power loss by the next fsynced commit). An operation that refuses before writing anything (a put
over ``max_bytes``) raises ``Refused`` and the group goes on without it.

Errors are classified in one place (``_faults``): corruption (SQLITE_CORRUPT/NOTADB, or damage
an operation found) repairs the file and retries the operation once; a full disk raises
``QueueFull``; busy, locked, I/O and permission errors raise ``QueueUnavailable`` and never touch
the file; anything else is a ``QueueError``.

``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so claims from several processes on
the same file are serialised and never hand out the same delivery; ``busy_timeout`` bounds the
wait for another process's transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Any, Callable, TypeVar, cast

from .._cell import current_cell
from . import _log, _ops
from ._faults import CORRUPT, FULL, UNAVAILABLE, kind, unavailable
from ._groupcommit import GroupCommitBase
from ._ops import DamagedFile, Group, Refused
from ._types import QueueClosed, QueueError

__all__ = ["Committer"]

_T = TypeVar("_T")

# Groups made only of these commit with synchronous=NORMAL: written to the WAL (safe from a
# process crash, kill -9 included) but not fsynced; the next durable commit (or checkpoint)
# fsyncs them with it. Power loss before that can only undo them: a claim (the record is
# delivered again, its attempt not counted), a buffered settlement (delivered again), a sweep
# (redone). Every other group (puts, waited settlements, flush, requeue, purge) is fsynced.
_LIGHT = frozenset({"claim", "read", "buffered-ack", "buffered-nack", "buffered-reject"})


class _Op:
    __slots__ = ("kind", "fn", "args", "weight", "result", "error", "done", "retried", "clock")

    def __init__(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...],
                 weight: int, clock: Any = time) -> None:
        self.kind, self.fn, self.args, self.weight, self.clock = kind, fn, args, weight, clock
        self.retried = False  # one retry per op, after a repair
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


def _nothing(group: Group) -> None:
    return None


def _wait_blocking(wait: Callable[[], Any]) -> Any:
    """Wait for a group commit. On a pool worker the scheduler counts the worker as blocked
    meanwhile (as in ``ask``), so other actors run - on a spare worker if every worker waits -
    and their queue calls join the same group: more calls per fsync, not fewer workers."""
    cell = current_cell()
    blocking = getattr(cell.runtime._scheduler, "_blocking", None) if cell is not None else None
    return blocking(wait) if blocking is not None else wait()


class Committer(GroupCommitBase):
    """The single writer of one database file; see the module docstring.

    Who runs a group: when no group is running, the calling thread runs it itself (taking every
    pending operation and buffered ack with its own), which saves two thread switches per call;
    while a group runs, calls queue up and the committer thread runs them as the next group
    (group commit). Only one group runs at a time (``_busy``), so the connection is used by
    one thread at a time. Buffered acks alone are committed by the thread within about twice
    ``ACK_DELAY`` after the first of them, unless a group takes them earlier. While acks keep
    coming, the idle thread looks for them every ``ACK_DELAY`` instead of being woken for each
    first ack (which cost a thread switch per ``get`` in a consumer loop).

    Lock rule: ``_lock`` guards ``_pending``, ``_acks``, ``_busy``, ``_closing`` and
    ``generation``; nobody holds it while touching SQLite or waiting for an op. ``_work`` wakes
    the committer thread; ``_records`` is notified after every commit that made records
    deliverable (``_groupcommit.WAKES`` kinds; ``generation`` grows then), which blocking
    ``get`` waits on.

    An op with ``raw=True`` runs alone, outside any transaction, with the connection itself
    (``fn(conn)``): for VACUUM and checkpoints.
    """

    ACK_DELAY = 0.01     # buffered acks alone are committed within about twice this
    ACK_POLL_FOR = 1.0   # after an ack, the idle thread looks every ACK_DELAY for this long

    def __init__(self, conn: sqlite3.Connection, name: str, path: str,
                 repair: Callable[[str, bool], sqlite3.Connection],
                 reopen: Callable[[], sqlite3.Connection], max_group: int = 20_000) -> None:
        self._conn = conn
        self._repair = repair
        self._reopen = reopen
        self._path = path
        self._max_group = max_group
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._records = threading.Condition(self._lock)
        self._pending: list[_Op] = []
        self._acks: dict[str, dict[int, list[int]]] = {}  # queue -> lease -> ids (buffered)
        self._acks_at = -1e9  # monotonic time of the oldest buffered ack (or the last one)
        self._asleep = False   # the thread waits without a timeout (a first ack must wake it)
        self._busy = False   # a group is running (in the committer thread or a caller's)
        self._sync: tuple[Any, bool] = (conn, False)  # (connection, its synchronous is NORMAL)
        self._closing = False
        self.generation = 0
        self.groups = 0
        self.ops = 0
        self.acks_buffered = 0
        self.ack_failures = 0  # buffered settlements that could not be committed
        self.last_ack_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"streamvisor-queue:{name}",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def _enqueue_and_run(self, ops: list[_Op]) -> None:
        with self._lock:
            if self._closing:
                raise QueueClosed("the queue is closed")
            self._pending += ops
            if self._busy:
                batch = None
                self._work.notify()
            else:
                self._busy = True
                batch = self._take()
        if batch is not None:  # no group was running: run this one here
            try:
                self._execute(batch)
            except BaseException as exc:  # e.g. KeyboardInterrupt in this (the caller's) thread
                self._abandon(batch, exc)
                raise
            finally:
                with self._lock:
                    self._busy = False
                    if self._pending or self._acks or self._closing:
                        self._work.notify()

    def _abandon(self, batch: list[_Op], exc: BaseException) -> None:
        """A batch interrupted half-way: roll back what is open and release every op still
        waiting with an error (never a false ack: at worst a put that did commit is reported
        failed and put again, a duplicate at-least-once allows), so no other caller hangs."""
        with contextlib.suppress(Exception):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        for op in batch:
            if op.done.locked():
                op.result = None
                op.error = QueueError(f"interrupted before its group committed: {exc!r}")
                op.done.release()

    def submit(self, kind: str, fn: Callable[..., _T], *args: Any, weight: int = 1,
               clock: Any = time, raw: bool = False) -> _T:
        """Run ``fn(group, *args)`` in the next group transaction; block until committed.
        ``clock.time()`` is the group's ``now`` for this op.

        Raises ``QueueClosed`` after close, ``QueueFull`` when the queue or disk is full,
        ``QueueUnavailable`` for a passing fault (busy, locked, I/O, permission), ``QueueError``
        for other storage errors, or what ``fn`` raised.
        """
        op = _Op("raw:" + kind if raw else kind, fn, args, weight, clock)

        def run_and_wait() -> None:
            self._enqueue_and_run([op])  # (runs the group right here when none is running)
            op.done.acquire()
        _wait_blocking(run_and_wait)
        if op.error is not None:
            raise op.error
        result: _T = op.result
        return result

    def buffer_ack(self, queue: str, lease: int, id: int) -> None:
        """Ack ``id`` (leased under ``lease``) in the next group; returns at once."""
        with self._lock:
            if self._closing:
                raise QueueClosed("the queue is closed")
            if not self._acks:
                self._acks_at = time.monotonic()
                if self._asleep:  # else it looks again within ACK_DELAY anyway
                    self._work.notify()
            by_lease = self._acks.get(queue)
            if by_lease is None:
                by_lease = self._acks[queue] = {}
            ids = by_lease.get(lease)
            if ids is None:
                by_lease[lease] = [id]
            else:
                ids.append(id)
            self.acks_buffered += 1

    def post(self, kind: str, fn: Callable[..., Any], *args: Any, clock: Any = time) -> None:
        """Like ``submit`` but returns at once: ``fn`` runs in the next group, its failure is
        only counted and logged (like a buffered ack's)."""
        op = _Op("buffered-" + kind, fn, args, 1, clock)
        with self._lock:
            if self._closing:
                raise QueueClosed("the queue is closed")
            self._pending.append(op)
            self._work.notify()

    def flush(self) -> None:
        """Block until every ack buffered before this call is on disk. Raises the error of a
        buffered ack that could not be committed meanwhile (its record will be redelivered)."""
        with self._lock:
            before = self.ack_failures
        # a flush op's result is the count of failed ack groups (set where groups commit)
        after = cast(int, self.submit("flush", _nothing))
        if after > before and self.last_ack_error is not None:
            raise self.last_ack_error

    def wait_for_records(self, generation: int, timeout: float) -> None:
        """Block up to ``timeout`` s until a commit made records deliverable (after
        ``generation``). Returns early when the queue closes."""
        with self._lock:
            if self.generation == generation and not self._closing:
                self._records.wait(timeout)

    def close(self) -> None:
        """Finish every pending operation and buffered ack, stop the thread, close the
        connection. Idempotent."""
        with self._lock:
            self._closing = True
            self._work.notify_all()
            self._records.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # ------------------------------------------------------------------ running groups

    def _take(self) -> list[_Op]:
        """The next batch (buffered acks first). Holds ``_lock``; ``_busy`` is set."""
        pending = self._pending
        if pending and pending[0].kind.startswith("raw:"):
            return [pending.pop(0)]
        return self._next_batch(
            lambda queue, by_lease, n: _Op("buffered-ack", _ops.ack, (queue, by_lease), n))

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while True:
                        now = time.monotonic()
                        if not self._busy:
                            if self._pending:
                                break
                            if self._acks:
                                due = self._acks_at + self.ACK_DELAY - now
                                if due <= 0 or self._closing:
                                    break
                                self._work.wait(due)
                                continue
                            if self._closing:
                                return
                        if now - self._acks_at < self.ACK_POLL_FOR:
                            # Acks came lately: look again in ACK_DELAY rather than be woken
                            # by the next first ack (a thread switch per get when streaming).
                            self._work.wait(self.ACK_DELAY)
                        else:
                            self._asleep = True
                            self._work.wait()
                            self._asleep = False
                    self._busy = True
                    batch = self._take()
                try:
                    self._execute(batch)
                except BaseException as exc:  # the thread's boundary: never leave a caller hanging
                    self._abandon(batch, exc)
                    if not isinstance(exc, Exception):
                        raise
                finally:
                    with self._lock:
                        self._busy = False
        finally:
            self._conn.close()

    def _execute(self, batch: list[_Op]) -> None:
        """Run one batch (one group, or one raw op), then wake whoever waits for it."""
        if batch[0].kind.startswith("raw:"):
            self._raw(batch[0])
        else:
            self._group(batch)
        self._account(batch)

    def _log_lost(self, op: _Op) -> None:
        _log.logger().warning("queue.buffered_settlements_lost", path=self._path,
                              kind=op.kind, count=op.weight, error=str(op.error))

    def _raw(self, op: _Op) -> None:
        try:
            op.result = op.fn(self._conn, *op.args)
        except Exception as exc:  # the op boundary: its caller gets the error
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            op.error = _translate(self._path, op.kind[4:], exc)

    def _group(self, batch: list[_Op]) -> None:
        conn = self._conn
        try:
            light = all(op.kind in _LIGHT for op in batch)
            if self._sync != (conn, light):
                conn.execute(f"PRAGMA synchronous = {'NORMAL' if light else 'FULL'}")
                self._sync = (conn, light)
            conn.execute("BEGIN IMMEDIATE")
            group = Group(conn, 0.0)
            results = []
            for op in batch:
                op.error = None
                group.now = op.clock.time()
                try:
                    results.append(op.fn(group, *op.args))
                except Refused as refused:  # wrote nothing: the group goes on without it
                    op.error = refused.error
                    results.append(None)
            group.finish()
            conn.execute("COMMIT")
        except Exception as exc:  # the group boundary: roll back, then isolate the culprit
            with contextlib.suppress(sqlite3.Error):  # e.g. closed after a failed repair
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if len(batch) == 1:
                self._fail_or_retry(batch[0], exc)
            else:
                for op in batch:
                    self._group([op])
            return
        for op, result in zip(batch, results):
            if op.error is None:
                op.result = result

    def _fail_or_retry(self, op: _Op, exc: Exception) -> None:
        fault = kind(exc)
        if (fault == CORRUPT or isinstance(exc, DamagedFile)) and not op.retried:
            # Damage that the quick check at open cannot see (an index that disagrees with its
            # table, a page that went bad since, a damaged lease row): repair the file (a
            # thorough check, or at once for damage SQLite cannot see; then move aside and
            # salvage) and run the operation once more.
            op.retried = True
            self._conn.close()
            try:
                self._conn = self._repair(str(exc), isinstance(exc, DamagedFile))
            except Exception as failure:  # the repair boundary: report, never kill the thread
                if kind(failure) in (FULL, UNAVAILABLE):
                    op.error = unavailable(self._path, "repairing damage", failure)
                else:
                    op.error = QueueError(f"storage damaged and repair failed: {failure!r}")
                    op.error.__cause__ = exc
                with contextlib.suppress(Exception):  # the original is back: keep serving it
                    self._conn = self._reopen()
                return
            self._group([op])
            return
        op.error = _translate(self._path, op.kind, exc)
        if fault in (FULL, UNAVAILABLE):
            _log.logger().warning("queue.unavailable", path=self._path, kind=op.kind,
                                  fault=fault, error=str(exc))


def _translate(path: str, what: str, exc: Exception) -> BaseException:
    if kind(exc) in (FULL, UNAVAILABLE):
        return unavailable(path, f"running {what!r}", exc)
    if isinstance(exc, sqlite3.Error):
        err: BaseException = QueueError(f"storage error in {path!r}: {exc}")
        err.__cause__ = exc
        return err
    return exc
