"""Durable at-least-once queue on SQLite (WAL, group commit), with retries, TTL and dead letters.

```python
from actors.queue import DurableQueue

with DurableQueue("ingest.db", "readings", max_deliveries=5, ttl=3600) as q:
    q.put({"device": "d1", "value": 21.5}, key="d1")      # returns once on disk
    for d in q.get(max_items=100, timeout=1.0):
        try:
            handle(d.payload)
        except ValueError as exc:
            d.reject(str(exc))         # poison: dead letter "error: <text>" at once
        else:
            d.ack()                    # buffered for the next group commit
    q.flush()                          # every buffered ack on disk
```

Tenants and many queues in one file (one connection and one commit thread per file in a
process, whatever the number of queues)::

    acme = DurableQueue("node.db", "readings", tenant="acme")
    stats_many("node.db")                      # {(tenant, name): counts}, one transaction
    export_tenant("node.db", "acme", "acme.db")
    delete_tenant("node.db", "acme")           # no byte of acme's left in node.db
    put_each([(acme, rows_a), (globex, rows_g)])  # many queues, one commit per file

The same queue on PostgreSQL, for consumers on several hosts (``_pg`` has the differences)::

    q = DurableQueue.postgres("postgresql://postgres@127.0.0.1:5432/test", "readings",
                              tenant="acme")
    q = open_queue(url_or_path, "readings")   # postgresql://, sqlite:/// or a file path

Semantics
- ``put``/``put_many`` return ids (unique per file, never reused) once the records are on disk;
  ``get`` leases records (``Delivery.attempt`` starts at 1); ``ack`` removes, ``nack(delay)``
  redelivers after ``delay`` seconds, ``reject(error)`` dead-letters. An unsettled delivery is
  delivered again after ``visibility_timeout``. The delivery that reaches ``max_deliveries`` and
  is nacked or times out is dead-lettered at once: reason ``"max_deliveries"``, or
  ``"error: <text>"`` when the nack carried an error text. A record past its TTL is never
  delivered; it goes to the dead letters with reason ``"expired"`` (checked by every ``get``,
  ``stats`` and ``dead_letters``). A record whose checksum or payload is damaged is dead-lettered
  as ``"error: corrupt record ..."`` / ``"error: undecodable payload ..."``.
- Every ``get`` leases its deliveries under a fresh random token. ``ack``/``nack``/``reject`` of
  a stale delivery (lease ran out and the record was delivered again, or it was dead-lettered)
  change nothing; a late ack whose record was not delivered again meanwhile still succeeds.
- ``ack()``, ``nack()`` and ``reject()`` are buffered: they return at once (True, or False if
  the delivery was already settled through this object) and ride with the file's next group
  commit - the next ``get``, put or any other call, or the committer thread about 10-20 ms
  later. A buffered settlement lost to a crash or a failed commit only means the record is
  delivered again (at-least-once); failures are logged and make the next ``flush()`` raise.
  ``wait=True`` blocks until on disk and returns False for a stale delivery; ``flush()`` waits
  for everything buffered so far; ``ack_many`` acks a batch in one transaction and waits.
- Time: TTL deadlines, nack delays and visibility timeouts are stored as wall-clock deadlines
  (``clock.time()``, default ``time.time``) so that they survive restarts and are shared by the
  processes using the file. This is the one documented exception to "windows use the monotonic
  clock" (RELIABILITY promise 6): a wall-clock jump forward expires TTLs and leases early
  (leases: an early redelivery, never a loss), a jump back delays them. ``get(timeout=)`` waits
  on the monotonic clock.

Durability and concurrency
- WAL with ``synchronous=FULL``. Every queue of a file in one process shares one engine
  (``_engine``: a connection and a committer thread). Concurrent calls (puts, claims, acks,
  nacks) are gathered into one transaction and one fsync; a call with no group running runs
  its group in its own thread. Each blocking call returns only after its group committed.
- Claims survive a process crash (kill -9), so attempt counts do (a poison message that kills
  its consumer still reaches ``max_deliveries``). Groups of only claims, reads and buffered
  settlements are written to the WAL without an fsync and become durable against power loss
  with the next fsynced commit (any put or waited call, or a checkpoint): a power cut can undo
  such a claim (the record comes back without that attempt counted), never a put.
- Several processes may share the file: ``BEGIN IMMEDIATE`` serialises writers (never the same
  delivery twice), ``busy_timeout`` bounds the wait; a ``get`` waiting for work polls every
  ``poll_interval`` for records put by other processes.
- Opening always succeeds on a damaged file: it is moved to ``<path>.corrupt-<timestamp>``, the
  valid records (CRC32 over id, queue, key and payload) are salvaged into a fresh file, through
  SQLite and, where SQLite cannot read, from the raw pages, and ``queue.recovery_report`` says
  what happened (also logged). Damage met later, at run time, is repaired the same way and the
  operation retried; a repair voids open leases (their records are delivered again, settling
  the old deliveries returns False) and the report is updated.
- Only real damage is moved aside: a bad header, SQLITE_CORRUPT / SQLITE_NOTADB, a failed
  integrity check (``_faults`` decides, in one place). A passing fault - the file busy or locked
  by another connection beyond ``busy_timeout``, a full disk, an I/O error, permission denied -
  raises ``QueueUnavailable`` (an ``OSError`` naming the file and the cause; ``QueueFull`` for a
  full disk) from the call that met it, at open or later, and never touches the file; nothing
  was acknowledged, so retry later. If the rebuild of a damaged file fails that way, the
  original is put back first. Opening needs no write lock unless the file must be created,
  repaired or upgraded from an older format.
- Files are created 0600 and missing directories 0700 (they hold tenant data).

Performance (see ``_schema``): putting, claiming and acking a fresh record touch no secondary
index; a claim of fresh records writes one lease row per batch, not one row per record.
``tests/benchmarks/bench_queue.py`` measures, beside RabbitMQ through pika in the same run, the
README's natural loop (``get(max_items=100)`` and ``d.ack()`` per record, with a concurrent
producer) and the batched loop (``put_many`` + ``get(1000)`` + ``ack_many``); the README's
benchmark section has the figures. One-at-a-time ``put`` is bounded by commit latency: batch.

Bounds (RELIABILITY promise 2)
- payload: ``max_payload_bytes`` encoded bytes (default 1 MiB): larger -> ``ValueError``, before
  anything is written; key and queue name: 1,024 characters.
- queue: ``max_bytes`` per queue (default 1 GiB; None: unbounded), counting every record it
  holds, dead letters included: encoded payload + key + 64 bytes of per-record overhead
  (``stats()["bytes"]``). A put that would pass it is refused whole with ``QueueFull`` (an
  ``OSError``, errno ``ENOSPC``), never acknowledged, and counted (``stats()["refused_full"]``);
  acks, nacks and rejects are never refused by the bound, so a full queue can always drain.
  ``set_max_bytes`` changes it at run time. A full disk refuses any write with ``QueueFull``.
  The WAL is bounded by checkpoints (every 4,000 pages, truncated to 64 MiB). Dead letters stay
  in the file (and count) until requeued with ``requeue_dead(ids)`` or deleted with
  ``purge_dead(ids)``.
- per call: ``get`` returns at most 10,000 deliveries; ``put_many`` commits in atomic chunks of
  10,000; ``dead_letters`` returns at most ``limit`` (10,000) records.
- memory: pending calls are bounded by the calling threads (each blocks for its result),
  buffered settlements by the deliveries handed out (one each, at most); one group transaction
  carries at most ~20,000 records of work besides the buffered acks it takes.
- threads and file descriptors: one committer thread and one SQLite connection per open file in
  a process, shared by all of its queues and tenants (the last ``close`` stops them). An actor
  waiting for its group commit counts as blocked for the scheduler (as in ``ask``): other
  actors run meanwhile, on a spare worker if every worker waits, and their queue calls join
  the same group.
"""

