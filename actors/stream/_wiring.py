"""``Wiring``: everything the framework keeps for one node incarnation, in one slotted object
held by the node as ``node._wiring`` - your node's own attributes are yours alone.

It is built when the node object is made (``Node.__init__`` takes the ``Binding`` the instance
spawned it with) and holds the node's definition, its counters, both ends of its edges with
their credit, what handlers emitted, batching buffers, trigger state, timers and a source's
pumping state. The control messages between node actors (``_messages``) are handled here; the
multi-input triggers, batching and timers live in ``_triggers``, ``_batching`` and ``_timers``
and work on this object too.

Start of an incarnation (``Wiring.start``, called by ``Node._startup`` in the actor's first
turn, right after your ``on_start``):

1. register the new ref in the instance (incarnation number = the edges' ``epoch``);
2. if an earlier incarnation crashed: what it held (``custody``) and what waited in its output
   buffers is counted as lost - the counters live in the instance, so nothing is lost silently;
3. ``restore`` the last snapshot, if the node takes snapshots;
4. attach to every upstream node that is registered (``Attach``: a fresh window of credit; the
   upstream then counts what it had sent to the dead incarnation and that was never taken as
   lost in flight), and say ``Hello`` to every downstream node, which attaches back;
5. arm ``@every`` and ``@timeout`` timers.

Messages from one actor to another arrive in order, so by the time a live receiver answers a
restarted sender's ``Hello``, it has taken everything the dead sender had sent: in flight is
then exactly 0 and nothing is counted twice. (A ``kill`` while a handler runs lets that handler
finish in the background; its last batch can then skew the counts of its edges.)
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from . import _batching, _checkpoint, _timers, _triggers
from ._edges import In, Out
from ._enums import Trigger
from ._events import ItemsDropped, ItemsLost
from ._messages import Attach, Credit, Hello, POLL, PUMP

if TYPE_CHECKING:
    from .._clock import Clock
    from ._graph import NodeDef
    from ._instance import _Shared
    from ._node import Binding, Node
    from ._stats import NodeCounters

__all__ = ["Wiring"]

_MISSING = object()


class Wiring:
    """One node incarnation's framework state (see the module docstring). Built by
    ``Node.__init__``; the node's methods and the control messages call into it."""

    __slots__ = (
        # where the node stands
        "node", "shared", "index", "definition", "counters", "clock", "epoch", "source",
        # inputs: ``by_eid[eid]`` is the ``In`` of edge eid (None: not an input of this node)
        "by_eid", "ins",
        # outputs: per port, the edges it feeds; ``backpressured``: those with credit;
        # ``single``: (port, Out) when one port feeds one edge and nothing else (the fast case)
        "routes", "outs", "out_by_eid", "backpressured", "single", "logs",
        # what the running handler emitted, per output port (sent when it returns)
        "emitted", "has_outputs", "first_port",
        # the fast path (EACH, no batching, no watchdog, not paused), flow control, the end
        "simple", "blocked", "paused", "stash", "takes_snapshots", "ended", "end_pending",
        # a source: produce size, its self-messages in flight, finished
        "produce_size", "pumping", "polling", "finished",
        # batching (``_batching``): per input port, the batch and whether its timer is armed
        "batching", "batches", "batch_armed", "batch_max", "batch_delay",
        # triggers (``_triggers``): BARRIER's FIFOs, LATEST's newest values
        "fifos", "latest",
        # timers (``_timers``): the class's specs; per watched port its watchdogs and last
        # arrival; per timer its due time (every) or (seconds, port, repeat) (timeout)
        "timer_specs", "watchers", "last_seen", "watch_idle", "due",
        # checkpoints (``_checkpoint``): a multi-input node's alignment, or None
        "barrier",
    )

    def __init__(self, node: "Node", binding: "Binding", takes_snapshots: bool) -> None:
        shared = binding.shared
        i = binding.index
        plan = shared.plan
        nd = plan.nodes[i]
        self.node = node
        self.shared: _Shared = shared
        self.index = i
        self.definition: NodeDef = nd
        self.counters: NodeCounters = shared.nodes[i]
        self.clock: Clock = shared.clock
        self.epoch = 0
        self.source = nd.kind == "source"
        table: list[In | None] = [None] * len(plan.edges)
        ins = []
        for eid in plan.inputs_of[i]:
            edge = plan.edges[eid]
            inp = In(edge, plan.index[edge.source], shared.edges[eid])
            table[eid] = inp
            ins.append(inp)
        self.by_eid: list[Any] = table  # In | None: the fast path does not check
        self.ins = ins
        routes: dict[str, list[Out]] = {}
        outs: list[Out] = []
        for port, eids in plan.outputs_of[i].items():
            routes[port] = []
            for eid in eids:
                edge = plan.edges[eid]
                out = Out(edge, plan.index[edge.target], shared.edges[eid], self)
                routes[port].append(out)
                outs.append(out)
        self.routes = routes
        self.outs = outs
        self.out_by_eid = {o.eid: o for o in outs}
        self.backpressured = [o for o in outs if o.bp]
        ports = [p for p in nd.outputs if routes[p] or (nd.name, p) in shared.logs]
        self.single: tuple[str, Out] | None = None
        if (len(ports) == 1 and len(routes[ports[0]]) == 1 and len(nd.outputs) == 1
                and (nd.name, ports[0]) not in shared.logs):
            self.single = (ports[0], routes[ports[0]][0])
        self.logs = {p: shared.logs[(nd.name, p)] for p in nd.outputs
                     if (nd.name, p) in shared.logs}
        self.emitted: dict[str, list[Any]] = {p: [] for p in nd.outputs}
        self.has_outputs = bool(nd.outputs)
        self.first_port = nd.outputs[0] if nd.outputs else "out"
        self.blocked = bool(self.backpressured)  # until every such output has a receiver
        self.paused = False
        self.stash: list[tuple[In, Any]] = []
        self.takes_snapshots = takes_snapshots
        self.ended = False
        self.end_pending = False
        self.produce_size = nd.max_items or 256
        self.pumping = self.polling = self.finished = False
        self.batching = nd.trigger is Trigger.EACH and bool(nd.inputs) and (
            nd.max_items is not None or nd.max_delay is not None)
        self.batches: dict[str, list[Any]] = {p: [] for p in nd.inputs}
        self.batch_armed = {p: False for p in nd.inputs}
        self.batch_max = nd.max_items or 1024
        self.batch_delay = nd.max_delay
        self.fifos: dict[str, deque[Any]] = {p: deque() for p in nd.inputs}
        self.latest: dict[str, tuple[Any, float]] = {}
        self.timer_specs = _timers.specs(type(node))
        watchers: dict[str, list[str]] = {}
        for name, spec in self.timer_specs:
            if spec[0] == "timeout":
                watchers.setdefault(spec[2], []).append(name)
        self.watchers = watchers
        self.last_seen: dict[str, float] = {}
        self.watch_idle: dict[str, bool] = {}
        self.due: dict[str, tuple[Any, ...]] = {}
        self.simple = nd.trigger is Trigger.EACH and not self.batching and not watchers
        self.barrier: Any = None

    # -- the start of an incarnation -------------------------------------------------------------
    def start(self) -> None:
        """The framework's part of an incarnation's start (see the module docstring)."""
        node = self.node
        shared = self.shared
        i = self.index
        epoch, refs = shared.register(i, node.ref)
        self.epoch = epoch
        for inp in self.ins:
            inp.epoch = epoch
        if epoch > 1:
            if shared.checkpoint is not None:  # what it held is gone: see _checkpoint
                shared.checkpoint.fail(f"node {self.definition.name} restarted "
                                       f"(incarnation {epoch})")
            c = self.counters
            if c.custody:
                lost, c.custody = c.custody, 0
                c.lost += lost
                self.report_loss("custody", lost, None)
            for out in self.outs:
                st = out.stats
                if st.buffered:
                    lost, st.buffered = st.buffered, 0
                    st.lost_buffered += lost
                    self.report_loss("buffered", lost, out.name)
        state = shared.snapshots.get(i, _MISSING)
        if state is not _MISSING and self.takes_snapshots:
            node.restore(state)
            self.counters.restored += 1
        if shared.checkpoint is not None:
            _checkpoint.restore(self)
        for inp in self.ins:
            up = refs[inp.source]
            if up is not None:
                inp.attach(self, up)
        hello = None
        for out in self.outs:
            down = refs[out.target]
            if down is not None:
                hello = hello or node.ref
                down.tell(Hello(out.eid, hello))
        _timers.arm_timers(self)
        if self.source and shared.checkpoint is not None:
            _checkpoint.arm(self)
        self.epilogue()  # what on_start/restore emitted waits for credit like any item

    # -- after every handler ---------------------------------------------------------------------
    def epilogue(self) -> None:
        """Route what the handler emitted, send ends, take a snapshot."""
        if self.has_outputs:
            self.flush()
        if self.end_pending:
            self.end_outputs()
        if self.takes_snapshots:
            self.save()

    def flush(self) -> None:
        """Route what the handler emitted; then update the backed-up state."""
        single = self.single
        if single is not None:  # one output port, one edge, no log: the common case
            port, out = single
            items = self.emitted[port]
            if items:
                self.emitted[port] = []
                self.counters.emitted += len(items)
                if out.push(items) or self.blocked:
                    self.check_blocked()
            return
        emitted = self.emitted
        waiting = False
        for port, items in emitted.items():
            if items:
                emitted[port] = []
                waiting = self.route(port, items) or waiting
        if (waiting or self.blocked) and self.backpressured:
            self.check_blocked()

    def route(self, port: str, items: list[Any]) -> bool:
        n = len(items)
        self.counters.emitted += n
        log = self.logs.get(port) if self.logs else None
        if log is not None:
            log.extend(items)
        outs = self.routes[port]
        if len(outs) == 1:
            return outs[0].push(items)
        if not outs:
            if log is None:
                self.counters.unrouted += n
            return False
        shared = tuple(items)  # the same immutable batch to every receiver
        waiting = False
        for out in outs:
            waiting = out.push(shared) or waiting
        return waiting

    def check_blocked(self) -> None:
        blocked = False
        for out in self.backpressured:
            if out.buf or out.tell is None:  # items waiting, or no receiver (yet)
                blocked = True
                break
        was, self.blocked = self.blocked, blocked
        if was and not blocked:
            for inp in self.ins:
                if inp.owed >= inp.threshold:
                    owed, inp.owed = inp.owed, 0
                    inp.give(owed)

    def grant(self, inp: In, n: int) -> None:
        """``n`` items of ``inp`` were handled: their credit goes back (in chunks, not while
        an output is backed up)."""
        owed = inp.owed + n
        if owed >= inp.threshold and not self.blocked:
            inp.owed = 0
            inp.give(owed)
        else:
            inp.owed = owed

    def save(self) -> None:
        self.shared.snapshots[self.index] = self.node.snapshot()

    def no_port(self, port: str) -> ValueError:
        """The error for an item emitted on a port the node does not have."""
        d = self.definition
        return ValueError(f"{d.name}: no output port {port!r} (outputs: {d.outputs})")

    # -- items in --------------------------------------------------------------------------------
    def take(self, msg: Any) -> None:
        """A batch for a node that is not on the fast path (batching, triggers, watchdogs,
        pause)."""
        inp = self.by_eid[msg.eid]
        items = msg.items
        n = len(items)
        inp.stats.delivered += n
        self.counters.custody += n
        now = None
        if self.watchers and inp.port in self.watchers:
            now = self.clock.now()
            _timers.seen(self, inp.port, now)
        if self.paused:
            self.stash.append((inp, items))
            return
        self.handle(inp, items, now)
        self.epilogue()

    def handle(self, inp: In, items: Any, now: float | None) -> None:
        if items.__class__ is _checkpoint.Barrier:  # it waited in the stash of a paused node
            _checkpoint.arrive(self, inp, items)
            return
        if self.barrier is not None and self.barrier.hold(inp, items):
            return  # aligning on a checkpoint: this input already delivered its barrier
        trigger = self.definition.trigger
        if trigger is Trigger.EACH:
            if self.batching:
                _batching.batch_take(self, inp, items, self.clock.now() if now is None else now)
                return
            n = len(items)
            c = self.counters
            self.node.process_batch(items, inp.port)
            c.custody -= n
            c.processed += n
            self.grant(inp, n)
        elif trigger is Trigger.BARRIER:
            _triggers.barrier_take(self, inp, items, self.clock.now() if now is None else now)
        else:
            _triggers.latest_take(self, inp, items, self.clock.now() if now is None else now)

    def pause(self) -> None:
        self.paused = True
        self.simple = False

    def resume(self) -> None:
        self.paused = False
        stash, self.stash = self.stash, []
        if len(stash) > 1 and self.definition.trigger is Trigger.EACH:
            stash = _coalesce(stash)
        for k, (inp, items) in enumerate(stash):
            if self.paused:  # a handler paused again: the rest keeps waiting, in order
                self.stash = stash[k:] + self.stash
                return
            self.handle(inp, items, None)
        self.simple = (self.definition.trigger is Trigger.EACH and not self.batching
                       and not self.watchers)
        if self.definition.trigger is Trigger.BARRIER:
            _triggers.barrier_run(self, self.clock.now())
        if self.ins and all(i.ended for i in self.ins):
            self.finish_inputs()
        elif self.barrier is not None:
            _checkpoint.check_aligned(self)

    # -- control messages (see _messages) --------------------------------------------------------
    def on_credit(self, msg: Credit) -> None:
        out = self.out_by_eid.get(msg.eid)
        if out is None or msg.epoch != out.epoch:
            return  # credit from an incarnation the edge no longer delivers to
        out.credit += msg.n
        out.pump()
        self.after_credit()

    def on_attach(self, msg: Attach) -> None:
        out = self.out_by_eid.get(msg.eid)
        if out is None or msg.epoch < out.epoch:
            return
        out.attach(msg)
        self.after_credit()

    def after_credit(self) -> None:
        if self.backpressured:
            self.check_blocked()
        if self.source:
            self.kick()

    def on_hello(self, msg: Hello) -> None:
        table = self.by_eid
        inp = table[msg.eid] if 0 <= msg.eid < len(table) else None
        if inp is None or inp.upstream is msg.ref:
            return  # attached to that incarnation already (it was registered when we started)
        inp.attach(self, msg.ref)

    def on_end(self, eid: int) -> None:
        inp = self.by_eid[eid]
        if inp is None or inp.ended:
            return
        inp.ended = True
        if not self.paused and all(i.ended for i in self.ins):
            self.finish_inputs()
        elif self.barrier is not None:
            _checkpoint.check_aligned(self)  # one input fewer to align on

    def on_pump(self) -> None:
        if self.source:
            self.pump_source("pump")

    def on_poll(self) -> None:
        if self.source:
            self.pump_source("poll")

    def on_wake(self) -> None:
        if self.source:
            self.pump_source("wake")

    def on_expire(self) -> None:
        _triggers.on_expire(self)

    def on_flush_batch(self, port: str) -> None:
        _batching.on_flush_batch(self, port)

    def on_every(self, name: str) -> None:
        _timers.on_every(self, name)

    def on_watch(self, name: str) -> None:
        _timers.on_watch(self, name)

    # -- the end of a finite stream --------------------------------------------------------------
    def finish_inputs(self) -> None:
        """Every input ended: hand over partial batches, discard unmatched values, ``on_end``."""
        if self.ended:
            return
        self.ended = True
        _batching.flush_all_batches(self)
        _triggers.discard_leftovers(self)
        self.node.on_end()
        self.end_pending = True
        self.epilogue()

    def finish_source(self) -> None:
        self.finished = True
        self.end_pending = True

    def end_outputs(self) -> None:
        """Called by the epilogue after the last items were routed: each output sends its end."""
        self.end_pending = False
        self.ended = True
        for out in self.outs:
            out.ending = True
            out.pump()
        self.shared.node_ended(self.index)

    # -- sources ---------------------------------------------------------------------------------
    def demand(self) -> int:
        bp = self.backpressured
        size = self.produce_size
        if len(bp) == 1:
            out = bp[0]
            d = out.credit - len(out.buf)
        elif bp:
            d = min(o.credit - len(o.buf) for o in bp)
        elif self.outs:
            d = size if all(o.tell is not None for o in self.outs) else 0
        else:
            d = size  # a retained log or nothing: produce at will
        return d if d < size else size

    def kick(self) -> None:
        """Make sure a source with demand is pumping (one message to itself)."""
        if self.pumping or self.polling or self.finished:
            return
        if self.demand() > 0:
            self.pumping = True
            self.node.ref.tell(PUMP)

    def pump_source(self, why: str) -> None:
        node: Any = self.node  # a Source: produce, pumps_per_turn, poll_interval
        if why == "pump":
            self.pumping = False
        elif self.polling:
            self.polling = False
            if why == "wake":
                node.cancel_timer("sv-poll")
        if self.finished or self.pumping:
            if self.end_pending:  # finished outside produce (on_start, a timer): end now
                self.epilogue()
            return
        c = self.counters
        for _ in range(node.pumps_per_turn):
            d = self.demand()
            c.demand = d if d > 0 else 0
            if d <= 0:
                return  # no credit: the next Credit or Attach kicks it again
            c.produce_calls += 1
            before = c.emitted
            result = node.produce(d)
            if result is not None:
                node.emit_many(result, self.first_port)
            self.epilogue()
            if self.finished:
                return
            if c.emitted == before:  # no data now: poll later (or be woken)
                self.polling = True
                node.send_after(node.poll_interval, POLL, key="sv-poll")
                return
        self.kick()

    # -- reporting -------------------------------------------------------------------------------
    def report_loss(self, where: str, n: int, edge: str | None) -> None:
        node = self.node
        graph, name = self.shared.plan.name, self.definition.name
        node.log.warning("stream items lost", graph=graph, node=name, where=where, edge=edge,
                         count=n)
        bus = node.runtime.bus
        if bus.has_subscribers(ItemsLost):
            bus.publish(ItemsLost(node.ref, node.ref.path, tenant=node.ref.tenant, graph=graph,
                                  node=name, where=where, edge=edge, count=n))

    def report_drops(self, out: Out, total: int, since: int) -> None:
        node = self.node
        graph = self.shared.plan.name
        node.log.warning("stream edge dropped items", graph=graph, edge=out.name,
                         policy=out.policy.name, total=total, since_last=since)
        bus = node.runtime.bus
        if bus.has_subscribers(ItemsDropped):
            bus.publish(ItemsDropped(node.ref, node.ref.path, tenant=node.ref.tenant,
                                     graph=graph, node=self.definition.name, edge=out.name,
                                     policy=out.policy.name, total=total, since_last=since))

    def __repr__(self) -> str:
        return f"<Wiring {self.shared.plan.name}/{self.definition.name} epoch={self.epoch}>"


def _coalesce(stash: list[tuple[In, Any]]) -> list[tuple[In, Any]]:
    """What waited with a paused ``Trigger.EACH`` node, consecutive batches of one input joined
    into one (the same items, in the same order; barriers stay where they were): a sink that
    paused for a slow write catches up with one handler call, not one per message."""
    out: list[tuple[In, Any]] = []
    for inp, items in stash:
        if (out and out[-1][0] is inp and items.__class__ is not _checkpoint.Barrier
                and out[-1][1].__class__ is list):
            out[-1][1].extend(items)
        elif items.__class__ is _checkpoint.Barrier:
            out.append((inp, items))
        else:
            out.append((inp, list(items)))
    return out
