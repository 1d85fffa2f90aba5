"""Checkpoints: aligned barriers through a graph, committed snapshots, exactly-once state.

    g = Graph("ingest", checkpoint=Checkpoints(SqliteCheckpoints("state/ckpt.db"), every=5.0))
    inst = g.instantiate(rt, "acme")        # restores the last committed checkpoint, if any

How a checkpoint is taken
-------------------------
Every ``every`` seconds (the runtime clock) each source starts checkpoint ``n`` (its n-th since
the restored one, so every source gives the same checkpoint the same id): it takes its
``snapshot()`` and sends a ``Barrier(n)`` on each output edge, *behind* the items it emitted
before (an edge keeps the barrier in its buffer, at its position, until those items were sent).
A node with one input passes the barrier as soon as it arrives: partial batches are handed to
``process_batch``, what was emitted is routed, ``snapshot()`` is taken and encoded with
``actors.codec`` (at once: the node keeps changing its state afterwards), and the barrier goes
on along every output. A node with several inputs *aligns*: items arriving on an input that
already delivered barrier ``n`` are held (uncredited, so bounded by the edge window) until every
live input has delivered it; then it passes the barrier and handles what it held, in order.
So each snapshot of checkpoint ``n`` contains the effects of exactly the items every source
emitted before barrier ``n``, and of nothing after it.

Values that came before barrier ``n`` and still wait in a multi-input node's trigger (a
``BARRIER`` round missing its partner, ``LATEST``'s latest value of each input) belong to that
state too - the sources replay only what came after the barrier - so the node's checkpoint
holds them beside its snapshot, each with its age (``_triggers.state``): in the checkpoint
document, ``"triggers"`` maps such a node's name to its encoded values (a node with nothing
waiting, and every checkpoint written before this existed, has no entry: its trigger starts
empty). They are put back in the node's first incarnation before any input is taken, their
age going on from where it stood at the checkpoint (the downtime does not count), so
``max_age``/``on_expired`` keep working; a value that cannot be encoded fails the checkpoint,
with the reason, as a snapshot does.

When the last node has taken its snapshot, the checkpoint - every node's encoded snapshot - is
written to the store in one transaction (``commit``), and only then told to the sources
(``on_checkpoint_committed``): a ``QueueSource`` acknowledges the queue records it emitted
before barrier ``n``, and never earlier.

Why this is exactly once for the state of a queue-fed graph
-----------------------------------------------------------
- A record acknowledged is covered by a committed checkpoint: its effects are in the stored
  state. (Acks follow the commit; a crash before the commit loses neither: the record comes back
  and the state on disk is the previous checkpoint's, without its effects.)
- A record not acknowledged comes back after a crash (the queue's lease runs out) and is
  processed again from a state that does not contain it - unless the crash fell between the
  commit and the acks: then the record is in the restored state *and* comes back. To catch it,
  ``QueueSource``'s snapshot holds the ids of every record it emitted and has not yet seen
  acknowledged on disk (as ranges: ids are nearly consecutive); after a restore, a redelivered
  record with such an id is acknowledged and dropped instead of emitted (``duplicates``
  counts them). The same check drops a record redelivered while its first delivery is still
  waiting for its checkpoint (a lease that ran out: checkpoint more often than the queue's
  visibility timeout).
- The restored ids that never come back (their acks reached the disk before the crash) are
  forgotten two visibility timeouts after the restore.

Outputs are at least once: a sink writes when items reach it, a crash replays what followed
the last checkpoint; an idempotent sink (an upsert by key) makes them exactly once.

A node that crashes inside a running instance loses what it held and what was in flight to it,
which would break the argument above: a later checkpoint would cover records whose effects are
not in the state. So when a node's incarnation starts again (a supervisor restarted it) the
instance's checkpoints stop (``failed``, logged as an error: nothing more is acknowledged) and
the whole instance restarts from its last committed checkpoint, in an actor of its own
(``recoveries``); the queue redelivers the rest after its visibility timeout. (Counters start
again with the new nodes.) The new incarnation fails the checkpoints in its first turn, before
it can take part in one, and a checkpoint whose barrier had passed the node before it crashed
holds none of the lost items. A node that stays dead (no supervision) takes no more snapshots:
no checkpoint commits, nothing more is acknowledged.

Limits (said, not hidden): a lossy edge (a drop policy) loses items by design; use
backpressure edges in a checkpointed graph.
``nack`` in a checkpointed graph is not a retry: the record is already in the state.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from .. import codec
from .._actor import Actor
from .._messages import Down
from .._checks import check_number
from . import _triggers
from ._enums import Trigger

if TYPE_CHECKING:
    from ._edges import In
    from ._graph import Plan
    from ._wiring import Wiring

__all__ = ["Checkpoints", "CheckpointStore", "Barrier", "Coordinator", "id_ranges",
           "expand_ranges", "checkpointed"]


class CheckpointStore(Protocol):
    """Where checkpoints live: ``SqliteCheckpoints`` or ``PostgresCheckpoints``."""

    def load(self, tenant: str, graph: str) -> tuple[int, bytes] | None: ...

    def commit(self, tenant: str, graph: str, cid: int, data: bytes) -> None: ...

    def close(self) -> None: ...


class Checkpoints:
    """``Checkpoints(store, every=5.0)``: take a checkpoint every ``every`` seconds (the
    runtime clock) into ``store``; give it to ``Graph(..., checkpoint=...)`` or
    ``g.instantiate(rt, tenant, checkpoint=...)``."""

    def __init__(self, store: Any, every: float = 5.0) -> None:
        for method in ("load", "commit"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"Checkpoints: the store must have load() and commit() "
                                f"(SqliteCheckpoints, PostgresCheckpoints), got "
                                f"{type(store).__name__}")
        self.store = store
        self.every = float(check_number(every, "Checkpoints every", positive=True,
                                        unit="seconds"))

    def __repr__(self) -> str:
        return f"Checkpoints({self.store!r}, every={self.every})"


# -- messages ------------------------------------------------------------------------------------
class Barrier:
    """Checkpoint ``cid``'s barrier on edge ``eid`` (behind every item sent before it)."""

    __slots__ = ("eid", "cid")

    def __init__(self, eid: int, cid: int) -> None:
        self.eid, self.cid = eid, cid

    def handle(self, w: "Wiring") -> None:
        inp = w.by_eid[self.eid] if 0 <= self.eid < len(w.by_eid) else None
        if inp is None:
            return
        if w.paused or w.stash:  # behind the items waiting with the paused node
            w.stash.append((inp, self))
            return
        arrive(w, inp, self)

    def __repr__(self) -> str:
        return f"<Barrier edge={self.eid} checkpoint={self.cid}>"


