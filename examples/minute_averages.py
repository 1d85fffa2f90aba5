"""Per-device minute averages with event-time windows: the first thing an IoT user asks for.

    python examples/minute_averages.py

Three devices report a temperature every 10 s of *device* time for five minutes; their clocks
and links are not perfect, so readings arrive up to 20 s out of order, a few much later, and
one reading is broken. A ``Window`` node keeps a tumbling 60 s window per device, closes it
when the device's watermark (its latest reading minus ``lateness``) passes the window's end,
and emits ``WindowResult(key, start, end, value, count)``; too-late readings go to ``late``,
the broken one to ``errors`` - all three counted in the node's statistics.
"""

from __future__ import annotations

import random
from typing import Any

from actors import Runtime
from actors.stream import Graph, IterableSource, Sink, Tumbling, Window


def readings(seed: int = 7) -> list[dict[str, Any]]:
    """(device, ts, temp) readings in arrival order: bounded disorder, two stragglers and one
    broken reading."""
    rng = random.Random(seed)
    out = []
    for device, base in (("d1", 20.0), ("d2", 25.0), ("d3", 30.0)):
        for i in range(30):
            ts = 1_700_000_040.0 + i * 10.0  # a whole minute
            out.append({"device": device, "ts": ts, "temp": base + (i % 6) * 0.5,
                        "arrives": ts + rng.uniform(0, 20)})
    out[5]["arrives"] += 200        # a straggler: its minute has closed by then
    out[40]["arrives"] += 150
    out.sort(key=lambda r: r["arrives"])
    out.insert(17, {"device": "d2", "ts": "not a time", "temp": 99.0})
    return out


class Print(Sink):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def process(self, item: Any, port: str) -> None:
        self.into.append((port, item))
        if port == "in":
            print(f"{item.key} [{item.start:.0f}, {item.end:.0f}) mean {item.value:.2f} "
                  f"of {item.count}")
        else:
            print(f"{port}: {item}")


def build(into: list[Any]) -> Graph:
    g = Graph("minute-averages")
    g.add("readings", IterableSource, readings())
    g.add("minute", Window,
          key=lambda r: r["device"], time=lambda r: r["ts"], windows=Tumbling(60.0),
          lateness=30.0,
          init=lambda: (0.0, 0), fold=lambda acc, r: (acc[0] + r["temp"], acc[1] + 1),
          result=lambda acc: acc[0] / acc[1])
    g.add("print", Print, into, inputs=("in", "late", "errors"))
    g.connect("readings", "minute")
    g.connect("minute.out", "print.in")
    g.connect("minute.late", "print.late")
    g.connect("minute.errors", "print.errors")
    return g


def main() -> list[Any]:
    seen: list[Any] = []
    with Runtime(workers=2) as rt:
        inst = build(seen).instantiate(rt, "demo")
        assert inst.wait_complete(10), "the stream did not complete in 10 s"
        s = inst.statistics().node("minute")
        print(f"windows emitted: {sum(1 for p, _ in seen if p == 'in')}, late: {s.late}, "
              f"errors: {s.errors}, still open: {s.open_windows}")
    return seen


if __name__ == "__main__":
    main()
