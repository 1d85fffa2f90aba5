"""The registry's state, guarded by ``PubSub._lock`` (every method here runs under it and never
tells an actor: it returns the deliveries to send, and the caller sends them after releasing it).

- ``Namespace``: one per tenant (and one for the system): its own filter trie, retained store,
  sessions, shared groups, publication ids and counters. Tenants never share one, so no topic or
  filter string can reach across.
- ``Target``: where messages for one subscriber go - an actor's plain subscriptions, or a named
  session (which outlives its actors). It owns the in-flight window and the bounded buffer.
- ``SharedGroup``: the members of ``$share/<group>/<filter>``; one live member per message.
- ``Delivery``: one (message, target) pair; it is the ``reply`` of the ``Ask`` envelope that
  carries the message, so the cell tells it how the handler ended: ``set`` (returned) or
  ``fail`` (crashed, died with it queued, or dropped by overflow).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

from .._mailbox import DEAD
from ._trie import FilterTrie, TopicTrie
from ._types import Publish, Subscription

if TYPE_CHECKING:
    from .._actor import ActorRef
    from ._registry import PubSub

__all__ = ["Namespace", "Target", "SharedGroup", "Delivery",
           "PENDING", "SENT", "DONE", "FAILED", "DROPPED", "SUPERSEDED"]

PENDING, SENT, DONE, FAILED, DROPPED, SUPERSEDED = range(6)
_QOS2_MEMORY = 10_000  # completed QoS 2 ids a target remembers (per target, oldest forgotten)


class Delivery:
    """One message for one target; the ``reply`` of its ``Ask`` envelope (any thread)."""

    __slots__ = ("pubsub", "target", "publish", "group", "ref", "state", "sent")

    def __init__(self, pubsub: "PubSub", target: "Target", publish: Publish,
                 group: "SharedGroup | None") -> None:
        self.pubsub = pubsub
        self.target = target
        self.publish = publish
        self.group = group
        self.ref: "ActorRef | None" = None
        self.state = PENDING
        self.sent = False           # was it ever in a mailbox (a resend is a redelivery)

    def set(self, value: Any) -> None:
        self.pubsub._settled(self)

    def fail(self, error: BaseException) -> None:
        self.pubsub._failed(self, error)

    def __repr__(self) -> str:
        return f"<Delivery #{self.publish.id} qos={self.publish.qos} state={self.state}>"


class Target:
    """A subscriber: ``session`` is its name, or None for an actor's plain subscriptions."""

    __slots__ = ("ns", "session", "ref", "window", "subs", "pending", "inflight", "orphans",
                 "done_ids", "done_order", "live_ids")

    def __init__(self, ns: "Namespace", session: str | None) -> None:
        self.ns = ns
        self.session = session
        self.ref: "ActorRef | None" = None
        self.window = 1
        self.subs: dict[str, Subscription] = {}
        self.pending: deque[Delivery] = deque()
        self.inflight: dict[Delivery, None] = {}   # QoS >= 1 sent to ``ref``, in send order
        self.orphans: set[Delivery] = set()        # sent to an earlier ref, not settled yet
        self.done_ids: set[int] = set()            # QoS 2 ids handled (bounded memory)
        self.done_order: deque[int] = deque()
        self.live_ids: set[int] = set()            # QoS 2 ids pending, in flight or orphaned

    def live(self) -> bool:
        return self.ref is not None and self.ref._cell._state != DEAD

    def remember_done(self, msg_id: int) -> None:
        self.live_ids.discard(msg_id)
        if msg_id not in self.done_ids:
            self.done_ids.add(msg_id)
            self.done_order.append(msg_id)
            if len(self.done_order) > _QOS2_MEMORY:
                self.done_ids.discard(self.done_order.popleft())

    def __repr__(self) -> str:
        who = f"session {self.session!r}" if self.session is not None else "subscriber"
        return (f"<{who} ref={self.ref!r} inflight={len(self.inflight)} "
                f"buffered={len(self.pending)}>")


class SharedGroup:
    """``$share/<name>/<filter>``: members in join order, picked round robin."""

    __slots__ = ("name", "filter", "members", "order", "next")

    def __init__(self, name: str, filter: str) -> None:
        self.name = name
        self.filter = filter
        self.members: dict[Target, Subscription] = {}
        self.order: list[Target] = []
        self.next = 0

    def join(self, target: Target, sub: Subscription) -> None:
        if target not in self.members:
            self.order.append(target)
        self.members[target] = sub

    def leave(self, target: Target) -> None:
        if self.members.pop(target, None) is not None:
            self.order.remove(target)

    def pick(self, exclude: Target | None = None) -> tuple[Target, Subscription] | None:
        """The next live member (round robin); else a detached session member (it gets the
        message when an actor attaches); else ``exclude`` itself if it is a session; else None.
        Usually O(1): the first member looked at is live."""
        order = self.order
        n = len(order)
        for want_live in (True, False):
            for k in range(n):
                idx = (self.next + k) % n
                target = order[idx]
                if target is exclude:
                    continue
                if target.live() if want_live else target.session is not None:
                    self.next = (idx + 1) % n
                    return target, self.members[target]
        if exclude is not None and exclude.session is not None and exclude in self.members:
            return exclude, self.members[exclude]
        return None


class Namespace:
    """One tenant's (or the system's) pub/sub world."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.trie = FilterTrie()
        self.retained = TopicTrie()
        self.sessions: dict[str, Target] = {}
        self.plain: dict["ActorRef", Target] = {}     # actors' plain subscriptions
        self.groups: dict[tuple[str, str], SharedGroup] = {}
        self.ids = itertools.count(1)
        self.unsettled0 = 0                            # QoS 0 messages in mailboxes
        self.counts: dict[str, int] = dict.fromkeys(
            ("published", "routed", "delivered", "redelivered", "duplicates", "deduplicated",
             "dropped_overflow", "dropped_buffer", "dropped_dead", "retained_refused", "wills",
             "route_visits"), 0)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def targets(self) -> list[Target]:
        return list(self.sessions.values()) + list(self.plain.values())

    def __repr__(self) -> str:
        return (f"<Namespace {self.key or '(system)'} filters={len(self.trie)} "
                f"retained={len(self.retained)} sessions={len(self.sessions)}>")