class Tick:
    """A source's checkpoint timer."""

    __slots__ = ()

    def handle(self, w: "Wiring") -> None:
        on_tick(w)


class Committed:
    """Coordinator -> node: checkpoint ``cid`` is on disk."""

    __slots__ = ("cid",)

    def __init__(self, cid: int) -> None:
        self.cid = cid

    def handle(self, w: "Wiring") -> None:
        hook = getattr(w.node, "on_checkpoint_committed", None)
        if hook is not None:
            hook(self.cid)
            w.epilogue()


TICK = Tick()
CONTROL = (Barrier, Tick, Committed)


def checkpointed(node: Any) -> bool:
    """True if ``node``'s instance takes checkpoints."""
    return node._wiring.shared.checkpoint is not None


# -- ids as ranges ---------------------------------------------------------------------------------
def id_ranges(ids: Any) -> list[int]:
    """Sorted ids as a flat list ``[lo1, hi1, lo2, hi2, ...]`` of inclusive ranges."""
    out: list[int] = []
    for i in sorted(ids):
        if out and i == out[-1] + 1:
            out[-1] = i
        elif not out or i > out[-1]:
            out += [i, i]
    return out


def expand_ranges(flat: Any) -> set[int]:
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError(f"checkpoint id ranges must be a flat list of pairs, got {flat!r:.80}")
    ids: set[int] = set()
    for k in range(0, len(flat), 2):
        ids.update(range(flat[k], flat[k + 1] + 1))
    return ids


