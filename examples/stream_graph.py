"""A per-tenant stream graph: simulated devices -> validate -> rolling average -> alerts.

    streamvisor run examples/stream_graph.py --duration 5
    streamvisor run examples/stream_graph.py --duration 5 --tenants 3 --devices 100

The graph is defined once, in plain Python, and instantiated for each tenant under that
tenant's own supervisor (REST_FOR_ONE along the pipeline). Every edge has credit-based
backpressure, so the device source produces only as fast as the pipeline takes readings:

- ``devices`` (Source): ``--devices`` simulated sensors, one reading each per ``--period``
  seconds on the runtime clock, produced on demand (it pauses when the pipeline is busy);
  one device is faulty and sends corrupt readings now and then;
- ``validate`` (Node): good readings on ``out``, corrupt ones on ``rejects``;
- ``average`` (Node): a rolling mean per device over ``window`` readings, in batches of up to
  64 readings or 50 ms (``process_batch``), state carried across restarts with
  ``snapshot``/``restore``; a watchdog reports a silent input;
- ``alerts`` (Sink): counts hot devices (one line printed per device) and rejected readings.

The last tenant gets a poisoned device whose reading crashes ``average`` every couple of
seconds: its supervisor restarts ``average`` and ``alerts`` (the rest of the pipeline), the
windows survive in the snapshot, and the readings lost in the crash are counted - while the
other tenants never notice. The progress line shows, per tenant, readings produced, alerts,
rejects, restarts and counted losses and drops.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

from actors import Runtime
from actors.stream import Graph, Node, Sink, Source, timeout
from supervisors._streams import GraphSupervision


class Devices(Source):
    """Readings ``(device, seq, value)`` of simulated sensors, as they become due. The tenant
    comes from the node's identity: the same graph serves every tenant."""

    poll_interval = 0.01

    def __init__(self, count: int, period: float, poisoned: frozenset[str]) -> None:
        self.count, self.period, self.poisoned = count, period, poisoned

    def on_start(self) -> None:
        self.tenant = self.ref.tenant or "default"
        self.poison = self.tenant in self.poisoned
        self.random = random.Random(sum(map(ord, self.tenant)))
        self.base = [20.0 + self.random.random() * 3 + (6.0 if i % 17 == 3 else 0.0)
                     for i in range(self.count)]
        self.temps = list(self.base)
        self.started = self.now
        self.seq = 0

    def produce(self, demand: int) -> list[tuple[str, int, Any]]:
        due = int((self.now - self.started) * self.count / self.period) - self.seq
        readings = []
        for _ in range(min(demand, due)):
            i = self.seq % self.count
            self.temps[i] += 0.2 * (self.base[i] - self.temps[i]) + self.random.gauss(0.0, 0.4)
            value: Any = round(self.temps[i], 3)
            if i == 7 and self.random.random() < 0.05:
                value = "NaN?"                   # the faulty device
            if self.poison and i == 13 and self.seq % (self.count * 100) == 13:
                value = "poison"                 # crashes the rolling average
            readings.append((f"{self.tenant}-dev{i:03d}", self.seq, value))
            self.seq += 1
        return readings

    def snapshot(self) -> tuple[float, int]:
        return self.started, self.seq

    def restore(self, state: tuple[float, int]) -> None:
        self.started, self.seq = state


class Validate(Node):
    outputs = ("out", "rejects")

    def process(self, reading: tuple[str, int, Any], port: str) -> None:
        _, _, value = reading
        ok = value == "poison" or (isinstance(value, float) and math.isfinite(value)
                                   and -40.0 < value < 125.0)
        self.emit(reading, port="out" if ok else "rejects")


class RollingAverage(Node):
    outputs = ("alerts",)
    max_items = 64
    max_delay = 0.05

    def __init__(self, window: int = 20, limit: float = 24.0) -> None:
        self.window, self.limit = window, limit

    def on_start(self) -> None:
        self.readings: dict[str, deque[float]] = {}

    def process_batch(self, readings: Any, port: str) -> None:
        for device, _, value in readings:
            if value == "poison":
                raise ValueError(f"poisoned reading from {device}")
            window = self.readings.setdefault(device, deque(maxlen=self.window))
            window.append(value)
            mean = sum(window) / len(window)
            if len(window) == self.window and mean > self.limit:
                self.emit(("hot", device, round(mean, 2)), port="alerts")

    @timeout(2.0, port="in")
    def silent(self, port: str, silent_for: float) -> None:
        self.emit(("silent", port, round(silent_for, 1)), port="alerts")

    def snapshot(self) -> dict[str, list[float]]:
        return {device: list(w) for device, w in self.readings.items()}

    def restore(self, state: dict[str, list[float]]) -> None:
        self.readings = {d: deque(w, maxlen=self.window) for d, w in state.items()}


class Alerts(Sink):
    inputs = ("alerts", "rejects")

    def on_start(self) -> None:
        self.hot: set[str] = set()

    def process(self, item: Any, port: str) -> None:
        if port == "alerts" and item[0] == "hot" and item[1] not in self.hot:
            self.hot.add(item[1])
            print(f"ALERT  {item[1]} running hot: rolling mean {item[2]} C")
        elif port == "alerts" and item[0] == "silent":
            print(f"ALERT  no readings for {item[2]} s")

    def snapshot(self) -> frozenset[str]:
        return frozenset(self.hot)

    def restore(self, hot: frozenset[str]) -> None:
        self.hot = set(hot)


def sensor_graph(devices: int = 50, period: float = 0.02,
                 poisoned: frozenset[str] = frozenset()) -> Graph:
    """The graph, defined once; every tenant gets its own supervised instance of it."""
    g = Graph("sensors", supervision=GraphSupervision(intensity=5, period=10.0))
    g.add("devices", Devices, devices, period, poisoned)
    g.add("validate", Validate)
    g.add("average", RollingAverage, window=20)
    g.add("alerts", Alerts)
    g.pipe("devices", "validate", "average")
    g.connect("average.alerts", "alerts.alerts")
    g.connect("validate.rejects", "alerts.rejects")
    g.retain("validate", size=10_000)   # the last validated readings, for late readers
    return g


def add_arguments(parser: Any) -> None:
    parser.add_argument("--tenants", type=int, default=2, help="tenants (default 2)")
    parser.add_argument("--devices", type=int, default=50, help="devices per tenant")
    parser.add_argument("--period", type=float, default=0.02,
                        help="seconds between two readings of a device (default 0.02)")


def start(rt: Runtime, options: Any) -> Any:
    tenants = [f"tenant{i + 1}" for i in range(getattr(options, "tenants", 2))]
    graph = sensor_graph(getattr(options, "devices", 50), getattr(options, "period", 0.02),
                         poisoned=frozenset(tenants[-1:]))
    instances = {t: graph.instantiate(rt, t) for t in tenants}

    def progress() -> dict[str, Any]:
        line: dict[str, Any] = {}
        for tenant, inst in instances.items():
            s = inst.statistics()
            line[f"{tenant}.readings"] = s.node("devices").emitted
            line[f"{tenant}.alerts"] = s.edge("average.alerts").delivered
            line[f"{tenant}.rejects"] = s.edge("validate.rejects").delivered
            line[f"{tenant}.restarts"] = sum(n.restarts for n in s.nodes)
            line[f"{tenant}.lost"] = s.lost
            line[f"{tenant}.dropped"] = s.dropped
        return line

    return progress


if __name__ == "__main__":
    import sys

    from streamvisor.cli import main
    sys.exit(main(["run", __file__, "--duration", "5", *sys.argv[1:]]))
