"""F20: a wall-clock jump of an hour changes nothing in the process (docs/RELIABILITY.md).

Timers, restart intensity, backoff and the bus's ``max_age`` read the runtime's monotonic clock.
These tests run that machinery on the real thread pool and the real ``MonotonicClock`` while
``time.time`` reports an hour later than the truth, and record every call of ``time.time`` made
from the runtime's own modules: the only reader allowed is the durable queue, whose TTLs are
wall-clock time on purpose (they must survive a restart; documented in ``actors.queue``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors import Actor, Runtime
from actors.testing import wait_until
from supervisors import ChildSpec, Strategy, Supervisor, which_children

HOUR = 3600.0


class WallClock:
    """``time.time`` plus an offset that a test moves; records the runtime modules that read it."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.callers: list[str] = []

    def jump(self) -> None:
        self.offset += HOUR

    def readers(self) -> list[str]:
        """The runtime's modules that read the wall clock, the durable queue excepted."""
        return [m for m in self.callers if not m.startswith("actors.queue")]


@pytest.fixture
def wall() -> Iterator[WallClock]:
    clock = WallClock()
    real = time.time

    def jumped() -> float:
        module = sys._getframe(1).f_globals.get("__name__", "?")
        if module.split(".")[0] in ("actors", "supervisors"):
            clock.callers.append(module)
        return real() + clock.offset

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", jumped)
        yield clock


class Ticker(Actor):
    def on_start(self) -> None:
        self.fired: list[str] = []
        self.send_after(0.05, "soon", key="soon")
        self.send_after(HOUR / 2, "in half an hour", key="late")

    def receive(self, message: Any) -> Any:
        if message == "fired":
            return list(self.fired)
        self.fired.append(message)
        return None


class Crashy(Actor):
    def receive(self, message: Any) -> None:
        raise RuntimeError("boom")


def test_timers_fire_on_the_monotonic_clock_only(wall: WallClock) -> None:
    with Runtime(workers=2) as rt:
        ref = rt.spawn(Ticker)
        assert ref.ask("fired") == []
        wall.jump()  # after both timers were set: a wall-clock timer would now be overdue
        wait_until(lambda: ref.ask("fired") == ["soon"], message="the short timer")
        # The half-hour timer is not due: the jump of the wall clock did not make it fire.
        assert ref.ask("fired") == ["soon"]
    assert wall.readers() == []


def test_restart_intensity_is_counted_on_the_monotonic_clock(wall: WallClock) -> None:
    with Runtime(workers=2) as rt:
        sup = rt.spawn(Supervisor, strategy=Strategy.ONE_FOR_ONE, intensity=2, period=HOUR,
                       children=[ChildSpec("crashy", Crashy)])
        first = which_children(sup)[0].ref
        first.tell("crash")
        wall.jump()
        wait_until(lambda: which_children(sup)[0].ref not in (first, None, "restarting"),
                   message="the first restart")
        # One restart inside a period of an hour: the supervisor is alive, nothing escalated,
        # although the wall clock moved an hour (a wall-clock window would have reset or fired).
        assert sup.is_alive()
    assert wall.readers() == []


def test_the_bus_max_age_is_measured_on_the_monotonic_clock(wall: WallClock) -> None:
    class Watcher(Actor):
        def on_start(self) -> None:
            self.seen: list[Any] = []
            self.runtime.bus.subscribe("ticks", self.ref, max_age=60.0)

        def receive(self, message: Any) -> Any:
            if message == "seen":
                return list(self.seen)
            self.seen.append(message)
            return None

    with Runtime(workers=2) as rt:
        watcher = rt.spawn(Watcher)
        wait_until(lambda: watcher.ask("seen") == [], message="the watcher")
        rt.bus.publish("tick-1", channel="ticks")
        wall.jump()  # between publish and delivery: a wall-clock age would be an hour
        wait_until(lambda: watcher.ask("seen") == ["tick-1"], message="the tick, not dropped")
    assert wall.readers() == []
