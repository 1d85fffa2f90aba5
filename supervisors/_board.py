"""A supervisor's published view of its children: what reporting reads without asking.

``which_children`` asks the supervisor, so it waits behind whatever the supervisor is doing (a
child's slow start, a long shutdown, a full mailbox). Reporting (the progress line, ``/status.json``)
must never wait on a busy actor, so every supervisor also keeps a ``Board``: each change to a
child (started, exited, restarting, added, removed) marks that child, and at the end of each of
the supervisor's turns the marked children's ``ChildInfo`` are written into the board under its
lock. ``supervisors.peek_children(sup)`` copies the board under that lock: the children as they
were at the end of the supervisor's last finished turn, in start order, at O(children) cost and
without a message. Publishing costs O(changed children) per turn, so a supervisor with many
dynamic children starts them in linear time.

Lock rule: ``_lock`` guards ``_infos`` and ``version``; only ``publish`` (the supervisor's own
thread, at the end of a turn) writes them, and nothing else runs under it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from supervisors._events import ChildInfo

if TYPE_CHECKING:
    from supervisors._child import Child

__all__ = ["Board", "info_of"]


def info_of(c: "Child") -> ChildInfo:
    """``which_children``'s line for ``c``."""
    ref = c.ref if c.ref is not None else ("restarting" if c.restarting else None)
    return ChildInfo(c.id, ref, c.spec.restart, str(c.spec.kind))


class Board:
    """See the module docstring. ``mark`` and ``publish`` run in the supervisor's turn only."""

    __slots__ = ("_lock", "_infos", "_dirty", "version")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._infos: dict[Any, ChildInfo] = {}
        self._dirty: dict[Any, Child] = {}
        self.version = 0  # publications so far (a reader can tell whether anything changed)

    def mark(self, c: "Child") -> None:
        self._dirty[c.key] = c

    def publish(self, children: dict[Any, "Child"]) -> None:
        """Write the marked children (those no longer in ``children`` are removed). A new key
        goes last, which is start order: children are only ever appended to ``children``."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        updates = [(key, info_of(c) if children.get(key) is c else None)
                   for key, c in dirty.items()]
        with self._lock:
            for key, info in updates:
                if info is None:
                    self._infos.pop(key, None)
                else:
                    self._infos[key] = info
            self.version += 1

    def read(self) -> list[ChildInfo]:
        with self._lock:
            return list(self._infos.values())