# -- the coordinator (one per instance) ------------------------------------------------------------
class Coordinator:
    """Numbers checkpoints, collects the snapshots, commits, tells the sources. Its methods run
    in node actors (any thread): ``_lock`` guards ``pending``/``committed``/``failed``."""

    def __init__(self, config: Checkpoints, plan: "Plan", tenant: str | None, name: str,
                 log: Any) -> None:
        self.config = config
        self.store = config.store
        self.every = config.every
        self.tenant = tenant or ""
        self.graph = name
        self.plan = plan
        self.names = [d.name for d in plan.nodes]
        self.log = log
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self.restored_id = 0
        self.restored: dict[int, Any] = {}
        self.triggers: dict[int, Any] = {}  # restored values waiting in triggers, per node
        self.issued: dict[int, int] = {}
        # per checkpoint, per node: its encoded snapshot and trigger values (None: nothing)
        self.pending: dict[int, dict[int, tuple[bytes, bytes | None]]] = {}
        self.committed = 0           # id of the last checkpoint on disk
        self.commits = 0             # how many this instance committed
        self.abandoned = 0           # started, overtaken by a later one before completing
        self.held = 0                # items held by aligning nodes
        self.seconds = 0.0           # spent encoding snapshots and committing (all nodes)
        self.bytes = 0               # size of the last commit
        self.failed: str | None = None
        self.recoveries = 0          # of the instance, before this start
        self.notify = [i for i, d in enumerate(plan.nodes)
                       if hasattr(d.cls, "on_checkpoint_committed")]
        self.shared: Any = None

    # -- start ----------------------------------------------------------------------------------
    def load(self) -> dict[int, Any]:
        """The last committed checkpoint of (tenant, graph), decoded per node index."""
        found = self.store.load(self.tenant, self.graph)
        if found is None:
            return {}
        cid, data = found
        try:
            doc = codec.decode(data, max_size=max(codec.DEFAULT_MAX_SIZE, len(data)))
            if not isinstance(doc, dict) or doc.get("id") != cid or not isinstance(
                    doc.get("nodes"), dict):
                raise ValueError("not a checkpoint document")
            states = {}
            for name, blob in doc["nodes"].items():
                if name not in self.plan.index:
                    self.log.warning("checkpoint names a node the graph no longer has",
                                     graph=self.graph, node=name, checkpoint=cid)
                    continue
                states[self.plan.index[name]] = codec.decode(
                    blob, max_size=max(codec.DEFAULT_MAX_SIZE, len(blob)))
            triggers = doc.get("triggers", {})  # absent: written before triggers were saved
            if not isinstance(triggers, dict):
                raise ValueError("its trigger values are not a map")
            waiting = {}
            for name, blob in triggers.items():
                if name not in self.plan.index:
                    self.log.warning("checkpoint holds trigger values of a node the graph no "
                                     "longer has", graph=self.graph, node=name, checkpoint=cid)
                    continue
                got = codec.decode(blob, max_size=max(codec.DEFAULT_MAX_SIZE, len(blob)))
                try:
                    _triggers.check_state(got)
                except ValueError as exc:
                    raise ValueError(f"node {name!r}: {exc}") from None
                waiting[self.plan.index[name]] = got
        except (codec.DecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"checkpoint {cid} of tenant {self.tenant!r} graph {self.graph!r} "
                             f"is damaged: {exc}") from None
        self.restored_id = self.committed = cid
        self.restored = states
        self.triggers = waiting
        self.log.info("checkpoint restored", tenant=self.tenant, graph=self.graph,
                      checkpoint=cid, nodes=len(states))
        return states

    # -- a checkpoint ---------------------------------------------------------------------------
    def next_id(self, index: int) -> int:
        with self._lock:
            cid = self.issued.get(index, self.restored_id) + 1
            self.issued[index] = cid
            return cid

    def taken(self, cid: int, index: int, state: Any, trigger: Any = None) -> None:
        """Node ``index`` passed barrier ``cid`` with snapshot ``state`` and ``trigger``, the
        values waiting in its trigger (``_triggers.state``; None: nothing waits)."""
        if self.failed is not None:
            return
        t0 = time.perf_counter()
        name = self.names[index]
        try:
            blob = codec.encode(state, root=f"snapshot of {name}")
        except codec.EncodeError as exc:
            self.fail(f"node {name!r}: its snapshot cannot be encoded ({exc})")
            return
        waiting = None
        if trigger is not None:
            try:
                waiting = codec.encode(trigger, root=f"trigger of {name}")
            except codec.EncodeError as exc:
                self.fail(f"node {name!r}: a value waiting in its trigger cannot be encoded "
                          f"({exc})")
                return
        with self._lock:
            self.seconds += time.perf_counter() - t0
            if cid <= self.committed:
                return
            got = self.pending.setdefault(cid, {})
            got[index] = (blob, waiting)
            if len(got) < len(self.names):
                return
            del self.pending[cid]
            for old in [c for c in self.pending if c < cid]:
                del self.pending[old]
                self.abandoned += 1
        self._commit(cid, got)

    def _commit(self, cid: int, got: dict[int, tuple[bytes, bytes | None]]) -> None:
        t0 = time.perf_counter()
        doc: dict[str, Any] = {"id": cid, "graph": self.graph,
                               "nodes": {self.names[i]: blob for i, (blob, _) in got.items()}}
        triggers = {self.names[i]: waiting for i, (_, waiting) in got.items()
                    if waiting is not None}
        if triggers:  # (no entry at all when nothing waits: the format of before)
            doc["triggers"] = triggers
        data = codec.encode(doc, root="checkpoint")
        commit_async = getattr(self.store, "commit_async", None)
        inst = getattr(self.shared, "instance", None)
        if inst is not None and inst.runtime.inline:
            commit_async = None  # the inline runtime runs no thread: committed in this turn
        if commit_async is not None:  # grouped with other tenants'; nobody waits for the disk
            with self._lock:
                if cid <= self.committed or self.failed is not None:
                    return
                self.seconds += time.perf_counter() - t0

            def done(error: BaseException | None) -> None:
                self._committed(cid, len(data), error)
            commit_async(self.tenant, self.graph, cid, data, done)
            return
        with self._commit_lock:
            if cid <= self.committed or self.failed is not None:
                return
            self.store.commit(self.tenant, self.graph, cid, data)
            with self._lock:
                self.committed = cid
                self.commits += 1
                self.bytes = len(data)
                self.seconds += time.perf_counter() - t0
        self._tell_committed(cid)

    def _committed(self, cid: int, size: int, error: BaseException | None) -> None:
        """A ``commit_async`` finished (in the store's writer thread). A checkpoint that could
        not be committed stops the instance's checkpoints and restarts it from the last one
        that was (as a ``commit`` that raised in a node does): nothing it covers was
        acknowledged, the queue delivers it again."""
        if error is not None:
            self.fail(f"checkpoint {cid} could not be committed: {error!r}")
            return
        with self._lock:
            if self.failed is not None or cid <= self.committed:
                return  # failed meanwhile (a restart is under way), or overtaken
            self.committed = cid
            self.commits += 1
            self.bytes = size
        self._tell_committed(cid)

    def _tell_committed(self, cid: int) -> None:
        shared = self.shared
        for i in self.notify:
            ref = shared.ref(i) if shared is not None else None
            if ref is not None:
                ref.tell(Committed(cid))

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.failed is not None:
                return
            self.failed = reason
            self.pending.clear()
        shared = self.shared
        inst = getattr(shared, "instance", None)
        if inst is None or inst._stopping or inst.runtime._closed:
            return  # stopping: items in flight to stopped nodes are no reason to recover
        self.log.error("checkpoints stopped: the instance restarts from its last checkpoint",
                       tenant=self.tenant, graph=self.graph, reason=reason,
                       committed=self.committed)
        try:  # a top-level actor of its own: the runtime's way to block (stop, then start)
            inst.runtime.spawn(_Recovery, inst, shared)
        except Exception as exc:  # the runtime is closing
            self.log.warning("no recovery: the runtime is closing", error=repr(exc))

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"committed": self.committed, "commits": self.commits,
                    "restored": self.restored_id, "abandoned": self.abandoned,
                    "pending": len(self.pending), "held": self.held, "bytes": self.bytes,
                    "seconds": self.seconds,
                    "failed": self.failed,
                    "recoveries": self.recoveries,
                    "every": self.every}


