"""Durable queue throughput, end to end, against RabbitMQ on the same machine in the same run.

``run(repeats=3, quick=False) -> list[dict]`` returns harness rows (``group``, ``peer``,
``msg_per_s`` = records fully acked per second, also kept as ``ops_per_s``, ``runs``, ``note``);
``python -m tests.benchmarks.bench_queue`` prints them. The figure is records *fully acked per
second*: from the first put to the last ack, every record durably stored (acknowledged = on
disk), delivered, and its ack durably stored. Same record count, payload and codec everywhere.

- streamvisor, the natural loop of the README (group "durable queue, natural loop"): 1 producer
  thread ``put_many`` 500 records at a time; 1 consumer thread running, as written in the
  README, ``for d in q.get(max_items=100, timeout=1.0): handle(d.payload); d.ack()``. ``ack()``
  is buffered and rides with the next group commit (the next ``get``'s claim); the figure
  counts records whose acks are on disk (a final ``flush()`` is inside the timing).
- RabbitMQ, its natural loop: the same producer shape (a publisher with confirms, window 1,000,
  persistent messages), 1 consumer ``basic_consume`` with prefetch 100 acking every message on
  its own (``basic_ack(tag)``), as its tutorial writes it.
- streamvisor, batched: 2 producer threads ``put_many`` 500 records at a time; 1 consumer
  thread ``get(max_items=1000)`` + ``ack_many``. Group commit gathers them into shared fsyncs.
- streamvisor, one at a time: 16 producer threads ``put`` single records; 4 consumer threads
  ``get(100)`` and ``Delivery.ack()`` each: what group commit alone does for naive callers.
- streamvisor on PostgreSQL (``DurableQueue.postgres``, 127.0.0.1:5432, database ``test``, the
  server's default ``synchronous_commit=on``): the natural, batched and one-at-a-time loops
  again, in a fresh schema dropped afterwards. If the server is unreachable its rows carry the
  reason in ``note``.
- RabbitMQ (127.0.0.1:5672, guest/guest) via pika: a durable queue, persistent messages
  (delivery_mode=2), publisher confirms; 2 publishers on ``SelectConnection`` keeping up to 1,000
  unconfirmed messages each (the fastest pika offers), 1 consumer with manual acks (prefetch
  1,000, ``multiple=True`` every 500). Also the ``BlockingConnection`` + ``confirm_delivery()``
  variant, which waits for each confirm (fewer records: it is slow).

If RabbitMQ is unreachable its rows carry ``ops_per_s: None`` and the reason in ``note``.
"""

from __future__ import annotations

import collections
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from typing import Any, Callable

from actors import codec
from actors.queue import DurableQueue

__all__ = ["run"]

RECORDS = 20_000      # the harness gives this whole module 90 s: rates do not depend on N
RABBIT_NATURAL = 5_000  # RabbitMQ acking one message at a time runs at ~1-2k/s here
HOST, PORT = "127.0.0.1", 5672


def _payload(i: int) -> dict[str, Any]:
    return {"device": f"dev-{i % 1000:04d}", "seq": i, "value": 21.5 + i % 7, "unit": "C",
            "ts": 1_700_000_000.0 + i}


def _timed(body: Callable[[], int]) -> float:
    started = time.perf_counter()
    done = body()
    return done / (time.perf_counter() - started)


PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _open(postgres: bool) -> tuple[DurableQueue, str, str]:
    """A fresh queue ``bench``: in a new temporary directory, or on PostgreSQL in a new
    schema; returns it, the directory and the schema (for ``_close``)."""
    tmp = tempfile.mkdtemp(prefix="bench-queue-")
    schema = f"svbench_{uuid.uuid4().hex[:8]}"
    q = (DurableQueue.postgres(PG_DSN, "bench", schema=schema) if postgres
         else DurableQueue(os.path.join(tmp, "bench.db"), "bench"))
    return q, tmp, schema


