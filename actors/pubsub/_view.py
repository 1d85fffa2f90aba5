"""``TenantPubSub``: the pub/sub of one tenant (``rt.tenant("acme").pubsub``).

Everything goes to the tenant's own namespace: its trie, retained store and sessions, with
tenant-relative topics. Bounds come from ``Tenant.limits``. Trusted code (the test, a system
actor such as a bridge) may use any tenant's view; an actor of another tenant gets
``PermissionError`` - its identity decides, never the object it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._actor import ActorRef
    from ._registry import PubSub
    from ._types import PubSubStatistics, Subscription

__all__ = ["TenantPubSub"]


class TenantPubSub:
    """Same methods as ``PubSub``, confined to tenant ``name`` (see ``PubSub`` for each)."""

    __slots__ = ("_pubsub", "name")

    def __init__(self, pubsub: "PubSub", name: str) -> None:
        self._pubsub = pubsub
        self.name = name

    def subscribe(self, filter: str, ref: "ActorRef", qos: int = 0,
                  session: str | None = None) -> "Subscription":
        return self._pubsub.subscribe(filter, ref, qos, session, scope=self.name)

    def unsubscribe(self, sub: "Subscription") -> bool:
        return self._pubsub.unsubscribe(sub, scope=self.name)

    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> int:
        return self._pubsub.publish(topic, payload, qos, retain, scope=self.name)

    def set_will(self, ref: "ActorRef", topic: str, payload: Any, qos: int = 0,
                 retain: bool = False) -> None:
        self._pubsub.set_will(ref, topic, payload, qos, retain, scope=self.name)

    def clear_will(self, ref: "ActorRef") -> bool:
        return self._pubsub.clear_will(ref, scope=self.name)

    def attach(self, session: str, ref: "ActorRef") -> int:
        return self._pubsub.attach(session, ref, scope=self.name)

    def end_session(self, session: str) -> bool:
        return self._pubsub.end_session(session, scope=self.name)

    def statistics(self) -> "PubSubStatistics":
        return self._pubsub.statistics(scope=self.name)

    def __repr__(self) -> str:
        return f"<TenantPubSub {self.name}>"
