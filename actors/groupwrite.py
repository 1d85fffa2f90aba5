"""``GroupWriter``: one commit for the writes of many tenants that share a file or a database.

A node with a thousand tenants writes each tenant's rows, minute averages and checkpoints into
the same few files. Committed one tenant at a time, every write is a transaction and an fsync,
and an actor's worker waits for each: 1,000 tenants cost 1,000 commits a second and keep the
workers waiting. A ``GroupWriter`` turns them into a few commits a second:

    writer = GroupWriter(store.insert_many, name="readings")   # write(items): one transaction
    writer.submit(rows, done)      # returns at once; done(None) once rows are committed,
                                   # done(exc) if they could not be
    writer.flush()                 # blocks until everything submitted so far is done
    writer.close()                 # the same, then stops its thread

One thread per writer (not per tenant) takes every item submitted meanwhile - lingering up to
``delay`` seconds after the first one, so that items of many callers meet - and calls
``write(items)`` once: ``write`` must commit all of them in one transaction, or raise and commit
nothing. If it raises, each item of the group is written again alone (``write([item])``), so a
bad item (a refused row, a stale fence) fails only its own caller and its neighbours are
committed; ``done`` is called exactly once per item, from the writer's thread, after its
commit (or final failure). Nothing is written twice by the writer itself: a group either
committed or was rolled back before its items are retried. (A write whose outcome is unknown,
such as a connection lost during COMMIT, may then land twice: make ``write`` idempotent, an
upsert by key, as the SQL stores and checkpoint stores are.)

A caller in an actor does not wait: it submits, then (a stream node) ``pause()``s until its
``done`` arrives as a message, which is also what orders its writes before its next checkpoint
barrier. ``done`` must be quick and must not block (``ref.tell`` is the usual body); an
exception it raises is logged and ignored.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, Sequence, TypeVar

from ._checks import check_number
from ._log import get_logger

__all__ = ["GroupWriter", "WriterClosed"]

T = TypeVar("T")
Done = Callable[[BaseException | None], Any]
_log = get_logger(component="group-writer")


class WriterClosed(RuntimeError):
    """``submit`` after ``close()``: nothing was written."""


class GroupWriter(Generic[T]):
    """See the module docstring. ``write(items)`` commits ``items`` in one transaction (or
    raises, having committed nothing); ``delay``: seconds the thread lingers after the first
    pending item (0: commit at once, groups then only form while a commit runs);
    ``max_items``: a group holds at most this many items (it commits at once when reached);
    ``name`` names the thread. Counters: ``groups`` (transactions that committed), ``items``
    (items committed), ``retried`` (groups that failed and were written again item by item),
    ``failed`` (items whose ``done`` got an error)."""

    def __init__(self, write: Callable[[list[T]], Any], *, name: str = "writer",
                 delay: float = 0.02, max_items: int = 10_000) -> None:
        if not callable(write):
            raise TypeError(f"GroupWriter needs a callable write(items), got {write!r}")
        self._write = write
        self.delay = float(check_number(delay, "GroupWriter delay", low=0, unit="seconds"))
        if type(max_items) is not int or max_items < 1:
            raise ValueError(f"GroupWriter max_items must be an int >= 1, got {max_items!r}")
        self.max_items = max_items
        self.name = name
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._pending: list[tuple[T, Done]] = []
        self._first = 0.0          # monotonic time the oldest pending item came
        self._running = 0          # items taken by the thread, not yet done
        self._submitted = 0        # items ever submitted (flush waits for its mark)
        self._finished = 0         # ... and done
        self._closing = False
        self.groups = 0
        self.items = 0
        self.retried = 0
        self.failed = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"streamvisor-writer:{name}",
                                        daemon=True)
        self._thread.start()

    # -- callers ----------------------------------------------------------------------------------
    def submit(self, item: T, done: Done) -> None:
        """Queue ``item`` for the next group; returns at once. ``done(None)`` once it is
        committed, ``done(exc)`` if it could not be (called from the writer's thread).
        ``WriterClosed`` after ``close()``."""
        with self._lock:
            if self._closing:
                raise WriterClosed(f"the group writer {self.name!r} is closed")
            if not self._pending:
                self._first = time.monotonic()
                self._work.notify()
            elif len(self._pending) + 1 >= self.max_items:
                self._work.notify()
            self._pending.append((item, done))
            self._submitted += 1

    def write(self, item: T) -> None:
        """Submit ``item`` and block until it is committed; raises what failed it. For callers
        that may wait (not an actor's turn on a busy node)."""
        box: list[BaseException | None] = []
        ready = threading.Event()

        def done(error: BaseException | None) -> None:
            box.append(error)
            ready.set()
        self.submit(item, done)
        ready.wait()
        if box[0] is not None:
            raise box[0]

    def flush(self) -> None:
        """Block until every item submitted before this call is done (committed or failed)."""
        with self._lock:
            mark = self._submitted
            self._first = min(self._first, time.monotonic() - self.delay)  # no lingering
            self._work.notify()
            while self._finished < mark:
                self._idle.wait()

    @property
    def pending(self) -> int:
        """Items submitted and not yet done."""
        with self._lock:
            return self._submitted - self._finished

    def close(self) -> None:
        """Commit what is pending, then stop the thread. Idempotent; blocks."""
        with self._lock:
            self._closing = True
            self._work.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- the thread --------------------------------------------------------------------------------
    def _take(self) -> list[tuple[T, Done]] | None:
        """The next group (None: closed and nothing left). Lingers ``delay`` after the first
        pending item unless the group is full or the writer is closing."""
        with self._lock:
            while True:
                if self._pending:
                    wait = self._first + self.delay - time.monotonic()
                    if wait <= 0 or self._closing or len(self._pending) >= self.max_items:
                        break
                    self._work.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._work.wait()
            group = self._pending[:self.max_items]
            del self._pending[:self.max_items]
            if self._pending:
                self._first = time.monotonic() - self.delay  # the rest is due already
            self._running = len(group)
            return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            try:
                outcomes = self._commit(group)
            except BaseException as exc:  # the thread's boundary: never leave a caller waiting
                outcomes = [exc] * len(group)
            for (_item, done), error in zip(group, outcomes):
                try:
                    done(error)
                except Exception as exc:  # a callback's fault is its own: the others still run
                    self._log("group writer: a done callback raised", error=repr(exc))
            with self._lock:
                self._running = 0
                self._finished += len(group)
                self._idle.notify_all()

    def _commit(self, group: Sequence[tuple[T, Done]]) -> list[BaseException | None]:
        items = [item for item, _done in group]
        try:
            self._write(items)
        except Exception as exc:
            if len(items) == 1:
                self.failed += 1
                self.last_error = exc
                return [exc]
            self.retried += 1  # nothing of the group was committed: each item alone
            out: list[BaseException | None] = []
            for item in items:
                try:
                    self._write([item])
                except Exception as one:
                    self.failed += 1
                    self.last_error = one
                    out.append(one)
                else:
                    self.groups += 1
                    self.items += 1
                    out.append(None)
            return out
        self.groups += 1
        self.items += len(items)
        return [None] * len(items)

    def _log(self, event: str, **fields: Any) -> None:
        try:
            _log.warning(event, writer=self.name, **fields)
        except Exception:  # logging must never stop the writer
            pass

    def __repr__(self) -> str:
        return (f"<GroupWriter {self.name!r} groups={self.groups} items={self.items} "
                f"retried={self.retried} failed={self.failed}>")
