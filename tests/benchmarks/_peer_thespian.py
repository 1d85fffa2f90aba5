"""thespian ``simpleSystemBase``: the in-process, single-threaded thespian system.

It is the fastest thespian base (the multiprocess bases put one OS process behind every actor),
so it is thespian's upper bound in one process. ``ActorSystem`` is a process-wide singleton,
which is one more reason every peer runs in its own subprocess; the system is shut down after.
Stages learn their next stage from a ``("next", address)`` message; the counter answers
``"count"`` with the number it has seen.
"""

from __future__ import annotations

import time

from thespian.actors import Actor, ActorSystem

from ._measure import Probe, Window

__all__ = ["pipeline", "idle"]


class _Stage(Actor):  # thespian's names (receiveMessage) stay inside this class
    def __init__(self) -> None:
        super().__init__()
        self.next = None

    def receiveMessage(self, message: object, sender: object) -> None:
        if isinstance(message, tuple) and message[0] == "next":
            self.next = message[1]
        elif self.next is not None:
            self.send(self.next, message)


class _Counter(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def receiveMessage(self, message: object, sender: object) -> None:
        if message == "count":
            self.send(sender, self.count)
        elif isinstance(message, int):
            self.count += 1


class _Idle(Actor):
    def receiveMessage(self, message: object, sender: object) -> None:
        pass


def pipeline(n: int) -> dict[str, object]:
    system = ActorSystem("simpleSystemBase")
    try:
        last = system.createActor(_Counter)
        middle = system.createActor(_Stage)
        first = system.createActor(_Stage)
        system.tell(middle, ("next", last))
        system.tell(first, ("next", middle))
        tell = system.tell
        deadline = time.monotonic() + 20
        with Window() as window:
            for i in range(n):
                tell(first, i)
            while (count := system.ask(last, "count", 5)) != n and time.monotonic() < deadline:
                pass
    finally:
        system.shutdown()
    if count != n:
        raise RuntimeError(f"counted {count}/{n}")
    return window.result(n)


def idle(probe: Probe) -> None:
    system = ActorSystem("simpleSystemBase")
    try:
        with probe.spawning():
            addresses = [system.createActor(_Idle) for _ in range(probe.count)]
    finally:
        system.shutdown()
    del addresses
