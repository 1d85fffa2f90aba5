"""Helper process for the queue tests (run with ``sys.executable``; PYTHONPATH = repo root).

``write PATH``: open the queue, print ``ready``, and from three threads put records forever
(bounded; ``write_queue``), printing each acknowledged id on its own line, flushed, only
after ``put`` returned.
The crash test SIGKILLs it at a random moment (sometimes before ``ready``, during start-up).

``consume PATH [LIMIT]``: print ``ready``, wait for a line on stdin, then lease records ten at a
time, print each delivered id and ack them, until the queue stays empty (or LIMIT are acked).

``poison PATH``: lease one record (visibility 0.1 s, max_deliveries 3, waiting up to 10 s for
one), print ``got <attempt>`` and wait to be killed, like a consumer that a poison record kills.

``settle PATH N flush|buffered``: put N records, lease them (visibility 0.2 s), print
``leased``, wait for a line on stdin, ``ack()`` each (buffered), then ``flush()`` and print
``flushed``, or print ``acked`` without flushing; then wait to be killed.
"""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path
from typing import Any


def _queue_class() -> Any:
    """``actors.queue.DurableQueue`` without running ``actors/__init__`` (the whole runtime and
    structlog, ~0.2 s of imports): the crash loop starts 200 processes and is about the queue."""
    if "actors" not in sys.modules:
        stub = types.ModuleType("actors")
        stub.__path__ = [str(Path(__file__).resolve().parents[1] / "actors")]
        sys.modules["actors"] = stub
    from actors.queue import DurableQueue

    return DurableQueue


def write(path: str) -> None:
    write_queue(_queue_class()(path, "crash"))


def write_queue(q: Any) -> None:
    """Print ``ready``, then put records from three threads (bounded), printing each id once
    ``put``/``put_many`` returned it; close the queue. Also ``_queue_contract_child write``."""
    print("ready", flush=True)
    out_lock = threading.Lock()

    def produce(k: int) -> None:
        for i in range(20_000):  # bounded: the parent kills us long before
            if i % 3 == 0:
                ids = q.put_many([{"k": k, "i": i, "j": j} for j in range(4)])
            else:
                ids = [q.put({"k": k, "i": i, "pad": "x" * (i % 200)})]
            with out_lock:
                sys.stdout.write("".join(f"{n}\n" for n in ids))
                sys.stdout.flush()

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.close()


def consume(path: str, limit: str = "0") -> None:
    left = int(limit) or -1
    with _queue_class()(path) as q:
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(100_000):  # bounded
            batch = q.get(max_items=min(10, left) if left > 0 else 10, timeout=0.2)
            if not batch:
                stats = q.stats()
                if stats["ready"] == stats["in_flight"] == stats["delayed"] == 0:
                    return
            print("\n".join(str(d.id) for d in batch), flush=True)
            assert all(q.ack_many(batch))
            left -= len(batch)
            if left == 0:
                return


def poison(path: str) -> None:
    q = _queue_class()(path, "crash", visibility_timeout=0.1, max_deliveries=3)
    (d,) = q.get(max_items=1, timeout=10.0)
    print(f"got {d.attempt}", flush=True)
    sys.stdin.readline()  # killed here


def settle(path: str, n: str, mode: str) -> None:
    q = _queue_class()(path, "crash", visibility_timeout=0.2)
    q.put_many(list(range(int(n))))
    batch = q.get(max_items=int(n))
    print("leased", flush=True)
    sys.stdin.readline()
    for d in batch:
        assert d.ack() is True
    if mode == "flush":
        q.flush()
        print("flushed", flush=True)
    else:
        print("acked", flush=True)
    sys.stdin.readline()  # killed here


if __name__ == "__main__":
    {"write": write, "consume": consume, "settle": settle, "poison": poison}[sys.argv[1]](*sys.argv[2:])
