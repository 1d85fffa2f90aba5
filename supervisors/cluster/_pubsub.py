"""Pub/sub across nodes: ``rt.pubsub`` of a cluster node is the local registry plus forwarding.

``ClusterPubSub`` wraps the runtime's ``PubSub`` (same methods, same tenant views) and is
installed as ``rt.pubsub`` on every node. A publish is routed locally as before, then sent **once
to each node that has a matching subscription** in the same namespace (system or tenant); that
node routes it to its own subscribers with its own registry (QoS, sessions, retained store).
Nodes tell each other which filters they subscribe to (INTEREST records, per namespace), so a
node without subscribers receives nothing. Retained publishes go to every node (each keeps the
retained message, so a later subscriber anywhere gets it).

Limits (documented, not hidden): ``publish`` returns the number of *local* subscribers; QoS 1/2
guarantees hold within a node, and a forward lost with its node (kill -9) is not redelivered;
a shared subscription ``$share/g/f`` picks one member per node, not one per cluster; last wills
are published on the node of the dying actor only; a filter whose subscriber died without
unsubscribing keeps attracting forwards (harmless: nobody receives them there).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from actors.pubsub import PubSub, Subscription, TenantPubSub
from actors.topics import matches

from actors import lowlevel

if TYPE_CHECKING:
    from ._node import ClusterNode

__all__ = ["ClusterPubSub"]


class ClusterPubSub:
    """``rt.pubsub`` on a cluster node. Safe from any thread, like ``PubSub``."""

    def __init__(self, inner: PubSub, node: "ClusterNode") -> None:
        self._inner = inner
        self._node = node
        self._lock = threading.Lock()   # guards _interest and _views
        self._interest: dict[str | None, dict[str, int]] = {}
        self._views: dict[str, TenantPubSub] = {}
        self.forwarded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<ClusterPubSub node={self._node.id} {self._inner!r}>"

    @property
    def local(self) -> PubSub:
        """The node-local registry (publishing there does not forward)."""
        return self._inner

    def subscribe(self, filter: str, ref: Any, qos: int = 0, session: str | None = None, *,
                  scope: str | None = None) -> Subscription:
        sub = self._inner.subscribe(filter, ref, qos, session, scope=scope)
        with self._lock:
            filters = self._interest.setdefault(sub.tenant, {})
            filters[sub.inner] = filters.get(sub.inner, 0) + 1
            first = filters[sub.inner] == 1
        if first:
            self._node.interest_changed(sub.tenant, sub.inner, True)
        return sub

    def unsubscribe(self, sub: Subscription, *, scope: str | None = None) -> bool:
        removed = self._inner.unsubscribe(sub, scope=scope)
        if removed:
            with self._lock:
                filters = self._interest.get(sub.tenant, {})
                left = filters.get(sub.inner, 0) - 1
                if left > 0:
                    filters[sub.inner] = left
                else:
                    filters.pop(sub.inner, None)
            if left <= 0:
                self._node.interest_changed(sub.tenant, sub.inner, False)
        return removed

    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False, *,
                scope: str | None = None) -> int:
        """Route locally (raises like ``PubSub.publish``), then forward once per interested
        node. Returns the number of local subscribers it was routed to."""
        routed = self._inner.publish(topic, payload, qos, retain, scope=scope)
        namespace = lowlevel.caller_tenant() or scope
        self.forwarded += self._node.forward_publish(namespace, topic, payload, qos, retain)
        return routed

    def interest(self) -> list[tuple[str | None, str]]:
        """This node's subscribed ``(namespace, filter)`` pairs (what peers are told)."""
        with self._lock:
            return [(ns, f) for ns, filters in self._interest.items() for f in filters]

    def tenant(self, name: str) -> TenantPubSub:
        with self._lock:
            view = self._views.get(name)
            if view is None:
                view = self._views[name] = TenantPubSub(self, name)  # type: ignore[arg-type]  # ClusterPubSub has the PubSub interface TenantPubSub uses
            return view

    def deliver_remote(self, namespace: str | None, topic: str, payload: Any, qos: int,
                       retain: bool) -> int:
        """A publish forwarded by another node: route it here only (never forwarded again)."""
        return self._inner.publish(topic, payload, qos, retain, scope=namespace)


def wanted_by(interest: dict[Any, dict[str, int]], namespace: str | None, topic: str) -> bool:
    """Does a peer with this interest table want ``topic`` in ``namespace``? Pure."""
    filters = interest.get(namespace)
    if not filters:
        return False
    return any(matches(f, topic) for f in filters)
