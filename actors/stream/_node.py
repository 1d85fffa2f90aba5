"""``Node``: subclass it (or ``Source``/``Sink``, in ``_kinds``), like actors - each node *is* an
actor.

    class Validate(Node):
        outputs = ("out", "rejects")

        def process(self, reading, port):        # per item; emit zero, one or many times
            if reading.ok:
                self.emit(reading)
            else:
                self.emit(reading, port="rejects")

``__init__`` takes your own arguments (``graph.add("v", Validate, limit=3)``); ``on_start`` runs in
the actor before the first item, after a restart too; ``snapshot()``/``restore(state)``, when
defined, carry state across restarts (the snapshot is taken after every handled batch). The
class attributes ``inputs``, ``outputs``, ``trigger``, ``max_items``, ``max_delay``, ``max_age`` and
``on_expired`` are defaults that ``graph.add`` can override per node.

Handlers run one at a time, in the node's actor: ``process``/``process_batch`` (``Trigger.EACH``),
``fire`` (BARRIER/LATEST), ``produce`` (sources), ``@every``/``@timeout`` methods, ``on_end``
and ``on_message`` (anything else told to the node). What they emit is sent when the handler
returns - never an item of a handler that raised: the items it was handling are then counted as
lost, exactly, and the node is restarted by its supervisor.

Nodes must not override ``receive`` (``TypeError`` at class definition).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Iterable

from .._actor import Actor
from . import _wiring
from ._batching import on_flush_batch
from ._edges import Batch
from ._enums import Expired, Trigger
from ._messages import (Attach, Credit, End, Every, Expire, FlushBatch, Hello, Poll, Pump, Wake,
                        Watch)
from ._timers import on_every, on_watch
from ._triggers import on_expire

if TYPE_CHECKING:
    from ._instance import StreamInstance

__all__ = ["Node", "Binding"]

_CONTROL = frozenset({Credit, Attach, Hello, End, Pump, Poll, Wake, Expire, Every, Watch,
                      FlushBatch})


class Binding:
    """What a node actor is told at spawn: which instance, which node. Passed as the first
    positional argument and taken off before your ``__init__`` sees its arguments."""

    __slots__ = ("shared", "index")

    def __init__(self, shared: Any, index: int) -> None:
        self.shared = shared
        self.index = index

    def __repr__(self) -> str:
        return f"<Binding {self.shared.plan.name}/{self.shared.plan.nodes[self.index].name}>"


def _wrap_init(init: Any) -> Any:
    @functools.wraps(init)
    def __init__(self: "Node", *args: Any, **kwargs: Any) -> None:
        if args and args[0].__class__ is Binding:
            _bind(self, args[0])
            args = args[1:]
        elif not hasattr(self, "_sv_def"):
            raise _unbound(self)
        init(self, *args, **kwargs)

    __init__._sv_wrapped = True  # type: ignore[attr-defined]
    return __init__


class Node(Actor):
    """A processing node: inputs, outputs, state. See the module docstring."""

    inputs: tuple[str, ...] = ("in",)
    outputs: tuple[str, ...] = ("out",)
    trigger: Trigger = Trigger.EACH
    max_items: int | None = None     # batch per process_batch call (None: as items arrive)
    max_delay: float | None = None   # seconds the first item of a batch may wait
    max_age: Any = None              # seconds, or {port: seconds}: when a value expires
    on_expired: Any = Expired.WAIT   # or {port: Expired}

    _sv_timer_specs: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    _sv_simple = False
    _sv_single: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "receive" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: a stream node handles items in process, "
                            "process_batch or fire, and other messages in on_message; it must "
                            "not override receive")
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_sv_wrapped", False):
            cls.__init__ = _wrap_init(init)  # type: ignore[method-assign]
        specs: dict[str, tuple[Any, ...]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                mark = getattr(value, "_sv_timer", None)
                if mark is not None:
                    specs[attr] = mark
                elif attr in specs:
                    del specs[attr]  # overridden by a method without the decorator
        cls._sv_timer_specs = tuple(specs.items())

    @classmethod
    def _sv_watched_ports(cls) -> list[str]:
        return [spec[2] for _, spec in cls._sv_timer_specs if spec[0] == "timeout"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args and args[0].__class__ is Binding:
            _bind(self, args[0])
            args = args[1:]
        elif not hasattr(self, "_sv_def"):
            raise _unbound(self)
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}() takes no arguments; define __init__ to "
                            f"accept {args or ''}{kwargs or ''}")

    # -- your handlers ---------------------------------------------------------------------------
    def process(self, item: Any, port: str) -> None:
        """Handle one item that arrived on input ``port`` (``Trigger.EACH``)."""
        raise NotImplementedError(f"{type(self).__name__} must define process(self, item, port) "
                                  "or process_batch(self, items, port)")

    def process_batch(self, items: Any, port: str) -> None:
        """Handle a batch from input ``port`` in one call (never empty; a list or tuple you may
        keep). The default calls ``process`` for each item."""
        process = self.process
        for item in items:
            process(item, port)

    def fire(self, inputs: Any) -> None:
        """``Trigger.BARRIER`` / ``LATEST``: ``inputs`` maps each input port to its value (see
        ``Inputs``: ``inputs.age(port)``, ``inputs.stale``, ``inputs.trigger``)."""
        raise NotImplementedError(f"{type(self).__name__} (trigger {self.trigger.name}) must "
                                  "define fire(self, inputs)")

    def on_end(self) -> None:
        """Every input has ended (finite streams): emit what is left. Partial batches have been
        handed to ``process_batch`` already."""

    def on_message(self, message: Any) -> Any:
        """Any other message told (or asked) to the node; the return value answers ``ask``."""
        self.log.warning("stream node ignored a message", message=repr(message)[:200])
        return None

    def snapshot(self) -> Any:
        """Define it to carry state across restarts: called after each handled batch; the
        last value is given to ``restore`` in the next incarnation (after ``on_start``)."""
        return None

    def restore(self, state: Any) -> None:
        """Take back what ``snapshot`` returned (runs after ``on_start`` in a new incarnation)."""

    # -- what a node can do ----------------------------------------------------------------------
    def emit(self, item: Any, port: str = "out") -> None:
        """Send ``item`` on output ``port`` (when the handler returns). ``ValueError`` for a port
        the node does not have."""
        try:
            self._sv_emitted[port].append(item)
        except KeyError:
            raise ValueError(f"{self._sv_def.name}: no output port {port!r} (outputs: "
                             f"{self._sv_def.outputs})") from None

    def emit_many(self, items: Iterable[Any], port: str = "out") -> None:
        """Send every item of ``items`` on ``port`` (one call for a whole batch)."""
        try:
            self._sv_emitted[port].extend(items)
        except KeyError:
            raise ValueError(f"{self._sv_def.name}: no output port {port!r} (outputs: "
                             f"{self._sv_def.outputs})") from None

    def pause(self) -> None:
        """Stop taking items: what arrives waits, uncredited, until ``resume()`` (a sink waiting
        for a database, a rate limit). Bounded by the input windows."""
        self._sv_paused = True
        self._sv_simple = False

    def resume(self) -> None:
        """Take items again, starting with those that waited (in this handler, in order)."""
        if self._sv_paused:
            _wiring.resume(self)

    @property
    def paused(self) -> bool:
        return self._sv_paused

    @property
    def node_name(self) -> str:
        """This node's name in the graph."""
        return self._sv_def.name

    @property
    def instance(self) -> "StreamInstance":
        """The graph instance this node belongs to (logs, statistics)."""
        return self._sv_shared.instance

    @property
    def counters(self) -> Any:
        """This node's counters in the instance (they survive restarts; ``statistics()`` reads
        them): a node with counted outcomes of its own (``Window``: ``late``, ``errors``,
        ``evicted``, ``open_windows``) adds to them here."""
        return self._sv_c

    @classmethod
    def check_arguments(cls, *args: Any, **kwargs: Any) -> None:
        """Called by ``graph.add`` with the node's own arguments, before anything runs: raise
        ``ValueError`` naming what is wrong (``graph.add`` prefixes the node's name). The
        default accepts anything."""

    @property
    def now(self) -> float:
        """The runtime clock (a ``ManualClock`` in tests)."""
        return self._sv_clock.now()

    # -- the framework's side (do not call) ------------------------------------------------------
    def receive(self, msg: Any) -> Any:
        cls = msg.__class__
        if cls is Batch:
            if self._sv_simple:  # Trigger.EACH, no batching, no watchdog, not paused
                inp = self._sv_in[msg.eid]
                items = msg.items
                n = len(items)
                inp.stats.delivered += n
                c = self._sv_c
                c.custody += n
                self.process_batch(items, inp.port)
                c.custody -= n
                c.processed += n
                if self._sv_has_outputs:
                    self._sv_flush()
                self._sv_grant(inp, n)
                if self._sv_snap:
                    self._sv_save()
            else:
                _wiring.take(self, msg)
        elif cls in _CONTROL:
            msg.handle(self)
        else:
            result = self.on_message(msg)
            self._sv_epilogue()
            return result
        return None

    def _sv_boot(self) -> None:
        """The actor's ``on_start``: yours first, then the framework's (see ``_wiring``)."""
        type(self).on_start(self)
        _wiring.boot(self)

    def _sv_epilogue(self) -> None:
        """After every handler: route what it emitted, send ends, take a snapshot."""
        if self._sv_has_outputs:
            self._sv_flush()
        if self._sv_end_pending:
            _wiring.end_outputs(self)
        if self._sv_snap:
            self._sv_save()

    def _sv_flush(self) -> None:
        """Route what the handler emitted; then update the backed-up state."""
        single = self._sv_single
        if single is not None:  # one output port, one edge, no log: the common case
            port, out = single
            items = self._sv_emitted[port]
            if items:
                self._sv_emitted[port] = []
                self._sv_c.emitted += len(items)
                if out.push(items) or self._sv_blocked:
                    self._sv_check_blocked()
            return
        emitted = self._sv_emitted
        waiting = False
        for port, items in emitted.items():
            if items:
                emitted[port] = []
                waiting = self._sv_route(port, items) or waiting
        if (waiting or self._sv_blocked) and self._sv_bp:
            self._sv_check_blocked()

    def _sv_route(self, port: str, items: list[Any]) -> bool:
        n = len(items)
        self._sv_c.emitted += n
        log = self._sv_logs.get(port) if self._sv_logs else None
        if log is not None:
            log.extend(items)
        outs = self._sv_routes[port]
        if len(outs) == 1:
            return outs[0].push(items)
        if not outs:
            if log is None:
                self._sv_c.unrouted += n
            return False
        shared = tuple(items)  # the same immutable batch to every receiver
        waiting = False
        for out in outs:
            waiting = out.push(shared) or waiting
        return waiting

    def _sv_check_blocked(self) -> None:
        blocked = False
        for out in self._sv_bp:
            if out.buf or out.tell is None:  # items waiting, or no receiver (yet)
                blocked = True
                break
        was, self._sv_blocked = self._sv_blocked, blocked
        if was and not blocked:
            for inp in self._sv_ins:
                if inp.owed >= inp.threshold:
                    owed, inp.owed = inp.owed, 0
                    inp.give(owed)

    def _sv_grant(self, inp: Any, n: int) -> None:
        owed = inp.owed + n
        if owed >= inp.threshold and not self._sv_blocked:
            inp.owed = 0
            inp.give(owed)
        else:
            inp.owed = owed

    def _sv_save(self) -> None:
        self._sv_shared.snapshots[self._sv_index] = self.snapshot()

    # control messages (see _messages): the logic lives in _wiring and _triggers
    def _sv_on_credit(self, msg: Credit) -> None:
        out = self._sv_out_by_eid.get(msg.eid)
        if out is None or msg.epoch != out.epoch:
            return  # credit from an incarnation the edge no longer delivers to
        out.credit += msg.n
        out.pump()
        self._sv_after_credit()

    def _sv_on_attach(self, msg: Attach) -> None:
        out = self._sv_out_by_eid.get(msg.eid)
        if out is None or msg.epoch < out.epoch:
            return
        out.attach(msg)
        self._sv_after_credit()

    def _sv_after_credit(self) -> None:
        if self._sv_bp:
            self._sv_check_blocked()

    def _sv_on_hello(self, msg: Hello) -> None:
        _wiring.on_hello(self, msg)

    def _sv_on_end(self, eid: int) -> None:
        _wiring.on_end(self, eid)

    def _sv_on_flush_batch(self, port: str) -> None:
        on_flush_batch(self, port)

    def _sv_on_expire(self) -> None:
        on_expire(self)

    def _sv_on_every(self, name: str) -> None:
        on_every(self, name)

    def _sv_on_watch(self, name: str) -> None:
        on_watch(self, name)

    def _sv_on_pump(self) -> None:
        pass

    _sv_on_poll = _sv_on_wake = _sv_on_pump

    def _sv_report_loss(self, where: str, n: int, edge: str | None) -> None:
        _wiring.report_loss(self, where, n, edge)

    def _sv_report_drops(self, out: Any, total: int, since: int) -> None:
        _wiring.report_drops(self, out, total, since)

    def __repr__(self) -> str:
        d = getattr(self, "_sv_def", None)
        return f"<{type(self).__name__} {d.name if d else '(unbound)'}>"


def _unbound(node: Node) -> TypeError:
    return TypeError(f"{type(node).__name__} is a stream node: add it to a Graph and "
                     "instantiate the graph instead of spawning it")


def _bind(node: Node, binding: Binding) -> None:
    _wiring.bind(node, binding, type(node).snapshot is not Node.snapshot)
