"""The event bus: timeliness first.

``subscribe(channel_or_event_type, ref, max_age=None)``; ``publish(event, channel=None)``.
An event goes to the subscribers of ``channel`` (a string) when one is given, and to the
subscribers of its class or any base class. A subscriber never holds more than the newest
undelivered event per subscription: a newer one replaces it (``replaced`` counts it), and an
event older than ``max_age`` seconds (runtime clock) when the subscriber would take it is dropped
(``expired`` counts it). Delivery is the event object itself, in the subscriber's mailbox order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._envelopes import SKIP, Deferred

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._runtime import Runtime

__all__ = ["EventBus", "BusSubscription", "BusStatistics"]


@dataclass(frozen=True, slots=True)
class BusStatistics:
    subscriptions: int
    published: int
    delivered: int
    replaced: int
    expired: int
    dead: int


class BusSubscription:
    """One subscriber's slot on one channel or event type. ``replaced``/``expired`` are exact."""

    __slots__ = ("topic", "ref", "max_age", "_bus", "_pending", "_at", "replaced", "expired",
                 "delivered", "active", "_deferred")

    def __init__(self, bus: "EventBus", topic: Any, ref: "ActorRef",
                 max_age: float | None) -> None:
        self.topic = topic
        self.ref = ref
        self.max_age = max_age
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
        return f"<BusSubscription {what} -> {self.ref!r} replaced={self.replaced} expired={self.expired}>"


class EventBus:
    """Lock rule (``_lock``): guards the subscription tables, the slots and the counters; actors
    are told after it is released."""

    def __init__(self, runtime: "Runtime") -> None:
        self._clock = runtime.clock
        self._lock = threading.Lock()
        self._by_topic: dict[Any, list[BusSubscription]] = {}
        self._routes: dict[type, tuple[BusSubscription, ...]] = {}  # cache: class -> its subs
        self._published = 0
        self._replaced = self._expired = self._delivered = self._dead = 0

    def subscribe(self, topic: "str | type", ref: "ActorRef",
                  max_age: float | None = None) -> BusSubscription:
        """Subscribe ``ref`` to a channel name or an event class (and its subclasses).
        Raises ``ValueError`` for an empty channel, a bad ``max_age`` or a non-ref."""
        from ._actor import ActorRef
        if not isinstance(ref, ActorRef):
            raise TypeError(f"bus.subscribe needs an ActorRef, got {type(ref).__name__}")
        if isinstance(topic, str):
            if not topic:
                raise ValueError("bus channel names must be non-empty strings")
        elif not isinstance(topic, type):
            raise ValueError(f"subscribe to a channel name or an event class, got {topic!r}")
        if max_age is not None and (isinstance(max_age, bool) or
                                    not isinstance(max_age, (int, float)) or not max_age > 0):
            raise ValueError(f"max_age must be a positive number of seconds, got {max_age!r}")
        sub = BusSubscription(self, topic, ref, max_age)
        with self._lock:
            self._by_topic.setdefault(topic, []).append(sub)
            self._routes.clear()
        return sub

    def unsubscribe(self, sub: BusSubscription) -> bool:
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
        return bool(routes)

    def publish(self, event: Any, channel: str | None = None) -> int:
        """Offer ``event`` to its subscribers; returns how many were offered it. Never blocks."""
        with self._lock:
            self._published += 1
        subs = self._routes.get(type(event))
        if subs is None:
            subs = self._route(type(event))
        if channel is not None:
            subs = tuple(self._by_topic.get(channel, ())) + subs
        if not subs:
            return 0
        now = self._clock.now()
        offered = 0
        for sub in subs:
            if not sub.ref.is_alive():
                self._drop_dead(sub)
                continue
            offered += 1
            if sub._offer(event, now):
                sub.ref._cell._tell_system(sub._deferred)
        return offered

    def _route(self, cls: type) -> tuple[BusSubscription, ...]:
        with self._lock:
            subs = tuple(s for base in cls.__mro__ for s in self._by_topic.get(base, ()))
            self._routes[cls] = subs
            return subs

    def _drop_dead(self, sub: BusSubscription) -> None:
        if self.unsubscribe(sub):
            with self._lock:
                self._dead += 1

    def statistics(self) -> BusStatistics:
        with self._lock:
            return BusStatistics(subscriptions=sum(len(v) for v in self._by_topic.values()),
                                 published=self._published, delivered=self._delivered,
                                 replaced=self._replaced, expired=self._expired, dead=self._dead)

