"""The raw CPython limit: an actor loop with nothing but deques, one thread, no locks.

Each stage is a plain object with a ``collections.deque`` mailbox; a ``deque`` run queue holds
the stages that have mail; a stage runs for at most ``BUDGET`` messages per turn (streamvisor's
default budget) and then goes to the back of the run queue. The source is a stage too: each turn
it emits up to ``BUDGET`` messages. Whatever a thread-safe runtime adds costs relative to this.
"""

from __future__ import annotations

from collections import deque

from ._measure import Probe, Window

__all__ = ["BUDGET", "pipeline", "idle"]

BUDGET = 128


class _Loop:
    def __init__(self) -> None:
        self.run_queue: deque[_Stage] = deque()

    def run(self) -> None:
        run_queue = self.run_queue
        while run_queue:
            run_queue.popleft().turn()


class _Stage:
    __slots__ = ("loop", "mailbox", "scheduled", "next")

    def __init__(self, loop: _Loop, next_stage: "_Stage | None") -> None:
        self.loop = loop
        self.mailbox: deque[object] = deque()
        self.scheduled = False
        self.next = next_stage

    def tell(self, message: object) -> None:
        self.mailbox.append(message)
        if not self.scheduled:
            self.scheduled = True
            self.loop.run_queue.append(self)

    def turn(self) -> None:
        mailbox, receive = self.mailbox, self.receive
        for _ in range(min(BUDGET, len(mailbox))):
            receive(mailbox.popleft())
        if mailbox:
            self.loop.run_queue.append(self)
        else:
            self.scheduled = False

    def receive(self, message: object) -> None:
        self.next.tell(message)  # type: ignore[union-attr]  # set after construction


class _Counter(_Stage):
    __slots__ = ("n", "count", "done")

    def __init__(self, loop: _Loop, n: int) -> None:
        super().__init__(loop, None)
        self.n, self.count, self.done = n, 0, False

    def receive(self, message: object) -> None:
        self.count += 1
        if self.count == self.n:
            self.done = True


class _Source(_Stage):
    __slots__ = ("left",)

    def __init__(self, loop: _Loop, first: _Stage, n: int) -> None:
        super().__init__(loop, first)
        self.left = n

    def turn(self) -> None:
        first = self.next
        for i in range(min(BUDGET, self.left)):
            first.tell(i)  # type: ignore[union-attr]  # set after construction
        self.left -= BUDGET
        if self.left > 0:
            self.loop.run_queue.append(self)


def pipeline(n: int) -> dict[str, object]:
    loop = _Loop()
    last = _Counter(loop, n)
    first = _Stage(loop, _Stage(loop, last))
    source = _Source(loop, first, n)
    with Window() as window:
        loop.run_queue.append(source)
        loop.run()
    if not last.done:
        raise RuntimeError(f"counted {last.count}/{n}")
    return window.result(n)


def idle(probe: Probe) -> None:
    loop = _Loop()
    with probe.spawning():
        actors = [_Stage(loop, None) for _ in range(probe.count)]
    del actors
