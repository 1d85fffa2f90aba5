"""streamvisor itself: the same 3-stage pipeline on ``actors.Runtime``.

Stage k holds stage k+1's ref (a constructor argument); the last stage counts and sets a
``threading.Event`` when it has seen N. The source is an actor that emits up to ``BUDGET``
messages per turn, like the raw loop's source stage: it handles one "more" per turn
(``turn_budget = 1``), so the stages run between its batches as in the raw loop (without it, one
turn would handle 128 "more"s and queue 16,384 messages at the first stage).
Every stage gets ``mailbox_size=N``: the other peers' queues are unbounded, and with the default
(10,000, ``Overflow.FAIL``) a source that outruns the pipeline gets ``MailboxFull``.
Idle actors are spawned actors with an empty ``receive``; the spawn time includes
``wait_idle`` so that every actor has actually started.
"""

from __future__ import annotations

import threading

from actors import Actor, Runtime

from ._measure import Probe, Window
from ._peer_raw import BUDGET

__all__ = ["pipeline", "idle"]


class _Stage(Actor):
    def __init__(self, next_ref: object) -> None:
        super().__init__()
        self.next = next_ref

    def receive(self, message: object) -> None:
        self.next.tell(message)  # type: ignore[attr-defined]  # set after construction


class _Counter(Actor):
    def __init__(self, n: int, done: threading.Event, progress: list[int]) -> None:
        super().__init__()
        self.n, self.done, self.progress = n, done, progress

    def receive(self, message: object) -> None:
        self.progress[0] += 1
        if self.progress[0] == self.n:
            self.done.set()


class _Idle(Actor):
    def receive(self, message: object) -> None:
        pass


def _statistics(rt: Runtime) -> str:
    try:
        return repr(rt.statistics())
    except Exception as exc:  # the row must not fail because statistics() is unfinished
        return f"statistics() failed: {exc!r}"


class _Source(Actor):
    """Emits up to ``BUDGET`` messages per turn, then asks for another turn: the same source as
    the raw loop's (a stage of the runtime, not a foreign thread competing for the GIL)."""

    turn_budget = 1

    def __init__(self, first: object, n: int) -> None:
        super().__init__()
        self.first, self.left, self.next = first, n, 0

    def receive(self, message: object) -> None:
        tell = self.first.tell  # type: ignore[attr-defined]  # set after construction
        start = self.next
        end = start + min(BUDGET, self.left)
        for i in range(start, end):
            tell(i)
        self.next = end
        self.left -= end - start
        if self.left > 0:
            self.ref.tell("more")


def pipeline(n: int, workers: int) -> dict[str, object]:
    """``workers=0``: the inline runtime (everything runs inside the first tell)."""
    done, progress = threading.Event(), [0]
    size = max(n, 1)
    with (Runtime(workers=workers) if workers else Runtime(inline=True)) as rt:
        last = rt.spawn(_Counter, n, done, progress, mailbox_size=size)
        first = rt.spawn(_Stage, rt.spawn(_Stage, last, mailbox_size=size), mailbox_size=size)
        source = rt.spawn(_Source, first, n)
        rt.wait_idle(10)
        with Window() as window:
            source.tell("go")
            finished = done.wait(timeout=20)
        statistics = _statistics(rt)
    if not finished:
        raise RuntimeError(f"counted {progress[0]}/{n} in 20 s")
    return window.result(n, statistics=statistics)


def idle(probe: Probe, workers: int) -> None:
    with Runtime(workers=workers) as rt:
        with probe.spawning():
            refs = [rt.spawn(_Idle) for _ in range(probe.count)]
            rt.wait_idle(60)
    del refs