from ..codec import DecodeError, EncodeError
from ._queue import DurableQueue
from ._routed import put_each
from ._tenants import delete_tenant, export_tenant, stats_many
from ._types import (DeadLetter, Delivery, QueueClosed, QueueError, QueueFull, QueueUnavailable,
                     RecoveryReport)

__all__ = [
    "DeadLetter", "DecodeError", "Delivery", "DurableQueue", "EncodeError", "QueueClosed",
    "QueueError", "QueueFull", "QueueUnavailable", "RecoveryReport", "QueueItem", "QueueSource",
    "QueueSink", "delete_tenant", "export_tenant", "put_each", "stats_many",
    "PostgresQueue", "open_queue",
]

_STREAM_NAMES = ("QueueItem", "QueueSource", "QueueSink")


def __getattr__(name: str) -> object:
    """The stream adapters (``_stream``) load on first use: importing the queue alone stays
    light (the crash tests start hundreds of writer processes)."""
    if name in _STREAM_NAMES:
        from . import _stream
        return getattr(_stream, name)
    if name == "PostgresQueue":
        from ._pg import PostgresQueue
        return PostgresQueue
    if name == "open_queue":
        from ._open import open_queue
        return open_queue
    raise AttributeError(f"module 'actors.queue' has no attribute {name!r}")
