"""Shared nodes and helpers for the stream tests (no tests here).

Every behaviour test takes the ``rt`` fixture (inline and threads, both on a ManualClock) and
waits with ``settle`` after telling or advancing the clock; nothing sleeps.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from actors import Runtime
from actors.stream import Graph, Node, Sink, Source, StreamInstance, every
from actors.testing import ManualClock, Recorder
from supervisors._streams import GraphSupervision
from tests.conftest import settle

__all__ = ["Numbers", "Fed", "Collect", "SlowSink", "Passthrough", "Double", "Crashy",
           "ledger", "supervised", "advance", "push"]


class Numbers(Source):
    """Produces 0, 1, 2, ... (``n`` of them, then finishes; None: endless) and records each
    ``demand`` it was given."""

    def __init__(self, n: int | None = None, demands: list[int] | None = None) -> None:
        self.n = n
        self.demands = demands

    def on_start(self) -> None:
        self.next = 0

    def produce(self, demand: int) -> list[int]:
        if self.demands is not None:
            self.demands.append(demand)
        stop = self.next + demand if self.n is None else min(self.n, self.next + demand)
        items = list(range(self.next, stop))
        self.next = stop
        if self.n is not None and self.next >= self.n:
            self.finish()
        return items

    def snapshot(self) -> int:
        return self.next

    def restore(self, state: int) -> None:
        self.next = state


class Fed(Source):
    """Produces what the test put in its feed (a deque), when woken (see ``push``)."""

    poll_interval = 1e6

    def __init__(self, feed: deque[Any]) -> None:
        self.feed = feed

    def produce(self, demand: int) -> list[Any]:
        out = []
        while self.feed and len(out) < demand:
            out.append(self.feed.popleft())
        return out


def push(rt: Runtime, inst: StreamInstance, node: str, feed: deque[Any], *items: Any) -> None:
    """Put ``items`` in a ``Fed`` source's feed, wake it, and settle."""
    feed.extend(items)
    assert inst.wake(node)
    settle(rt)


class Collect(Sink):
    """Records ``(port, item)`` - or just the item with ``items_only`` - into a Recorder."""

    inputs = ("in",)

    def __init__(self, into: Recorder, items_only: bool = True) -> None:
        self.into = into
        self.items_only = items_only

    def process(self, item: Any, port: str) -> None:
        self.into.append(item if self.items_only else (port, item))


class SlowSink(Sink):
    """A deterministic slow consumer: handles one batch, then pauses until its next tick
    (``every("tick")`` on the runtime clock) - so it takes one batch per tick."""

    def __init__(self, into: Recorder, tick: float = 1.0) -> None:
        self.into = into
        self.tick = tick

    def process_batch(self, items: Any, port: str) -> None:
        for item in items:
            self.into.append(item)
        self.pause()

    @every("tick")
    def wake_up(self) -> None:
        self.resume()


class Passthrough(Node):
    def process_batch(self, items: Any, port: str) -> None:
        self.emit_many(items)


class Double(Node):
    def process(self, item: Any, port: str) -> None:
        self.emit(item * 2)


class Crashy(Node):
    """Forwards items; raises on items in ``bad`` (a set shared with the test)."""

    def __init__(self, bad: set[Any]) -> None:
        self.bad = bad

    def process(self, item: Any, port: str) -> None:
        if item in self.bad:
            raise RuntimeError(f"bad item {item!r}")
        self.emit(item)


def supervised(**options: Any) -> GraphSupervision:
    return GraphSupervision(**options)


def advance(rt: Runtime, seconds: float, steps: int = 1) -> None:
    """Advance the manual clock in ``steps`` equal steps, settling after each."""
    clock = rt.clock
    assert isinstance(clock, ManualClock)
    for _ in range(steps):
        clock.advance(seconds / steps)
        settle(rt)


def ledger(inst: StreamInstance) -> dict[str, int]:
    """Totals that must add up: what left the sources vs what the sinks took + counted losses."""
    s = inst.statistics()
    produced = sum(n.emitted for n in s.nodes if n.kind == "source")
    sunk = sum(n.processed for n in s.nodes if n.kind == "sink")
    return {"produced": produced, "sunk": sunk, "dropped": s.dropped, "lost": s.lost,
            "expired": s.expired, "discarded": s.discarded,
            "in_flight": sum(e.in_flight + e.buffered for e in s.edges),
            "custody": sum(n.custody for n in s.nodes)}


def pipeline(*stages: tuple[str, type, tuple[Any, ...], dict[str, Any]], name: str = "g",
             **edge_options: Any) -> Graph:
    g = Graph(name)
    for node, cls, args, kwargs in stages:
        g.add(node, cls, *args, **kwargs)
    g.pipe(*(s[0] for s in stages), **edge_options)
    return g
