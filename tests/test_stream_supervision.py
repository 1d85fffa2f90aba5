"""Fault tolerance: each node a supervised actor, each tenant's instance one supervision subtree
(RELIABILITY F1 crash, F2 crash loop, F4 slow consumer, F5 flood). After a restart the edges are
re-wired with fresh credit; what a crash loses is counted exactly; ``snapshot``/``restore``
carry state; another tenant is never touched. Inline and on threads."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

import supervisors
from actors import Actor, Runtime
from actors.stream import Graph, ItemsLost, Node, Policy, Sink
from actors.testing import Faults, Recorder
from supervisors import Strategy
from supervisors._streams import GraphSupervision, start_graph
from tests.conftest import settle
from tests.test_stream_kit import (Collect, Crashy, Fed, Numbers, Passthrough, SlowSink,
                                   advance, ledger, push, supervised)


class Total(Node):
    """Emits the running total; carries it across restarts with snapshot/restore."""

    def on_start(self) -> None:
        self.total = 0

    def process(self, item: int, port: str) -> None:
        if item < 0:
            raise RuntimeError("negative")
        self.total += item
        self.emit(self.total)

    def snapshot(self) -> int:
        return self.total

    def restore(self, state: int) -> None:
        self.total = state


class Counter(Sink):
    def on_start(self) -> None:
        self.count = 0

    def process(self, item: Any, port: str) -> None:
        self.count += 1

    def on_message(self, message: Any) -> Any:
        return self.count


def _chain(bad: set[int], n: int = 1000, **kwargs: Any) -> tuple[Graph, Recorder]:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, n, max_items=16)
    g.add("crashy", Crashy, bad)
    g.add("pass", Passthrough)
    g.add("sink", Collect, out)
    g.pipe("numbers", "crashy", "pass", "sink", **kwargs)
    return g, out


def _balanced(inst: Any) -> dict[str, int]:
    led = ledger(inst)
    assert led["produced"] == led["sunk"] + led["dropped"] + led["lost"] + led["in_flight"] + \
        led["custody"], led
    return led


# -- F1: a crash -----------------------------------------------------------------------------------
def test_a_crash_restarts_the_node_and_everything_downstream_and_counts_what_was_lost(
        rt: Runtime) -> None:
    g, out = _chain({500}, window=64)
    calm, calm_out = _chain(set(), window=64)
    inst = g.instantiate(rt, "acme", supervision=supervised())
    other = calm.instantiate(rt, "globex", supervision=supervised())
    assert inst.wait_complete(5) and other.wait_complete(5)
    s = inst.statistics()
    assert [s.node(n).restarts for n in ("numbers", "crashy", "pass", "sink")] == [0, 1, 1, 1]
    assert inst.restarts() == 3 and other.restarts() == 0  # the same, without statistics()
    o = other.statistics()                    # the other tenant never noticed
    assert [n.restarts for n in o.nodes] == [0, 0, 0, 0] and o.lost == 0
    assert calm_out.items == list(range(1000))
    led = _balanced(inst)
    assert led["lost"] >= 16 and led["sunk"] == len(out) == 1000 - led["lost"]
    assert 500 not in out.items and out.items[-1] == 999   # items behind the crash got through
    assert len(set(out.items)) == len(out.items)


def test_one_for_one_restarts_only_the_crashed_node_and_loses_only_what_it_held(
        rt: Runtime) -> None:
    g = Graph("g")
    g.add("numbers", Numbers, 1000, max_items=16)
    g.add("crashy", Crashy, {500})
    g.add("count", Counter)
    g.pipe("numbers", "crashy", "count", window=64)
    inst = g.instantiate(rt, "acme", supervision=supervised(strategy=Strategy.ONE_FOR_ONE))
    assert inst.wait_complete(5)
    s = inst.statistics()
    assert [s.node(n).restarts for n in ("numbers", "crashy", "count")] == [0, 1, 0]
    # the sink kept its state, and its input edge re-attached to the new crashy with no loss
    ref = inst.ref("count")
    assert ref is not None and ref.ask("count") == s.node("count").processed
    assert s.edge("crashy.out").lost == 0
    assert _balanced(inst)["lost"] == s.node("crashy").lost + s.edge("numbers.out").lost


def test_items_queued_for_a_crashed_node_are_counted_as_lost_in_flight() -> None:
    from actors.testing import inline_runtime
    with inline_runtime() as rt:
        out = Recorder()
        g2 = Graph("g")  # numbers pumps 8 batches of 8 in one turn: 8 messages wait for crashy
        g2.add("numbers", Numbers, 64, max_items=8)
        g2.add("crashy", Crashy, {0})
        g2.add("sink", Collect, out)
        g2.pipe("numbers", "crashy", "sink", window=64)
        inst = g2.instantiate(rt, "acme", supervision=supervised())
        assert inst.wait_complete(5)
        s = inst.statistics()
        assert s.node("crashy").lost == 8                      # the batch it crashed on
        assert s.edge("numbers.out").lost_in_flight == 56      # the 7 batches behind it
        assert s.lost == 64 and out.items == []


def test_snapshot_and_restore_carry_a_node_state_across_restarts(rt: Runtime) -> None:
    feed: deque[int] = deque()
    out = Recorder()
    g = Graph("g")
    g.add("feed", Fed, feed)
    g.add("total", Total)
    g.add("sink", Collect, out)
    g.pipe("feed", "total", "sink")
    inst = g.instantiate(rt, "acme", supervision=supervised(strategy=Strategy.ONE_FOR_ONE))
    settle(rt)
    push(rt, inst, "feed", feed, 1, 2, 3)
    push(rt, inst, "feed", feed, -1)   # crashes; restarted from the snapshot taken after 1, 2, 3
    push(rt, inst, "feed", feed, 4)
    assert out.items == [1, 3, 6, 10]
    s = inst.statistics().node("total")
    assert (s.restarts, s.restored, s.lost) == (1, 1, 1)


# -- F2: a crash loop ------------------------------------------------------------------------------
def test_a_crash_loop_exhausts_only_its_tenants_supervisor(rt: Runtime) -> None:
    bad = set(range(10_000))
    loop, _ = _chain(bad, n=10_000)
    calm, calm_out = _chain(set(), n=2000)
    looping = loop.instantiate(rt, "acme", supervision=supervised(intensity=3, period=5.0))
    fine = calm.instantiate(rt, "globex", supervision=supervised(intensity=3, period=5.0))
    assert fine.wait_complete(5)
    settle(rt)
    assert looping.root is not None and not looping.root.is_alive()   # gave up: escalation
    assert fine.root is not None and fine.root.is_alive()
    assert calm_out.items == list(range(2000))
    s = looping.statistics()
    assert s.node("crashy").restarts == 3                  # intensity 3: no busy loop
    assert fine.statistics().lost == 0 and fine.statistics().node("crashy").restarts == 0


def test_a_node_failing_in_on_start_loops_until_the_supervisor_gives_up(rt: Runtime) -> None:
    class Fragile(Passthrough):
        pass

    g = Graph("g")
    g.add("numbers", Numbers, 100, max_items=16)
    g.add("fragile", Fragile)
    g.add("sink", Counter)
    g.pipe("numbers", "fragile", "sink")
    inst = g.instantiate(rt, "acme", supervision=supervised(intensity=2, period=5.0))
    settle(rt)
    faults = Faults(rt)
    faults.crash_on_start(Fragile, times=None)
    ref = inst.ref("fragile")
    assert ref is not None
    faults.crash(ref)
    settle(rt)
    assert inst.root is not None and not inst.root.is_alive()
    assert all(not n.alive for n in inst.statistics().nodes)
    faults.clear()


# -- F4 / F5: slow consumers and floods ------------------------------------------------------------
def test_a_slow_consumer_on_a_drop_edge_does_not_slow_the_others(rt: Runtime) -> None:
    fast, slow = Recorder(), Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 5000, max_items=50)
    g.add("fast", Collect, fast)
    g.add("slow", SlowSink, slow, 1.0)
    g.connect("numbers", "fast")
    g.connect("numbers", "slow", policy=Policy.DROP_OLDEST, window=16, capacity=32)
    inst = g.instantiate(rt, "acme", supervision=supervised())
    settle(rt)
    assert fast.items == list(range(5000))     # no clock advanced: the slow one did not hold it
    e = inst.statistics().edge("numbers.out -> slow")
    assert e.accepted == 5000 and e.buffered <= 32 and e.in_flight <= 16
    assert e.dropped == e.accepted - e.sent - e.buffered   # counted = actual
    advance(rt, 10.0, steps=10)
    assert inst.completed and len(slow) + inst.statistics().dropped == 5000
    assert slow.items == sorted(set(slow.items))


def test_a_flooding_tenant_is_throttled_by_its_own_pipeline_and_the_others_finish(
        rt: Runtime) -> None:
    flood_out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, None, max_items=64)        # endless, as fast as allowed
    g.add("pass", Passthrough)
    g.add("slow", SlowSink, flood_out, 1.0)
    g.pipe("numbers", "pass", "slow", window=128)
    flood = g.instantiate(rt, "flood", supervision=supervised())
    calm, calm_out = _chain(set(), n=3000)
    other = calm.instantiate(rt, "calm", supervision=supervised())
    assert other.wait_complete(5)
    assert calm_out.items == list(range(3000))
    s = flood.statistics()
    assert s.node("numbers").emitted <= len(flood_out) + 4 * 128   # bounded, not buffered
    assert all(e.in_flight + e.buffered <= 128 for e in s.edges)
    assert s.node("numbers").demand == 0


# -- the supervision subtree -----------------------------------------------------------------------
def test_the_instance_is_a_supervisor_whose_children_are_the_nodes_in_pipeline_order(
        rt: Runtime) -> None:
    g, _ = _chain(set(), n=10)
    inst = start_graph(g, rt, "acme", intensity=5)
    settle(rt)
    assert inst.root is not None and inst.root.tenant == "acme"
    children = supervisors.which_children(inst.root)
    assert [c.id for c in children] == ["numbers", "crashy", "pass", "sink"]
    assert [c.ref for c in children] == [inst.ref(c.id) for c in children]
    assert rt.whereis("acme/g.crashy") == inst.ref("crashy")
    inst.stop()
    assert not inst.root.is_alive() and all(inst.ref(c.id) is None for c in children)


class Spy(Actor):
    def __init__(self, into: Recorder) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


def test_losses_are_published_on_the_bus_with_the_tenant(rt: Runtime) -> None:
    seen = Recorder()
    rt.bus.subscribe(ItemsLost, rt.spawn(Spy, seen))
    g, _ = _chain({100}, n=200)
    inst = g.instantiate(rt, "acme", supervision=supervised())
    assert inst.wait_complete(5)
    settle(rt)
    events = seen.items  # the bus keeps the newest undelivered event: statistics are exact
    assert events and {e.tenant for e in events} == {"acme"}
    assert {e.where for e in events} <= {"custody", "in_flight", "buffered"}
    assert all(e.graph == "g" and e.count > 0 for e in events)


@pytest.mark.parametrize("options, message", [
    ({"strategy": Strategy.SIMPLE_ONE_FOR_ONE}, "SIMPLE_ONE_FOR_ONE cannot run a graph"),
    ({"intensity": -1}, "intensity must be an integer"),
    ({"shutdown": 0}, "shutdown must be a positive number"),
    ({"backoff": 3}, "backoff must be a Backoff"),
])
def test_graph_supervision_options_are_checked_up_front(options: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GraphSupervision(**options)
