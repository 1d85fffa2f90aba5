"""Values the supervision layer hands out: ``ChildInfo``, ``SupervisorError``, ``Ignore`` and the
supervision events published on ``runtime.bus`` (and logged through structlog).

| event              | ``ref`` / ``path``     | when                                                      |
|--------------------|------------------------|-----------------------------------------------------------|
| ``ChildStarted``   | the child              | a child's ``on_start`` returned (first start or restart)  |
| ``ChildExited``    | the child              | a child exited, on its own or terminated by its supervisor|
| ``ChildRestarted`` | the new incarnation    | the supervisor restarted a child (``restarts`` counts them)|
| ``SupervisorGaveUp``| the supervisor        | the restart intensity was exceeded: it exits ``"shutdown"``|

Every event carries ``supervisor`` (the supervisor's ref) and ``child_id`` (None for the
instances of a SIMPLE_ONE_FOR_ONE supervisor). The bus keeps only the newest undelivered event per
subscription: a subscriber that must see every event should keep up (or read the logs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from actors import ActorError, ActorRef, LifecycleEvent

__all__ = ["ChildExited", "ChildInfo", "ChildRestarted", "ChildStarted", "Ignore",
           "SupervisionEvent", "SupervisorError", "SupervisorGaveUp", "REASONS"]

REASONS = frozenset({"already_present", "already_started", "not_found", "running", "restarting",
                     "start_failed"})


class ChildInfo(NamedTuple):
    """One line of ``which_children``: ``ref`` is the live ``ActorRef``, ``"restarting"`` during a
    restart loop or backoff, or None when the child is not running (OTP's ``undefined``)."""

    id: str | None
    ref: ActorRef | str | None
    restart: Any  # Restart
    kind: str     # "worker" | "supervisor"


class SupervisorError(ActorError):
    """A management call was refused. ``reason`` is OTP's word: ``"already_present"``,
    ``"already_started"`` (``ref`` is the running actor), ``"not_found"``, ``"running"``,
    ``"restarting"`` or ``"start_failed"`` (``error`` is why: the exception or exit reason)."""

    def __init__(self, reason: str, message: str, *, ref: ActorRef | None = None,
                 error: Any = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown SupervisorError reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.ref = ref
        self.error = error


class Ignore(Exception):
    """Raise it from a child's ``__init__`` (or ``on_start``) to tell its supervisor not to start
    it, without an error (OTP's ``ignore``): a static child is kept with no ref, a temporary or
    dynamic child is forgotten. (Raised from ``on_start``, the runtime still logs the exit.)"""


@dataclass(frozen=True)
class SupervisionEvent(LifecycleEvent):
    """Base of the supervision events (subscribe to it to get them all on one slot)."""

    supervisor: ActorRef | None = None
    child_id: str | None = None


@dataclass(frozen=True)
class ChildStarted(SupervisionEvent):
    """A child's ``on_start`` returned; it now takes messages."""


@dataclass(frozen=True)
class ChildExited(SupervisionEvent):
    """A child exited with ``reason`` (``"shutdown"``/``"killed"`` when its supervisor stopped it)."""

    reason: Any = "normal"


@dataclass(frozen=True)
class ChildRestarted(SupervisionEvent):
    """The supervisor restarted a child; ``ref`` is the new incarnation, ``restarts`` the count."""

    restarts: int = 0


@dataclass(frozen=True)
class SupervisorGaveUp(SupervisionEvent):
    """More than ``intensity`` restarts within ``period`` seconds: the supervisor terminated its
    children and exits ``"shutdown"``. ``child_id``/``reason``: the exit that tipped it over."""

    reason: Any = None
    intensity: int = 0
    period: float = 0.0
