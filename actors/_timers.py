"""Keyed per-actor timers on one heap per runtime, driven by the runtime's clock.

With the real clock the scheduler's service thread fires them; with ``ManualClock`` they fire
inside ``advance``. A timer is a message to its actor; its key is unique per actor (a new timer
with an existing key replaces the old one); all of an actor's timers die with it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from typing import TYPE_CHECKING, Any, Callable, Hashable

from ._checks import check_number
from ._errors import ActorError

if TYPE_CHECKING:
    from ._cell import Cell
    from ._clock import Clock

__all__ = ["Timers", "TimerKey"]

# An entry is a list so that it can be deactivated in place:
# [deadline, seq, cell, key, message, active]
_DEADLINE, _SEQ, _CELL, _KEY, _MESSAGE, _ACTIVE = range(6)


class TimerKey(int):
    """A generated timer key (``send_after`` without ``key=``)."""

    def __repr__(self) -> str:
        return f"TimerKey({int(self)})"


class Timers:
    """Lock rule (``_lock``): guards the heap, every cell's ``_timers`` dict and the entries'
    ``active`` flags. Messages are delivered after the lock is released."""

    def __init__(self, clock: "Clock", wake: Callable[[], None]) -> None:
        self._clock = clock
        self._wake = wake
        self._lock = threading.Lock()
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._keys = itertools.count(1)
        self._cancelled = 0

    def schedule(self, cell: "Cell", delay: float, message: Any, key: Hashable | None) -> Hashable:
        check_number(delay, "send_after delay", low=0, unit="seconds")
        if key is None:
            key = TimerKey(next(self._keys))
        entry = [self._clock.now() + delay, next(self._seq), cell, key, message, True]
        with self._lock:
            if cell._state == 2:
                return key  # a dead actor's timer never fires
            if cell._timers is None:
                cell._timers = {}
            old = cell._timers.get(key)
            if old is not None:
                old[_ACTIVE] = False
                self._cancelled += 1
                self._compact()
            cell._timers[key] = entry
            heapq.heappush(self._heap, entry)
            earliest = self._heap[0] is entry
        if earliest:
            self._wake()
        return key

    def cancel(self, cell: "Cell", key: Hashable) -> bool:
        with self._lock:
            entry = cell._timers.pop(key, None) if cell._timers else None
            if entry is None:
                return False
            entry[_ACTIVE] = False
            self._cancelled += 1
            self._compact()
            return True

    def cancel_all(self, cell: "Cell") -> int:
        with self._lock:
            timers, cell._timers = cell._timers, None
            for entry in (timers or {}).values():
                entry[_ACTIVE] = False
            self._cancelled += len(timers or ())
            self._compact()
            return len(timers or ())

    def fire_due(self, now: float | None = None) -> int:
        """Deliver every timer whose deadline is <= ``now``, in deadline order."""
        if now is None:
            now = self._clock.now()
        due = []
        with self._lock:
            heap = self._heap
            while heap and heap[0][_DEADLINE] <= now:
                entry = heapq.heappop(heap)
                if not entry[_ACTIVE]:
                    self._cancelled -= 1
                    continue
                entry[_ACTIVE] = False
                timers = entry[_CELL]._timers
                if timers is not None and timers.get(entry[_KEY]) is entry:
                    del timers[entry[_KEY]]
                due.append(entry)
        for entry in due:
            try:  # never wait on a full BLOCK mailbox: one actor must not stall every timer
                entry[_CELL]._tell(entry[_MESSAGE], block=False)
            except ActorError:
                pass  # a refusal is counted by the mailbox as a drop
        return len(due)

    def next_deadline(self) -> float | None:
        with self._lock:
            heap = self._heap
            while heap and not heap[0][_ACTIVE]:
                heapq.heappop(heap)
                self._cancelled -= 1
            return heap[0][_DEADLINE] if heap else None

    def pending(self) -> int:
        with self._lock:
            return len(self._heap) - self._cancelled

    def _compact(self) -> None:
        """Drop cancelled entries once they are most of the heap (a watchdog that re-arms its
        timer per message must not grow the heap without bound). Under ``_lock``."""
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[_ACTIVE]]
            heapq.heapify(self._heap)
            self._cancelled = 0
