"""``StreamInstance``: one tenant's running copy of a graph, and how it is started.

Supervision is a parameter, because ``actors`` knows nothing of ``supervisors`` (the layering
rule): ``Graph.instantiate`` builds one ``NodeStart`` per node, in pipeline order, and hands
them to a ``Supervision`` - any object with ``start(scope, name, nodes) -> ActorRef | None``.
``supervisors.GraphSupervision`` runs them as the children of one ``Supervisor`` per tenant
(REST_FOR_ONE by default: a crashed node restarts with everything downstream of it, in pipeline
order). Without one (``Unsupervised``) every node is a plain actor of the tenant and a crashed
node stays dead (its inputs keep counting what they can no longer deliver).

What survives a restart lives here, in ``_Shared``: the counters, the snapshots, the retained
logs and the registry of current refs (whose lock serialises the starts of incarnations).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from .._actor import ActorRef
from .._errors import MailboxFull
from .._mailbox import Overflow
from .._tenant import Tenant
from ._log import StreamLog
from ._node import Binding
from ._stats import (EdgeCounters, EdgeStatistics, NodeCounters, NodeStatistics,
                     StreamStatistics)
from ._messages import WAKE

if TYPE_CHECKING:
    from .._runtime import Runtime
    from ._graph import Plan

__all__ = ["StreamInstance", "NodeStart", "Supervision", "Unsupervised", "start_instance"]


@dataclass(frozen=True)
class NodeStart:
    """How to start one node's actor: ``scope.spawn(cls, *args, **spawn_options, **kwargs)``.
    ``id`` is the node's name in the graph (a supervisor's child id); ``args[0]`` is the node's
    ``Binding``; ``spawn_options`` are ``name``, ``mailbox_size`` (room for every message the
    credit allows) and ``overflow`` (FAIL: a node's mailbox never drops silently)."""

    id: str
    cls: type
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    name: str
    mailbox_size: int
    kind: str

    @property
    def spawn_options(self) -> dict[str, Any]:
        return {"name": self.name, "mailbox_size": self.mailbox_size, "overflow": Overflow.FAIL}


class Supervision(Protocol):
    """Starts a graph instance's node actors, in the order given (pipeline order), and keeps
    them running. Returns the root actor (stopping it stops the instance), or None."""

    def start(self, scope: Any, name: str, nodes: Sequence[NodeStart]) -> ActorRef | None: ...


class Unsupervised:
    """Spawn every node as a plain actor of the scope: no restarts."""

    def start(self, scope: Any, name: str, nodes: Sequence[NodeStart]) -> None:
        for n in nodes:
            scope.spawn(n.cls, *n.args, **n.spawn_options, **n.kwargs)
        return None

    def __repr__(self) -> str:
        return "Unsupervised()"


class _Shared:
    """Lock rule (``_lock``): guards ``_refs``, ``_incarnations`` and ``_ended``; nothing else
    runs under it. Counters, snapshots and logs are written by one node at a time."""

    def __init__(self, plan: "Plan", clock: Any) -> None:
        self.plan = plan
        self.clock = clock
        self.nodes = [NodeCounters() for _ in plan.nodes]
        self.edges = [EdgeCounters() for _ in plan.edges]
        self.logs = {key: StreamLog(f"{key[0]}.{key[1]}", size)
                     for key, size in plan.retained.items()}
        self.snapshots: dict[int, Any] = {}
        self.checkpoint: Any = None  # a _checkpoint.Coordinator when checkpoints are on
        self.instance: StreamInstance = None  # type: ignore[assignment]  # set right after construction
        self._lock = threading.Lock()
        self._refs: list[ActorRef | None] = [None] * len(plan.nodes)
        self._incarnations = [0] * len(plan.nodes)
        self._ended: set[int] = set()
        self._complete = threading.Event()

    def register(self, index: int, ref: ActorRef) -> tuple[int, list[ActorRef | None]]:
        """A new incarnation of node ``index``: its number and the current refs of all nodes."""
        with self._lock:
            self._incarnations[index] += 1
            self._refs[index] = ref
            return self._incarnations[index], list(self._refs)

    def node_ended(self, index: int) -> None:
        with self._lock:
            self._ended.add(index)
            done = len(self._ended) == len(self._refs)
        if done:
            self._complete.set()

    def ref(self, index: int) -> ActorRef | None:
        with self._lock:
            return self._refs[index]

    def incarnations(self, index: int) -> int:
        with self._lock:
            return self._incarnations[index]

    def restarts(self) -> int:
        with self._lock:
            return sum(n - 1 for n in self._incarnations if n > 1)


def _mailbox_size(plan: "Plan", index: int) -> int:
    """Enough for every message credit allows (one per item, worst case) and control traffic."""
    windows = sum(plan.edges[e].window for e in plan.inputs_of[index])
    outs = sum(len(es) for es in plan.outputs_of[index].values())
    return windows + 16 * outs + 1024


class StreamInstance:
    """One running instance of a graph (one tenant's). Every method is safe from any thread
    except ``stop`` and ``wait_complete``, which block and must not be called from a node."""

    def __init__(self, runtime: "Runtime", shared: _Shared, tenant: str | None, name: str,
                 supervision: Any) -> None:
        self.runtime = runtime
        self.tenant = tenant
        self.name = name
        self.supervision = supervision
        self.root: ActorRef | None = None
        self._shared = shared
        self._scope: Any = None
        self._checkpoint: Any = None
        self._stopping = False
        self._recoveries = 0
        self._recover_lock = threading.Lock()

    @property
    def graph(self) -> str:
        return self._shared.plan.name

    @property
    def plan(self) -> "Plan":
        return self._shared.plan

    def ref(self, node: str) -> ActorRef | None:
        """The node's current actor, or None while it is not running."""
        ref = self._shared.ref(self._index(node))
        return ref if ref is not None and ref.is_alive() else None

    def log(self, output: str) -> StreamLog:
        """The retained log of ``"node"`` / ``"node.port"`` (``Graph.retain``). ``KeyError`` if
        that output is not retained."""
        node, _, port = output.partition(".")
        d = self._shared.plan.nodes[self._index(node)]
        port = port or (d.outputs[0] if len(d.outputs) == 1 else "")
        log = self._shared.logs.get((node, port))
        if log is None:
            raise KeyError(f"output {output!r} of graph {self.graph!r} is not retained "
                           f"(retained: {[f'{n}.{p}' for n, p in self._shared.logs]})")
        return log

    def wake(self, node: str) -> bool:
        """Tell source ``node`` that data is available (it produces now instead of at its next
        poll). False if it is not running."""
        ref = self.ref(node)
        try:
            return bool(ref is not None and ref.tell(WAKE))
        except MailboxFull:
            return False  # it has plenty to do already

    @property
    def completed(self) -> bool:
        """True once every node has ended (finite sources finished, every input drained)."""
        return self._shared._complete.is_set()

    def wait_complete(self, timeout: float = 5.0) -> bool:
        """Block until ``completed`` (True) or ``timeout`` seconds passed (False). On the inline
        runtime it runs what is queued and answers at once (time moves only with the clock)."""
        if getattr(self.runtime._scheduler, "inline", False):
            self.runtime.wait_idle(timeout)
            return self.completed
        return self._shared._complete.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the instance: its supervisor, or each node in reverse pipeline order."""
        self._stopping = True
        with self._recover_lock:
            self._stop_nodes(timeout)

    def _stop_nodes(self, timeout: float) -> None:
        if self.root is not None:
            self.runtime.stop(self.root, "shutdown", timeout)
            return
        for i in reversed(range(len(self._shared.plan.nodes))):
            ref = self._shared.ref(i)
            if ref is not None and ref.is_alive():
                self.runtime.stop(ref, "shutdown", timeout)

    def statistics(self) -> StreamStatistics:
        """A frozen snapshot of every node's and edge's counters (tenant totals included).

        What a dead node held (between incarnations, or for good without supervision) is shown
        as lost already: custody, its output buffers, and what was in flight to it - the figures
        its next incarnation will count."""
        shared = self._shared
        plan = shared.plan
        dead = set()
        nodes = []
        for i, d in enumerate(plan.nodes):
            c = shared.nodes[i]
            ref = shared.ref(i)
            alive = ref is not None and ref.is_alive()
            if ref is not None and not alive:
                dead.add(i)
            custody, lost = (0, c.lost + c.custody) if i in dead else (c.custody, c.lost)
            nodes.append(NodeStatistics(
                name=d.name, kind=d.kind, alive=alive,
                restarts=max(0, shared.incarnations(i) - 1),
                queued=ref.statistics().queued if alive and ref is not None else 0,
                processed=c.processed, emitted=c.emitted, custody=custody, lost=lost,
                expired=c.expired, discarded=c.discarded, unrouted=c.unrouted, fired=c.fired,
                suppressed=c.suppressed, demand=c.demand, restored=c.restored,
                late=c.late, errors=c.errors, evicted=c.evicted, open_windows=c.open_windows,
                carried=c.carried))
        edges = []
        for e in plan.edges:
            s = shared.edges[e.index]
            in_flight = s.sent - s.delivered - s.lost_in_flight
            buffered = s.buffered
            lost_in_flight, lost_buffered = s.lost_in_flight, s.lost_buffered
            if plan.index[e.target] in dead:
                lost_in_flight, in_flight = lost_in_flight + in_flight, 0
            if plan.index[e.source] in dead:
                lost_buffered, buffered = lost_buffered + buffered, 0
            edges.append(EdgeStatistics(
                name=e.name, policy=e.policy.name, window=e.window, capacity=e.capacity,
                accepted=s.accepted, sent=s.sent, delivered=s.delivered, dropped=s.dropped,
                buffered=buffered, in_flight=in_flight, lost=lost_in_flight + lost_buffered,
                lost_in_flight=lost_in_flight, lost_buffered=lost_buffered, credit=s.credit))
        return StreamStatistics(
            graph=plan.name, tenant=self.tenant, nodes=tuple(nodes), edges=tuple(edges),
            dropped=sum(e.dropped for e in edges),
            lost=sum(e.lost for e in edges) + sum(n.lost for n in nodes),
            expired=sum(n.expired for n in nodes), discarded=sum(n.discarded for n in nodes),
            completed=self.completed, carried=sum(n.carried for n in nodes))

    def restarts(self) -> int:
        """Node restarts since the instance's last start, plus restarts of the whole instance
        from its last checkpoint (``recoveries``): what ``statistics()`` and ``checkpoints()``
        add up to, without building either (a progress line over a thousand tenants)."""
        return self._shared.restarts() + self._recoveries

    def _recover_begin(self, failed: Any) -> list[ActorRef] | None:
        """The checkpoints of incarnation ``failed`` (its ``_Shared``) stopped - a node restarted
        and lost what it held, so a later checkpoint could claim records whose effects are not
        in the state: the whole instance restarts from its last committed checkpoint (the queue
        redelivers what it does not cover). Step 1: the actors to stop (None: nothing to do).
        Driven by ``_checkpoint._Recovery``, an actor: nothing here blocks."""
        with self._recover_lock:
            if self._stopping or self._shared is not failed or self.runtime._closed:
                return None
            if self.root is not None:
                return [self.root]
            refs = [failed.ref(i) for i in range(len(failed.plan.nodes))]
            return [r for r in refs if r is not None]

    def _recover_finish(self, failed: Any) -> None:
        """Step 2, once every actor of step 1 has exited: start the nodes again."""
        with self._recover_lock:
            if self._stopping or self._shared is not failed or self.runtime._closed:
                return
            self._recoveries += 1
            _launch(self)

    def checkpoints(self) -> dict[str, Any] | None:
        """Where the instance's checkpoints stand (None without checkpoints): ``committed``
        (the id of the last one on disk), ``commits`` (since the last start), ``restored`` (the
        id it started from, 0: none), ``abandoned``, ``pending``, ``held``, ``bytes`` (the last
        one's size), ``seconds`` (spent encoding snapshots and committing, all nodes),
        ``failed`` (why they stopped, or None), ``recoveries`` (restarts of the whole instance
        from its last checkpoint after a node restarted), ``every``."""
        coord = self._shared.checkpoint
        return None if coord is None else coord.status()

    def _index(self, node: str) -> int:
        try:
            return self._shared.plan.index[node]
        except KeyError:
            raise KeyError(f"no node {node!r} in graph {self.graph!r}") from None

    def __repr__(self) -> str:
        where = f" tenant={self.tenant}" if self.tenant is not None else ""
        return f"<StreamInstance {self.name}{where} nodes={len(self._shared.plan.nodes)}>"


def start_instance(plan: "Plan", rt: "Runtime", tenant: Any, supervision: Any,
                   name: str, checkpoint: Any = None) -> StreamInstance:
    if tenant is None:
        scope: Any = rt
        tenant_name = None
    else:
        scope = tenant if isinstance(tenant, Tenant) else rt.tenant(tenant)
        tenant_name = scope.name
    supervision = supervision if supervision is not None else Unsupervised()
    inst = StreamInstance(rt, _Shared(plan, rt.clock), tenant_name, name, supervision)
    inst._scope, inst._checkpoint = scope, checkpoint
    _launch(inst)
    return inst


def _launch(inst: StreamInstance) -> None:
    """Start (or, after a recovery, start again) every node of ``inst`` on a fresh ``_Shared``,
    from the last committed checkpoint when checkpoints are on."""
    plan, name, tenant_name = inst.plan, inst.name, inst.tenant
    shared = _Shared(plan, inst.runtime.clock)
    shared.instance = inst
    if inst._checkpoint is not None:
        from .._log import get_logger
        from ._checkpoint import Coordinator
        coord = Coordinator(inst._checkpoint, plan, tenant_name, name,
                            get_logger(graph=plan.name, tenant=tenant_name))
        shared.snapshots.update(coord.load())  # the last committed checkpoint, if any
        coord.shared = shared
        coord.recoveries = inst._recoveries
        shared.checkpoint = coord
    inst._shared = shared
    starts = [NodeStart(d.name, d.cls, (Binding(shared, i), *d.args), d.kwargs,
                        f"{name}.{d.name}", _mailbox_size(plan, i), d.kind)
              for i, d in enumerate(plan.nodes)]
    inst.root = inst.supervision.start(inst._scope, name, starts)
