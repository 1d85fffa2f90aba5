"""Pure supervision decisions: decide here, act in the Supervisor actor.

Nothing here has threads, clocks or actors; every function maps values to values and is tested with
tables. The Supervisor actor asks, in this order, when a child exits on its own:

1. ``exit_action`` (OTP ``do_restart``): RESTART, KEEP the spec without a ref, REMOVE the spec, or
   AUTO_SHUTDOWN the supervisor.
2. On RESTART, ``add_restart`` (OTP ``add_restart/1``): may it restart, or has the intensity been
   exceeded (terminate the children in reverse start order and exit ``"shutdown"``)?
3. ``plan_restart``: which children to terminate (reverse start order), which to start (start
   order). If a start fails, the supervisor counts another restart and plans again from the child
   that failed to start (ONE_FOR_ALL: the whole group again; REST_FOR_ONE: from that child on).

Exit reasons are values: ``"normal"``, ``"shutdown"``, ``("shutdown", term)``, ``"killed"``, any other
string, or the exception that ended the child. ``"normal"``, ``"shutdown"`` and ``("shutdown", term)``
are the normal ones.

Which restart type restarts after which reason: the table in ``supervisors._supervisor``
(``should_restart`` is that table as code). What ``plan_restart`` answers, for child b of a, b, c:

| Strategy           | failed   | terminate (in this order) | restart (in this order) |
|--------------------|----------|---------------------------|-------------------------|
| ONE_FOR_ONE        | b of abc | -                         | b                       |
| ONE_FOR_ALL        | b of abc | c, a                      | a, b, c                 |
| REST_FOR_ONE       | b of abc | c                         | b, c                    |
| SIMPLE_ONE_FOR_ONE | b of abc | -                         | b                       |

Intensity: a restart at ``now`` is allowed if, counting it, at most ``intensity`` restart
timestamps ``t`` satisfy ``t >= now - period`` (a restart exactly ``period`` seconds old still counts).
OTP measures whole seconds (``erlang:monotonic_time(1)``); we keep the caller's float seconds with
the same inequality.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from supervisors._spec import AutoShutdown, Restart, Strategy

__all__ = [
    "ExitAction",
    "ExitReason",
    "IntensityWindow",
    "RestartPlan",
    "add_restart",
    "auto_shutdown_triggered",
    "exit_action",
    "is_normal_exit",
    "plan_restart",
    "should_restart",
]

ExitReason: TypeAlias = str | BaseException | tuple[str, object]
"""``"normal"``, ``"shutdown"``, ``("shutdown", term)``, ``"killed"``, another string, an exception."""


def is_normal_exit(reason: ExitReason) -> bool:
    """True for ``"normal"``, ``"shutdown"`` and ``("shutdown", term)`` (OTP's normal exits)."""
    match reason:
        case "normal" | "shutdown" | ("shutdown", _):
            return True
        case _:
            return False


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """Is a child of this restart type restarted after exiting with ``reason``? (OTP ``do_restart``)"""
    match restart, reason:
        case Restart.PERMANENT, _:
            return True
        case Restart.TRANSIENT, "normal" | "shutdown" | ("shutdown", _):
            return False
        case Restart.TRANSIENT, _:
            return True
        case Restart.TEMPORARY, _:
            return False
        case _:
            raise ValueError(f"restart must be a Restart, got {restart!r}")


def auto_shutdown_triggered(
    auto_shutdown: AutoShutdown, significant_exited: bool, remaining_significant: int
) -> bool:
    """Does this exit shut the supervisor down? (OTP ``do_auto_shutdown``)

    Ask only for a child that exited on its own and is not restarted: ``terminate_child``,
    group-restart victims and supervisor shutdown never trigger auto-shutdown.
    ``remaining_significant`` counts the *other* significant children still running or restarting.
    """
    if remaining_significant < 0:
        raise ValueError(f"remaining_significant must be >= 0, got {remaining_significant!r}")
    match auto_shutdown:
        case AutoShutdown.NEVER:
            return False
        case AutoShutdown.ANY_SIGNIFICANT:
            return significant_exited
        case AutoShutdown.ALL_SIGNIFICANT:
            return significant_exited and remaining_significant == 0
        case _:
            raise ValueError(f"auto_shutdown must be an AutoShutdown, got {auto_shutdown!r}")


class ExitAction(Enum):
    """What the supervisor does when a child exits on its own."""

    RESTART = "restart"
    """Count a restart (``add_restart``), then follow ``plan_restart``."""
    KEEP = "keep"
    """Not restarted; the static spec stays, with no ref (``restart_child`` can start it)."""
    REMOVE = "remove"
    """Not restarted; the spec is forgotten (temporary child, or any dynamic instance)."""
    AUTO_SHUTDOWN = "auto_shutdown"
    """Not restarted; the supervisor terminates its children and exits ``"shutdown"``."""


def exit_action(
    *,
    strategy: Strategy,
    auto_shutdown: AutoShutdown,
    restart: Restart,
    significant: bool,
    reason: ExitReason,
    remaining_significant: int,
) -> ExitAction:
    """Decide about a child that exited on its own with ``reason`` (OTP ``do_restart``).

    Not for children stopped by ``terminate_child`` or as victims of a group restart.
    """
    if should_restart(restart, reason):
        return ExitAction.RESTART
    if auto_shutdown_triggered(auto_shutdown, significant, remaining_significant):
        return ExitAction.AUTO_SHUTDOWN
    if restart is Restart.TEMPORARY or strategy is Strategy.SIMPLE_ONE_FOR_ONE:
        return ExitAction.REMOVE
    return ExitAction.KEEP


@dataclass(frozen=True)
class RestartPlan:
    """Which children to terminate, then which to start, for one restart.

    ``terminate`` is in reverse start order and never holds the failed child (it is dead already);
    the supervisor skips any that are not running. ``restart`` is in start order and also starts
    group members that were stopped by hand. ``remove`` lists the temporary victims among
    ``terminate``: they are not restarted and their specs are forgotten.
    """

    terminate: tuple[str, ...]
    restart: tuple[str, ...]
    remove: tuple[str, ...] = ()


def plan_restart(
    strategy: Strategy,
    order: Sequence[str],
    failed: str,
    *,
    temporary: Collection[str] = frozenset(),
) -> RestartPlan:
    """Plan the restart of ``failed`` among the children ``order`` (start order).

    ``temporary`` names the temporary children in ``order``. Raises ``ValueError`` if the ids are
    not unique, ``failed`` is not among them, or ``failed`` is temporary (it is never restarted).
    """
    if len(set(order)) != len(order):
        raise ValueError(f"order must not repeat a child id, got {list(order)!r}")
    if failed not in order:
        raise ValueError(f"failed child {failed!r} is not in order {list(order)!r}")
    if failed in temporary:
        raise ValueError(f"child {failed!r} is temporary and is never restarted")
    match strategy:
        case Strategy.ONE_FOR_ONE | Strategy.SIMPLE_ONE_FOR_ONE:
            group = [failed]
        case Strategy.ONE_FOR_ALL:
            group = list(order)
        case Strategy.REST_FOR_ONE:
            group = list(order[order.index(failed) :])
        case _:
            raise ValueError(f"strategy must be a Strategy, got {strategy!r}")
    victims = tuple(reversed([child for child in group if child != failed]))
    return RestartPlan(
        terminate=victims,
        restart=tuple(child for child in group if child not in temporary),
        remove=tuple(child for child in victims if child in temporary),
    )


def add_restart(
    restarts: tuple[float, ...], now: float, intensity: int, period: float
) -> tuple[bool, tuple[float, ...]]:
    """Record a restart at ``now`` (monotonic seconds); is it within the intensity? (OTP)

    ``restarts`` are the earlier timestamps, oldest first. Drops those older than ``period``
    (keeps ``t >= now - period``), appends ``now`` and allows the restart if the window then holds
    at most ``intensity`` timestamps. Returns ``(allowed, window)``; keep the window either way.
    """
    threshold = now - period
    window = tuple(t for t in restarts if t >= threshold) + (now,)
    return len(window) <= intensity, window


@dataclass(frozen=True)
class IntensityWindow:
    """The restart-intensity state of one supervisor: ``add_restart`` as an immutable value."""

    intensity: int = 1
    period: float = 5.0
    restarts: tuple[float, ...] = ()

    def add_restart(self, now: float) -> tuple[bool, IntensityWindow]:
        """Record a restart at ``now``; return whether it is allowed and the new window."""
        allowed, restarts = add_restart(self.restarts, now, self.intensity, self.period)
        return allowed, IntensityWindow(self.intensity, self.period, restarts)
