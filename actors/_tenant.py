"""Tenants: one customer each. ``rt.tenant("acme")`` is a scope whose actors carry the tenant in
their identity (``ActorRef.tenant``, paths under ``/tenants/acme``); actors they spawn inherit
it. The pub/sub registry and the stream layer read the tenant from that identity - never from a
topic string - so nothing a tenant's actor sends can name another tenant's namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._mailbox import Overflow

if TYPE_CHECKING:
    from ._actor import Actor, ActorRef
    from ._runtime import Runtime
    from .pubsub import TenantPubSub

__all__ = ["Tenant", "validate_tenant_name"]


def validate_tenant_name(name: object) -> str:
    """A tenant name is 1-64 characters of letters, digits, '-', '_' or '.', not starting with
    '.' or '$'; anything else raises ``ValueError`` naming the problem."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"tenant name must be a non-empty string, got {name!r}")
    if len(name) > 64:
        raise ValueError(f"tenant name {name[:20]!r}... is longer than 64 characters")
    bad = [c for c in name if not (c.isascii() and (c.isalnum() or c in "-_."))]
    if bad:
        raise ValueError(f"tenant name {name!r} contains {bad[0]!r}; use letters, digits, '-', '_', '.'")
    if name[0] == ".":
        raise ValueError(f"tenant name {name!r} must not start with '.'")
    return name


def _check_pubsub_limits(limits: dict[str, Any]) -> None:
    from .pubsub._types import DEFAULT_LIMITS, read_limit
    for key in DEFAULT_LIMITS:
        if key in limits:
            read_limit(limits, key)


class Tenant:
    """A tenant scope of one runtime (``Runtime.tenant(name)`` returns the same object each time).

    ``limits`` holds per-tenant bounds that other layers read when they need them (so a later
    ``rt.tenant(name, key=value)`` applies at once); unknown keys are kept for those layers.
    The pub/sub registry's keys (positive integers; a bad value raises ``ValueError`` naming
    the key when the tenant is created with it, or when pub/sub reads it):

    =====================  =========  ======================================================
    key                    default    bound
    =====================  =========  ======================================================
    ``retained_messages``  10,000     retained topics; a new one beyond it is not retained
                                      (still delivered; counted ``retained_refused``)
    ``session_buffer``     1,000      messages buffered per session (or per subscriber whose
                                      QoS 1/2 window is full); more are dropped, counted
    ``sessions``           10,000     named sessions; one more raises ``ValueError``
    ``inflight_messages``  10,000     QoS 1/2 messages in one subscriber's mailbox at once
                                      (never more than its mailbox capacity)
    =====================  =========  ======================================================

    ``pubsub`` is the tenant's pub/sub (``TenantPubSub``): topics, filters, retained messages
    and sessions live in the tenant's own namespace.
    """

    def __init__(self, runtime: "Runtime", name: str, limits: dict[str, Any]) -> None:
        self.runtime = runtime
        self.name = validate_tenant_name(name)
        self.path = f"/tenants/{name}"
        self.limits = dict(limits)
        _check_pubsub_limits(self.limits)

    def spawn(self, cls: type["Actor"], *args: Any, name: str | None = None,
              mailbox_size: int | None = None, overflow: Overflow | str | None = None,
              **kwargs: Any) -> "ActorRef":
        """Spawn a top-level actor of this tenant (same rules as ``Runtime.spawn``). A ``name``
        is registered as ``"<tenant>/<name>"`` so tenants never collide."""
        return self.runtime._spawn(cls, args, kwargs, name, mailbox_size, overflow, None, False,
                                   tenant=self)

    @property
    def pubsub(self) -> "TenantPubSub":
        """This tenant's pub/sub: ``subscribe``, ``publish``, ``set_will``, ... confined to the
        tenant's namespace (an actor of another tenant using it gets ``PermissionError``)."""
        return self.runtime.pubsub.tenant(self.name)

    def whereis(self, name: str) -> "ActorRef | None":
        return self.runtime.whereis(f"{self.name}/{name}")

    def actors(self) -> list["ActorRef"]:
        return [ref for ref in self.runtime.actors() if ref.tenant == self.name]

    def __repr__(self) -> str:
        return f"<Tenant {self.name}>"
