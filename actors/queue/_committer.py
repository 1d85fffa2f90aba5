"""Group commit: one thread owns the connection and turns many calls into one transaction.

Callers ``submit(kind, fn, *args)`` and block until the transaction holding their operation
has committed (WAL fsynced: acknowledged means on disk) or failed. The committer takes every
pending operation (up to ``max_group`` rows of work), runs them between ``BEGIN IMMEDIATE`` and
``COMMIT``, then wakes the callers. If anything in a group fails, the group is rolled back and
its operations are retried one per transaction, so one refused put (disk full) never fails or
falsely acknowledges its neighbours. An operation that refuses before writing anything (a put
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
from typing import Any, Callable, TypeVar

from . import _log
from ._faults import CORRUPT, FULL, UNAVAILABLE, kind, unavailable
from ._ops import DamagedFile, Group, Refused
from ._types import QueueClosed, QueueError

__all__ = ["Committer"]

_T = TypeVar("_T")

_WAKES = frozenset({"put", "nack", "requeue"})  # kinds that can make records deliverable


class _Op:
    __slots__ = ("kind", "fn", "args", "weight", "result", "error", "done", "retried")

    def __init__(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...],
                 weight: int) -> None:
        self.kind, self.fn, self.args, self.weight = kind, fn, args, weight
        self.retried = False  # one retry per op: with the full-file reserve, or after a repair
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


class Committer:
    """The single writer of one queue object; see the module docstring.

    Lock rule: ``_cond`` guards ``_pending``, ``_closing`` and ``generation``; the committer
    never holds it while touching SQLite, and callers never hold it while waiting for their op.
    ``generation`` grows after every commit that made records deliverable (``_WAKES`` kinds), and
    ``_cond`` is notified then, which is what blocking ``get`` waits on.
    """

    def __init__(self, conn: sqlite3.Connection, clock: Any, name: str, path: str,
                 repair: Callable[[str, bool], sqlite3.Connection],
                 reopen: Callable[[], sqlite3.Connection], max_group: int = 20_000) -> None:
        self._conn = conn
        self._repair = repair
        self._reopen = reopen
        self._path = path
        self._clock = clock
        self._max_group = max_group
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Op] = []
        self._closing = False
        self.generation = 0
        self.groups = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name=f"streamvisor-queue:{name}",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def submit(self, kind: str, fn: Callable[..., _T], *args: Any, weight: int = 1) -> _T:
        """Run ``fn(group, *args)`` in the next group transaction; block until committed.

        Raises ``QueueClosed`` after close, ``QueueFull`` when the queue or disk is full,
        ``QueueUnavailable`` for a passing fault (busy, locked, I/O, permission), ``QueueError``
        for other storage errors, or what ``fn`` raised.
        """
        op = _Op(kind, fn, args, weight)
        with self._cond:
            if self._closing:
                raise QueueClosed("the queue is closed")
            self._pending.append(op)
            self._cond.notify_all()
        op.done.acquire()
        if op.error is not None:
            raise op.error
        result: _T = op.result
        return result

    def wait_for_records(self, generation: int, timeout: float) -> None:
        """Block up to ``timeout`` s until a commit made records deliverable (after
        ``generation``). Returns early when the queue closes."""
        with self._cond:
            if self.generation == generation and not self._closing:
                self._cond.wait(timeout)

    def close(self) -> None:
        """Finish every pending operation, stop the thread, close the connection. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # ------------------------------------------------------------------ committer thread

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return
                    pending, taken, weight = self._pending, 0, 0
                    while taken < len(pending) and (taken == 0 or weight < self._max_group):
                        weight += pending[taken].weight
                        taken += 1
                    batch = pending[:taken]
                    del pending[:taken]
                self._group(batch)
                self.groups += 1
                self.ops += len(batch)
                if any(op.kind in _WAKES and op.error is None for op in batch):
                    with self._cond:
                        self.generation += 1
                        self._cond.notify_all()
                for op in batch:
                    op.done.release()
        finally:
            self._conn.close()

    def _group(self, batch: list[_Op]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            group = Group(conn, self._clock.time())
            results = []
            for op in batch:
                op.error = None
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
