"""The supervisor's record of one child, and the small values its turns pass around."""

from __future__ import annotations

from typing import Any, NamedTuple

from actors import ActorRef
from supervisors._board import Board
from supervisors._handle import Slot
from supervisors._spec import ChildSpec

__all__ = ["IGNORED", "Child", "Failed", "TryAgain", "describe"]


class TryAgain(NamedTuple):
    """A restart attempt for child ``key``; stale unless the child's ``gen`` still matches."""

    key: Any
    gen: int
    counted: bool  # already added to the intensity window (backoff)


class Failed(NamedTuple):
    error: Any
    holder: ActorRef | None = None  # the actor outside the tree holding the child's name


IGNORED = "ignored"
"""What ``Supervisor._start`` returns for a child that raised ``Ignore``."""


class Child:
    """One child: a static spec (key = its id) or a dynamic instance (key = a number)."""

    __slots__ = ("key", "spec", "args", "_ref", "last_ref", "_restarting", "started_at",
                 "backoff_count", "restarts", "slot", "gen", "last_error", "board")

    def __init__(self, key: Any, spec: ChildSpec, args: tuple[Any, ...],
                 board: Board | None = None) -> None:
        self.key = key
        self.spec = spec
        self.args = args
        self.board = board  # marked on every change of ref or restarting (what ChildInfo shows)
        self._ref: ActorRef | None = None
        self.last_ref: ActorRef | None = None
        self._restarting = False
        self.started_at: float | None = None
        self.backoff_count = 0
        self.restarts = 0
        self.slot: Slot | None = None
        self.gen = 0
        self.last_error: Any = None

    @property
    def ref(self) -> ActorRef | None:
        return self._ref

    @ref.setter
    def ref(self, value: ActorRef | None) -> None:
        self._ref = value
        if self.board is not None:
            self.board.mark(self)

    @property
    def restarting(self) -> bool:
        return self._restarting

    @restarting.setter
    def restarting(self, value: bool) -> None:
        self._restarting = value
        if self.board is not None:
            self.board.mark(self)

    @property
    def id(self) -> str | None:
        return self.key if isinstance(self.key, str) else None

    @property
    def label(self) -> str:
        return self.key if isinstance(self.key, str) else f"#{self.key}"


def describe(reason: Any) -> str:
    """An exit reason for a log line: strings as they are, anything else as its repr."""
    return reason if isinstance(reason, str) else repr(reason)
