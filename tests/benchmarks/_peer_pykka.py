"""pykka: ``ThreadingActor`` stages (one thread each) linked by ``ActorRef.tell``.

Idle actors are started ``ThreadingActor`` instances, i.e. one OS thread each, so their count is
capped like the threads peer.
"""

from __future__ import annotations

import threading

import pykka

from ._measure import Probe, Window

__all__ = ["pipeline", "idle"]


class _Stage(pykka.ThreadingActor):
    def __init__(self, next_ref: pykka.ActorRef[object]) -> None:
        super().__init__()
        self.next = next_ref

    def on_receive(self, message: object) -> None:
        self.next.tell(message)


class _Counter(pykka.ThreadingActor):
    def __init__(self, n: int, done: threading.Event) -> None:
        super().__init__()
        self.n, self.count, self.done = n, 0, done

    def on_receive(self, message: object) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


class _Idle(pykka.ThreadingActor):
    pass


def pipeline(n: int) -> dict[str, object]:
    done = threading.Event()
    try:
        first = _Stage.start(_Stage.start(_Counter.start(n, done)))
        tell = first.tell
        with Window() as window:
            for i in range(n):
                tell(i)
            finished = done.wait(timeout=20)
    finally:
        pykka.ActorRegistry.stop_all()
    if not finished:
        raise RuntimeError(f"pipeline did not finish {n} messages in 20 s")
    return window.result(n)


def idle(probe: Probe) -> None:
    try:
        with probe.spawning():
            refs = [_Idle.start() for _ in range(probe.count)]
    finally:
        pykka.ActorRegistry.stop_all()
    del refs
