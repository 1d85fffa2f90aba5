"""Graph definition and the node kinds: Source, Node, Sink; emitting 0, 1 or many items; ports,
fan-out and fan-in; process_batch; the end of a finite stream; tenants; statistics.
On the inline runtime and on threads (the ``rt`` fixture)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from actors import ActorError, Runtime
from actors.stream import (DEFAULT_WINDOW, Graph, IterableSource, Node, Policy, Sink, Source,
                           StreamStatistics, Trigger, timeout)
from actors.testing import Recorder
from tests.conftest import settle
from tests.test_stream_kit import Collect, Double, Numbers, Passthrough, ledger, supervised


# -- definitions -----------------------------------------------------------------------------------
class Two(Node):
    inputs = ("a", "b")
    outputs = ("x", "y")

    def process(self, item: Any, port: str) -> None:
        self.emit(item, port="x")


class Watched(Node):
    @timeout(1.0, port="nope")
    def silent(self, port: str, silent_for: float) -> None:
        pass


def _base() -> Graph:
    g = Graph("g")
    g.add("src", Numbers, 10)
    g.add("two", Two)
    g.add("sink", Collect, Recorder())
    return g


BAD_DEFINITIONS = [
    ("duplicate node", lambda g: g.add("src", Numbers), "node 'src' is already"),
    ("not a node class", lambda g: g.add("x", dict), "node 'x': expected a Source"),
    ("name with a dot", lambda g: g.add("a.b", Double), "node name must be"),
    ("unknown node", lambda g: g.connect("src", "nope"), "no node 'nope'"),
    ("unknown port", lambda g: g.connect("src", "two.c"), "no input port 'c'"),
    ("ambiguous port", lambda g: g.connect("src", "two"), "has 2 inputs"),
    ("output as input", lambda g: g.connect("sink", "two.a"), "has 0 outputs"),
    ("zero window", lambda g: g.connect("src", "two.a", window=0), "window must be a positive"),
    ("latest capacity", lambda g: g.connect("src", "two.a", policy=Policy.LATEST, capacity=5),
     "LATEST edge keeps exactly one item"),
    ("unknown policy", lambda g: g.connect("src", "two.a", policy="block"), "unknown Policy"),
    ("source with inputs", lambda g: g.add("s2", Numbers, inputs=("in",)), "a Source has no"),
    ("sink with outputs", lambda g: g.add("k2", Collect, Recorder(), outputs=("out",)),
     "a Sink has no outputs"),
    ("batching a barrier", lambda g: g.add("b", Two, trigger=Trigger.BARRIER, max_items=4),
     "batching (max_items/max_delay) is for EACH"),
    ("max_age of an unknown port", lambda g: g.add("b", Two, max_age={"c": 1.0}),
     "no input port 'c'"),
    ("negative max_delay", lambda g: g.add("b", Double, max_delay=-1), "max_delay must be"),
    ("watchdog on an unknown port", lambda g: g.add("w", Watched), "watches input 'nope'"),
    ("retain an unknown output", lambda g: g.retain("two.z", 10), "no output port 'z'"),
    ("a spawn option as a parameter", lambda g: g.add("c", Collect, Recorder(), name="x"),
     "keyword argument 'name' is a spawn option"),
]


@pytest.mark.parametrize("what, define, message", BAD_DEFINITIONS,
                         ids=[row[0] for row in BAD_DEFINITIONS])
def test_a_bad_definition_is_a_value_error_naming_what_is_wrong(what: str, define: Any,
                                                                  message: str) -> None:
    with pytest.raises(ValueError) as info:
        define(_base())
    assert message in str(info.value)


@pytest.mark.parametrize("edges, message", [
    ([("src", "two.a")], "input two.b is not connected"),
    ([("src", "two.a"), ("src", "two.b"), ("two.x", "sink"), ("two.y", "loop.in"),
      ("loop", "two.b")], "has a cycle through"),
])
def test_the_whole_graph_is_checked_when_it_is_instantiated(edges: list[tuple[str, str]],
                                                              message: str) -> None:
    g = _base()
    g.add("loop", Double)
    for a, b in edges:
        g.connect(a, b)
    with pytest.raises(ValueError, match=message):
        g.plan()


def test_the_plan_orders_nodes_along_the_pipeline_and_resolves_defaults() -> None:
    g = Graph("g")
    g.add("sink", Collect, Recorder())
    g.add("mid", Double)
    g.add("src", Numbers, 3)
    g.connect("mid", "sink")
    latest = g.connect("src", "mid", policy="latest")
    plan = g.plan()
    assert [d.name for d in plan.nodes] == ["src", "mid", "sink"]
    assert [d.kind for d in plan.nodes] == ["source", "node", "sink"]
    assert (latest.window, latest.capacity, latest.policy) == (1, 1, Policy.LATEST)
    assert plan.edges[0].window == DEFAULT_WINDOW
    assert latest.name == "src.out -> mid.in"


def test_overriding_receive_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must not override receive"):
        class Bad(Node):
            def receive(self, message: Any) -> None:
                pass


def test_a_node_spawned_outside_a_graph_is_refused_with_a_clear_error(rt: Runtime) -> None:
    with pytest.raises(TypeError, match="add it to a Graph"):
        rt.spawn(Double)
    with pytest.raises(TypeError, match="add it to a Graph"):
        rt.spawn(Collect, Recorder())  # a node with its own __init__


# -- running ---------------------------------------------------------------------------------------
def test_source_node_and_sink_run_a_pipeline(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 1000)
    g.add("double", Double)
    g.add("collect", Collect, out)
    g.pipe("numbers", "double", "collect")
    inst = g.instantiate(rt, "acme")
    assert inst.wait_complete(5)
    assert out.items == [2 * i for i in range(1000)]
    assert ledger(inst)["produced"] == ledger(inst)["sunk"] == 1000


class Varied(Node):
    """0 items for odd numbers, 1 for even ones, 3 for multiples of 10."""

    def process(self, item: int, port: str) -> None:
        if item % 10 == 0:
            for k in range(3):
                self.emit((item, k))
        elif item % 2 == 0:
            self.emit((item, 0))


def test_process_may_emit_zero_one_or_many_items(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 100)
    g.add("varied", Varied)
    g.add("collect", Collect, out)
    g.pipe("numbers", "varied", "collect")
    inst = g.instantiate(rt, None)
    assert inst.wait_complete(5)
    expected = [(i, k) for i in range(100) for k in (range(3) if i % 10 == 0 else
                                                     range(1) if i % 2 == 0 else ())]
    assert out.items == expected
    varied = inst.statistics().node("varied")
    assert (varied.processed, varied.emitted) == (100, len(expected))


class Validate(Node):
    outputs = ("out", "rejects")

    def process(self, item: int, port: str) -> None:
        self.emit(item, port="out" if item % 3 else "rejects")


def test_named_ports_route_items_and_fan_out_copies_fan_in_merges(rt: Runtime) -> None:
    good, bad, merged = Recorder(), Recorder(), Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 30)
    g.add("validate", Validate)
    g.add("good", Collect, good)
    g.add("bad", Collect, bad)
    g.add("merged", Collect, merged, False)
    g.connect("numbers", "validate")
    g.connect("validate.out", "good")
    g.connect("validate.out", "merged")        # fan-out: both get every item
    g.connect("validate.rejects", "bad")
    g.connect("validate.rejects", "merged")    # fan-in: two edges into one port
    inst = g.instantiate(rt, None)
    assert inst.wait_complete(5)
    assert good.items == [i for i in range(30) if i % 3]
    assert bad.items == [i for i in range(30) if not i % 3]
    assert sorted(i for _, i in merged.items) == list(range(30))
    assert {p for p, _ in merged.items} == {"in"}


class BatchSizes(Sink):
    def __init__(self, sizes: Recorder) -> None:
        self.sizes = sizes

    def process_batch(self, items: Any, port: str) -> None:
        self.sizes.append(len(items))


def test_process_batch_gets_whole_batches_and_never_an_empty_one(rt: Runtime) -> None:
    sizes = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 1000, max_items=100)
    g.add("pass", Passthrough)
    g.add("sizes", BatchSizes, sizes)
    g.pipe("numbers", "pass", "sizes")
    inst = g.instantiate(rt, None)
    assert inst.wait_complete(5)
    assert sum(sizes.items) == 1000 and 0 not in sizes.items
    assert max(sizes.items) == 100  # the source's batches travel whole


class Totals(Node):
    """Emits nothing per item, then the total at the end of the stream."""

    def on_start(self) -> None:
        self.total = 0

    def process(self, item: int, port: str) -> None:
        self.total += item

    def on_end(self) -> None:
        self.emit(("total", self.total))


def test_the_end_of_a_finite_stream_reaches_every_node_and_completes_the_instance(
        rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", IterableSource, range(50))
    g.add("totals", Totals)
    g.add("collect", Collect, out)
    g.pipe("numbers", "totals", "collect")
    inst = g.instantiate(rt, "acme", supervision=supervised())
    assert inst.wait_complete(5)
    assert out.items == [("total", sum(range(50)))]
    assert inst.statistics().completed


class Ask(Node):
    def process(self, item: Any, port: str) -> None:
        self.emit(item)

    def on_message(self, message: Any) -> Any:
        if message == "emit-marker":
            self.emit("marker")
        return ("seen", message)


def test_other_messages_go_to_on_message_which_may_emit_and_answers_ask(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 0)
    g.add("ask", Ask)
    g.add("collect", Collect, out)
    g.pipe("numbers", "ask", "collect")
    inst = g.instantiate(rt, None)
    settle(rt)
    ref = inst.ref("ask")
    assert ref is not None and ref.ask("emit-marker") == ("seen", "emit-marker")
    settle(rt)
    assert out.items == ["marker"]


class Loose(Node):
    outputs = ("out", "debug")

    def process(self, item: Any, port: str) -> None:
        self.emit(item)
        self.emit(item, port="debug")  # no edge, not retained


def test_items_emitted_on_an_unconnected_output_are_counted_as_unrouted(rt: Runtime) -> None:
    g = Graph("g")
    g.add("numbers", Numbers, 7)
    g.add("loose", Loose)
    g.add("collect", Collect, Recorder())
    g.pipe("numbers", "loose", "collect")
    inst = g.instantiate(rt, None)
    assert inst.wait_complete(5)
    assert inst.statistics().node("loose").unrouted == 7


class WrongPort(Node):
    def process(self, item: Any, port: str) -> None:
        self.emit(item, port="nope")


def test_emitting_on_a_port_the_node_lacks_raises_value_error_in_the_node() -> None:
    from actors.testing import inline_runtime
    with inline_runtime() as rt:
        g = Graph("g")
        g.add("numbers", Numbers, 1)
        g.add("wrong", WrongPort)
        g.add("collect", Collect, Recorder())
        g.pipe("numbers", "wrong", "collect")
        inst = g.instantiate(rt, None)
        settle(rt)
        s = inst.statistics()
        assert not s.node("wrong").alive and s.node("wrong").lost == 1


def test_each_tenant_gets_its_own_instance_whose_nodes_carry_the_tenant(rt: Runtime) -> None:
    outs = {t: Recorder() for t in ("acme", "globex")}
    insts = {}
    for tenant, out in outs.items():
        g = Graph("sensors")
        g.add("numbers", Numbers, 10)
        g.add("collect", Collect, out)
        g.pipe("numbers", "collect")
        insts[tenant] = g.instantiate(rt, tenant, supervision=supervised())
    for tenant, inst in insts.items():
        assert inst.wait_complete(5)
        ref = inst.ref("collect")
        assert ref is not None and ref.tenant == tenant
        assert ref.path.startswith(f"/tenants/{tenant}/")
        assert rt.whereis(f"{tenant}/sensors") == inst.root
        assert outs[tenant].items == list(range(10))
    with pytest.raises(ActorError, match="already registered"):
        _same_name(rt)


def _same_name(rt: Runtime) -> None:
    g = Graph("sensors")
    g.add("numbers", Numbers, 1)
    g.add("collect", Collect, Recorder())
    g.pipe("numbers", "collect")
    g.instantiate(rt, "acme", supervision=supervised())


def test_statistics_are_frozen_values_with_lookups_by_name(rt: Runtime) -> None:
    g = Graph("g")
    g.add("numbers", Numbers, 5)
    g.add("collect", Collect, Recorder())
    g.pipe("numbers", "collect")
    inst = g.instantiate(rt, "t1")
    assert inst.wait_complete(5)
    s = inst.statistics()
    assert isinstance(s, StreamStatistics) and s.tenant == "t1" and s.graph == "g"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.dropped = 1  # type: ignore[misc]  # frozen on purpose: the test
    assert s.edge("numbers.out").delivered == 5 == s.edge("numbers.out -> collect.in").sent
    assert s.node("numbers").kind == "source"
    with pytest.raises(KeyError):
        s.node("nope")
    assert "StreamInstance g tenant=t1" in repr(inst)


def test_a_source_without_data_polls_on_the_clock_and_wake_makes_it_produce_now(
        rt: Runtime) -> None:
    feed: list[int] = []

    class Feed(Source):
        poll_interval = 10.0

        def produce(self, demand: int) -> list[int]:
            taken = feed[:demand]
            del feed[:demand]
            return taken

    out = Recorder()
    g = Graph("g")
    g.add("feed", Feed)
    g.add("collect", Collect, out)
    g.pipe("feed", "collect")
    inst = g.instantiate(rt, None)
    settle(rt)
    polls = inst.statistics().node("feed")
    feed.extend([1, 2, 3])
    rt.clock.advance(5.0)  # type: ignore[attr-defined]  # a ManualClock here
    settle(rt)
    assert out.items == []  # not polled yet
    rt.clock.advance(5.0)  # type: ignore[attr-defined]  # a ManualClock here
    settle(rt)
    assert out.items == [1, 2, 3]
    feed.append(4)
    assert inst.wake("feed")
    settle(rt)
    assert out.items == [1, 2, 3, 4]
    assert inst.statistics().node("feed").demand > 0 and polls.demand > 0
