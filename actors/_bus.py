"""The event bus: timeliness first.

``subscribe(channel_or_event_type, ref, max_age=None)``; ``publish(event, channel=None)``.
An event goes to the subscribers of ``channel`` (a string) when one is given, and to the
subscribers of its class or any base class. A subscriber never holds more than the newest
undelivered event per subscription: a newer one replaces it (``replaced`` counts it), and an
event older than ``max_age`` seconds (runtime clock, measured from ``publish``) when the
subscriber would take it is dropped (``expired`` counts it). Delivery is the event object
itself, in the subscriber's mailbox order (the slot keeps the place of its first undelivered
event). Bus slots are system messages: a mailbox's overflow policy never drops them, and each
subscription has at most one in a mailbox.

Tenants (docs/ARCHITECTURE.md section 6): a subscription belongs to its actor's tenant. An event's scope is
the subject's tenant for a ``LifecycleEvent`` (``event.ref``'s identity) and the publisher's
tenant otherwise (the actor calling ``publish``; None outside actors). A tenant's subscriber
gets only events of its own tenant, plus events published by the system that are not lifecycle
events (e.g. a system clock); system subscribers get everything.

Dead subscribers are unsubscribed when an event finds them (counted in ``dead``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ._cell import current_cell
from ._checks import check_number
from ._envelopes import SKIP, Deferred
from ._events import LifecycleEvent

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._runtime import Runtime

__all__ = ["EventBus", "BusSubscription", "BusStatistics"]

_NO_TENANT = object()  # the scope of a system lifecycle event: no tenant may see it


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """Bus-wide counters (exact): every offered event is eventually ``delivered``,
    ``replaced``, ``expired`` or still waiting in a slot (or lost with a dead subscriber)."""

    subscriptions: int
    published: int
    delivered: int
    replaced: int
    expired: int
    dead: int


class BusSubscription:
    """One subscriber's slot on one channel or event type. ``replaced``/``expired``/
    ``delivered`` are exact."""

    __slots__ = ("topic", "ref", "max_age", "tenant", "_bus", "_pending", "_at", "replaced",
                 "expired", "delivered", "active", "_deferred")

    def __init__(self, bus: "EventBus", topic: Any, ref: "ActorRef",
                 max_age: float | None) -> None:
        self.topic = topic
        self.ref = ref
        self.max_age = max_age
        self.tenant: str | None = ref._cell.tenant
        self._bus = bus
        self._pending: Any = SKIP
        self._at = 0.0
        self.replaced = 0
        self.expired = 0
        self.delivered = 0
        self.active = True
        self._deferred = Deferred(self._open)

    def _offer(self, event: Any, now: float) -> bool:
        """Put ``event`` in the slot; True if the subscriber must be told (the slot was empty)."""
        with self._bus._lock:
            empty = self._pending is SKIP
            if not empty:
                self.replaced += 1
                self._bus._replaced += 1
            self._pending, self._at = event, now
            return empty

    def _open(self) -> Any:
        """Runs in the subscriber's turn: take the newest event, unless it is too old."""
        bus = self._bus
        with bus._lock:
            event, at = self._pending, self._at
            self._pending = SKIP
            if event is SKIP or not self.active:
                return SKIP
            if self.max_age is not None and bus._clock.now() - at > self.max_age:
                self.expired += 1
                bus._expired += 1
                return SKIP
            self.delivered += 1
            bus._delivered += 1
            return event

    def __repr__(self) -> str:
        what = self.topic if isinstance(self.topic, str) else self.topic.__name__
        return (f"<BusSubscription {what} -> {self.ref!r} delivered={self.delivered} "
                f"replaced={self.replaced} expired={self.expired}>")


