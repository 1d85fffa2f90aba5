"""The mailbox's vocabulary: an actor's states, the signal marker, the overflow policies and the
registry of messages that overflow never drops. The mailbox itself is part of the cell
(``actors._cell``: its docstring has the fast path, the lock rule and the overflow table).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ._choice import Choice
from ._messages import SYSTEM_MESSAGES

__all__ = ["Overflow", "STARTING", "RUNNING", "DEAD", "SIGNALLED", "register_undroppable"]

STARTING, RUNNING, DEAD = 0, 1, 2


class _Signalled:
    """The queue marker of a pending signal (never dropped, never delivered)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SIGNALLED"


SIGNALLED = _Signalled()


class Overflow(Choice):
    """What a full mailbox does with one more message (see the module table)."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    LATEST = "latest"
    FAIL = "fail"
    BLOCK = "block"


class _LockedQueue(deque[Any]):
    """The queue of a DROP_OLDEST / LATEST mailbox: the worker pops under the mailbox lock."""

    __slots__ = ("lock",)

    lock: threading.Lock

    def popleft(self) -> Any:
        with self.lock:
            return deque.popleft(self)


_LOSSY = (Overflow.DROP_OLDEST, Overflow.LATEST)


_UNDROPPABLE: set[type] = {*SYSTEM_MESSAGES, _Signalled}  # grows in place: importers share it


def register_undroppable(cls: type) -> None:
    """Mark an internal envelope type as a system message (never dropped by overflow)."""
    _UNDROPPABLE.add(cls)
