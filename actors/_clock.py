"""Clocks: time is a parameter.

The runtime reads time only through a ``Clock``: ``MonotonicClock`` in production,
``actors.testing.ManualClock`` in tests (advance it instead of sleeping). Times are float seconds
on the monotonic time line; wall-clock time is used only where a deadline must survive a restart
(the durable queue's TTL), and that exception is documented there.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

from ._checks import check_number

__all__ = ["Clock", "MonotonicClock", "ManualClock"]


class Clock(Protocol):
    """What the runtime needs of a clock."""

    manual: bool

    def now(self) -> float:
        """Monotonic seconds."""
        ...


class MonotonicClock:
    """The real monotonic clock (``time.monotonic``); its timers are driven by the scheduler."""

    manual = False

    def now(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "<MonotonicClock>"


class ManualClock:
    """A clock that moves only when a test calls ``advance``; timers fire during ``advance``.

    Thread-safe. ``advance`` fires every due timer of every runtime using this clock, in deadline
    order, and (for inline runtimes) runs the resulting work before returning.
    """

    manual = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        # _lock guards _now and _listeners; listeners are called outside it.
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float], None]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and fire what became due. Returns the new time."""
        check_number(seconds, "ManualClock.advance: seconds", low=0)
        with self._lock:
            self._now += seconds
            now = self._now
            listeners = list(self._listeners)
        for listener in listeners:
            listener(now)
        return now

    def attach(self, listener: Callable[[float], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def detach(self, listener: Callable[[float], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now:.6f}>"