def _close(q: DurableQueue, tmp: str, schema: str | None) -> None:
    """Close ``q`` and remove its directory and PostgreSQL schema (when given)."""
    q.close()
    shutil.rmtree(tmp, ignore_errors=True)
    if schema is not None:
        from actors.queue._pg import drop_tables
        drop_tables(PG_DSN, schema=schema)


def _run_threads(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _natural(records: int, max_items: int = 100, postgres: bool = False) -> float:
    """The README loop: one producer ``put_many(500)``, one consumer ``get`` + ``d.ack()``."""
    q, tmp, schema = _open(postgres)
    got = [0]

    def produce() -> None:
        for start in range(0, records, 500):
            q.put_many([_payload(i) for i in range(start, min(start + 500, records))])

    def handle(payload: dict[str, Any]) -> None:
        if payload["value"] > 1e9:  # touch the payload, as any handler would
            raise ValueError(payload)

    def consume() -> None:
        while got[0] < records:
            for d in q.get(max_items=max_items, timeout=1.0):
                handle(d.payload)
                d.ack()
                got[0] += 1
        q.flush()  # every ack on disk before the clock stops

    def body() -> int:
        _run_threads([threading.Thread(target=produce), threading.Thread(target=consume)])
        return got[0]

    try:
        rate = _timed(body)
        assert q.stats()["acked"] == records
        return rate
    finally:
        _close(q, tmp, schema if postgres else None)


def _streamvisor(records: int, *, batched: bool, postgres: bool = False) -> float:
    q, tmp, schema = _open(postgres)
    producers, consumers = (2, 1) if batched else (16, 4)
    share = records // producers
    got = [0]
    lock = threading.Lock()

    def produce(k: int) -> None:
        lo, hi = k * share, (k + 1) * share
        if batched:
            for start in range(lo, hi, 500):
                q.put_many([_payload(i) for i in range(start, min(start + 500, hi))])
        else:
            for i in range(lo, hi):
                q.put(_payload(i))

    def consume() -> None:
        while got[0] < share * producers:
            batch = q.get(max_items=1000 if batched else 100, timeout=0.2)
            if batched:
                q.ack_many(batch)
            else:
                for d in batch:
                    d.ack()
            with lock:
                got[0] += len(batch)

    def body() -> int:
        _run_threads([threading.Thread(target=produce, args=(k,)) for k in range(producers)]
                     + [threading.Thread(target=consume) for _ in range(consumers)])
        return got[0]

    try:
        rate = _timed(body)
        q.flush()  # one-at-a-time acks are buffered: count them once they are durable
        assert q.stats()["acked"] == share * producers
        return rate
    finally:
        _close(q, tmp, schema if postgres else None)


# ------------------------------------------------------------------ RabbitMQ


def _rabbit_params() -> Any:
    import pika

    credentials = pika.PlainCredentials("guest", "guest")
    return pika.ConnectionParameters(HOST, PORT, credentials=credentials, connection_attempts=1,
                                     socket_timeout=5)


class _AsyncPublisher:
    """Publishes ``n`` persistent messages with confirms, ``window`` unconfirmed at most."""

    def __init__(self, queue: str, n: int, offset: int, window: int = 1000) -> None:
        import pika

        self.queue, self.n, self.offset, self.window = queue, n, offset, window
        self.sent = self.confirmed = self.nacked = 0
        self.unconfirmed: collections.deque[int] = collections.deque()
        self.props = pika.BasicProperties(delivery_mode=2)
        self.conn = pika.SelectConnection(_rabbit_params(), on_open_callback=self._opened,
                                          on_open_error_callback=self._failed,
                                          on_close_callback=lambda c, e: c.ioloop.stop())

    def _failed(self, conn: Any, error: Any) -> None:
        self.error = error
        conn.ioloop.stop()

    def _opened(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._channel)

    def _channel(self, channel: Any) -> None:
        self.channel = channel
        channel.confirm_delivery(self._confirmed)
        self._pump()

    def _pump(self) -> None:
        while self.sent < self.n and len(self.unconfirmed) < self.window:
            body = codec.encode(_payload(self.offset + self.sent))
            self.channel.basic_publish("", self.queue, body, self.props)
            self.sent += 1
            self.unconfirmed.append(self.sent)

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        if method.NAME == "Basic.Nack":
            self.nacked += 1
        if method.multiple:
            while self.unconfirmed and self.unconfirmed[0] <= method.delivery_tag:
                self.unconfirmed.popleft()
                self.confirmed += 1
        else:
            self.unconfirmed.remove(method.delivery_tag)
            self.confirmed += 1
        if self.confirmed >= self.n:
            self.conn.close()
        else:
            self._pump()

    def run(self) -> None:
        self.conn.ioloop.start()


def _rabbit(records: int, *, blocking: bool, natural: bool = False) -> float:
    import pika

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    admin = pika.BlockingConnection(_rabbit_params())
    channel = admin.channel()
    channel.queue_declare(queue, durable=True)
    got = [0]

    def publish_blocking(k: int, n: int) -> None:
        conn = pika.BlockingConnection(_rabbit_params())
        ch = conn.channel()
        ch.confirm_delivery()  # basic_publish now waits for the broker's confirm
        props = pika.BasicProperties(delivery_mode=2)
        for i in range(n):
            ch.basic_publish("", queue, codec.encode(_payload(k * n + i)), props)
        conn.close()

    def consume_natural() -> None:
        conn = pika.BlockingConnection(_rabbit_params())
        ch = conn.channel()
        ch.basic_qos(prefetch_count=100)

        def on_message(channel: Any, method: Any, _props: Any, body: bytes) -> None:
            payload = codec.decode(body)
            if payload["value"] > 1e9:
                raise ValueError(payload)
            channel.basic_ack(method.delivery_tag)
            got[0] += 1
            if got[0] >= records:
                channel.stop_consuming()

        ch.basic_consume(queue, on_message, auto_ack=False)
        ch.start_consuming()
        conn.close()

    def consume() -> None:
        conn = pika.BlockingConnection(_rabbit_params())
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1000)
        unacked = 0
        for method, _props, body in ch.consume(queue, auto_ack=False, inactivity_timeout=30):
            if method is None:
                break
            codec.decode(body)
            got[0] += 1
            unacked += 1
            if unacked >= 500 or got[0] >= records:
                ch.basic_ack(method.delivery_tag, multiple=True)
                unacked = 0
            if got[0] >= records:
                break
        ch.cancel()
        conn.close()

    def body() -> int:
        nproducers = 1 if natural else 2
        share = records // nproducers
        if blocking:
            producers = [threading.Thread(target=publish_blocking, args=(k, share))
                         for k in range(nproducers)]
        else:
            pubs = [_AsyncPublisher(queue, share, k * share) for k in range(nproducers)]
            producers = [threading.Thread(target=p.run) for p in pubs]
        _run_threads([*producers,
                      threading.Thread(target=consume_natural if natural else consume)])
        if not blocking:
            assert sum(p.confirmed for p in pubs) == records and not any(p.nacked for p in pubs)
        return got[0]

    try:
        return _timed(body)
    finally:
        channel.queue_delete(queue)
        admin.close()


