"""``StreamLog``: a retained output as a bounded log with offsets, so a late or restarted reader
replays from an offset (Kafka's consumer offsets, in memory and bounded).

Offsets count every item ever appended, from 0. The log keeps the newest ``capacity`` items;
older ones are evicted (counted in ``evicted``), and a read from an evicted offset starts at
the oldest item still kept and says how many it ``missed``. Safe from any thread: the writer
is the node that owns the output, readers are anyone (a ``LogReader`` node, a test, an API).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Any, Iterable, NamedTuple

from .._checks import check_number

__all__ = ["StreamLog", "LogRead"]


class LogRead(NamedTuple):
    """What ``read`` returns: ``items`` from ``offset`` on, ``next_offset`` to continue from, and
    ``missed`` items between the requested offset and ``offset`` that had been evicted."""

    items: tuple[Any, ...]
    offset: int
    next_offset: int
    missed: int


class StreamLog:
    """Lock rule (``_lock``): guards the deque and both counters; nothing else runs under it."""

    def __init__(self, name: str, capacity: int) -> None:
        check_number(capacity, f"retained log {name!r}: size", integer=True, positive=True)
        self.name = name
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: deque[Any] = deque(maxlen=capacity)
        self._next = 0

    def extend(self, items: Iterable[Any]) -> int:
        """Append items (a list or tuple, or any iterable); returns the next offset."""
        if not isinstance(items, (list, tuple)):
            items = list(items)
        with self._lock:
            self._items.extend(items)
            self._next += len(items)
            return self._next

    def read(self, offset: int = 0, limit: int | None = None) -> LogRead:
        """Items from ``offset`` (at most ``limit``). A negative offset counts from the end
        (``-10``: the last ten). Raises ``ValueError`` for a bad limit."""
        check_number(limit, "read limit", integer=True, low=0, or_none=True)
        with self._lock:
            first = self._next - len(self._items)
            if offset < 0:
                offset = max(first, self._next + offset)
            start = max(offset, first)
            missed = start - offset if offset < first else 0
            skip = start - first
            stop = len(self._items) if limit is None else min(len(self._items), skip + limit)
            items = tuple(itertools.islice(self._items, skip, stop)) if stop > skip else ()
            return LogRead(items, start, start + len(items), missed)

    @property
    def first_offset(self) -> int:
        with self._lock:
            return self._next - len(self._items)

    @property
    def next_offset(self) -> int:
        return self._next

    @property
    def evicted(self) -> int:
        with self._lock:
            return self._next - len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"<StreamLog {self.name} offsets {self.first_offset}..{self._next} "
                f"capacity={self.capacity}>")
