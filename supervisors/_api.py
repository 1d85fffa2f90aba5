"""The management API: module functions that ``ask`` a supervisor (OTP's ``supervisor:*`` calls).

Each call blocks the caller until the supervisor answered (safe from any thread; from inside an
actor it blocks that actor's worker, like any ``ask``). A supervisor that does not exist raises
``ActorDead`` (OTP's ``noproc``); no answer within ``timeout`` seconds raises ``AskTimeout``.
Refusals raise ``SupervisorError`` with OTP's word as ``.reason``; a spec that does not fit the
supervisor raises ``ValueError``.

| call                         | answer                                   | refusals (``.reason``)  |
|------------------------------|------------------------------------------|-------------------------|
| ``which_children(sup)``      | ``[ChildInfo]`` in start order           | -                       |
| ``count_children(sup)``      | ``{"specs", "active", "supervisors",     | -                       |
|                              | "workers"}``                             |                         |
| ``start_child(sup, spec)``   | the new ``ActorRef`` (None if it ignored | ``already_started``,    |
|                              | its start)                               | ``already_present``,    |
|                              |                                          | ``start_failed``        |
| ``start_child(sup, *args)``  | SIMPLE_ONE_FOR_ONE: an instance with the | ``start_failed``        |
|                              | spec's args + ``args``                   |                         |
| ``terminate_child(sup, id)`` | None (idempotent); SIMPLE_ONE_FOR_ONE    | ``not_found``           |
|                              | takes the instance's ref                 |                         |
| ``restart_child(sup, id)``   | the new ``ActorRef`` (None if ignored)   | ``running``,            |
|                              |                                          | ``restarting``,         |
|                              |                                          | ``not_found``,          |
|                              |                                          | ``start_failed``        |
| ``delete_child(sup, id)``    | None                                     | ``running``,            |
|                              |                                          | ``restarting``,         |
|                              |                                          | ``not_found``           |
| ``child(sup, id)``           | a ``ChildHandle``                        | ``not_found``           |

``peek_children(sup)`` is the one call that does not ask: it reads the children the supervisor
published at the end of its last turn (see ``supervisors._board``), so reporting never waits
behind a busy supervisor.

SIMPLE_ONE_FOR_ONE instances have no ids: a call by id answers ``not_found`` (OTP says
``simple_one_for_one``, a word outside our contract's list).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from actors import ActorRef, lowlevel
from supervisors._board import Board
from supervisors._events import ChildInfo, SupervisorError
from supervisors._handle import ChildHandle

__all__ = ["DEFAULT_TIMEOUT", "CountChildren", "DeleteChild", "GetHandle", "Refusal", "Request",
           "ResetBackoff", "RestartChild", "StartChild", "TerminateChild", "WhichChildren",
           "child", "count_children", "delete_child", "peek_children", "reset_backoff",
           "restart_child", "start_child", "terminate_child", "which_children"]

DEFAULT_TIMEOUT = 60.0
"""Seconds a management call waits (OTP waits forever; a child's shutdown may take this long)."""


# -- the requests: one message type per call, matched in ``Supervisor.receive`` ----------------
@dataclass(frozen=True, slots=True)
class WhichChildren:
    pass


@dataclass(frozen=True, slots=True)
class CountChildren:
    pass


@dataclass(frozen=True, slots=True)
class StartChild:
    args: tuple[Any, ...]  # (spec,), or SIMPLE_ONE_FOR_ONE's extra arguments


@dataclass(frozen=True, slots=True)
class TerminateChild:
    target: Any  # a child id, or a SIMPLE_ONE_FOR_ONE instance's ref


@dataclass(frozen=True, slots=True)
class RestartChild:
    child_id: Any


@dataclass(frozen=True, slots=True)
class DeleteChild:
    child_id: Any


@dataclass(frozen=True, slots=True)
class GetHandle:
    child_id: Any


@dataclass(frozen=True, slots=True)
class ResetBackoff:
    child_id: Any


Request = (WhichChildren | CountChildren | StartChild | TerminateChild | RestartChild
           | DeleteChild | GetHandle | ResetBackoff)
"""What the management calls ask a supervisor."""


class Refusal(NamedTuple):
    """What the supervisor answers instead of raising in its own turn."""

    reason: str          # a SupervisorError reason, or "value_error"
    message: str
    ref: ActorRef | None = None
    error: Any = None

    def exception(self) -> Exception:
        if self.reason == "value_error":
            return ValueError(self.message)
        return SupervisorError(self.reason, self.message, ref=self.ref, error=self.error)


def _call(sup: ActorRef, request: Request, timeout: float) -> Any:
    if not isinstance(sup, ActorRef):
        raise TypeError(f"expected a supervisor's ActorRef, got {type(sup).__name__}: {sup!r}")
    answer = sup.ask(request, timeout=timeout)
    if isinstance(answer, Refusal):
        raise answer.exception()
    return answer


def which_children(sup: ActorRef, *, timeout: float = DEFAULT_TIMEOUT) -> list[ChildInfo]:
    """``[ChildInfo(id, ref | "restarting" | None, restart, kind)]`` in start order."""
    children: list[ChildInfo] = _call(sup, WhichChildren(), timeout)
    return children


def peek_children(sup: ActorRef) -> list[ChildInfo]:
    """``which_children`` without a message: the children as the supervisor published them at
    the end of its last finished turn (in start order). Never waits, whatever the supervisor is
    doing; a supervisor that has exited shows its children as they were when it stopped
    (stopped). ``TypeError`` if ``sup`` is not a supervisor's ref."""
    if not isinstance(sup, ActorRef):
        raise TypeError(f"expected a supervisor's ActorRef, got {type(sup).__name__}: {sup!r}")
    board = getattr(lowlevel.actor_of(lowlevel.process_of(sup)), "_board", None)
    if not isinstance(board, Board):
        raise TypeError(f"{sup.path} is not a supervisor")
    children: list[ChildInfo] = board.read()
    return children


def count_children(sup: ActorRef, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, int]:
    """``{"specs", "active", "supervisors", "workers"}``; ``active`` counts live processes."""
    counts: dict[str, int] = _call(sup, CountChildren(), timeout)
    return counts


def start_child(sup: ActorRef, *args: Any, timeout: float = DEFAULT_TIMEOUT) -> ActorRef | None:
    """Add and start a child: ``start_child(sup, spec)``, or for SIMPLE_ONE_FOR_ONE
    ``start_child(sup, *extra_args)`` (appended to the spec's args). Returns its ref (None if it
    raised ``Ignore``). Raises ``SupervisorError`` (see the module table) or ``ValueError``."""
    ref: ActorRef | None = _call(sup, StartChild(args), timeout)
    return ref


def terminate_child(sup: ActorRef, child_id: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Stop a child with its shutdown rule and keep its spec (a temporary child's is dropped,
    a dynamic instance is removed). Ends a restart loop. Idempotent."""
    _call(sup, TerminateChild(child_id), timeout)


def restart_child(sup: ActorRef, child_id: str, *,
                  timeout: float = DEFAULT_TIMEOUT) -> ActorRef | None:
    """Start a stopped child again; returns the new ref (None if it raised ``Ignore``)."""
    ref: ActorRef | None = _call(sup, RestartChild(child_id), timeout)
    return ref


def delete_child(sup: ActorRef, child_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Forget a stopped child's spec."""
    _call(sup, DeleteChild(child_id), timeout)


def child(sup: ActorRef, child_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> ChildHandle:
    """A ``ChildHandle`` on the static child ``child_id``: its ``tell`` reaches the current
    incarnation and stashes while the child restarts (see ``supervisors._handle``)."""
    return ChildHandle(_call(sup, GetHandle(child_id), timeout))


def reset_backoff(sup: ActorRef, child_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Reset a child's backoff restart count to 0 (Akka's manual reset); returns the count it had.
    With a ``reset_after`` longer than the child will ever run, only this call resets it."""
    count: int = _call(sup, ResetBackoff(child_id), timeout)
    return count
