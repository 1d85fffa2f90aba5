"""Threads: three OS threads joined by ``queue.SimpleQueue`` mailboxes; the main thread is the
source.

This is what a thread per actor costs under the GIL. Idle actors are threads blocked in
``SimpleQueue.get()``; their count is capped (see ``_peers.py``) because each is an OS thread.
"""

from __future__ import annotations

import queue
import threading

from ._measure import Probe, Window

__all__ = ["pipeline", "idle"]

_STOP = object()


def _forward(inbox: queue.SimpleQueue[object], outbox: queue.SimpleQueue[object]) -> None:
    get, put = inbox.get, outbox.put
    while (message := get()) is not _STOP:
        put(message)
    put(_STOP)


def _count(inbox: queue.SimpleQueue[object], n: int, done: threading.Event) -> None:
    get, count = inbox.get, 0
    while get() is not _STOP:
        count += 1
        if count == n:
            done.set()


def pipeline(n: int) -> dict[str, object]:
    q1: queue.SimpleQueue[object] = queue.SimpleQueue()
    q2: queue.SimpleQueue[object] = queue.SimpleQueue()
    q3: queue.SimpleQueue[object] = queue.SimpleQueue()
    done = threading.Event()
    threads = [threading.Thread(target=_forward, args=(q1, q2), daemon=True),
               threading.Thread(target=_forward, args=(q2, q3), daemon=True),
               threading.Thread(target=_count, args=(q3, n, done), daemon=True)]
    for thread in threads:
        thread.start()
    put = q1.put
    with Window() as window:
        for i in range(n):
            put(i)
        finished = done.wait(timeout=20)
    put(_STOP)
    for thread in threads:
        thread.join(timeout=10)
    if not finished:
        raise RuntimeError(f"pipeline did not finish {n} messages in 20 s")
    return window.result(n)


def idle(probe: Probe) -> None:
    with probe.spawning():
        mailboxes: list[queue.SimpleQueue[object]] = [
            queue.SimpleQueue() for _ in range(probe.count)]
        threads = [threading.Thread(target=m.get, daemon=True) for m in mailboxes]
        for thread in threads:
            thread.start()
    for mailbox in mailboxes:
        mailbox.put(None)
    for thread in threads:
        thread.join(timeout=10)
