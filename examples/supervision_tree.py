"""A two-level supervision tree under injected faults, on real threads; ends by itself.

    .venv/bin/python examples/supervision_tree.py

    top (rest_for_one, intensity 5 per 10 s)
    |-- sensors (one_for_one, intensity 2 per 10 s)
    |   |-- reader-1
    |   `-- reader-2
    |-- filter            (forwards readings above 20.0 to the store)
    `-- store             (restart backoff 0.05 s .. 1 s)

What happens: (1) reader-1 crashes and only it is restarted; (2) the store crashes while
readings keep coming through its ChildHandle: they are stashed during the backoff and delivered
to the new store; (3) reader-2 crashes and its restart fails: the sensors supervisor has used up
its restart intensity and gives up, and the top restarts sensors and everything after it. A printer actor
subscribed to the supervision events on ``rt.bus`` prints what the supervisors did.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import supervisors
from actors import Actor, Runtime, configure_logging
from actors.testing import Faults, wait_until
from supervisors import (Backoff, ChildExited, ChildRestarted, ChildSpec,
                         ChildStarted, Strategy, Supervisor, SupervisorGaveUp)

T0 = time.monotonic()


class Reader(Actor):
    """A sensor reader: each ``("tick", value)`` becomes a reading for the filter."""

    def __init__(self, sensor: str) -> None:
        self.sensor = sensor

    def receive(self, message: Any) -> None:
        match message:
            case ("tick", value):
                flt = self.runtime.whereis("filter")
                if flt is not None:
                    flt.tell((self.sensor, value))


class Filter(Actor):
    """Forwards readings above a threshold to whichever store is running."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def receive(self, message: Any) -> None:
        sensor, value = message
        store = self.runtime.whereis("store")
        if value > self.limit and store is not None:
            store.tell((sensor, value))


class Store(Actor):
    """Keeps readings (in memory: a restart starts empty) and answers ``"count"``."""

    def on_start(self) -> None:
        self.readings: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "count":
            return len(self.readings)
        self.readings.append(message)
        return None


class Printer(Actor):
    """Prints every supervision event it is given. (Set STREAMVISOR_LOG_LEVEL=info to see the
    supervisors' own log lines as well.)"""

    def receive(self, event: Any) -> None:
        kind = type(event).__name__
        detail = {ChildStarted: "", ChildRestarted: f" restarts={getattr(event, 'restarts', 0)}",
                  ChildExited: f" reason={_reason(getattr(event, 'reason', None))}",
                  SupervisorGaveUp: f" after {_reason(getattr(event, 'reason', None))}"}
        extra = detail.get(type(event), "")
        print(f"[{time.monotonic() - T0:6.3f}s] {kind:<17} {event.child_id or '-':<9}"
              f"{extra}  ({event.path})", flush=True)


def _reason(reason: Any) -> str:
    return reason if isinstance(reason, str) else type(reason).__name__


def build_tree(rt: Runtime) -> Any:
    sensors = ChildSpec("sensors", Supervisor, kwargs={
        "strategy": Strategy.ONE_FOR_ONE, "intensity": 2, "period": 10.0, "children": [
            ChildSpec("reader-1", Reader, args=("plant/1",), kwargs={"name": "reader-1"}),
            ChildSpec("reader-2", Reader, args=("plant/2",), kwargs={"name": "reader-2"}),
        ]})
    return rt.spawn(Supervisor, strategy=Strategy.REST_FOR_ONE, intensity=5, period=10.0,
                    seed=1, children=[
                        sensors,
                        ChildSpec("filter", Filter, kwargs={"limit": 20.0, "name": "filter"}),
                        ChildSpec("store", Store, kwargs={"name": "store"},
                                  backoff=Backoff(min=0.05, max=1.0, jitter=0.2)),
                    ])


def show(title: str, sup: Any, indent: str = "  ") -> None:
    if title:
        print(f"\n{title}")
    for info in supervisors.which_children(sup):
        ref = info.ref
        where = ref.path if hasattr(ref, "path") else ref
        print(f"{indent}{info.id:<9} {info.kind:<10} {where}")
        if info.kind == "supervisor" and hasattr(ref, "path"):
            show("", ref, indent + "    ")


def current(sup: Any, child_id: str) -> Any:
    return {i.id: i.ref for i in supervisors.which_children(sup)}[child_id]


def main() -> None:
    # the printer tells the story; logs would repeat it
    configure_logging(level=os.environ.get("STREAMVISOR_LOG_LEVEL", "critical"))
    with Runtime(workers=2) as rt:
        printer = rt.spawn(Printer)
        for event in (ChildStarted, ChildExited, ChildRestarted, SupervisorGaveUp):
            rt.bus.subscribe(event, printer)
        top = build_tree(rt)
        show("The tree:", top)
        faults = Faults(rt)
        sensors = current(top, "sensors")

        print("\n(1) reader-1 crashes: one_for_one restarts only reader-1")
        old = current(sensors, "reader-1")
        faults.crash(old)
        wait_until(lambda: current(sensors, "reader-1") not in (old, None, "restarting"))
        rt.wait_idle(2.0)

        print("\n(2) the store crashes; readings sent through its handle meanwhile are stashed")
        store = supervisors.child(top, "store")
        faults.crash(store.ref)
        wait_until(lambda: store.state == "restarting")
        for i in range(10):
            store.tell(("plant/1", 30.0 + i))
        print(f"    stashed while backing off: {store.pending}")
        wait_until(lambda: store.state == "running", 5.0)
        wait_until(lambda: store.ref.ask("count") == 10, 5.0)
        print(f"    the new store got all {store.ref.ask('count')} readings (dropped: "
              f"{store.dropped})")
        rt.wait_idle(2.0)

        print("\n(3) reader-2 crashes and cannot restart: sensors (2 restarts per 10 s, one spent"
              "\n    in step 1) gives up; the top restarts sensors and all started after it")
        loop = faults.crash_on_start("reader-2", times=1)
        faults.crash(current(sensors, "reader-2"))
        wait_until(lambda: current(top, "sensors") not in (sensors, None, "restarting"), 5.0)
        rt.wait_idle(2.0)
        print(f"    reader-2 failed to start {loop.fired} time(s)")
        faults.clear()

        print("\n(4) readings flow again through the restarted tree")
        reader = rt.whereis("reader-1")
        for value in (10.0, 25.0, 40.0):
            reader.tell(("tick", value))
        wait_until(lambda: rt.whereis("store").ask("count") == 2, 5.0)
        print(f"    the store holds {rt.whereis('store').ask('count')} readings above 20.0")
        show("The tree now:", top)
        stats = rt.bus.statistics()
        print(f"\nbus: {stats.delivered} events printed, {stats.replaced} replaced by newer ones "
              "(the bus keeps only the newest undelivered event per subscription)")


if __name__ == "__main__":
    main()
