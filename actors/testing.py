"""Test support: a deterministic runtime, a manual clock, waiting without sleeps, fault injection.

    from actors.testing import inline_runtime, ManualClock, Faults, wait_until

    with inline_runtime() as rt:          # every turn runs on this thread, in FIFO order
        ref = rt.spawn(Counter)
        ref.tell("inc")                   # processed before tell returns
        rt.clock.advance(5.0)             # timers due by then fire, their work runs
        Faults(rt).crash(ref)             # the actor raises InjectedFault on its next turn

The same behaviour tests also run on real threads: ``Runtime(workers=2, clock=ManualClock())``
plus ``rt.wait_idle()`` / ``wait_until`` instead of assumptions about timing.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ._actor import ActorRef, _cell_of
from ._clock import ManualClock
from ._runtime import Runtime

__all__ = ["ManualClock", "inline_runtime", "wait_until", "Faults", "InjectedFault", "Recorder"]


def inline_runtime(clock: ManualClock | None = None, *, budget: int = 128,
                   node: str = "test") -> Runtime:
    """A deterministic runtime: no threads, FIFO turns on the caller's thread, a manual clock."""
    return Runtime(clock=clock if clock is not None else ManualClock(), inline=True,
                   budget=budget, node=node)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0,
               message: str = "condition") -> None:
    """Block until ``predicate()`` is true, polling with a short backoff (no fixed sleeps);
    raise ``TimeoutError`` naming ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    event = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {message}")
        event.wait(delay)
        delay = min(delay * 2, 0.02)


class InjectedFault(Exception):
    """The default error ``Faults`` injects."""


class Faults:
    """Inject faults into a runtime's actors (crashes, kills)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def crash(self, ref: ActorRef, error: BaseException | None = None) -> bool:
        """Make ``ref`` raise ``error`` (default ``InjectedFault``) on its next turn, ahead of its
        queued messages, exactly as if a handler had raised. False if it is already dead."""
        err = error if error is not None else InjectedFault(f"injected crash in {ref.path}")
        return _cell_of(ref)._signal(("crash", err))

    def kill(self, ref: ActorRef) -> None:
        """``runtime.kill(ref)``: untrappable, reason ``"killed"``."""
        self.runtime.kill(ref)


class Recorder:
    """A thread-safe list for tests: actors append what they saw, the test waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._changed = threading.Condition(self._lock)

    def append(self, item: Any) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Block until at least ``count`` items were recorded; ``TimeoutError`` otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, timeout):
                raise TimeoutError(f"recorded {len(self._items)} of {count} items in {timeout} s")
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
