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

Nodes must not override ``receive`` (``TypeError`` at class definition), nor use the attribute
``_wiring``: the framework keeps all it needs for the node there (one ``Wiring`` object, see
``_wiring``); every other attribute is yours. A node object is made only by its graph's
instance (the ``Binding`` check in ``__init__``); the runtime starts each incarnation by calling
``on_start`` and then ``Wiring.start`` (``Node._startup``, the core's start hook).
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .._actor import Actor
from . import _checkpoint, _timers
from ._edges import Batch
from ._enums import Expired, Trigger
from ._messages import (Attach, Credit, End, Every, Expire, FlushBatch, Hello, Poll, Pump, Wake,
                        Watch)
from ._wiring import Wiring

if TYPE_CHECKING:
    from ._instance import StreamInstance

__all__ = ["Node", "Binding"]

_CONTROL = frozenset({Credit, Attach, Hello, End, Pump, Poll, Wake, Expire, Every, Watch,
                      FlushBatch, *_checkpoint.CONTROL})


class Binding:
    """What a node actor is told at spawn: which instance, which node. Passed as the first
    positional argument and taken off before your ``__init__`` sees its arguments."""

    __slots__ = ("shared", "index")

    def __init__(self, shared: Any, index: int) -> None:
        self.shared = shared
        self.index = index

    def __repr__(self) -> str:
        return f"<Binding {self.shared.plan.name}/{self.shared.plan.nodes[self.index].name}>"


# The ``__init__`` functions that ``_bound_init`` made (a class inheriting one is not rewrapped).
_WRAPPED: "weakref.WeakSet[Callable[..., None]]" = weakref.WeakSet()


def _bound_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a node class's ``__init__`` in the one binding check: the spawn's ``Binding`` (the
    first argument) builds the node's ``Wiring`` and is taken off before ``init`` sees its
    arguments; without one, the node must be bound already (a ``super().__init__`` call),
    else ``TypeError``: a node is made by instantiating its graph, never directly."""

    @functools.wraps(init)
    def __init__(self: "Node", *args: Any, **kwargs: Any) -> None:
        if args and args[0].__class__ is Binding:
            self._wiring = Wiring(self, args[0], type(self).snapshot is not Node.snapshot)
            args = args[1:]
        elif getattr(self, "_wiring", None) is None:
            raise TypeError(f"{type(self).__name__} is a stream node: add it to a Graph and "
                            "instantiate the graph instead of spawning it")
        init(self, *args, **kwargs)

    _WRAPPED.add(__init__)
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

    # The framework's state for this node (see ``_wiring``): a slot, so that a node's own
    # attributes can neither shadow it nor be shadowed by it.
    __slots__ = ("_wiring",)
    _wiring: Wiring

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "receive" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: a stream node handles items in process, "
                            "process_batch or fire, and other messages in on_message; it must "
                            "not override receive")
        init = cls.__dict__.get("__init__")
        if init is not None and init not in _WRAPPED:
            cls.__init__ = _bound_init(init)  # type: ignore[method-assign]  # the subclass's __init__ is wrapped once
        _timers.collect_specs(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
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
            self._wiring.emitted[port].append(item)
        except KeyError:
            raise self._wiring.no_port(port) from None

    def emit_many(self, items: Iterable[Any], port: str = "out") -> None:
        """Send every item of ``items`` on ``port`` (one call for a whole batch)."""
        try:
            self._wiring.emitted[port].extend(items)
        except KeyError:
            raise self._wiring.no_port(port) from None

    def pause(self) -> None:
        """Stop taking items: what arrives waits, uncredited, until ``resume()`` (a sink waiting
        for a database, a rate limit). Bounded by the input windows."""
        self._wiring.pause()

    def resume(self) -> None:
        """Take items again, starting with those that waited (in this handler, in order)."""
        if self._wiring.paused:
            self._wiring.resume()

    @property
    def paused(self) -> bool:
        return self._wiring.paused

    @property
    def checkpointed(self) -> bool:
        """True if this node's instance takes checkpoints (``Checkpoints``)."""
        return self._wiring.shared.checkpoint is not None

    @property
    def node_name(self) -> str:
        """This node's name in the graph."""
        return self._wiring.definition.name

    @property
    def instance(self) -> "StreamInstance":
        """The graph instance this node belongs to (logs, statistics)."""
        return self._wiring.shared.instance

    @property
    def counters(self) -> Any:
        """This node's counters in the instance (they survive restarts; ``statistics()`` reads
        them): a node with counted outcomes of its own (``Window``: ``late``, ``errors``,
        ``evicted``, ``open_windows``) adds to them here."""
        return self._wiring.counters

    @classmethod
    def check_arguments(cls, *args: Any, **kwargs: Any) -> None:
        """Called by ``graph.add`` with the node's own arguments, before anything runs: raise
        ``ValueError`` naming what is wrong (``graph.add`` prefixes the node's name). The
        default accepts anything."""

    @property
    def now(self) -> float:
        """The runtime clock (a ``ManualClock`` in tests)."""
        return self._wiring.clock.now()

    # -- the framework's side (do not call) ------------------------------------------------------
    def _startup(self) -> None:
        """The runtime's start of the actor (its first turn): your ``on_start``, then the
        framework's start of this incarnation (``Wiring.start``: restore, attach, timers)."""
        self.on_start()
        self._wiring.start()

    def receive(self, msg: Any) -> Any:
        cls = msg.__class__
        if cls is Batch:
            w = self._wiring
            if w.simple:  # Trigger.EACH, no batching, no watchdog, not paused
                inp = w.by_eid[msg.eid]
                items = msg.items
                n = len(items)
                inp.stats.delivered += n
                c = w.counters
                c.custody += n
                self.process_batch(items, inp.port)
                c.custody -= n
                c.processed += n
                if w.has_outputs:
                    w.flush()
                w.grant(inp, n)
                if w.takes_snapshots:
                    w.save()
            else:
                w.take(msg)
        elif cls in _CONTROL:
            msg.handle(self._wiring)
        else:
            result = self.on_message(msg)
            self._wiring.epilogue()
            return result
        return None

    def __repr__(self) -> str:
        w = getattr(self, "_wiring", None)
        return f"<{type(self).__name__} {w.definition.name if w else '(unbound)'}>"


Node.__init__ = _bound_init(Node.__init__)  # type: ignore[method-assign]  # Node itself binds the same way
