"""The event-bus case: a clock stream, timezone adjustment, timeliness first.

A clock source actor publishes the wall-clock time on the bus channel ``"clock"`` every 0.1 s
(``send_after``). Each tenant has a slow display actor (it takes longer to draw a frame than the
clock takes to tick) that shows the time in the tenant's timezone. The bus keeps at most the
newest undelivered tick per subscriber: a slow display skips to the newest time instead of
working through a backlog (``replaced``), and a tick that waited longer than the display's
``max_age`` is not shown at all (``expired``). At the end it prints those counts.

    .venv/bin/python examples/clock_bus.py            # about 3 s on real threads
    .venv/bin/python examples/clock_bus.py --seconds 5

The actors take their time source and their slowness as parameters, so the same code runs on a
deterministic runtime with a manual clock in the tests.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from actors import Actor, BusSubscription, Event, Runtime, configure_logging

# tenant -> (timezone, seconds a frame takes to draw, max_age of a tick in seconds)
TENANTS: dict[str, tuple[str, float, float]] = {
    "paris": ("Europe/Paris", 0.25, 0.5),
    "newyork": ("America/New_York", 0.35, 0.5),
    "tokyo": ("Asia/Tokyo", 0.25, 0.05),   # strict: a tick older than 50 ms is not worth showing
}
CHANNEL = "clock"


@dataclass(frozen=True)
class Tick(Event):
    """One clock reading: ``at`` is wall-clock seconds since the epoch, ``seq`` counts ticks."""

    at: float
    seq: int


class ClockSource(Actor):
    """Publishes a ``Tick`` on the bus channel ``"clock"`` every ``period`` seconds."""

    def __init__(self, period: float = 0.1, wall: Callable[[], float] = time.time) -> None:
        self.period = period
        self.wall = wall
        self.seq = 0

    def on_start(self) -> None:
        self.send_after(self.period, "tick", key="tick")

    def receive(self, message: Any) -> None:
        if message == "tick":
            self.seq += 1
            self.runtime.bus.publish(Tick(self.wall(), self.seq), channel=CHANNEL)
            self.send_after(self.period, "tick", key="tick")


class LocalTimeDisplay(Actor):
    """Shows the newest tick in ``zone``; drawing a frame takes ``work`` seconds (a slow device:
    it blocks its worker, as a driver call would)."""

    def __init__(self, zone: str, work: float = 0.0, max_age: float | None = None,
                 show: Callable[[str, int, datetime], None] | None = None,
                 subscriptions: dict[str, BusSubscription] | None = None) -> None:
        self.zone = ZoneInfo(zone)
        self.work = work
        self.max_age = max_age
        self.show = show or _print_frame
        self.subscriptions = subscriptions  # where to publish our bus subscription (its counts)

    def on_start(self) -> None:
        self.subscription = self.runtime.bus.subscribe(CHANNEL, self.ref, max_age=self.max_age)
        if self.subscriptions is not None:
            self.subscriptions[self.ref.tenant or "-"] = self.subscription

    def receive(self, message: Any) -> Any:
        match message:
            case Tick(at=at, seq=seq):
                local = datetime.fromtimestamp(at, self.zone)
                if self.work:
                    threading.Event().wait(self.work)   # the slow part: drawing the frame
                self.show(self.ref.tenant or "-", seq, local)


def _print_frame(tenant: str, seq: int, local: datetime) -> None:
    print(f"[{tenant:>8}] tick {seq:3d}  {local:%H:%M:%S.%f}"[:-3] + f" {local:%Z %z}",
          flush=True)


def main(seconds: float = 3.0) -> dict[str, dict[str, int]]:
    # The displays overrun their time slice on purpose (a slow device); keep those warnings out
    # of the picture unless asked for (STREAMVISOR_LOG_LEVEL=warning).
    configure_logging(level=os.environ.get("STREAMVISOR_LOG_LEVEL", "error"))
    subs: dict[str, BusSubscription] = {}
    with Runtime(workers=4) as rt:
        for name, (zone, work, max_age) in TENANTS.items():
            rt.tenant(name).spawn(LocalTimeDisplay, zone, work, max_age, subscriptions=subs,
                                  name="display")
        rt.spawn(ClockSource, name="clock")
        threading.Event().wait(seconds)
        # Exact counters, safe to read from any thread (a tick counts as shown when the display
        # takes it from its slot, so a frame being drawn right now is included).
        counts = {name: {"shown": sub.delivered, "replaced": sub.replaced,
                         "expired": sub.expired} for name, sub in subs.items()}
        stats = rt.bus.statistics()
    print()
    for name, c in counts.items():
        print(f"{name:>8}: shown {c['shown']:3d}  replaced {c['replaced']:3d}  "
              f"expired {c['expired']:3d}  ({TENANTS[name][0]})")
    print(f"bus: published {stats.published}, delivered {stats.delivered}, "
          f"replaced {stats.replaced}, expired {stats.expired}")
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to run")
    main(parser.parse_args().seconds)