class EventBus:
    """Lock rule (``_lock``): guards the subscription tables, the route cache, the slots and
    the counters; actors are told, and listeners called, after it is released."""

    def __init__(self, runtime: "Runtime") -> None:
        self._clock = runtime.clock
        self._log = runtime._log
        self._lock = threading.Lock()
        self._by_topic: dict[Any, list[BusSubscription]] = {}
        self._listeners: dict[type, list[Callable[[Any], None]]] = {}
        # cache: class -> (its subscriptions, its listeners); rebuilt after any change
        self._routes: dict[type, tuple[tuple[BusSubscription, ...],
                                       tuple[Callable[[Any], None], ...]]] = {}
        self._published = 0
        self._replaced = self._expired = self._delivered = self._dead = 0

    def subscribe(self, topic: "str | type", ref: "ActorRef",
                  max_age: float | None = None) -> BusSubscription:
        """Subscribe ``ref`` to a channel name or an event class (and its subclasses). Safe from
        any thread; never blocks. Raises ``TypeError`` for a non-ref, ``ValueError`` for an
        empty channel, a topic that is neither a str nor a class, or a ``max_age`` that is not
        a positive number of seconds."""
        from ._actor import ActorRef
        if not isinstance(ref, ActorRef):
            raise TypeError(f"bus.subscribe needs an ActorRef, got {type(ref).__name__}")
        if isinstance(topic, str):
            if not topic:
                raise ValueError("bus channel names must be non-empty strings")
        elif not isinstance(topic, type):
            raise ValueError(f"subscribe to a channel name or an event class, got {topic!r}")
        check_number(max_age, "max_age", positive=True, unit="seconds", or_none=True)
        sub = BusSubscription(self, topic, ref, max_age)
        with self._lock:
            self._by_topic.setdefault(topic, []).append(sub)
            self._routes.clear()
        return sub

    def unsubscribe(self, sub: BusSubscription) -> bool:
        """Remove ``sub`` (an event waiting in its slot is not delivered). True if it was
        subscribed."""
        with self._lock:
            subs = self._by_topic.get(sub.topic)
            if not subs or sub not in subs:
                return False
            subs.remove(sub)
            if not subs:
                del self._by_topic[sub.topic]
            sub.active = False
            self._routes.clear()
            return True

    def has_subscribers(self, event_type: type) -> bool:
        """Cheap check the runtime uses before building lifecycle events."""
        routes = self._routes.get(event_type)
        if routes is None:
            routes = self._route(event_type)
        return bool(routes[0] or routes[1])

    def publish(self, event: Any, channel: str | None = None) -> int:
        """Offer ``event`` to its subscribers; returns how many were offered it. Never blocks;
        safe from any thread. Raises ``ValueError`` for a channel that is not a non-empty str."""
        if channel is not None and (not isinstance(channel, str) or not channel):
            raise ValueError(f"bus channel must be a non-empty string, got {channel!r}")
        routes = self._routes.get(type(event))
        if routes is None:
            routes = self._route(type(event))
        subs, listeners = routes
        with self._lock:
            self._published += 1
            if channel is not None and channel in self._by_topic:
                subs = tuple(self._by_topic[channel]) + subs
        for listener in listeners:
            self._call(listener, event)
        if not subs:
            return 0
        scope = self._scope(event) if any(s.tenant is not None for s in subs) else None
        now = self._clock.now()
        offered = 0
        for sub in subs:
            if sub.tenant is not None and scope is not None and scope != sub.tenant:
                continue  # another tenant's event (or a system lifecycle event)
            if not sub.ref.is_alive():
                self._drop_dead(sub)
                continue
            offered += 1
            if sub._offer(event, now) and not sub.ref._cell._tell_system(sub._deferred, envelope=True):
                self._drop_dead(sub)
        return offered

    # -- internals ------------------------------------------------------------------------------
    def _listen(self, event_type: type, listener: Callable[[Any], None]) -> None:
        """Runtime-internal: call ``listener(event)`` synchronously, in the publisher's thread,
        for every event of ``event_type`` (or a subclass) - not latest-value, never dropped.
        For runtime components only (the pub/sub registry watches ``ActorExited``); a
        listener must be quick, must not block, and must not raise."""
        with self._lock:
            self._listeners.setdefault(event_type, []).append(listener)
            self._routes.clear()

    def _call(self, listener: Callable[[Any], None], event: Any) -> None:
        try:
            listener(event)
        except Exception as exc:  # a runtime bug; it must not break the publisher (an exit)
            self._log.error("bus listener raised", listener=repr(listener), error=repr(exc),
                            exc_info=exc)

    @staticmethod
    def _scope(event: Any) -> Any:
        if isinstance(event, LifecycleEvent):
            tenant = event.ref._cell.tenant if hasattr(event.ref, "_cell") else event.tenant
            return _NO_TENANT if tenant is None else tenant
        cell = current_cell()
        return cell.tenant if cell is not None else None

    def _route(self, cls: type) -> tuple[tuple[BusSubscription, ...],
                                         tuple[Callable[[Any], None], ...]]:
        with self._lock:
            mro = cls.__mro__
            routes = (tuple(s for base in mro for s in self._by_topic.get(base, ())),
                      tuple(f for base in mro for f in self._listeners.get(base, ())))
            self._routes[cls] = routes
            return routes

    def _drop_dead(self, sub: BusSubscription) -> None:
        if self.unsubscribe(sub):
            with self._lock:
                self._dead += 1

    def statistics(self) -> BusStatistics:
        with self._lock:
            return BusStatistics(subscriptions=sum(len(v) for v in self._by_topic.values()),
                                 published=self._published, delivered=self._delivered,
                                 replaced=self._replaced, expired=self._expired, dead=self._dead)

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"<EventBus subscriptions={s.subscriptions} published={s.published} "
                f"replaced={s.replaced} expired={s.expired}>")
