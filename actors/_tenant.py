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


class Tenant:
    """A tenant scope of one runtime (``Runtime.tenant(name)`` returns the same object each time).

    ``limits`` holds per-tenant bounds that other layers read (pub/sub retained messages, session
    buffers, queue quotas); unknown keys are kept for those layers.
    """

    def __init__(self, runtime: "Runtime", name: str, limits: dict[str, Any]) -> None:
        self.runtime = runtime
        self.name = validate_tenant_name(name)
        self.path = f"/tenants/{name}"
        self.limits = dict(limits)

    def spawn(self, cls: type["Actor"], *args: Any, name: str | None = None,
              mailbox_size: int | None = None, overflow: Overflow | str | None = None,
              **kwargs: Any) -> "ActorRef":
        """Spawn a top-level actor of this tenant (same rules as ``Runtime.spawn``). A ``name``
        is registered as ``"<tenant>/<name>"`` so tenants never collide."""
        return self.runtime._spawn(cls, args, kwargs, name, mailbox_size, overflow, None, False,
                                   tenant=self)

    def whereis(self, name: str) -> "ActorRef | None":
        return self.runtime.whereis(f"{self.name}/{name}")

    def actors(self) -> list["ActorRef"]:
        return [ref for ref in self.runtime.actors() if ref.tenant == self.name]

    def __repr__(self) -> str:
        return f"<Tenant {self.name}>"