class _Recovery(Actor):
    """Restarts an instance from its last checkpoint, once, without blocking anyone: it stops
    the instance's root (or its nodes), waits for their ``Down``, then starts the nodes again
    (``StreamInstance._recover_begin`` / ``_recover_finish``)."""

    def __init__(self, inst: Any, shared: Any) -> None:
        self.inst, self.shared = inst, shared
        self.waiting: set[Any] = set()

    def on_start(self) -> None:
        refs = self.inst._recover_begin(self.shared)
        if not refs:
            self.stop()
            return
        for ref in refs:
            self.waiting.add(self.monitor(ref))
            ref._cell._signal(("stop", "shutdown"))  # (Runtime.stop without the wait)

    def receive(self, message: Any) -> None:
        if isinstance(message, Down) and message.monitor in self.waiting:
            self.waiting.discard(message.monitor)
            if not self.waiting:
                self.inst._recover_finish(self.shared)
                self.stop()


# -- a node's side -----------------------------------------------------------------------------------
class Align:
    """A multi-input node's alignment on checkpoint ``cid``."""

    __slots__ = ("cid", "arrived", "held", "coord")

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.cid: int | None = None
        self.arrived: set[int] = set()
        self.held: list[tuple[Any, Any]] = []

    def hold(self, inp: "In", items: Any) -> bool:
        if self.cid is not None and inp.eid in self.arrived:
            self.held.append((inp, items))
            self.coord.held += len(items)
            return True
        return False


