"""The outbox of one peer: what this node will send it, bounded, with credit-based flow control.

Senders (any thread) append records; the peer's connection writer takes them in batches and
sends them as frames. Consecutive tells to the same target share one record
(``[TELL, target, [payload, ...]]``), so a frame of 1,000 tells to one actor costs one envelope.

Bounds (RELIABILITY promise 2):
- at most ``limit`` queued records (tells counted one by one). A sender over the bound gets
  ``MailboxFull`` at once on a pool worker (workers never block) and after waiting up to
  ``block_timeout`` on any other thread (its back-pressure). Every refusal is counted
  (``refused``). System records (replies, downs, links, lookups, interest) never wait and are
  not refused under ``limit``; they have their own bound, ``system_limit`` queued system
  records (default 100,000): over it (a peer that stopped reading while this node keeps
  answering it) one is dropped, counted in ``system_dropped`` and ``put`` returns False.
- credit: the writer starts a frame only while ``in_flight`` (bytes sent, not yet granted back
  by the receiver) is below ``window``, so a slow receiver holds at most ``window`` plus one
  frame of this node's data, and this node at most ``limit`` records for it.

Lock rule (``_lock``, shared by the conditions ``_ready`` and ``_space``): guards every field.
Nothing runs under it but list and counter updates: no encoding, no I/O, no callbacks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from actors import MailboxFull

from ._wire import CREDIT, TELL

__all__ = ["Outbox"]

MAX_GROUP = 1024          # tells in one record


class Outbox:
    """Records waiting for one peer. ``put_tell``/``put`` are safe from any thread."""

    def __init__(self, peer: str, *, limit: int = 100_000, window: int = 1 << 20,
                 block_timeout: float = 5.0, system_limit: int = 100_000) -> None:
        self.peer = peer
        self.limit = limit
        self.system_limit = system_limit
        self._system = 0          # queued system records
        self.system_dropped = 0
        self.window = window
        self.block_timeout = block_timeout
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)   # the writer waits here
        self._space = threading.Condition(self._lock)   # blocked senders wait here
        self._groups: deque[list[Any]] = deque()
        self._is_system: deque[bool] = deque()   # beside _groups: which records are system
        self._last: list[Any] | None = None  # the newest TELL record, still open for appends
        self._count = 0
        self._writer_waiting = False
        self.closed = False
        self.in_flight = 0
        self.grant = 0           # bytes this node owes the peer (sent as CREDIT)
        self.refused = 0
        self.sent_records = 0

    def __repr__(self) -> str:
        return (f"<Outbox {self.peer} {self._count}/{self.limit} in_flight={self.in_flight}"
                f"/{self.window} refused={self.refused}{' closed' if self.closed else ''}>")

    def queued(self) -> int:
        return self._count

    # -- senders ---------------------------------------------------------------------------
    def put_tell(self, target: Any, payload: Any, can_block: Any) -> bool:
        """Queue a tell; False if the outbox is closed (the peer is down). Raises
        ``MailboxFull`` over the bound (after waiting when ``can_block()`` says this thread
        may block). The hot path of every remote tell: one lock, a few comparisons."""
        with self._lock:
            if self._count >= self.limit and not self._wait_space(can_block()):
                return False
            if self.closed:
                return False
            last = self._last
            if last is not None and last[1] == target and len(last[2]) < MAX_GROUP:
                last[2].append(payload)
            else:
                self._last = [TELL, target, [payload]]
                self._groups.append(self._last)
                self._is_system.append(False)
            self._count += 1
            if self._writer_waiting:
                self._writer_waiting = False
                self._ready.notify()
            return True

    def put(self, record: list[Any], can_block: Any = None, system: bool = False) -> bool:
        """Queue one record (an ask, a reply, a lookup, ...). ``system`` records are never
        refused. False if closed; ``MailboxFull`` over the bound (``can_block`` as in
        ``put_tell``; None: never wait)."""
        with self._lock:
            if system:
                if self._system >= self.system_limit:
                    self.system_dropped += 1
                    return False
                self._system += 1
            elif (self._count >= self.limit
                    and not self._wait_space(can_block is not None and can_block())):
                return False
            if self.closed:
                if system:
                    self._system -= 1
                return False
            self._groups.append(record)
            self._is_system.append(system)
            self._last = None
            self._count += 1
            if self._writer_waiting:
                self._writer_waiting = False
                self._ready.notify()
            return True

    def _wait_space(self, can_block: bool) -> bool:
        """Under the lock, the outbox is full: wait or refuse. True when there is room."""
        if can_block and not self.closed:
            deadline = time.monotonic() + self.block_timeout
            while self._count >= self.limit and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._space.wait(left)
            if self.closed:
                return False
            if self._count < self.limit:
                return True
        self.refused += 1
        raise MailboxFull(f"outbox to node {self.peer} is full ({self.limit} records waiting)"
                          + (f" for {self.block_timeout} s" if can_block else ""))

    # -- flow control ----------------------------------------------------------------------
    def add_grant(self, nbytes: int) -> None:
        """This node processed ``nbytes`` of the peer's frames: owe it that much credit. A
        grant wakes the writer once it reaches ``window / 8`` (smaller ones ride along with
        data): the peer, which stalls only with a whole window in flight, is never starved."""
        with self._lock:
            self.grant += nbytes
            if self._writer_waiting and self.grant >= self.window >> 3:
                self._writer_waiting = False
                self._ready.notify()

    def add_credit(self, nbytes: int) -> None:
        """The peer granted ``nbytes`` back."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - nbytes)
            if self._writer_waiting:
                self._writer_waiting = False
                self._ready.notify()

    def reset_credit(self) -> None:
        """A new connection: nothing is in flight on it yet."""
        with self._lock:
            self.in_flight = 0
            self.grant = 0

    # -- the writer ------------------------------------------------------------------------
    def take(self, max_records: int, timeout: float) -> tuple[list[list[Any]], int] | None:
        """Wait up to ``timeout`` for something to send; return ``(records, counted)`` where
        ``counted`` is how many data records are in it (a frame of CREDIT only is free), or
        None when closed. An empty list means nothing came in time."""
        with self._lock:
            deadline = None
            while True:
                if self.closed:
                    return None
                can_send = bool(self._groups) and self.in_flight < self.window
                if can_send or self.grant >= self.window >> 3:
                    break
                if deadline is None:
                    deadline = time.monotonic() + timeout
                left = deadline - time.monotonic()
                if left <= 0:
                    return [], 0
                self._writer_waiting = True
                self._ready.wait(left)
                self._writer_waiting = False
            records: list[list[Any]] = []
            if self.grant:
                records.append([CREDIT, self.grant])
                self.grant = 0
            taken = 0
            if can_send:
                groups = self._groups
                while groups and taken < max_records:
                    record = groups.popleft()
                    if record is self._last:
                        self._last = None
                    if self._is_system.popleft():
                        self._system -= 1
                    records.append(record)
                    taken += len(record[2]) if record[0] == TELL else 1
                self._count -= taken
                self.sent_records += taken
                self._space.notify_all()
            return records, taken

    def sent(self, nbytes: int) -> None:
        with self._lock:
            self.in_flight += nbytes

    def close(self) -> list[list[Any]]:
        """Close for good (the peer is down); returns what was still queued."""
        with self._lock:
            self.closed = True
            left = list(self._groups)
            self._groups.clear()
            self._is_system.clear()
            self._last = None
            self._count = 0
            self._system = 0
            self._ready.notify_all()
            self._space.notify_all()
            return left

    def wake(self) -> None:
        with self._lock:
            self._ready.notify_all()
