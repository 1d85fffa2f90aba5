r"""A queue-fed windowed graph with checkpoints: kill it (-9) at any moment, start it again, and
its per-device minute sums are still exact - no reading counted twice or missed.

    python examples/checkpoint_minutes.py DIR [--every 0.2]

    queue (DIR/queue.db) -> payload -> minute (Window: Tumbling 60 s per device) -> minutes
                                                            (table minute_sums in DIR/minutes.db)

Checkpoints go to DIR/checkpoints.db (``--state postgresql://...``: PostgreSQL). The window
sums integer temperatures (tenths of a degree), so a reading counted twice shows. Its lateness is
huge: a reading redelivered after a crash is older than what the restarted process has seen
since, and must still find its minute open; windows close when a reading with a far later ``ts``
arrives (the test's final "flush" readings). The sink upserts, so a minute emitted again after a
crash overwrites its row. ``tests/test_checkpoint_kill9.py`` kills this process 50 times.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import threading
from contextlib import closing
from typing import Any

from actors import Runtime
from actors.queue import DurableQueue, QueueSource
from actors.stream import (Checkpoints, Graph, Node, PostgresCheckpoints, Sink,
                           SqliteCheckpoints, Tumbling, Window)

VISIBILITY = 1.0
FAR = 1e7  # lateness and the flush readings' ts


class Payload(Node):
    """``QueueItem`` -> its payload: the window keeps plain dicts (its snapshot is encodable)."""

    def process_batch(self, items: Any, port: str) -> None:
        self.emit_many([item.payload for item in items])


class MinuteSums(Sink):
    """Upserts (device, start, sum, n) into ``minute_sums``."""

    def __init__(self, db: str) -> None:
        self.db = db

    def on_start(self) -> None:
        self.conn = open_minutes(self.db)

    def process_batch(self, results: Any, port: str) -> None:
        rows = [(r.key, r.start, r.value[0], r.value[1]) for r in results]
        with closing(self.conn.cursor()) as cur:
            cur.execute("BEGIN")
            cur.executemany("INSERT INTO minute_sums (device, start, total, n) VALUES "
                            "(?, ?, ?, ?) ON CONFLICT (device, start) DO UPDATE SET "
                            "total = excluded.total, n = excluded.n", rows)
            cur.execute("COMMIT")

    def on_stop(self, reason: Any) -> None:
        self.conn.close()


def open_minutes(db: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE IF NOT EXISTS minute_sums (device TEXT NOT NULL, start REAL NOT "
                 "NULL, total INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (device, start))")
    return conn


def open_queue(data_dir: str) -> DurableQueue:
    return DurableQueue(os.path.join(data_dir, "queue.db"), "readings",
                        visibility_timeout=VISIBILITY, max_deliveries=100_000)


def _sum(acc: tuple[int, int], r: dict[str, Any]) -> tuple[int, int]:
    return acc[0] + r["temp"], acc[1] + 1


def build(queue: DurableQueue, minutes_db: str, checkpoint: Checkpoints | None) -> Graph:
    g = Graph("minute-sums", checkpoint=checkpoint)
    g.add("queue", QueueSource, queue)
    g.add("payload", Payload)
    g.add("minute", Window, key=lambda r: r["device"], time=lambda r: r["ts"],
          windows=Tumbling(60.0), lateness=FAR, init=lambda: (0, 0), fold=_sum,
          result=lambda acc: acc)
    g.add("minutes", MinuteSums, minutes_db)
    g.pipe("queue", "payload", "minute", "minutes")
    return g


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--every", type=float, default=0.2, help="seconds between checkpoints")
    parser.add_argument("--state", default=None, help="postgresql://... for the checkpoints")
    args = parser.parse_args(argv)
    store: Any = (PostgresCheckpoints(args.state) if args.state
                  else SqliteCheckpoints(os.path.join(args.data_dir, "checkpoints.db")))
    queue = open_queue(args.data_dir)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with Runtime(workers=2) as rt:
        inst = build(queue, os.path.join(args.data_dir, "minutes.db"),
                     Checkpoints(store, every=args.every)).instantiate(rt, "demo")
        print("ready", flush=True)
        while not done.wait(0.05):
            inst.wake("queue")
        inst.stop()
    queue.close()
    store.close()


if __name__ == "__main__":
    main()
