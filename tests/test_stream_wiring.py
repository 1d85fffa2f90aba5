"""How a node object is wired into its graph: the framework's state lives in one object beside
the node's own attributes; the runtime starts an incarnation through its start hook (your
``on_start``, then the framework's start), never by replacing ``on_start`` on the object; and one
binding check refuses a node made outside a graph. On the inline runtime and on threads."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from actors import Runtime
from actors.stream import Graph, Node
from actors.testing import Faults, Recorder
from tests.conftest import settle
from tests.test_stream_kit import Collect, Double, Fed, Numbers, push, supervised


class Inspected(Node):
    """Forwards items and hands itself to the test (``into``) when it starts."""

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def on_start(self) -> None:
        self.count = 0
        self.into.append(self)

    def process(self, item: Any, port: str) -> None:
        self.count += 1
        self.emit(item)


def test_a_node_object_holds_only_its_own_attributes(rt: Runtime) -> None:
    nodes: list[Any] = []
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 5)
    g.add("inspected", Inspected, nodes)
    g.add("collect", Collect, out)
    g.pipe("numbers", "inspected", "collect")
    inst = g.instantiate(rt, "acme")
    assert inst.wait_complete(5)
    assert out.items == [0, 1, 2, 3, 4]
    node = nodes[0]
    # the node's own attributes, and the actor core's handle on its process (``_cell``)
    assert set(vars(node)) == {"_cell", "into", "count"}
    assert "on_start" not in vars(node)  # the start-up is the runtime's hook, not a patch
    assert node.counters.processed == 5 and node.node_name == "inspected"


class Remembering(Node):
    """Records the order of its start-up calls; crashes once on the item 3."""

    def __init__(self, events: list[Any], crash: set[int]) -> None:
        self.events = events
        self.crash = crash

    def on_start(self) -> None:
        self.events.append("on_start")
        self.emit("hello")  # sent once the incarnation has joined its graph

    def process(self, item: Any, port: str) -> None:
        if item in self.crash:
            self.crash.discard(item)
            raise RuntimeError("once")
        self.emit(item)

    def snapshot(self) -> str:
        return "state"

    def restore(self, state: Any) -> None:
        self.events.append(("restore", state))


def test_each_incarnation_runs_on_start_then_restore_and_what_on_start_emitted_is_sent(
        rt: Runtime) -> None:
    events: list[Any] = []
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 6, max_items=1)
    g.add("remembering", Remembering, events, {3})
    g.add("collect", Collect, out)
    g.pipe("numbers", "remembering", "collect")
    inst = g.instantiate(rt, "acme", supervision=supervised())
    assert inst.wait_complete(5)
    assert events == ["on_start", "on_start", ("restore", "state")]
    assert out.items.count("hello") == 2
    assert inst.statistics().node("remembering").lost == 1  # the item it crashed on


def test_a_start_failure_injected_into_a_restart_stops_that_incarnation_before_on_start(
        rt: Runtime) -> None:
    events: list[Any] = []
    feed: deque[Any] = deque()
    out = Recorder()
    g = Graph("g")
    g.add("fed", Fed, feed)
    g.add("remembering", Remembering, events, set())
    g.add("collect", Collect, out)
    g.pipe("fed", "remembering", "collect")
    inst = g.instantiate(rt, "acme", supervision=supervised(intensity=5))
    settle(rt)
    push(rt, inst, "fed", feed, 1, 2)
    faults = Faults(rt)
    faults.crash_on_start(Remembering, times=1)
    ref = inst.ref("remembering")
    assert ref is not None
    faults.crash(ref)
    settle(rt)
    faults.clear()
    # the failed incarnation ran neither on_start nor the framework's start; the next one both
    assert events == ["on_start", "on_start", ("restore", "state")]
    push(rt, inst, "fed", feed, 3)
    assert out.items == ["hello", 1, 2, "hello", 3]


class Base(Node):
    def __init__(self, add: int) -> None:
        super().__init__()
        self.add = add

    def process(self, item: Any, port: str) -> None:
        self.emit(item + self.add)


class Derived(Base):
    def __init__(self, add: int, times: int) -> None:
        super().__init__(add)
        self.times = times

    def process(self, item: Any, port: str) -> None:
        self.emit((item + self.add) * self.times)


def test_nodes_whose_init_calls_super_init_are_bound_once(rt: Runtime) -> None:
    out = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 3)
    g.add("derived", Derived, 1, 10)
    g.add("collect", Collect, out)
    g.pipe("numbers", "derived", "collect")
    inst = g.instantiate(rt, "acme")
    assert inst.wait_complete(5)
    assert out.items == [10, 20, 30]


@pytest.mark.parametrize("make", [
    lambda: Double(),
    lambda: Inspected([]),
    lambda: Derived(1, 2),
], ids=["node without __init__", "node with __init__", "subclass calling super().__init__"])
def test_a_node_made_outside_a_graph_is_refused_by_the_binding_check(make: Any) -> None:
    with pytest.raises(TypeError, match="is a stream node: add it to a Graph"):
        make()


def test_arguments_for_a_node_without_init_are_a_type_error_naming_them(rt: Runtime) -> None:
    g = Graph("g")
    g.add("numbers", Numbers, 3)
    g.add("double", Double, 7)
    g.add("collect", Collect, Recorder())
    g.pipe("numbers", "double", "collect")
    with pytest.raises(TypeError, match=r"Double\(\) takes no arguments; define __init__ to "
                                        r"accept \(7,\)"):
        g.instantiate(rt, "acme")


def test_the_framework_claims_two_private_names_of_a_node_class() -> None:
    # the start hook and the wiring slot; every other private name on a node is the user's
    private = {name for klass in Node.__mro__ if klass is not object for name in vars(klass)
               if name.startswith("_") and not name.startswith("__")}
    assert private == {"_startup", "_wiring"}