def arm(w: "Wiring") -> None:
    """A source of a checkpointed instance: arm its checkpoint timer."""
    coord = w.shared.checkpoint
    w.node.send_after(coord.every, TICK, key="sv-checkpoint")


def restore(w: "Wiring") -> None:
    """First incarnation of a node: give it its part of the restored checkpoint, when it takes
    it with ``restore_checkpoint`` (``restore`` takes the snapshot through the usual path), and
    put back the values that waited in its trigger (before any input is taken)."""
    coord = w.shared.checkpoint
    if w.epoch != 1:
        return
    hook = getattr(w.node, "restore_checkpoint", None)
    if hook is not None and w.index in coord.restored:
        hook(coord.restored[w.index])
    waiting = coord.triggers.get(w.index)
    if waiting is not None:
        _triggers.restore_state(w, waiting, w.clock.now())


def on_tick(w: "Wiring") -> None:
    coord = w.shared.checkpoint
    if w.shared._complete.is_set():
        return  # every node has ended: nothing will change any more
    w.node.send_after(coord.every, TICK, key="sv-checkpoint")
    if coord.failed is not None:
        return
    pass_barrier(w, coord.next_id(w.index))


def pass_barrier(w: "Wiring", cid: int) -> None:
    """Snapshot the node at barrier ``cid`` and send the barrier on along every output."""
    node = w.node
    if w.batching:
        from ._batching import flush_all_batches
        flush_all_batches(w)
    hook = getattr(node, "on_checkpoint", None)
    if hook is not None:
        hook(cid)
    if w.has_outputs:
        w.flush()
    state_of = getattr(node, "checkpoint_state", None)
    if state_of is not None:
        state = state_of()
    else:
        state = node.snapshot() if w.takes_snapshots else None
    waiting = None  # values waiting in a BARRIER/LATEST trigger: they belong to this state
    if w.definition.trigger is not Trigger.EACH:
        waiting = _triggers.state(w, w.clock.now())
    w.shared.checkpoint.taken(cid, w.index, state, waiting)
    for out in w.outs:
        out.barrier(cid)


def arrive(w: "Wiring", inp: "In", barrier: Barrier) -> None:
    """Barrier ``barrier.cid`` arrived on ``inp`` (in order with the items of that edge)."""
    if len(w.ins) == 1:
        pass_barrier(w, barrier.cid)
        return
    a = w.barrier
    if a is None:
        a = w.barrier = Align(w.shared.checkpoint)
    if a.cid is not None:
        if inp.eid in a.arrived:  # a later barrier behind held items: it waits its turn
            a.held.append((inp, barrier))
            return
        if barrier.cid < a.cid:
            return  # an older checkpoint, overtaken (its barrier was lost on another input)
        if barrier.cid > a.cid:  # the one we aligned on cannot complete: align on this one
            a.cid, a.arrived = barrier.cid, set()
    else:
        a.cid, a.arrived = barrier.cid, set()
    a.arrived.add(inp.eid)
    w.simple = False
    check_aligned(w)


def check_aligned(w: "Wiring") -> None:
    a = w.barrier
    if a is None or a.cid is None:
        return
    if any(i.eid not in a.arrived for i in w.ins if not i.ended):
        return
    cid, a.cid, a.arrived = a.cid, None, set()
    pass_barrier(w, cid)
    held, a.held = a.held, []
    for inp, items in held:
        if items.__class__ is Barrier:
            arrive(w, inp, items)
        elif not a.hold(inp, items):
            w.handle(inp, items, None)
    if a.cid is None:
        w.simple = (w.definition.trigger is Trigger.EACH and not w.batching
                    and not w.watchers and not w.paused)
    w.epilogue()