# ------------------------------------------------------------------ report


GROUP = "durable queue, acked records/s"
NATURAL = "durable queue, natural loop (README), acked records/s"


def _row(name: str, note: str, measure: Callable[[], float], repeats: int,
         group: str = GROUP) -> dict[str, Any]:
    runs: list[float] = []
    try:
        for _ in range(repeats):
            runs.append(round(measure()))
    except Exception as exc:  # the benchmark boundary: pika's connection errors are not OSErrors
        return {"group": group, "peer": name, "name": name, "ops_per_s": None,
                "msg_per_s": None, "runs": runs,
                "note": f"{note}; unreachable or failed: {type(exc).__name__}: {exc}"}
    median = round(statistics.median(runs))
    return {"group": group, "peer": name, "name": name, "ops_per_s": median, "msg_per_s": median,
            "runs": runs, "note": note}


def run(repeats: int = 3, quick: bool = False, records: int = RECORDS) -> list[dict[str, Any]]:
    """Run every benchmark ``repeats`` times (at most 3: the module's time budget); the median
    is ``ops_per_s`` (records acked/s). ``quick``: a tenth of the records, one run."""
    repeats = 1 if quick else max(1, min(repeats, 3))
    if quick:
        records //= 10
    slow = max(1000, records // 10)
    rabbit_natural = max(500, RABBIT_NATURAL // (10 if quick else 1))
    natural = [
        _row("streamvisor DurableQueue natural loop: get(100), d.ack() each (buffered acks)",
             f"{records} records, 1 producer put_many(500), 1 consumer 'for d in "
             "q.get(max_items=100, timeout=1.0): handle(d.payload); d.ack()', flush() at the "
             "end; SQLite WAL, puts and the flush fsynced, claims and buffered acks written "
             "without an fsync (safe from kill -9)",
             lambda: _natural(records), repeats, NATURAL),
        _row("streamvisor DurableQueue.postgres natural loop: get(100), d.ack() each",
             f"{records} records, the same loop on PostgreSQL 127.0.0.1:5432 "
             "(synchronous_commit=on)",
             lambda: _natural(records, postgres=True), repeats, NATURAL),
        _row("RabbitMQ natural loop (pika basic_consume, basic_ack per message)",
             f"{rabbit_natural} records, durable queue, delivery_mode=2, 1 SelectConnection publisher "
             "with confirms (window 1000), 1 consumer prefetch 100, basic_ack each message",
             lambda: _rabbit(rabbit_natural, blocking=False, natural=True), repeats, NATURAL),
    ]
    natural[0]["reference"] = True
    rows = [
        _row("streamvisor DurableQueue put_many+get+ack_many (durable, group commit)",
             f"{records} records, 2 producers x put_many(500), 1 consumer get(1000)+ack_many, "
             "SQLite WAL synchronous=FULL",
             lambda: _streamvisor(records, batched=True), repeats),
        _row("streamvisor DurableQueue put+get+ack one at a time (durable, group commit)",
             f"{slow} records, 16 producer threads x put(), 4 consumer threads get(100)+ack() each",
             lambda: _streamvisor(slow, batched=False), repeats),
        _row("streamvisor DurableQueue.postgres put_many+get+ack_many (durable, group commit)",
             f"{records} records, same load as the SQLite row, PostgreSQL 127.0.0.1:5432 "
             "(synchronous_commit=on), SKIP LOCKED claims",
             lambda: _streamvisor(records, batched=True, postgres=True), repeats),
        _row("streamvisor DurableQueue.postgres put+get+ack one at a time (durable)",
             f"{slow} records, 16 producer threads x put(), 4 consumer threads get(100)+ack() "
             "each, PostgreSQL",
             lambda: _streamvisor(slow, batched=False, postgres=True), repeats),
        _row("RabbitMQ (pika async publisher confirms, window 1000, manual acks)",
             f"{records} records, durable queue, delivery_mode=2, 2 SelectConnection publishers, "
             "1 consumer prefetch 1000, ack multiple every 500",
             lambda: _rabbit(records, blocking=False), repeats),
        _row("RabbitMQ (pika BlockingConnection confirm_delivery, manual acks)",
             f"{slow} records, durable queue, delivery_mode=2, 2 publishers waiting for each "
             "confirm, 1 consumer prefetch 1000, ack multiple every 500",
             lambda: _rabbit(slow, blocking=True), repeats),
    ]
    rows[0]["reference"] = True  # the table's ratios are against the batched streamvisor row
    return natural + rows


def main() -> None:
    for row in run():
        rate = "unavailable" if row["ops_per_s"] is None else f"{row['ops_per_s']:>8,} records/s"
        print(f"{row['name']}\n    {rate}  runs={row['runs']}\n    {row['note']}")


if __name__ == "__main__":
    main()
