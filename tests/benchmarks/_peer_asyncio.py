"""asyncio: three tasks joined by unbounded ``asyncio.Queue`` mailboxes, one event loop.

The source is a fourth task that yields (``await asyncio.sleep(0)``) every ``BUDGET`` messages,
like the raw loop's source; a stage that finds mail in its queue keeps going without yielding,
which is how asyncio schedules. Idle actors are tasks parked in ``await queue.get()``.
"""

from __future__ import annotations

import asyncio

from ._measure import Probe, Window
from ._peer_raw import BUDGET

__all__ = ["pipeline", "idle"]


async def _forward(inbox: asyncio.Queue[object], outbox: asyncio.Queue[object]) -> None:
    get, put = inbox.get, outbox.put_nowait
    while True:
        put(await get())


async def _count(inbox: asyncio.Queue[object], n: int, done: asyncio.Event) -> None:
    get = inbox.get
    for _ in range(n):
        await get()
    done.set()


async def _source(first: asyncio.Queue[object], n: int) -> None:
    put = first.put_nowait
    for i in range(n):
        put(i)
        if i % BUDGET == BUDGET - 1:
            await asyncio.sleep(0)


async def _pipeline(n: int) -> dict[str, object]:
    q1, q2, q3 = asyncio.Queue(), asyncio.Queue(), asyncio.Queue()
    done = asyncio.Event()
    stages = [asyncio.create_task(_forward(q1, q2)), asyncio.create_task(_forward(q2, q3)),
              asyncio.create_task(_count(q3, n, done))]
    await asyncio.sleep(0)  # every stage is parked in get() before the clock starts
    with Window() as window:
        source = asyncio.create_task(_source(q1, n))
        await asyncio.wait_for(done.wait(), timeout=20)
    await source
    for task in stages:
        task.cancel()
    await asyncio.gather(*stages, return_exceptions=True)
    return window.result(n)


def pipeline(n: int) -> dict[str, object]:
    return asyncio.run(_pipeline(n))


async def _idle(probe: Probe) -> None:
    async def actor(mailbox: asyncio.Queue[object]) -> None:
        await mailbox.get()

    with probe.spawning():
        mailboxes: list[asyncio.Queue[object]] = [asyncio.Queue() for _ in range(probe.count)]
        tasks = [asyncio.create_task(actor(m)) for m in mailboxes]
        await asyncio.sleep(0)  # each task runs up to its get()
    for mailbox in mailboxes:
        mailbox.put_nowait(None)
    await asyncio.gather(*tasks)


def idle(probe: Probe) -> None:
    asyncio.run(_idle(probe))
