"""Flow control: credit-based backpressure end to end (a slow sink bounds every buffer and the
source's demand drops to 0), edge overflow policies with exact drop counts per edge and per
tenant, and the ledger ``produced = delivered + counted drops and losses`` with unique ids
(RELIABILITY 2, 3, F4). On the inline runtime and on threads, both on a ManualClock; one test
again on real threads with the real clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors import Actor, Runtime
from actors.stream import Graph, ItemsDropped, Node, Policy, Sink, every
from actors.testing import Recorder
from tests.conftest import settle
from tests.test_stream_kit import (Crashy, Numbers, Passthrough, SlowSink, advance, ledger,
                                   supervised)


class Held(Sink):
    """Pauses from the start; ``"release"`` (told) resumes it for good."""

    def __init__(self, into: Recorder) -> None:
        self.into = into

    def on_start(self) -> None:
        self.pause()

    def process(self, item: Any, port: str) -> None:
        self.into.append(item)

    def on_message(self, message: Any) -> Any:
        if message == "release":
            self.resume()
        return None


def _quiet_ledger_holds(inst: Any) -> dict[str, int]:
    led = ledger(inst)
    assert led["produced"] == (led["sunk"] + led["dropped"] + led["lost"] + led["expired"]
                               + led["discarded"] + led["in_flight"] + led["custody"]), led
    return led


# -- backpressure ----------------------------------------------------------------------------------
def test_a_slow_sink_bounds_every_buffer_and_the_source_demand_drops_to_zero(rt: Runtime) -> None:
    demands: list[int] = []
    out = Recorder()
    window = 32
    g = Graph("g")
    g.add("numbers", Numbers, None, demands, max_items=8)
    g.add("a", Passthrough)
    g.add("b", Passthrough)
    g.add("slow", SlowSink, out, 1.0)
    g.pipe("numbers", "a", "b", "slow", window=window)
    inst = g.instantiate(rt, "acme")
    settle(rt)
    for tick in range(30):
        s = inst.statistics()
        for e in s.edges:   # never more than the window in flight, nothing piles up
            assert e.in_flight <= window and e.buffered <= window, (tick, e)
        for n in s.nodes:
            assert n.queued <= window and n.custody <= 2 * window, (tick, n)
        produced = s.node("numbers").emitted
        assert produced - len(out) <= 4 * window, (tick, produced, len(out))
        assert s.node("numbers").demand == 0  # backpressure reached the source
        advance(rt, 1.0)
    assert len(out) >= 30 * 4 and out.items == list(range(len(out)))
    assert all(d > 0 for d in demands)  # produce() is never called without demand
    assert inst.statistics().dropped == 0
    _quiet_ledger_holds(inst)


def test_a_backed_up_node_withholds_its_inputs_credit_until_its_output_drains(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 200, max_items=10)
    g.add("a", Passthrough)
    g.add("held", Held, out)
    g.connect("numbers", "a", window=20)
    g.connect("a", "held", window=10)
    inst = g.instantiate(rt, None)
    settle(rt)
    s = inst.statistics()
    # held took 10 (its window) and credits nothing. a forwarded its first batch (10) at once
    # and gave that credit back; its second batch waited, so it withholds the credit from then
    # on: a holds 20 (its input window) and numbers stopped at 10 + 20.
    assert s.edge("a.out").sent == 10 and s.edge("a.out").buffered == 20
    assert s.edge("numbers.out").sent == 30 and s.node("numbers").emitted == 30
    assert s.node("numbers").demand == 0
    settle(rt)
    assert inst.statistics().node("numbers").emitted == 30
    ref = inst.ref("held")
    assert ref is not None
    ref.tell("release")
    assert inst.wait_complete(5)
    assert out.items == list(range(200))
    assert ledger(inst)["sunk"] == 200


# -- policies --------------------------------------------------------------------------------------
POLICIES = [
    # policy, window, capacity, what the sink gets once released, dropped
    (Policy.DROP_NEWEST, 20, 50, list(range(70)), 930),
    (Policy.DROP_OLDEST, 20, 50, list(range(20)) + list(range(950, 1000)), 930),
    (Policy.LATEST, None, None, [9, 999], 998),  # the newest of each moment
]


@pytest.mark.parametrize("policy, window, capacity, received, dropped", POLICIES,
                         ids=[p[0].name for p in POLICIES])
def test_each_edge_policy_drops_exactly_what_it_says_counted_per_edge_and_tenant(
        rt: Runtime, policy: Policy, window: int | None, capacity: int | None,
        received: list[int], dropped: int) -> None:
    outs = {"acme": Recorder(), "calm": Recorder()}
    insts = {}
    for tenant, out in outs.items():
        g = Graph("g")
        g.add("numbers", Numbers, 1000 if tenant == "acme" else 10, max_items=10)
        g.add("held", Held, out)
        g.connect("numbers", "held", policy=policy, window=window, capacity=capacity)
        insts[tenant] = g.instantiate(rt, tenant)
    settle(rt)
    edge = insts["acme"].statistics().edge("numbers.out")
    assert (edge.dropped, edge.policy) == (dropped, policy.name)
    assert edge.accepted == 1000 and edge.sent + edge.buffered + edge.dropped == 1000
    for inst in insts.values():
        ref = inst.ref("held")
        assert ref is not None
        ref.tell("release")
    for inst in insts.values():
        assert inst.wait_complete(5)
    assert outs["acme"].items == received
    assert insts["acme"].statistics().dropped == dropped      # per tenant
    assert insts["calm"].statistics().dropped == (9 if policy is Policy.LATEST else 0)
    assert _quiet_ledger_holds(insts["acme"])["sunk"] == len(received)


class Burst(Node):
    """Emits 100 items per tick, whatever the demand (a timer-driven emitter)."""

    inputs = ("in",)

    def on_start(self) -> None:
        self.n = 0

    def process(self, item: Any, port: str) -> None:
        pass

    @every(1.0)
    def burst(self) -> None:
        self.emit_many(range(self.n, self.n + 100))
        self.n += 100


def test_a_backpressure_edge_has_a_hard_bound_for_items_emitted_without_demand(
        rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 0)
    g.add("burst", Burst)
    g.add("held", Held, out)
    g.connect("numbers", "burst")
    g.connect("burst", "held", window=10, capacity=150)
    inst = g.instantiate(rt, None)
    settle(rt)
    advance(rt, 3.0, steps=3)
    e = inst.statistics().edge("burst.out")
    assert (e.accepted, e.sent, e.buffered, e.dropped) == (300, 10, 150, 140)


# -- the ledger ------------------------------------------------------------------------------------
def test_the_ledger_adds_up_with_unique_ids_through_crashes_and_drops(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 2000, max_items=16)
    g.add("crashy", Crashy, {300, 301, 1500})
    g.add("slow", SlowSink, out, 0.1)
    g.connect("numbers", "crashy", window=64)
    g.connect("crashy", "slow", policy=Policy.DROP_OLDEST, window=16, capacity=100)
    inst = g.instantiate(rt, "acme", supervision=supervised(intensity=10, period=1000.0))
    settle(rt)
    for _ in range(400):
        if inst.completed:
            break
        advance(rt, 0.1)
    assert inst.completed
    ids = out.items
    assert len(ids) == len(set(ids)) and ids == sorted(ids)   # unique, in order
    led = _quiet_ledger_holds(inst)
    assert led["in_flight"] == led["custody"] == 0
    assert led["produced"] == 2000 == len(ids) + led["dropped"] + led["lost"]
    s = inst.statistics()
    # 300 and 301 travel in the same batch: the crash on 300 loses that batch whole
    assert s.lost > 0 and s.dropped > 0 and s.node("crashy").restarts == 2
    assert 301 not in ids and 1500 not in ids


class Spy(Actor):
    def __init__(self, into: Recorder) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


def test_drops_are_published_on_the_bus_with_the_tenant(rt: Runtime) -> None:
    seen = Recorder()
    spy = rt.spawn(Spy, seen)
    rt.bus.subscribe(ItemsDropped, spy)
    g = Graph("g")
    g.add("numbers", Numbers, 100, max_items=10)
    g.add("held", Held, Recorder())
    g.connect("numbers", "held", policy=Policy.DROP_NEWEST, window=5, capacity=5)
    g.instantiate(rt, "acme")
    settle(rt)
    events = seen.items
    assert events and all(isinstance(e, ItemsDropped) for e in events)
    assert events[0].tenant == "acme" and events[0].edge == "numbers.out -> held.in"
    assert events[0].policy == "DROP_NEWEST" and events[0].total >= 1


# -- real threads, real clock ----------------------------------------------------------------------
class Count(Sink):
    def __init__(self, n: int, done: threading.Event) -> None:
        self.n, self.done = n, done
        self.seen = 0

    def process_batch(self, items: Any, port: str) -> None:
        self.seen += len(items)
        if self.seen >= self.n:
            self.done.set()


def test_a_pipeline_on_real_threads_and_clock_delivers_everything_with_bounded_mailboxes() -> None:
    n, window = 200_000, 256
    done = threading.Event()
    g = Graph("g")
    g.add("numbers", Numbers, n, max_items=64)
    g.add("a", Passthrough)
    g.add("b", Passthrough)
    g.add("count", Count, n, done)
    g.pipe("numbers", "a", "b", "count", window=window)
    with Runtime(workers=2) as rt:
        inst = g.instantiate(rt, "acme", supervision=supervised())
        assert done.wait(30)
        assert inst.wait_complete(10)
        s = inst.statistics()
        peaks = [r.statistics().peak for r in (inst.ref(x) for x in ("a", "b", "count"))
                 if r is not None]
    assert s.node("count").processed == n and s.dropped == s.lost == 0
    assert len(peaks) == 3 and max(peaks) <= window  # one message per batch, within credit
