"""Group commit: one thread owns the connection and turns many calls into one transaction.

Callers ``submit(kind, fn, *args)`` and block until the transaction holding their operation
has committed (WAL fsynced: acknowledged means on disk) or failed. The committer takes every
pending operation (up to ``max_group`` rows of work), runs them between ``BEGIN IMMEDIATE`` and
``COMMIT``, then wakes the callers. If anything in a group fails, the group is rolled back and
its operations are retried one per transaction, so one refused put (disk full) never fails or
falsely acknowledges its neighbours.

``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so claims from several processes on
the same file are serialised and never hand out the same delivery; ``busy_timeout`` bounds the
wait for another process's transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any, Callable

from . import _log
from ._ops import DamagedFile, Group
from ._types import QueueClosed, QueueError, QueueFull

__all__ = ["Committer"]

_SQLITE_FULL = 13
_CORRUPT = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_RESERVE_PAGES = 256  # 1 MiB of headroom so that consumers can drain a full queue
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

    def __init__(self, conn: sqlite3.Connection, clock: Any, name: str, max_pages: int | None,
                 repair: Callable[[str, bool], sqlite3.Connection],
                 max_group: int = 20_000) -> None:
        self._conn = conn
        self._repair = repair
        self._clock = clock
        self._max_group = max_group
        self._max_pages = max_pages
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Op] = []
        self._closing = False
        self.generation = 0
        self.groups = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name=f"streamvisor-queue:{name}",
                                        daemon=True)
        self._set_max_pages(max_pages)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any, weight: int = 1) -> Any:
        """Run ``fn(group, *args)`` in the next group transaction; block until committed.

        Raises ``QueueClosed`` after close, ``QueueFull`` when the file or disk is full,
        ``QueueError`` for other storage errors, or what ``fn`` raised.
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
        return op.result

    def wait_for_records(self, generation: int, timeout: float) -> None:
        """Block up to ``timeout`` s until a commit made records deliverable (after
        ``generation``). Returns early when the queue closes."""
        with self._cond:
            if self.generation == generation and not self._closing:
                self._cond.wait(timeout)

    def set_max_pages(self, max_pages: int | None) -> None:
        """Change the file's page bound (applied by the committer thread, before the next group)."""
        self.submit("admin", lambda group: self._set_max_pages(max_pages))

    def close(self) -> None:
        """Finish every pending operation, stop the thread, close the connection. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # ------------------------------------------------------------------ committer thread

    def _set_max_pages(self, max_pages: int | None) -> None:
        self._max_pages = max_pages
        self._conn.execute(f"PRAGMA max_page_count = {max_pages or 4294967294}")

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
            results = [op.fn(group, *op.args) for op in batch]
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
            op.result = result

    def _fail_or_retry(self, op: _Op, exc: Exception) -> None:
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if (code in _CORRUPT or isinstance(exc, DamagedFile)) and not op.retried:
            # Damage that the quick check at open cannot see (an index that disagrees with its
            # table, a page that went bad since, a damaged lease row): repair the file (a
            # thorough check, or at once for damage SQLite cannot see; then move aside and
            # salvage) and run the operation once more.
            op.retried = True
            self._conn.close()
            try:
                self._conn = self._repair(str(exc), isinstance(exc, DamagedFile))
            except Exception as failure:  # the repair boundary: report, never kill the thread
                op.error = QueueError(f"storage damaged and repair failed: {failure!r}")
                op.error.__cause__ = exc
                return
            self._set_max_pages(self._max_pages)
            self._group([op])
            return
        full = code == _SQLITE_FULL
        if full and op.kind not in ("put", "requeue") and self._max_pages and not op.retried:
            # Claims, acks and nacks may dip into a small reserve so a full queue can drain.
            op.retried = True
            limit = self._max_pages
            self._conn.execute(f"PRAGMA max_page_count = {limit + _RESERVE_PAGES}")
            try:
                self._group([op])
            finally:
                self._conn.execute(f"PRAGMA max_page_count = {limit}")
            return
        op.error = _translate(exc)
        if full:
            _log.logger().warning("queue.full", kind=op.kind, error=str(exc))


def _translate(exc: Exception) -> BaseException:
    if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF == _SQLITE_FULL:
        err: BaseException = QueueFull(f"queue file or disk is full: {exc}")
    elif isinstance(exc, sqlite3.Error):
        err = QueueError(f"storage error: {exc}")
    else:
        return exc
    err.__cause__ = exc
    return err
