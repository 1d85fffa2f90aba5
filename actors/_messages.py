"""System messages an actor can receive: ``Exit`` (trapped exit signal) and ``Down`` (monitor).

Both are immutable values, delivered in arrival order with the ordinary messages, and never
dropped by a mailbox's overflow policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ._actor import ActorRef

__all__ = ["Exit", "Down", "Monitor", "SYSTEM_MESSAGES"]


class Monitor(NamedTuple):
    """The handle ``monitor()`` returns; ``Down.monitor`` carries it back."""

    id: int
    target: "ActorRef"


class Exit(NamedTuple):
    """A linked actor exited with ``reason``; received only by actors with ``trap_exits``."""

    ref: "ActorRef"
    reason: Any


class Down(NamedTuple):
    """A monitored actor exited with ``reason`` (``"noproc"`` if it was already dead)."""

    ref: "ActorRef"
    reason: Any
    monitor: Monitor


SYSTEM_MESSAGES = (Exit, Down)
