"""A first streamvisor app: simulated sensors, a rolling average per device, an alert printer.

    streamvisor run examples/sensors.py --duration 5

Each ``Sensor`` is an actor that wakes itself with a timer and sends a reading; the
``Averager`` keeps a rolling mean per device and tells the ``Alerts`` actor when one runs hot.
One sensor is faulty: it sends a corrupt reading now and then, and the averager rejects it with
a counted error instead of crashing.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from actors import Actor, ActorRef, Runtime


class Sensor(Actor):
    def __init__(self, device: str, averager: ActorRef, period: float, seed: int,
                 faulty: bool = False) -> None:
        self.device, self.averager, self.period = device, averager, period
        self.random = random.Random(seed)
        self.faulty = faulty
        self.base = 20.0 + self.random.random() * 3 + (6.0 if seed % 17 == 3 else 0.0)
        self.temp = self.base

    def on_start(self) -> None:
        self.send_after(self.period, "tick")

    def receive(self, message: Any) -> None:
        self.temp += 0.2 * (self.base - self.temp) + self.random.gauss(0.0, 0.4)
        value: Any = self.temp
        if self.faulty and self.random.random() < 0.1:
            value = "NaN?"  # a corrupt reading
        self.averager.tell(("reading", self.device, value))
        self.send_after(self.period, "tick")


class Averager(Actor):
    def __init__(self, alerts: ActorRef, window: int = 20, limit: float = 24.0) -> None:
        self.alerts, self.window, self.limit = alerts, window, limit
        self.readings: dict[str, deque[float]] = {}
        self.rejected = 0

    def receive(self, message: Any) -> Any:
        match message:
            case ("reading", str(device), float(value)):
                window = self.readings.setdefault(device, deque(maxlen=self.window))
                window.append(value)
                mean = sum(window) / len(window)
                if mean > self.limit and len(window) == self.window:
                    self.alerts.tell(("hot", device, round(mean, 2)))
            case ("reading", device, bad):
                self.rejected += 1
                self.log.warning("rejected reading", device=device, value=repr(bad))
            case "report":
                return {"devices": len(self.readings), "rejected": self.rejected}


class Alerts(Actor):
    def __init__(self) -> None:
        self.count = 0
        self.hot: set[str] = set()

    def receive(self, message: Any) -> Any:
        match message:
            case ("hot", device, mean):
                self.count += 1
                if device not in self.hot:
                    self.hot.add(device)
                    print(f"ALERT  {device} running hot: rolling mean {mean} C")
            case "report":
                return {"alerts": self.count}


def start(rt: Runtime, options: Any) -> Any:
    alerts = rt.spawn(Alerts, name="alerts")
    averager = rt.spawn(Averager, alerts, name="averager")
    for i in range(50):
        rt.spawn(Sensor, f"device-{i:02d}", averager, 0.02, seed=i, faulty=(i == 7))

    def progress() -> dict[str, Any]:
        return {**averager.ask("report"), **alerts.ask("report")}

    return progress


if __name__ == "__main__":
    import sys

    from streamvisor.cli import main
    sys.exit(main(["run", __file__, "--duration", "5", *sys.argv[1:]]))
