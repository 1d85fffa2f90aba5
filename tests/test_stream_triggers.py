"""Multi-input triggers (BARRIER, LATEST) with dropped and expired values, firing without
input (``@every``, ``@timeout`` watchdogs) and per-node batching (``max_items``/``max_delay``,
never an empty batch) - all on the ManualClock, inline and on threads."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from actors import Runtime
from actors.stream import (Expired, Graph, Inputs, IterableSource, Node, Sink, Trigger, every,
                           timeout)
from actors.testing import Recorder
from tests.conftest import settle
from tests.test_stream_kit import Collect, Fed, advance


class Join(Node):
    inputs = ("a", "b")
    trigger = Trigger.BARRIER

    def fire(self, inputs: Inputs) -> None:
        self.emit((inputs.get("a"), inputs.get("b"), tuple(sorted(inputs.stale)),
                   {p: round(inputs.age(p), 6) for p in inputs}, inputs.trigger))


class Either(Join):
    trigger = Trigger.LATEST


class Harness:
    """Two fed inputs ``a`` and ``b`` into ``node``, its output recorded."""

    def __init__(self, rt: Runtime, node: type, window: int | None = None,
                 **options: Any) -> None:
        self.rt = rt
        self.feeds = {"a": deque(), "b": deque()}  # type: dict[str, deque[Any]]
        self.out = Recorder()
        g = Graph("g")
        g.add("fa", Fed, self.feeds["a"])
        g.add("fb", Fed, self.feeds["b"])
        g.add("join", node, **options)
        g.add("out", Collect, self.out)
        g.connect("fa", "join.a", window=window)
        g.connect("fb", "join.b", window=window)
        g.connect("join", "out")
        self.inst = g.instantiate(rt, "acme")
        settle(rt)

    def push(self, port: str, *items: Any) -> None:
        self.feeds[port].extend(items)
        assert self.inst.wake(f"f{port}")
        settle(self.rt)

    def pairs(self) -> list[tuple[Any, Any]]:
        return [(a, b) for a, b, *_ in self.out.items]

    def stats(self) -> Any:
        return self.inst.statistics().node("join")


# -- BARRIER ---------------------------------------------------------------------------------------
def test_barrier_fires_once_every_input_has_a_value_and_consumes_them_in_order(
        rt: Runtime) -> None:
    h = Harness(rt, Join)
    h.push("a", 1, 2, 3)
    assert h.out.items == []
    h.push("b", "x")
    assert h.pairs() == [(1, "x")]
    h.push("b", "y", "z", "w")
    assert h.pairs() == [(1, "x"), (2, "y"), (3, "z")]
    s = h.stats()
    assert (s.fired, s.processed, s.custody) == (3, 6, 1)  # "w" waits for its pair


def test_barrier_holds_a_fast_input_to_its_window_and_releases_as_pairs_form(
        rt: Runtime) -> None:
    h = Harness(rt, Join, window=8)
    h.push("a", *range(100))
    s = h.inst.statistics()
    assert s.node("join").custody == 8 and s.node("fa").emitted == 8  # the rest waits upstream
    assert len(h.feeds["a"]) == 92 and s.node("fa").demand == 0
    h.push("b", *range(100))
    assert h.pairs() == [(i, i) for i in range(100)]


def test_barrier_wait_discards_an_expired_value_and_waits_for_a_fresh_one(rt: Runtime) -> None:
    h = Harness(rt, Join, max_age=2.0)          # on_expired defaults to WAIT
    h.push("a", 1)
    advance(rt, 5.0)                            # the expiry timer discards it (credit goes back)
    assert h.stats().expired == 1 and h.stats().custody == 0
    h.push("b", "x")
    assert h.out.items == []
    h.push("a", 2)
    assert h.pairs() == [(2, "x")]


def test_barrier_skip_discards_the_whole_round_of_an_expired_value(rt: Runtime) -> None:
    h = Harness(rt, Join, max_age={"a": 2.0}, on_expired=Expired.SKIP)
    h.push("a", 1)
    advance(rt, 5.0)
    h.push("b", "x")
    assert h.out.items == []
    s = h.stats()
    assert (s.expired, s.discarded, s.fired) == (1, 1, 0)
    h.push("a", 2)
    h.push("b", "y")
    assert h.pairs() == [(2, "y")]


def test_barrier_stale_fires_with_the_old_value_its_age_and_its_port_named(rt: Runtime) -> None:
    h = Harness(rt, Join, max_age=2.0, on_expired=Expired.STALE)
    h.push("a", 1)
    advance(rt, 5.0)
    h.push("b", "x")
    assert h.out.items == [(1, "x", ("a",), {"a": 5.0, "b": 0.0}, None)]


def test_barrier_pairs_shifted_by_a_dropped_value_realign_once_it_expires(rt: Runtime) -> None:
    h = Harness(rt, Join, max_age=1.0)
    h.push("a", 1)
    h.push("b", "x1")
    advance(rt, 1.0)
    h.push("a", 2)              # its partner on b was dropped upstream
    advance(rt, 1.5)            # a=2 expires (WAIT): discarded, counted
    h.push("a", 3)
    h.push("b", "x3")
    assert h.pairs() == [(1, "x1"), (3, "x3")]
    assert h.stats().expired == 1


def test_barrier_values_left_unmatched_at_the_end_are_discarded(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("fa", IterableSource, [1, 2, 3])
    g.add("fb", IterableSource, ["x"])
    g.add("join", Join)
    g.add("out", Collect, out)
    g.connect("fa", "join.a")
    g.connect("fb", "join.b")
    g.connect("join", "out")
    inst = g.instantiate(rt, None)
    assert inst.wait_complete(5)
    assert [(a, b) for a, b, *_ in out.items] == [(1, "x")]
    s = inst.statistics().node("join")
    assert (s.discarded, s.custody, s.processed) == (2, 0, 2)


# -- LATEST ----------------------------------------------------------------------------------------
def test_latest_fires_on_every_arrival_with_the_latest_value_of_each_input(rt: Runtime) -> None:
    h = Harness(rt, Either)
    h.push("a", 1)
    assert h.out.items == [] and h.stats().suppressed == 1   # b has no value yet
    h.push("b", "x")
    h.push("a", 2, 3)
    h.push("b", "y")
    assert [(a, b, t) for a, b, _, _, t in h.out.items] == [
        (1, "x", "b"), (2, "x", "a"), (3, "x", "a"), (3, "y", "b")]


@pytest.mark.parametrize("rule, expected", [
    (Expired.WAIT, []),
    (Expired.SKIP, [(2, None, (), {"a": 0.0}, "a")]),
    (Expired.STALE, [(2, "x", ("b",), {"a": 0.0, "b": 5.0}, "a")]),
])
def test_latest_applies_the_expiry_rule_to_the_other_inputs(rt: Runtime, rule: Expired,
                                                            expected: list[Any]) -> None:
    h = Harness(rt, Either, max_age={"b": 2.0}, on_expired=rule)
    h.push("b", "x")
    h.push("a", 1)
    advance(rt, 5.0)
    h.push("a", 2)
    assert h.out.items[1:] == expected
    assert h.stats().suppressed == (2 if rule is Expired.WAIT else 1)


# -- firing without input --------------------------------------------------------------------------
class Ticker(Node):
    def __init__(self, period: float = 1.0) -> None:
        self.period = period

    def on_start(self) -> None:
        self.ticks = 0

    def process(self, item: Any, port: str) -> None:
        self.emit(("item", item))

    @every("period")
    def tick(self) -> None:
        self.ticks += 1
        self.emit(("tick", self.ticks, self.now))

    @timeout(2.0, port="in")
    def silent(self, port: str, silent_for: float) -> None:
        self.emit(("silent", port, silent_for, self.now))


def _ticker(rt: Runtime, **kwargs: Any) -> tuple[Recorder, deque[Any], Any]:
    feed: deque[Any] = deque()
    out = Recorder()
    g = Graph("g")
    g.add("feed", Fed, feed)
    g.add("ticker", Ticker, **kwargs)
    g.add("out", Collect, out)
    g.pipe("feed", "ticker", "out")
    inst = g.instantiate(rt, None)
    settle(rt)
    return out, feed, inst


def test_every_fires_on_a_fixed_grid_and_skips_missed_ticks(rt: Runtime) -> None:
    out, _, _ = _ticker(rt, period=10.0)  # the watchdog (2 s) also runs
    advance(rt, 35.0, steps=7)
    ticks = [x for x in out.items if x[0] == "tick"]
    assert ticks == [("tick", 1, 10.0), ("tick", 2, 20.0), ("tick", 3, 30.0)]
    advance(rt, 100.0)                    # one step over many periods: one late tick, no burst
    ticks = [x for x in out.items if x[0] == "tick"]
    assert ticks[3:] == [("tick", 4, 135.0)]
    advance(rt, 5.0)                      # the grid continues at 140
    assert [x for x in out.items if x[0] == "tick"][4:] == [("tick", 5, 140.0)]


def test_timeout_fires_once_per_silence_and_again_after_new_items(rt: Runtime) -> None:
    out, feed, inst = _ticker(rt, period=1000.0)
    advance(rt, 1.0)
    feed.append("x")
    inst.wake("feed")
    settle(rt)
    advance(rt, 1.5)                      # silent 1.5 s since the item: not yet
    assert [x for x in out.items if x[0] == "silent"] == []
    advance(rt, 0.5)                      # 2.0 s: fires once
    advance(rt, 10.0, steps=5)            # still silent: nothing more
    feed.append("y")
    inst.wake("feed")
    settle(rt)
    advance(rt, 2.0)
    assert [x for x in out.items if x[0] == "silent"] == [
        ("silent", "in", 2.0, 3.0), ("silent", "in", 2.0, 15.0)]


class Nagger(Node):
    def process(self, item: Any, port: str) -> None:
        pass

    @timeout(2.0, repeat=True)
    def silent(self, port: str, silent_for: float) -> None:
        self.emit(silent_for)


def test_a_repeating_timeout_fires_every_period_while_the_input_stays_silent(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("feed", Fed, deque())
    g.add("nag", Nagger)
    g.add("out", Collect, out)
    g.pipe("feed", "nag", "out")
    g.instantiate(rt, None)
    settle(rt)
    advance(rt, 7.0, steps=7)
    assert out.items == [2.0, 4.0, 6.0]


# -- batching --------------------------------------------------------------------------------------
class Sizes(Sink):
    def __init__(self, into: Recorder) -> None:
        self.into = into

    def process_batch(self, items: Any, port: str) -> None:
        self.into.append((list(items), self.now))


def _batched(rt: Runtime, **options: Any) -> tuple[Recorder, deque[Any], Any]:
    feed: deque[Any] = deque()
    out = Recorder()
    g = Graph("g")
    g.add("feed", Fed, feed)
    g.add("sizes", Sizes, out, **options)
    g.pipe("feed", "sizes")
    inst = g.instantiate(rt, None)
    settle(rt)
    return out, feed, inst


def _push(rt: Runtime, inst: Any, feed: deque[Any], items: Any) -> None:
    feed.extend(items)
    inst.wake("feed")
    settle(rt)


def test_batches_of_max_items_are_handed_over_as_soon_as_they_are_full(rt: Runtime) -> None:
    out, feed, inst = _batched(rt, max_items=10)
    _push(rt, inst, feed, range(25))
    assert [b for b, _ in out.items] == [list(range(10)), list(range(10, 20))]
    advance(rt, 100.0)                       # no max_delay: the 5 wait for a full batch
    assert len(out.items) == 2 and inst.statistics().node("sizes").custody == 5
    _push(rt, inst, feed, range(25, 30))
    assert [b for b, _ in out.items][2] == list(range(20, 30))


def test_max_delay_hands_over_a_partial_batch_and_never_an_empty_one(rt: Runtime) -> None:
    out, feed, inst = _batched(rt, max_items=10, max_delay=1.0)
    _push(rt, inst, feed, [1, 2, 3])
    advance(rt, 0.5)
    assert out.items == []
    advance(rt, 0.5)
    assert out.items == [([1, 2, 3], 1.0)]
    advance(rt, 10.0, steps=10)              # nothing waits: no empty batches
    _push(rt, inst, feed, range(100, 115))
    assert out.items[1] == (list(range(100, 110)), 11.0)   # full: at once
    advance(rt, 1.0)
    assert out.items[2] == (list(range(110, 115)), 12.0)   # the rest after max_delay
    assert len(out.items) == 3


def test_max_delay_zero_caps_batches_without_waiting(rt: Runtime) -> None:
    out, feed, inst = _batched(rt, max_items=10, max_delay=0)
    _push(rt, inst, feed, range(25))
    assert [len(b) for b, _ in out.items] == [10, 10, 5]


def test_the_end_of_the_stream_hands_over_the_last_partial_batch(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", IterableSource, range(25))
    g.add("sizes", Sizes, out, max_items=10)
    g.pipe("numbers", "sizes")
    inst = g.instantiate(rt, None)
    assert inst.wait_complete(5)
    assert [len(b) for b, _ in out.items] == [10, 10, 5]
