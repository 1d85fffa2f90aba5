"""How a node actor joins its instance, finds its neighbours after any restart, and ends.

Start of an incarnation (``boot``, in its first turn, after your ``on_start``):

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

from ._batching import batch_take, flush_all_batches
from ._edges import In, Out
from ._enums import Trigger
from ._events import ItemsDropped, ItemsLost
from ._messages import Hello, POLL, PUMP
from ._timers import arm_timers, seen
from ._triggers import barrier_run, barrier_take, discard_leftovers, latest_take

if TYPE_CHECKING:
    from ._node import Binding, Node

__all__ = ["bind", "boot", "take", "handle", "resume", "on_hello", "on_end", "finish_source",
           "end_outputs", "demand", "kick", "pump_source", "report_loss", "report_drops"]

_MISSING = object()


def bind(node: "Node", binding: "Binding", has_snapshot: bool) -> None:
    """Set up a node object for its place in the instance (runs in ``__init__``)."""
    shared = binding.shared
    i = binding.index
    plan = shared.plan
    nd = plan.nodes[i]
    node._sv_shared = shared
    node._sv_index = i
    node._sv_def = nd
    node._sv_c = shared.nodes[i]
    node._sv_clock = shared.clock
    table: list[In | None] = [None] * len(plan.edges)
    ins = []
    for eid in plan.inputs_of[i]:
        edge = plan.edges[eid]
        inp = In(edge, plan.index[edge.source], shared.edges[eid])
        table[eid] = inp
        ins.append(inp)
    node._sv_in = table
    node._sv_ins = ins
    routes: dict[str, list[Out]] = {}
    outs: list[Out] = []
    for port, eids in plan.outputs_of[i].items():
        routes[port] = []
        for eid in eids:
            edge = plan.edges[eid]
            out = Out(edge, plan.index[edge.target], shared.edges[eid], node)
            routes[port].append(out)
            outs.append(out)
    node._sv_routes = routes
    node._sv_outs = outs
    node._sv_out_by_eid = {o.eid: o for o in outs}
    node._sv_bp = [o for o in outs if o.bp]
    ports = [p for p in nd.outputs if routes[p] or (nd.name, p) in shared.logs]
    if (len(ports) == 1 and len(routes[ports[0]]) == 1 and len(nd.outputs) == 1
            and (nd.name, ports[0]) not in shared.logs):
        node._sv_single = (ports[0], routes[ports[0]][0])
    node._sv_emitted = {p: [] for p in nd.outputs}
    node._sv_has_outputs = bool(nd.outputs)
    node._sv_first_out = nd.outputs[0] if nd.outputs else "out"
    node._sv_logs = {p: shared.logs[(nd.name, p)] for p in nd.outputs
                     if (nd.name, p) in shared.logs}
    node._sv_blocked = bool(node._sv_bp)  # until every backpressure output has a receiver
    node._sv_paused = False
    node._sv_stash = []
    node._sv_snap = has_snapshot
    node._sv_epoch = 0
    node._sv_ended = False
    node._sv_end_pending = False
    node._sv_is_source = not nd.inputs and nd.kind == "source"
    node._sv_batch = nd.max_items or 256  # a source's produce size
    node._sv_batching = nd.trigger is Trigger.EACH and bool(nd.inputs) and (
        nd.max_items is not None or nd.max_delay is not None)
    node._sv_bbuf = {p: [] for p in nd.inputs}
    node._sv_barmed = {p: False for p in nd.inputs}
    node._sv_bmax = nd.max_items or 1024
    node._sv_bdelay = nd.max_delay
    node._sv_fifo = {p: deque() for p in nd.inputs}
    node._sv_slot = {}
    node._sv_pumping = node._sv_polling = node._sv_finished = False
    watchers: dict[str, list[str]] = {}
    for name, spec in type(node)._sv_timer_specs:
        if spec[0] == "timeout":
            watchers.setdefault(spec[2], []).append(name)
    node._sv_watchers = watchers
    node._sv_seen = {}
    node._sv_watch_idle = {}
    node._sv_due = {}
    node._sv_simple = nd.trigger is Trigger.EACH and not node._sv_batching and not watchers
    node.on_start = node._sv_boot  # type: ignore[method-assign]  # your on_start, then boot


def boot(node: "Node") -> None:
    """The framework's part of an incarnation's start (see the module docstring)."""
    shared = node._sv_shared
    i = node._sv_index
    epoch, refs = shared.register(i, node.ref)
    node._sv_epoch = epoch
    for inp in node._sv_ins:
        inp.epoch = epoch
    if epoch > 1:
        c = node._sv_c
        if c.custody:
            lost, c.custody = c.custody, 0
            c.lost += lost
            report_loss(node, "custody", lost, None)
        for out in node._sv_outs:
            st = out.stats
            if st.buffered:
                lost, st.buffered = st.buffered, 0
                st.lost_buffered += lost
                report_loss(node, "buffered", lost, out.name)
    state = shared.snapshots.get(i, _MISSING)
    if state is not _MISSING and node._sv_snap:
        node.restore(state)
        node._sv_c.restored += 1
    for inp in node._sv_ins:
        up = refs[inp.source]
        if up is not None:
            inp.attach(node, up)
    hello = None
    for out in node._sv_outs:
        down = refs[out.target]
        if down is not None:
            hello = hello or node.ref
            down.tell(Hello(out.eid, hello))
    arm_timers(node)
    node._sv_epilogue()  # what on_start/restore emitted waits for credit like any item


# -- items in ----------------------------------------------------------------------------------
def take(node: "Node", msg: Any) -> None:
    """A batch for a node that is not on the fast path (batching, triggers, watchdogs, pause)."""
    inp = node._sv_in[msg.eid]
    items = msg.items
    n = len(items)
    inp.stats.delivered += n
    node._sv_c.custody += n
    now = None
    if node._sv_watchers and inp.port in node._sv_watchers:
        now = node._sv_clock.now()
        seen(node, inp.port, now)
    if node._sv_paused:
        node._sv_stash.append((inp, items))
        return
    handle(node, inp, items, now)
    node._sv_epilogue()


def handle(node: "Node", inp: In, items: Any, now: float | None) -> None:
    trigger = node._sv_def.trigger
    if trigger is Trigger.EACH:
        if node._sv_batching:
            batch_take(node, inp, items, node._sv_clock.now() if now is None else now)
            return
        n = len(items)
        c = node._sv_c
        node.process_batch(items, inp.port)
        c.custody -= n
        c.processed += n
        node._sv_grant(inp, n)
    elif trigger is Trigger.BARRIER:
        barrier_take(node, inp, items, node._sv_clock.now() if now is None else now)
    else:
        latest_take(node, inp, items, node._sv_clock.now() if now is None else now)


def resume(node: "Node") -> None:
    node._sv_paused = False
    stash, node._sv_stash = node._sv_stash, []
    for k, (inp, items) in enumerate(stash):
        if node._sv_paused:  # a handler paused again: the rest keeps waiting, in order
            node._sv_stash = stash[k:] + node._sv_stash
            return
        handle(node, inp, items, None)
    node._sv_simple = (node._sv_def.trigger is Trigger.EACH and not node._sv_batching
                       and not node._sv_watchers)
    if node._sv_def.trigger is Trigger.BARRIER:
        barrier_run(node, node._sv_clock.now())
    if node._sv_ins and all(i.ended for i in node._sv_ins):
        finish_inputs(node)


# -- wiring ------------------------------------------------------------------------------------
def on_hello(node: "Node", msg: Hello) -> None:
    inp = node._sv_in[msg.eid] if 0 <= msg.eid < len(node._sv_in) else None
    if inp is None or inp.upstream is msg.ref:
        return  # attached to that incarnation already (it was registered when we started)
    inp.attach(node, msg.ref)


# -- the end of a finite stream ----------------------------------------------------------------
def on_end(node: "Node", eid: int) -> None:
    inp = node._sv_in[eid]
    if inp is None or inp.ended:
        return
    inp.ended = True
    if not node._sv_paused and all(i.ended for i in node._sv_ins):
        finish_inputs(node)


def finish_inputs(node: "Node") -> None:
    """Every input ended: hand over partial batches, discard unmatched values, ``on_end``."""
    if node._sv_ended:
        return
    node._sv_ended = True
    flush_all_batches(node)
    discard_leftovers(node)
    node.on_end()
    node._sv_end_pending = True
    node._sv_epilogue()


def finish_source(node: "Node") -> None:
    node._sv_finished = True
    node._sv_end_pending = True


def end_outputs(node: "Node") -> None:
    """Called by the epilogue after the last items were routed: each output sends its end."""
    node._sv_end_pending = False
    node._sv_ended = True
    for out in node._sv_outs:
        out.ending = True
        out.pump()
    node._sv_shared.node_ended(node._sv_index)


# -- sources -----------------------------------------------------------------------------------
def demand(node: "Node") -> int:
    bp = node._sv_bp
    if len(bp) == 1:
        out = bp[0]
        d = out.credit - len(out.buf)
    elif bp:
        d = min(o.credit - len(o.buf) for o in bp)
    elif node._sv_outs:
        d = node._sv_batch if all(o.tell is not None for o in node._sv_outs) else 0
    else:
        d = node._sv_batch  # a retained log or nothing: produce at will
    return d if d < node._sv_batch else node._sv_batch


def kick(node: "Node") -> None:
    """Make sure a source with demand is pumping (one message to itself)."""
    if node._sv_pumping or node._sv_polling or node._sv_finished:
        return
    if demand(node) > 0:
        node._sv_pumping = True
        node.ref.tell(PUMP)


def pump_source(node: "Node", why: str) -> None:
    if why == "pump":
        node._sv_pumping = False
    elif node._sv_polling:
        node._sv_polling = False
        if why == "wake":
            node.cancel_timer("sv-poll")
    if node._sv_finished or node._sv_pumping:
        if node._sv_end_pending:  # finished outside produce (on_start, a timer): end now
            node._sv_epilogue()
        return
    c = node._sv_c
    for _ in range(node.pumps_per_turn):  # type: ignore[attr-defined]  # a Source's attribute on a node typed as Node
        d = demand(node)
        c.demand = d if d > 0 else 0
        if d <= 0:
            return  # no credit: the next Credit or Attach kicks it again
        c.produce_calls += 1
        before = c.emitted
        result = node.produce(d)  # type: ignore[attr-defined]  # a Source's attribute on a node typed as Node
        if result is not None:
            node.emit_many(result, node._sv_first_out)
        node._sv_epilogue()
        if node._sv_finished:
            return
        if c.emitted == before:  # no data now: poll later (or be woken)
            node._sv_polling = True
            node.send_after(node.poll_interval, POLL, key="sv-poll")  # type: ignore[attr-defined]  # a Source's attribute on a node typed as Node
            return
    kick(node)


# -- reporting ---------------------------------------------------------------------------------
def report_loss(node: "Node", where: str, n: int, edge: str | None) -> None:
    shared = node._sv_shared
    node.log.warning("stream items lost", graph=shared.plan.name, node=node._sv_def.name,
                     where=where, edge=edge, count=n)
    bus = node.runtime.bus
    if bus.has_subscribers(ItemsLost):
        bus.publish(ItemsLost(node.ref, node.ref.path, tenant=node.ref.tenant,
                              graph=shared.plan.name, node=node._sv_def.name, where=where,
                              edge=edge, count=n))


def report_drops(node: "Node", out: Out, total: int, since: int) -> None:
    shared = node._sv_shared
    node.log.warning("stream edge dropped items", graph=shared.plan.name, edge=out.name,
                     policy=out.policy.name, total=total, since_last=since)
    bus = node.runtime.bus
    if bus.has_subscribers(ItemsDropped):
        bus.publish(ItemsDropped(node.ref, node.ref.path, tenant=node.ref.tenant,
                                 graph=shared.plan.name, node=node._sv_def.name, edge=out.name,
                                 policy=out.policy.name, total=total, since_last=since))
