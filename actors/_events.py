"""Lifecycle events, published on ``runtime.bus`` and logged through structlog.

Subscribe to a class to get it and its subclasses: ``rt.bus.subscribe(ActorExited, ref)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._actor import ActorRef

__all__ = ["Event", "LifecycleEvent", "ActorStarted", "ActorExited", "MessageDropped", "HandlerOverrun"]


@dataclass(frozen=True)
class Event:
    """Base class of everything the runtime publishes on the bus."""


@dataclass(frozen=True)
class LifecycleEvent(Event):
    ref: "ActorRef"
    path: str
    tenant: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class ActorStarted(LifecycleEvent):
    """``on_start`` returned; the actor now takes messages."""


@dataclass(frozen=True)
class ActorExited(LifecycleEvent):
    """The actor exited; ``reason`` is ``"normal"``, ``"shutdown"``, ``"killed"`` or an exception."""

    reason: Any = "normal"
    lost: int = 0  # messages left unprocessed in its mailbox


@dataclass(frozen=True)
class MessageDropped(LifecycleEvent):
    """The mailbox's overflow policy dropped messages; ``total`` is exact, ``since_last`` too.

    Reported at most once per second per actor (and at exit); the counters never skip a drop.
    """

    policy: str = ""
    total: int = 0
    since_last: int = 0


@dataclass(frozen=True)
class HandlerOverrun(LifecycleEvent):
    """A handler has been running longer than the scheduler's time slice (reported while it runs)."""

    seconds: float = 0.0
    time_slice: float = 0.0
