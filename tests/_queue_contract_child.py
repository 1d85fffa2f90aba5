"""Helper process for tests/test_queue_contract.py (run with ``sys.executable``; PYTHONPATH =
repo root). The store is ``STORE``: a SQLite file path, or ``postgresql://...#schema`` (the
fragment names the PostgreSQL schema of the test's tables).

``write STORE NAME``: open the queue, print ``ready``, then from three threads put records
(bounded), printing each id on its own line, flushed, only after ``put``/``put_many`` returned.
The test SIGKILLs it at a random moment.

``poison STORE NAME NOW``: lease one record on a clock stopped at NOW, print ``id attempt``
and wait to be killed.

``wait STORE NAME``: print ``ready``, then wait for one record (PostgreSQL: woken by NOTIFY;
it polls only every 300 s) and print its id.

``consume STORE NAME``: print ``ready``, wait for a line on stdin, then lease records ten at a
time, print each delivered id, ack them (waiting), until the queue stays empty.
"""

from __future__ import annotations

import sys
from typing import Any

from tests._queue_support import WallClock
from tests._queue_writer import write_queue


def open_store(store: str, name: str, **options: Any) -> Any:
    from actors.queue import DurableQueue

    if store.startswith("postgresql://"):
        dsn, _, schema = store.partition("#")
        return DurableQueue.postgres(dsn, name, schema=schema, **options)
    return DurableQueue(store, name, **options)


def write(store: str, name: str) -> None:
    write_queue(open_store(store, name))


def consume(store: str, name: str) -> None:
    with open_store(store, name, visibility_timeout=600.0) as q:
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(100_000):  # bounded
            batch = q.get(max_items=10, timeout=0.2)
            if not batch:
                stats = q.stats()
                if stats["ready"] == stats["in_flight"] == stats["delayed"] == 0:
                    return
                continue
            print("\n".join(str(d.id) for d in batch), flush=True)
            assert all(q.ack_many(batch))


def poison(store: str, name: str, now: str) -> None:
    """Lease one record on a wall clock stopped at ``now``, print its id and attempt, then
    wait to be killed (a consumer that a poison message crashes)."""
    q = open_store(store, name, clock=WallClock(float(now)), visibility_timeout=10.0,
                   max_deliveries=3)
    batch = q.get(max_items=1)
    print(" ".join(f"{d.id} {d.attempt}" for d in batch) or "none", flush=True)
    sys.stdin.readline()  # killed here


def wait(store: str, name: str) -> None:
    """Print ``ready`` once open, then wait up to 120 s for one record, polling only every
    300 s: only a wake-up from the server (LISTEN/NOTIFY) brings it early. Print its id."""
    with open_store(store, name, poll_interval=300.0) as q:
        print("ready", flush=True)
        batch = q.get(max_items=1, timeout=120.0)
        print(" ".join(str(d.id) for d in batch) or "none", flush=True)
        q.ack_many(batch)


if __name__ == "__main__":
    {"write": write, "consume": consume, "poison": poison, "wait": wait}[sys.argv[1]](*sys.argv[2:])
