"""``Graph``: a processing graph defined once, in plain Python, instantiated per tenant.

    g = Graph("sensors")
    g.add("devices", Devices, count=20)          # extra arguments go to Devices.__init__
    g.add("validate", Validate)
    g.add("average", RollingAverage, window=10, max_items=64, max_delay=0.05)
    g.add("alerts", Alerts)
    g.pipe("devices", "validate", "average")     # backpressure edges, out -> in
    g.connect("average", "alerts", policy=Policy.DROP_OLDEST, capacity=1000)
    g.connect("validate.rejects", "alerts.rejects")
    g.retain("validate", size=10_000)            # a bounded log with offsets for late readers
    inst = g.instantiate(rt, "acme", supervision=GraphSupervision())

Definitions are checked as they are made (``ValueError`` naming the node, port or field) and
once more, as a whole, when the graph is instantiated: every input port connected, no cycle.
``add`` keeps the keyword arguments ``inputs``, ``outputs``, ``trigger``, ``max_items``,
``max_delay``, ``max_age`` and ``on_expired`` for itself (per-node overrides of the class
attributes of the same names), like ``spawn`` keeps ``name`` and ``mailbox_size`` - which, with
``overflow``, a node's own parameters may not be called either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._checks import check_number
from ._enums import Expired, Policy, Trigger
from ._kinds import Sink, Source
from ._node import Node
from ._timers import watched_ports

if TYPE_CHECKING:
    from .._runtime import Runtime
    from .._tenant import Tenant
    from ._instance import StreamInstance, Supervision

__all__ = ["Graph", "NodeDef", "EdgeDef", "Plan", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 1024
"""Credit of an edge, in items: how many may be in flight (or in the receiver's mailbox)."""

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_UNSET: Any = object()
_SPAWN_OPTIONS = frozenset({"name", "mailbox_size", "overflow"})


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 64:
        raise ValueError(f"{what} must be 1-64 letters, digits, '_' or '-' (no '.' or '/'), "
                         f"got {name!r}")
    return name


def _positive_int(what: str, value: object) -> int:
    return check_number(value, what, integer=True, positive=True)


def _seconds(what: str, value: object, *, zero: bool = False) -> float:
    if zero:
        return float(check_number(value, what, low=0, unit="seconds"))
    return float(check_number(value, what, positive=True, unit="seconds"))


@dataclass(frozen=True)
class NodeDef:
    """One node of a graph, resolved: class attributes merged with ``add``'s overrides."""

    name: str
    cls: type
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    trigger: Trigger
    max_items: int | None
    max_delay: float | None
    max_age: Mapping[str, float]
    on_expired: Mapping[str, Expired]

    @property
    def kind(self) -> str:
        return ("source" if issubclass(self.cls, Source) else
                "sink" if issubclass(self.cls, Sink) else "node")


@dataclass(frozen=True)
class EdgeDef:
    """One edge: from ``source.source_port`` to ``target.target_port``."""

    index: int
    source: str
    source_port: str
    target: str
    target_port: str
    policy: Policy
    window: int
    capacity: int

    @property
    def name(self) -> str:
        return f"{self.source}.{self.source_port} -> {self.target}.{self.target_port}"


@dataclass(frozen=True)
class Plan:
    """A validated graph, nodes in pipeline (topological) order: what an instance runs."""

    name: str
    nodes: tuple[NodeDef, ...]
    edges: tuple[EdgeDef, ...]
    retained: Mapping[tuple[str, str], int]
    index: Mapping[str, int] = field(repr=False)
    inputs_of: tuple[tuple[int, ...], ...] = field(repr=False)          # node -> edge indexes
    outputs_of: tuple[Mapping[str, tuple[int, ...]], ...] = field(repr=False)  # port -> edges


class Graph:
    """A graph definition (see the module docstring). Not thread-safe while being defined;
    instantiating it any number of times, from any thread, is."""

    def __init__(self, name: str, *, supervision: "Supervision | None" = None,
                 checkpoint: Any = None) -> None:
        self.name = _check_name("graph name", name)
        self.supervision = supervision
        self.checkpoint = _check_checkpoint(checkpoint)
        self._nodes: dict[str, NodeDef] = {}
        self._edges: list[EdgeDef] = []
        self._retained: dict[tuple[str, str], int] = {}
        self._plan: Plan | None = None

    def __repr__(self) -> str:
        return f"<Graph {self.name} nodes={len(self._nodes)} edges={len(self._edges)}>"

    # -- defining --------------------------------------------------------------------------------
    def add(self, name: str, cls: type, /, *args: Any, inputs: Any = _UNSET,
            outputs: Any = _UNSET, trigger: Any = _UNSET, max_items: Any = _UNSET,
            max_delay: Any = _UNSET, max_age: Any = _UNSET, on_expired: Any = _UNSET,
            **kwargs: Any) -> str:
        """Add node ``name`` running ``cls(*args, **kwargs)`` (a ``Source``, ``Node`` or ``Sink``
        subclass); returns ``name``. Raises ``ValueError`` naming what is wrong."""
        _check_name("node name", name)
        what = f"node {name!r}"
        if name in self._nodes:
            raise ValueError(f"{what} is already in graph {self.name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise ValueError(f"{what}: expected a Source, Node or Sink subclass, got {cls!r}")
        taken = sorted(k for k in kwargs if k in _SPAWN_OPTIONS)
        if taken:
            raise ValueError(f"{what}: keyword argument {taken[0]!r} is a spawn option the "
                             "graph sets itself; give your node's parameter another name")
        try:
            cls.check_arguments(*args, **kwargs)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None

        def pick(given: Any, attr: str) -> Any:  # add's override, or the class attribute
            return getattr(cls, attr) if given is _UNSET else given

        ins = _ports(f"{what}: inputs", pick(inputs, "inputs"))
        outs = _ports(f"{what}: outputs", pick(outputs, "outputs"))
        if issubclass(cls, Source) and ins:
            raise ValueError(f"{what}: a Source has no inputs, got {ins}")
        if issubclass(cls, Sink) and outs:
            raise ValueError(f"{what}: a Sink has no outputs, got {outs}")
        trig = Trigger.parse(pick(trigger, "trigger"))
        if trig is not Trigger.EACH and not ins:
            raise ValueError(f"{what}: trigger {trig.name} needs input ports")
        items = pick(max_items, "max_items")
        delay = pick(max_delay, "max_delay")
        if items is not None:
            _positive_int(f"{what}: max_items", items)
        if delay is not None:
            _seconds(f"{what}: max_delay", delay, zero=True)
        if trig is not Trigger.EACH and (items is not None or delay is not None):
            raise ValueError(f"{what}: batching (max_items/max_delay) is for EACH nodes, not "
                             f"trigger {trig.name}")
        ages = _per_input(f"{what}: max_age", pick(max_age, "max_age"), ins,
                          lambda w, v: _seconds(w, v))
        rules = _per_input(f"{what}: on_expired", pick(on_expired, "on_expired"), ins,
                           lambda w, v: Expired.parse(v))
        for port in watched_ports(cls):
            if isinstance(port, str) and port not in ins:
                raise ValueError(f"{what}: a timeout() watches input {port!r}, which is not one "
                                 f"of its inputs {ins}")
        self._nodes[name] = NodeDef(name, cls, tuple(args), MappingProxyType(dict(kwargs)), ins,
                                    outs, trig, items, None if delay is None else float(delay),
                                    MappingProxyType(ages), MappingProxyType(rules))
        self._plan = None
        return name

    def connect(self, source: str, target: str, *, policy: Policy | str = Policy.BACKPRESSURE,
                window: int | None = None, capacity: int | None = None) -> EdgeDef:
        """Connect ``"node"`` or ``"node.port"`` to ``"node"`` or ``"node.port"`` (omitted: the
        node's ``out`` / ``in`` port, or its only one). ``window``: credit in items (default
        1024; LATEST: 1). ``capacity``: the sender's buffer for this edge (drop policies:
        default ``window``; LATEST: 1; BACKPRESSURE: ``64 * window``, a hard bound for items
        emitted without demand). Raises ``ValueError`` naming the edge and the field."""
        src, sport = self._endpoint(source, "outputs")
        dst, dport = self._endpoint(target, "inputs")
        pol = Policy.parse(policy)
        what = f"edge {src}.{sport} -> {dst}.{dport}"
        if pol is Policy.LATEST:
            if capacity not in (None, 1):
                raise ValueError(f"{what}: a LATEST edge keeps exactly one item (capacity 1), "
                                 f"got capacity={capacity!r}")
            win = 1 if window is None else _positive_int(f"{what}: window", window)
            cap = 1
        else:
            win = DEFAULT_WINDOW if window is None else _positive_int(f"{what}: window", window)
            default = win * 64 if pol is Policy.BACKPRESSURE else win
            cap = default if capacity is None else _positive_int(f"{what}: capacity", capacity)
        for e in self._edges:
            if (e.source, e.source_port, e.target, e.target_port) == (src, sport, dst, dport):
                raise ValueError(f"{what} is already connected")
        edge = EdgeDef(len(self._edges), src, sport, dst, dport, pol, win, cap)
        self._edges.append(edge)
        self._plan = None
        return edge

    def pipe(self, *nodes: str, **edge_options: Any) -> list[EdgeDef]:
        """Connect each node to the next (``connect``'s options apply to every edge)."""
        if len(nodes) < 2:
            raise ValueError("pipe needs at least two nodes")
        return [self.connect(a, b, **edge_options) for a, b in zip(nodes, nodes[1:])]

    def retain(self, output: str, size: int) -> None:
        """Keep the last ``size`` items emitted on ``"node"`` / ``"node.port"`` in a log with
        offsets (``StreamInstance.log(output)``; a ``LogReader`` node replays it)."""
        node, port = self._endpoint(output, "outputs")
        _positive_int(f"retained output {node}.{port}: size", size)
        self._retained[(node, port)] = size
        self._plan = None

    def _endpoint(self, spec: str, side: str) -> tuple[str, str]:
        if not isinstance(spec, str) or not spec:
            raise ValueError(f"expected 'node' or 'node.port', got {spec!r}")
        node, _, port = spec.partition(".")
        d = self._nodes.get(node)
        if d is None:
            raise ValueError(f"no node {node!r} in graph {self.name!r} "
                             f"(known: {', '.join(self._nodes) or 'none'})")
        ports: tuple[str, ...] = getattr(d, side)
        kind = side[:-1]
        if not port:
            default = "out" if side == "outputs" else "in"
            if len(ports) != 1 and default in ports:
                return node, default
            if len(ports) != 1:
                raise ValueError(f"node {node!r} has {len(ports)} {side} {ports}: name the {kind} "
                                 f"as '{node}.<port>'")
            return node, ports[0]
        if port not in ports:
            raise ValueError(f"node {node!r} has no {kind} port {port!r} ({side}: {ports})")
        return node, port

    # -- checking --------------------------------------------------------------------------------
    def plan(self) -> Plan:
        """The validated graph (cached until the next change). ``ValueError`` for an empty
        graph, an unconnected input or a cycle."""
        if self._plan is not None:
            return self._plan
        if not self._nodes:
            raise ValueError(f"graph {self.name!r} has no nodes")
        connected = {(e.target, e.target_port) for e in self._edges}
        for d in self._nodes.values():
            for port in d.inputs:
                if (d.name, port) not in connected:
                    raise ValueError(f"graph {self.name!r}: input {d.name}.{port} is not "
                                     "connected")
        order = _topological(list(self._nodes), self._edges, self.name)
        nodes = tuple(self._nodes[n] for n in order)
        index = {d.name: i for i, d in enumerate(nodes)}
        inputs_of = tuple(tuple(e.index for e in self._edges if e.target == d.name)
                          for d in nodes)
        outputs_of = tuple(MappingProxyType({p: tuple(e.index for e in self._edges
                                                      if e.source == d.name and e.source_port == p)
                                             for p in d.outputs}) for d in nodes)
        self._plan = Plan(self.name, nodes, tuple(self._edges),
                          MappingProxyType(dict(self._retained)), MappingProxyType(index),
                          inputs_of, outputs_of)
        return self._plan

    # -- running ---------------------------------------------------------------------------------
    def instantiate(self, rt: "Runtime", tenant: "str | Tenant | None", *,
                    supervision: "Supervision | None" = None,
                    name: str | None = None, checkpoint: Any = None) -> "StreamInstance":
        """Start one instance of this graph for ``tenant`` (a name, a ``Tenant`` scope, or None
        for no tenant) on ``rt``: every node an actor spawned through the tenant's scope, under
        ``supervision`` (default: the graph's; without any, nodes are plain actors and a crashed
        node stays dead - pass ``supervisors.GraphSupervision()``). Returns at once (the nodes
        start on the runtime's workers). Raises ``ValueError`` for an invalid graph,
        ``ActorError`` if this tenant already runs an instance called ``name`` (default: the
        graph's name). ``checkpoint`` (default: the graph's): a ``Checkpoints`` - the
        instance restores the last committed checkpoint of (tenant, name) and takes new ones
        (see ``actors.stream._checkpoint``)."""
        from ._instance import start_instance
        return start_instance(self.plan(), rt, tenant, supervision or self.supervision,
                              name or self.name,
                              _check_checkpoint(checkpoint) or self.checkpoint)


def _check_checkpoint(checkpoint: Any) -> Any:
    from ._checkpoint import Checkpoints
    if checkpoint is not None and not isinstance(checkpoint, Checkpoints):
        raise TypeError(f"checkpoint must be a Checkpoints(store, every=...), got "
                        f"{type(checkpoint).__name__}")
    return checkpoint


def _ports(what: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{what} must be a tuple of port names, got {value!r}")
    ports = tuple(value)
    for p in ports:
        _check_name(f"{what}: port name", p)
    if len(set(ports)) != len(ports):
        raise ValueError(f"{what} has duplicate port names: {ports}")
    return ports


def _per_input(what: str, value: Any, inputs: tuple[str, ...], check: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        unknown = [p for p in value if p not in inputs]
        if unknown:
            raise ValueError(f"{what}: no input port {unknown[0]!r} (inputs: {inputs})")
        return {p: check(f"{what}[{p!r}]", v) for p, v in value.items() if v is not None}
    return {p: check(what, value) for p in inputs}


def _topological(names: list[str], edges: list[EdgeDef], graph: str) -> list[str]:
    """Kahn's algorithm; ties keep the order of ``add``. ``ValueError`` names a cycle."""
    after: dict[str, set[str]] = {n: set() for n in names}
    for e in edges:
        if e.source != e.target:
            after[e.source].add(e.target)
        else:
            raise ValueError(f"graph {graph!r}: node {e.source!r} is connected to itself")
    indegree = {n: 0 for n in names}
    for n in names:
        for m in after[n]:
            indegree[m] += 1
    order: list[str] = []
    ready = [n for n in names if indegree[n] == 0]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in sorted(after[n], key=names.index):
            indegree[m] -= 1
            if indegree[m] == 0:
                ready.append(m)
        ready.sort(key=names.index)
    if len(order) != len(names):
        cycle = [n for n in names if n not in order]
        raise ValueError(f"graph {graph!r} has a cycle through {', '.join(cycle)}: streams "
                         "with credit-based flow control must be acyclic")
    return order
