r"""The main job: an IoT cloud for several tenants, on embedded defaults.

    streamvisor run examples/iot_cloud.py --duration 20
    streamvisor run examples/iot_cloud.py --duration 20 --tenants acme,globex --devices 200 --db readings.db
    streamvisor run examples/iot_cloud.py --duration 30 --tenants 1000 --devices 2 --period 1

``--tenants`` is a count (tenant-01, tenant-02, ...) or comma-separated names; ``--devices`` is
the number of simulated devices per tenant, each sending a reading every ``--period`` seconds.

Every tenant gets the same supervised graph (REST_FOR_ONE along the pipeline):

    devices -> DurableQueue -> queue -> categorise -> validate -> sanity -> store (SQLite)
                                                        |            |
                                     bad readings: dead letters   alerts -> pub/sub "alerts/<device>"
                                     with the reason (validate, sanity)      -> a wildcard subscriber

    sanity -> payload -> minute (a Window: per-device minute means) -> minutes (minute_averages)

- a ``Fleet`` actor per tenant simulates its devices and puts their readings into the tenant's
  durable queue (acknowledged = on disk); some devices send malformed or impossible readings;
- ``minute`` (a ``Window``) keeps per-device minute averages in event time (the readings'
  ``ts``, 15 s of lateness, silent devices closed after 90 s) and ``minutes`` upserts them into
  ``minute_averages(tenant, device, start, end, mean_temp, n)``, keyed (tenant, device, start);
  a reading redelivered after a crash is counted once: the graph takes a checkpoint every 5 s
  (``--checkpoint-every``; in ``--data-dir``, or PostgreSQL with ``--state postgresql://...``,
  which also holds the queues), the queue's records are acknowledged when a checkpoint that
  contains them commits, and a restart (even after kill -9) resumes from the last one;
- the ``queue`` source leases readings only when the graph has credit; ``store`` inserts them
  into the ``readings`` table (tenant, device, ts, temp, hum), idempotently, then acknowledges
  them: a reading lost in a crash comes back from the queue and is stored exactly once;
- a clock actor publishes the time on the event bus every second; each tenant's ``LocalTime``
  shows it in the tenant's timezone, always the newest tick, never a backlog;
- a ``Chaos`` actor crashes a random tenant's ``sanity`` node every few seconds: its supervisor
  restarts it and the nodes after it; the other tenants never notice.

Many tenants on one node: a tenant costs actors and memory, never a thread or a file. Every
tenant's queue lives in the node's one queue file (``queues.db``: one committer thread), the
rows of all tenants go through one store connection, MQTT readings arrive through the node's
one client. A ``TenantStarter`` starts the tenants in short batches between other actors'
turns, so the first progress line comes while a thousand are still starting (``starting=``);
stopping asks every tenant's producers to stop at once, then the graphs, then the rest.

The progress line shows readings in, stored, dead-lettered, still queued, alerts, restarts and
the clock. It asks no actor anything: each producer counts what it put in a ``Ledger`` (a
sequence lock tells a put under way), and one ``stats_many`` reads every tenant's queue in one
transaction, so in = stored + dead-lettered + queued holds on every line, however busy a tenant
is (``unaccounted=`` would show a reading that went missing; ``refused=`` readings a full queue
refused).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import tempfile
import threading
import time
from contextlib import closing
from datetime import datetime, timezone
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from actors import Actor, Runtime, lowlevel
from actors.pubsub import Publish
from actors.groupwrite import GroupWriter
from actors.queue import (DurableQueue, QueueFull, QueueItem, QueueSink, QueueSource, put_each,
                          stats_many)
from actors.connectors import MqttIngest, MqttOptions, PostgresStore, SqliteStore, readings_filter
from actors.stream import (Checkpoints, Graph, Node, PostgresCheckpoints, Sink,
                           SqliteCheckpoints, Tumbling, Window)
from actors.testing import Faults
import supervisors
from supervisors import Backoff, ChildSpec, GraphSupervision, Strategy, Supervisor
from supervisors.cluster import fenced_commit

TENANTS = ["acme", "globex", "initech"]  # also the default tenant list of a cluster
TIMEZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC"]
CATEGORIES = {  # device kind -> plausible temperature range (C) and the alert threshold
    "cold-room": (-30.0, 10.0, 5.0),
    "office": (5.0, 40.0, 28.0),
    "server": (10.0, 60.0, 45.0),
}


def device_kind(device: str) -> str:
    """The kind a device id starts with (``"cold-room-acme.0001"`` -> ``"cold-room"``; tenant
    names may contain dashes too); unknown -> ``"office"``."""
    for kind in CATEGORIES:
        if device.startswith(kind + "-"):
            return kind
    return "office"


# -- the processing graph ------------------------------------------------------------------------
class Categorise(Node):
    """Tags each reading with its device kind (from the device id)."""

    def process(self, item: Any, port: str) -> None:
        reading = item.payload
        if isinstance(reading, (list, tuple)) and len(reading) == 5:  # a row from MqttIngest
            _, device, ts, temp, hum = reading
            reading = {"device": device, "ts": ts, "temp": temp, "hum": hum}
            item = item.derive(reading)
        device = str(reading.get("device", "")) if isinstance(reading, dict) else ""
        kind = device_kind(device)
        self.emit(item.derive({**reading, "kind": kind}) if isinstance(reading, dict) else item)


class Validate(Node):
    """Well-formed readings only: a dict with a device id, a timestamp and numeric temp/hum."""

    def process(self, item: Any, port: str) -> None:
        reading = item.payload
        problem = _malformed(reading)
        if problem:
            item.reject(problem)  # a dead letter with the reason, at once
        else:
            self.emit(item)


def _malformed(reading: Any) -> str | None:
    if not isinstance(reading, dict):
        return f"reading is a {type(reading).__name__}, not an object"
    for field in ("device", "ts", "temp", "hum"):
        if field not in reading:
            return f"missing field {field!r}"
    for field in ("temp", "hum", "ts"):
        value = reading[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{field} is not a number: {value!r}"
        if not math.isfinite(value):
            return f"{field} is not finite: {value!r}"
    return None


class Sanity(Node):
    """Physically plausible readings only; hot ones raise an alert on the tenant's pub/sub."""

    def process(self, item: Any, port: str) -> None:
        r = item.payload
        low, high, alert = CATEGORIES[r["kind"]]
        if not low <= r["temp"] <= high:
            item.reject(f"temp {r['temp']} C outside {low}..{high} C for a {r['kind']}")
            return
        if not 0.0 <= r["hum"] <= 100.0:
            item.reject(f"humidity {r['hum']} % outside 0..100 %")
            return
        if r["temp"] >= alert:
            # The tenant's namespace comes from this node's identity, not from the topic.
            self.runtime.pubsub.publish(f"alerts/{r['device']}", {"temp": r["temp"], "ts": r["ts"]})
        self.emit(item)


class Written(NamedTuple):
    """A ``GroupWriter`` -> the node that submitted ``items``: committed (``error`` None) or
    not."""

    items: list[Any]
    error: BaseException | None


class GroupedWrites(Node):
    """For a stream node that hands its writes to a ``GroupWriter`` (``self.writer``): ``write``
    submits and pauses the node until the ``Written`` reply, so what arrives meanwhile - the
    next batch, a checkpoint barrier - waits behind the write; ``written`` (from
    ``on_message``) raises a failed write's error (the node crashes: nothing of it was
    acknowledged) and resumes the node once nothing is being written."""

    writer: Any
    writing = 0  # writes handed to the writer, not yet answered

    def write(self, payload: Any, items: list[Any]) -> None:
        ref = self.ref
        self.writer.submit(payload, lambda error: ref.tell(Written(items, error)))
        self.writing += 1
        self.pause()

    def written(self, message: "Written") -> None:
        self.writing -= 1
        if message.error is not None:
            raise message.error

    def resume_if_done(self) -> None:
        if not self.writing:
            self.resume()


class Store(GroupedWrites, QueueSink):
    """Inserts readings (idempotent on tenant, device and ts) into SQLite or PostgreSQL, then
    acknowledges them. ``shared``: the node's one store (one connection for every tenant,
    thread-safe); otherwise the node opens its own ``db``. The tenant column always comes from
    this node's identity, never from the reading.

    ``writer``: the node's ``GroupWriter`` for that store. The rows are then handed to it and
    committed with every other tenant's in one transaction (a few commits a second for a
    thousand tenants, instead of one each); meanwhile the node is paused, so what arrives -
    the next readings, a checkpoint barrier - waits behind the write, and a checkpoint never
    commits before the rows it covers. Its ``Written`` reply acknowledges them (buffered; in a
    checkpointed graph the source does, when the checkpoint commits), or crashes the node if
    they could not be written (nothing acknowledged: the queue delivers them again)."""

    max_delay = 0  # hand over what came in each message: nothing waits in a batch (a barrier
    #                could otherwise pass while a batch is being written)

    def __init__(self, queue: Any, db: str, shared: Any = None, writer: Any = None) -> None:
        super().__init__(queue)
        self.db = db
        self.shared = shared
        self.writer = writer

    def on_start(self) -> None:
        self.rows = self.shared if self.shared is not None else open_store(self.db)
        if self.writer is not None and self.runtime.inline:
            self.writer = None  # the inline runtime runs no thread: insert in the turn

    def rows_of(self, items: list[Any]) -> list[tuple[str, str, float, float, float]]:
        tenant = self.ref.tenant
        return [(tenant, i.payload["device"], float(i.payload["ts"]),
                 float(i.payload["temp"]), float(i.payload["hum"])) for i in items]

    def store(self, items: list[Any]) -> None:
        self.rows.insert(self.rows_of(items))

    def process_batch(self, items: Any, port: str) -> None:
        if self.writer is None:
            super().process_batch(items, port)
            return
        batch = list(items)
        for item in batch:
            if not isinstance(item, QueueItem):
                raise TypeError(f"Store got {type(item).__name__}, expected QueueItem")
        self.write(self.rows_of(batch), batch)

    def on_message(self, message: Any) -> Any:
        if not isinstance(message, Written):
            return super().on_message(message)
        self.written(message)  # (a failed write crashes the node: delivered again)
        if self.checkpointed:
            self.acked += len(message.items)  # acknowledged by the source at the commit
        else:
            for item in message.items:  # on disk: a lost (buffered) ack is a redelivery
                if item.ack():
                    self.acked += 1
                else:
                    self.stale += 1
        self.resume_if_done()
        return None

    def on_stop(self, reason: Any) -> None:
        if self.rows is not self.shared:
            self.rows.close()


class TenantQueueSource(QueueSource):
    """The tenant's queue as the graph's source. Every ``get`` is a commit (a lease), so it
    reads only when there may be something to read: the producers wake it after each put, and
    ``puts_of(tenant)()`` tells whether anything was put since the queue was last found
    short. A thousand tenants polling every 50 ms, or reading again right after a read that
    emptied the queue, would keep the workers busy with empty commits. The slow poll finds
    redeliveries (a lease that timed out, a nack's delay) and readings put by anyone else."""

    poll_interval = 5.0

    def __init__(self, queue: Any, puts_of: Any = None) -> None:
        super().__init__(queue)
        self.puts_of = puts_of
        self.short = False   # the last get found fewer than asked for: the queue was empty
        self.seen = -1       # the producers' count of puts at that get
        self.read_at = 0.0

    def produce(self, demand: int) -> list[Any]:
        puts = self.puts_of(self.ref.tenant)() if self.puts_of is not None else -1
        now = self.now  # (the runtime clock)
        if self.short and puts == self.seen and now - self.read_at < self.poll_interval:
            return []  # nothing put since the queue was empty, and no poll due yet
        self.seen, self.read_at = puts, now
        items = super().produce(demand)
        self.short = puts >= 0 and len(items) < demand
        return items


# -- per-device minute averages: a Window node, an idempotent upsert -------------------------------
class Payload(Node):
    """``QueueItem`` -> its reading: the window keeps plain dicts, so that its snapshot (a
    checkpoint's part) is encodable by ``actors.codec``."""

    def process_batch(self, items: Any, port: str) -> None:
        self.emit_many([item.payload for item in items])


def _device(reading: Any) -> str:
    return reading["device"]


def _ts(reading: Any) -> float:
    return reading["ts"]


def _keep(acc: dict[str, float], reading: Any) -> dict[str, float]:
    # by ts: a reading redelivered without checkpoints counts once (repr: an exact str key,
    # so that the window's snapshot stays encodable by actors.codec: str/bytes/int map keys)
    acc[repr(reading["ts"])] = reading["temp"]
    return acc


def _mean(acc: dict[str, float]) -> tuple[float, int]:
    return sum(acc.values()) / len(acc), len(acc)


class MinuteStore(GroupedWrites, Sink):
    """Upserts ``WindowResult``s into ``minute_averages(tenant, device, start, end, mean_temp,
    n)``, keyed (tenant, device, start): a minute emitted again after a restart overwrites its
    row, never doubles it. ``fence_of(tenant)``: in a cluster with tenant leases (``--state``),
    the (epoch, lease table) this instance's tenant was started with; each batch then commits
    only while that epoch is the tenant's current one (``fenced_commit``), so a node that lost
    the tenant's lease cannot overwrite the new owner's minutes. ``writer``: the node's
    ``GroupWriter`` for the table: the batch is committed with other tenants' (each with its own
    fence), the node paused meanwhile (a checkpoint never commits before its minutes); a batch
    that could not be written crashes the node (the instance restarts from its last checkpoint
    and the minute is emitted again)."""

    def __init__(self, db: str, shared: "MinuteTable | None" = None,
                 fence_of: Any = None, writer: Any = None) -> None:
        self.db = db
        self.shared = shared  # the node's one table connection, for every tenant
        self.fence_of = fence_of
        self.writer = writer

    def on_start(self) -> None:
        self.table = self.shared if self.shared is not None else MinuteTable(self.db)
        if self.writer is not None and self.runtime.inline:
            self.writer = None

    def process_batch(self, results: Any, port: str) -> None:
        tenant = self.ref.tenant
        fence = self.fence_of(tenant) if self.fence_of is not None else None
        rows = [(tenant, r.key, r.start, r.end, r.value[0], r.value[1]) for r in results]
        fenced = None if fence is None else (tenant, *fence)
        if self.writer is None:
            self.table.upsert(rows, fence=fenced)
            return
        self.write((rows, fenced), rows)

    def on_message(self, message: Any) -> Any:
        if not isinstance(message, Written):
            return super().on_message(message)
        self.written(message)
        self.resume_if_done()
        return None

    def on_stop(self, reason: Any) -> None:
        if self.table is not self.shared:
            self.table.close()


class MinuteTable:
    """The ``minute_averages`` table in SQLite (a path) or PostgreSQL (a ``postgresql://`` URL).
    Thread-safe: one upsert at a time (a node shares one table connection among its tenants)."""

    COLUMNS = "(tenant, device, start, \"end\", mean_temp, n)"
    UPSERT = (" ON CONFLICT (tenant, device, start) DO UPDATE SET \"end\" = excluded.\"end\", "
              "mean_temp = excluded.mean_temp, n = excluded.n")

    def __init__(self, db: str) -> None:
        self.pg = db.startswith(("postgresql://", "postgres://"))
        self.lock = threading.Lock()
        if self.pg:
            import psycopg
            self.conn: Any = psycopg.connect(db, autocommit=True)
            mark = "%s"
        else:
            # an actor runs on any worker thread, one handler at a time
            self.conn = sqlite3.connect(db, timeout=30, isolation_level=None,
                                        check_same_thread=False)
            mark = "?"
        self.conn.execute("CREATE TABLE IF NOT EXISTS minute_averages (tenant TEXT NOT NULL, "
                          "device TEXT NOT NULL, start DOUBLE PRECISION NOT NULL, \"end\" "
                          "DOUBLE PRECISION NOT NULL, mean_temp DOUBLE PRECISION NOT NULL, "
                          "n INTEGER NOT NULL, PRIMARY KEY (tenant, device, start))")
        self.sql = (f"INSERT INTO minute_averages {self.COLUMNS} VALUES "
                    f"({', '.join([mark] * 6)})" + self.UPSERT)

    def upsert(self, rows: list[tuple[Any, ...]],
               fence: tuple[str, int, str] | None = None) -> None:
        """One transaction. ``fence`` = (tenant, epoch, lease table): PostgreSQL only; the
        rows commit only if ``epoch`` is still the tenant's lease epoch, else ``StaleEpoch``
        (and nothing is written)."""
        self.upsert_many([(rows, fence)])

    def upsert_many(self, batches: list[tuple[list[tuple[Any, ...]],
                                              tuple[str, int, str] | None]]) -> None:
        """Several tenants' ``(rows, fence)`` in one transaction: all committed, or none (a
        stale fence refuses the whole transaction; ``GroupWriter`` then retries each batch
        alone, so only the stale tenant's is refused)."""
        if any(fence is not None for _rows, fence in batches) and not self.pg:
            raise ValueError("fenced minute writes need the table in PostgreSQL (--db "
                             "postgresql://...), like the leases")
        rows = [row for batch, _fence in batches for row in batch]
        with self.lock:
            if self.pg:
                with self.conn.transaction(), self.conn.cursor() as cur:
                    for fence in dict.fromkeys(f for _rows, f in batches if f is not None):
                        fenced_commit(self.conn, fence[0], fence[1], table=fence[2])
                    cur.executemany(self.sql, rows)
            else:
                with closing(self.conn.cursor()) as cur:
                    cur.execute("BEGIN")
                    try:
                        cur.executemany(self.sql, rows)
                    except BaseException:
                        cur.execute("ROLLBACK")  # the shared connection stays usable
                        raise
                    cur.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def open_store(db: str) -> Any:
    """``postgresql://...`` -> PostgreSQL, anything else is an SQLite file."""
    if db.startswith(("postgresql://", "postgres://")):
        return PostgresStore(db)
    return SqliteStore(db)


def count_rows(db: str) -> list[tuple[str, int]]:
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg
        with psycopg.connect(db) as conn:
            return list(conn.execute("SELECT tenant, COUNT(*) FROM readings GROUP BY tenant "
                                     "ORDER BY tenant").fetchall())
    with closing(sqlite3.connect(db)) as conn:  # (sqlite3's own "with" commits, never closes)
        return list(conn.execute("SELECT tenant, COUNT(*) FROM readings GROUP BY tenant "
                                 "ORDER BY tenant").fetchall())


def build_graph(queue_of: Any, db: str, store: Any = None, minutes: Any = None,
                puts_of: Any = None, fence_of: Any = None, writers: Any = None) -> Graph:
    """The one graph every tenant gets; ``queue_of(tenant)`` is that tenant's durable queue,
    ``store`` and ``minutes`` the node's shared readings store and minute table (``None``:
    each instance opens ``db``), ``puts_of(tenant)`` a function counting the puts into it,
    ``fence_of(tenant)`` the (epoch, lease table) fencing its minute writes (see
    ``MinuteStore``), ``writers`` the node's (readings, minutes) ``GroupWriter``s that commit
    the store's and the minute table's writes of every tenant together (None: each batch is
    its own transaction). The app instantiates it with checkpoints (``--checkpoint-every``,
    ``--state``)."""
    rows_writer, minutes_writer = writers if writers is not None else (None, None)
    # seed: the supervisors draw no backoff jitter here (no child has a backoff); a fixed seed
    # spares each tenant's start a read of os.urandom
    g = Graph("ingest", supervision=GraphSupervision(intensity=10, period=10.0, seed=0))
    g.add("queue", TenantQueueSource, queue_of, puts_of)
    g.add("categorise", Categorise)
    g.add("validate", Validate)
    g.add("sanity", Sanity)
    g.add("store", Store, queue_of, db, store, rows_writer)
    g.pipe("queue", "categorise", "validate", "sanity", "store")
    # per-device minute averages in event time; lateness above the queue's visibility timeout,
    # so that a reading redelivered after a crash still finds its minute open
    g.add("minute", Window, key=_device, time=_ts, windows=Tumbling(60.0), lateness=15.0,
          idle=90.0, init=dict, fold=_keep, result=_mean)
    g.add("minutes", MinuteStore, db, minutes, fence_of, minutes_writer)
    g.add("payload", Payload)
    g.connect("sanity", "payload")
    g.connect("payload", "minute")
    g.connect("minute.out", "minutes")
    return g


def graph() -> Graph:
    """The graph for ``streamvisor graph examples/iot_cloud.py`` (queues and database are
    placeholders: only the shape matters there)."""
    return build_graph(lambda tenant: None, "readings.db")


# -- actors around the graph ------------------------------------------------------------------------
class Ledger:
    """What one producer (the tenant's fleet, or the node's MQTT ingest for that tenant) put
    into the tenant's queue, read by the progress line without a message. One writer (that
    producer's turns), any number of readers; each field is a single int store (atomic under
    the GIL). ``seq`` is a sequence lock: odd while a put is under way; ``putting`` (its size)
    is set before ``seq`` turns odd, so a reader that sees an odd ``seq`` also sees it."""

    __slots__ = ("seq", "sent", "putting", "refused", "overflow")

    def __init__(self) -> None:
        self.seq = 0        # even: no put under way
        self.sent = 0       # readings the queue accepted (on disk)
        self.putting = 0    # readings of the put under way
        self.refused = 0    # readings of puts the queue refused (full, unavailable)
        self.overflow = 0   # readings the node's feeder refused, its buffer full (the producer
        #                     counts them: one writer, the tenant's fleet)



class CountedQueue:
    """A tenant's queue as one producer sees it: puts counted in that producer's ``Ledger``,
    then ``wake()`` (the tenant's graph reads at once instead of at its next poll). A counting
    wrapper for ``put_each`` (``wrapped_queue``, ``before_put``, ``after_put``), so that the
    node's MQTT ingest and the fleet feeder put every tenant's readings in one transaction."""

    def __init__(self, queue: DurableQueue, ledger: Ledger, wake: Any = None) -> None:
        self.queue, self.ledger, self.wake = queue, ledger, wake

    @property
    def wrapped_queue(self) -> DurableQueue:
        return self.queue

    def before_put(self, n: int) -> None:
        ledger = self.ledger
        ledger.putting = n  # (set before seq turns odd: a reader that sees odd sees it)
        ledger.seq += 1

    def after_put(self, outcome: Any, n: int) -> None:
        ledger = self.ledger
        if isinstance(outcome, BaseException):
            ledger.refused += n
        else:
            ledger.sent += n
        ledger.seq += 1
        ledger.putting = 0
        if self.wake is not None and not isinstance(outcome, BaseException):
            self.wake()

    def put_many(self, batch: list[Any]) -> None:
        """One put, counted; a refusal is counted and raised."""
        outcome = put_each([(self, batch)])[0]
        if isinstance(outcome, BaseException):
            raise outcome


class FleetFeeder:
    """The node's fleets' puts, grouped: each ``Fleet`` hands its readings over
    (``queue(counted).put_many``, at once, never blocking) and a feeder actor puts everything
    handed over within ``delay`` seconds into the tenants' queues with one ``put_each``: one
    transaction (one fsync) for every tenant's readings instead of one per fleet tick (a
    thousand a second with 1,000 tenants). Each tenant's ``Ledger`` is written by one thread
    at a time (the put under ``putting``), as before: ``in`` counts a reading once its queue
    has it; a refused put is counted in the ledger's ``refused``. ``drain()`` puts what is
    pending now, on the caller's thread (stopping tenants: before their queues close).
    What waits is bounded: beyond ``max_pending`` readings (the queue file stalled) a fleet's
    hand-over is refused with ``QueueFull`` and counted in its ledger's ``overflow``."""

    def __init__(self, rt: Runtime, delay: float = 0.02, max_pending: int = 50_000) -> None:
        self.lock = threading.Lock()      # guards pending, held, scheduled
        self.putting = threading.Lock()   # one group put at a time (a ledger has one writer)
        self.pending: dict[int, tuple[CountedQueue, list[Any]]] = {}
        self.held = 0                     # readings in pending
        self.max_pending = max_pending
        self.scheduled = False
        self.groups = 0
        self.ref = rt.spawn(_Feed, self, delay, name="fleet-feeder")

    def queue(self, counted: "CountedQueue") -> "FedQueue":
        return FedQueue(self, counted)

    def add(self, counted: "CountedQueue", batch: list[Any]) -> None:
        """Hand ``batch`` over; ``QueueFull`` (nothing taken) when ``max_pending`` would be
        passed."""
        with self.lock:
            if self.held + len(batch) > self.max_pending:
                raise QueueFull(f"the fleet feeder holds {self.held} readings (max_pending "
                                f"{self.max_pending}): the queue file is not keeping up")
            self.held += len(batch)
            entry = self.pending.get(id(counted))
            if entry is None:
                self.pending[id(counted)] = (counted, list(batch))
            else:
                entry[1].extend(batch)
            tell, self.scheduled = not self.scheduled, True
        if tell:
            self.ref.tell("soon")

    def drain(self) -> None:
        with self.putting:
            with self.lock:
                entries = list(self.pending.values())
                self.pending, self.held, self.scheduled = {}, 0, False
            if entries:
                self.groups += 1
                put_each(entries)  # each entry's refusal is counted in its ledger's refused


class FedQueue:
    """A tenant's queue as its ``Fleet`` sees it with a ``FleetFeeder``: ``put_many`` hands
    the readings to the feeder and returns at once."""

    def __init__(self, feeder: FleetFeeder, counted: "CountedQueue") -> None:
        self.feeder, self.counted = feeder, counted

    def put_many(self, batch: list[Any]) -> None:
        try:
            self.feeder.add(self.counted, batch)
        except QueueFull:
            self.counted.ledger.overflow += len(batch)
            raise


class _Feed(Actor):
    """The ``FleetFeeder``'s actor: ``delay`` after the first reading handed over, it puts
    everything pending (one ``put_each``; it blocks this actor's turn for one commit)."""

    def __init__(self, feeder: FleetFeeder, delay: float) -> None:
        self.feeder, self.delay = feeder, delay

    def receive(self, message: Any) -> None:
        if message == "soon":
            self.send_after(self.delay, "put", key="put")
        elif message == "put":
            self.feeder.drain()


class Fleet(Actor):
    """A tenant's devices: every ``period`` each sends a reading into the durable queue (a
    ``CountedQueue``; the first tick at a random phase, so a thousand fleets do not all put at
    the same instant). A refused put is counted in the ledger and the readings dropped."""

    def __init__(self, queue: Any, devices: int, period: float, seed: int) -> None:
        self.queue, self.devices, self.period = queue, devices, period
        self.random = random.Random(seed)
        self.seed = seed

    def on_start(self) -> None:
        kinds = list(CATEGORIES)
        tag = self.ref.tenant or "dev"  # each customer has its own devices
        self.ids = [f"{kinds[i % len(kinds)]}-{tag}.{i:04d}" for i in range(self.devices)]
        self.temps = {d: _base(d) for d in self.ids}
        self.send_after(self.period * self.random.random(), "tick")

    def receive(self, message: Any) -> Any:
        now = time.time()
        batch = []
        for device in self.ids:
            t = self.temps[device] = self.temps[device] + 0.3 * (_base(device) - self.temps[device]) \
                + self.random.gauss(0, 1.5)
            reading: Any = {"device": device, "ts": now, "temp": round(t, 2),
                            "hum": round(self.random.uniform(20, 70), 1)}
            roll = self.random.random()
            if roll < 0.01:
                reading["temp"] = float("nan")  # a broken sensor
            elif roll < 0.015:
                reading["temp"] = 999.0  # impossible
            elif roll < 0.02:
                del reading["hum"]  # malformed firmware
            batch.append(reading)
        try:
            self.queue.put_many(batch)
        except OSError:  # QueueFull / QueueUnavailable: dropped, counted in the ledger
            pass
        self.send_after(self.period, "tick")


def _base(device: str) -> float:
    low, high, alert = CATEGORIES[device_kind(device)]
    return (low + alert) / 2 + (alert - low) * 0.45 * (int(device[-1]) == 7)


class Tally:
    """What a tenant's small actors show on the progress line, read there without a message
    (each field has one writer: ``alerts`` the Alerts actor, ``local_time`` LocalTime)."""

    __slots__ = ("alerts", "local_time")

    def __init__(self) -> None:
        self.alerts = 0
        self.local_time = "--:--:--"


class Alerts(Actor):
    """A tenant's wildcard subscriber to ``alerts/#``: counts alerts per device."""

    def __init__(self, tally: Tally | None = None) -> None:
        self.count = 0
        self.devices: set[str] = set()
        self.tally = tally if tally is not None else Tally()

    def receive(self, message: Any) -> Any:
        match message:
            case Publish(topic=topic):
                self.count += 1
                self.tally.alerts = self.count
                self.devices.add(topic.rsplit("/", 1)[-1])
            case "report":
                return self.count, len(self.devices)


class Clock(Actor):
    """Publishes the UTC time on the bus channel ``clock`` every second."""

    def on_start(self) -> None:
        self.receive("tick")

    def receive(self, message: Any) -> None:
        self.runtime.bus.publish(datetime.now(timezone.utc), channel="clock")
        self.send_after(1.0, "tick")


class LocalTime(Actor):
    """Shows the newest clock tick in the tenant's timezone (older ticks are replaced)."""

    def __init__(self, zone: str, tally: Tally | None = None) -> None:
        self.zone = ZoneInfo(zone)
        self.shown = "--:--:--"
        self.tally = tally if tally is not None else Tally()

    def on_start(self) -> None:
        self.runtime.bus.subscribe("clock", self.ref, max_age=2.0)

    def receive(self, message: Any) -> Any:
        if message == "show":
            return self.shown
        if isinstance(message, datetime):
            self.shown = message.astimezone(self.zone).strftime("%H:%M:%S")
            self.tally.local_time = self.shown
        return None


class Chaos(Actor):
    """Crashes a random tenant's ``sanity`` node every ``every`` seconds."""

    def __init__(self, instances: dict[str, Any], every: float, seed: int) -> None:
        self.instances, self.every = instances, every
        self.random = random.Random(seed)
        self.injected = 0

    def on_start(self) -> None:
        self.send_after(self.every, "strike")

    def receive(self, message: Any) -> Any:
        if message == "injected":
            return self.injected
        hosted = sorted(self.instances)  # tenants come and go in a cluster
        instance = self.instances.get(self.random.choice(hosted)) if hosted else None
        ref = instance.ref("sanity") if instance is not None else None
        if ref is not None and Faults(self.runtime).crash(ref):
            self.injected += 1
        self.send_after(self.every, "strike")


# -- the app -----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants", dest="tenant_names", default=",".join(TENANTS),
                        metavar="N|NAMES",
                        help="how many tenants (a count: tenant-01, tenant-02, ...) or their "
                             "names, comma-separated (default: %(default)s; a cluster places "
                             "them on its nodes)")
    parser.add_argument("--devices", type=int, default=50, help="devices per tenant")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between readings")
    parser.add_argument("--db", default=None,
                        help="SQLite file or postgresql://... URL for the readings table")
    parser.add_argument("--mqtt", default=None, metavar="URL",
                        help="also ingest tenants/<tenant>/devices/<device>/readings from a broker: "
                             "HOST:PORT, mqtt://[USER@]HOST[:PORT] or mqtts://[USER@]HOST[:PORT] "
                             "(TLS); the password comes from $STREAMVISOR_MQTT_PASSWORD")
    parser.add_argument("--mqtt-ca", default=None, metavar="FILE",
                        help="CA certificate that signed the broker's (default: the system's)")
    parser.add_argument("--mqtt-cert", default=None, metavar="FILE", help="client certificate")
    parser.add_argument("--mqtt-key", default=None, metavar="FILE", help="client certificate key")
    parser.add_argument("--mqtt-allow-insecure-password", action="store_true",
                        help="allow a password over plain TCP to a host that is not loopback")
    parser.add_argument("--mqtt-client-id", default=None, metavar="ID",
                        help="the node's MQTT session (default iot-cloud, in a cluster "
                             "iot-cloud-<node>): a restart resumes it, unacked readings included")
    parser.add_argument("--mqtt-group", default=None, metavar="NAME",
                        help="shared subscription $share/NAME/...: nodes with the same group "
                             "split the readings (each goes to one of them)")
    parser.add_argument("--data-dir", default=None,
                        help="where the durable queues and the checkpoints live")
    parser.add_argument("--state", default=None, metavar="postgresql://...",
                        help="keep the checkpoints (and the tenants' queues) in PostgreSQL "
                             "instead of --data-dir: a tenant resumes on any host")
    parser.add_argument("--checkpoint-every", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between checkpoints of each tenant's graph (0: none)")
    parser.add_argument("--chaos", type=float, default=3.0, help="seconds between injected crashes (0: none)")


def mqtt_options(options: Any, client_id: str) -> MqttOptions:
    """The broker settings of ``--mqtt*``; a bad URL, file or an insecure password stops the app
    with the reason."""
    try:
        return MqttOptions.from_url(
            options.mqtt, ca_file=options.mqtt_ca, cert_file=options.mqtt_cert,
            key_file=options.mqtt_key, client_id=client_id,
            allow_insecure_password=options.mqtt_allow_insecure_password)
    except ValueError as exc:
        raise SystemExit(f"iot_cloud: --mqtt: {exc}") from None


def tenant_names(value: str) -> list[str]:
    """``--tenants``: a count (``"1000"`` -> tenant-01 ... tenant-1000, the names ``streamvisor
    cluster start --tenants 1000`` uses) or comma-separated names. ``SystemExit`` naming the
    problem for no tenant or a name given twice (``start`` checks each name)."""
    value = value.strip()
    if value.isdigit():
        count = int(value)
        if not 1 <= count <= 100_000:
            raise SystemExit(f"iot_cloud: --tenants {value}: a count must be 1..100000")
        return [f"tenant-{i:02d}" for i in range(1, count + 1)]
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise SystemExit("iot_cloud: --tenants names no tenant")
    twice = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if twice:
        raise SystemExit(f"iot_cloud: --tenants names {twice[0]!r} more than once")
    return names


class Line(NamedTuple):
    """One tenant's ledger at one consistent moment: ``readings_in`` = ``stored`` + ``dead`` +
    ``queued`` + ``unaccounted`` (which is 0 unless a reading went missing). ``mqtt_in``: the
    part of ``readings_in`` that came over MQTT."""

    readings_in: int
    stored: int
    dead: int
    queued: int
    unaccounted: int
    mqtt_in: int = 0


_ZERO = Line(0, 0, 0, 0, 0)
QUEUE = "readings"  # every tenant's queue has this name, in the node's one queue file


class _Tenant:
    """What one tenant runs on this node."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: DurableQueue | None = None
        self.instance: Any = None
        self.actors: dict[str, Any] = {}  # fleet, alerts, local-time
        self.fleet = Ledger()    # what its fleet put
        self.mqtt = Ledger()     # what the node's MQTT ingest put for it
        self.tally = Tally()     # alerts, local time
        self.base: dict[str, int] = {}  # its queue's counts when it started (a reused data dir)
        self.line = _ZERO        # its last consistent ledger


def queue_lines(tenants: list[Any], read: Any) -> list[Line]:
    """Each tenant's ledger, consistent per tenant, without a message to any actor.

    ``read(tenants)`` returns each tenant's queue counts (``stats()``; None if unreadable), all
    of one instant. The producers' ledgers are read before and after it: a tenant whose ledgers
    did not move meanwhile gets a new line (a put under way counts as in once the queue has
    it); one that moved keeps its last consistent line (the next read catches up), so every
    line's sums hold."""
    before = [[(g.seq, g.sent, g.putting) for g in (t.fleet, t.mqtt)] for t in tenants]
    stats = read(tenants)
    after = [[g.seq for g in (t.fleet, t.mqtt)] for t in tenants]
    for t, seen, s, seqs in zip(tenants, before, stats, after):
        if s is None or [seq for seq, _, _ in seen] != seqs:
            continue
        base = t.base
        stored = s["acked"] - base.get("acked", 0)
        dead = s["dead"] - base.get("dead", 0)
        queued = s["ready"] + s["in_flight"] + s["delayed"]
        carried = base.get("ready", 0) + base.get("in_flight", 0) + base.get("delayed", 0)
        held = stored + dead + queued
        landed = [0, 0]  # of the puts under way (fleet, mqtt): what the queue has already
        for fleet_done in (0, 1) if seen[0][0] % 2 else (0,):
            for mqtt_done in (0, 1) if seen[1][0] % 2 else (0,):
                extra = fleet_done * seen[0][2] + mqtt_done * seen[1][2]
                if extra and held == carried + seen[0][1] + seen[1][1] + extra:
                    landed = [fleet_done * seen[0][2], mqtt_done * seen[1][2]]
        mqtt_in = seen[1][1] + landed[1]
        readings_in = carried + seen[0][1] + landed[0] + mqtt_in
        t.line = Line(readings_in, stored, dead, queued, held - readings_in, mqtt_in)
    return [t.line for t in tenants]


def _queued(s: dict[str, int]) -> int:
    """Every record a queue ever took (in any state)."""
    return s["ready"] + s["in_flight"] + s["delayed"] + s["dead"] + s["acked"]


def stop_all(rt: Runtime, refs: list[Any]) -> None:
    """Stop many actors at once: every stop is asked for first, then each exit awaited. One
    by one, each stop would wait for its actor's turn behind the whole run queue."""
    for ref in refs:
        lowlevel.request_stop(ref, "shutdown")
    for ref in refs:
        rt.stop(ref, "shutdown")  # (exiting already: waits for the end of it)


class _App:
    """The node's share of the IoT cloud: shared settings and its tenants (a cluster may move
    tenants in and out; a single node hosts them all). Per tenant it costs no thread and no
    file: every tenant's queue lives in the node's one queue file (``queues.db``, one committer
    thread), its rows go through the node's one store connection, its readings arrive through
    the node's one MQTT client."""

    def __init__(self, options: Any) -> None:
        if options.devices < 0 or not options.period > 0:
            raise SystemExit("iot_cloud: --devices must be >= 0 and --period > 0")
        self.options = options
        self.data_dir = options.data_dir or tempfile.mkdtemp(prefix="iot-cloud-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.queues_path = os.path.join(self.data_dir, "queues.db")
        self.db = options.db or os.path.join(self.data_dir, "readings.db")
        # One connection for every tenant's rows (creates the table; a bad URL or path fails
        # here, clearly). Each tenant's store node writes its own tenant column.
        self.store = open_store(self.db)
        self.minutes = MinuteTable(self.db)
        # ... and one GroupWriter each, so that all tenants' rows (and minutes) written within
        # a few milliseconds are one transaction: a few commits a second, whatever the tenants
        rows = self.store
        self.writers = (
            GroupWriter(lambda batches: rows.insert([r for b in batches for r in b]),
                        name="readings", delay=0.02),
            GroupWriter(self.minutes.upsert_many, name="minutes", delay=0.02))
        self.feeder: Any = None  # the fleets' puts, grouped (FleetFeeder), once started
        self.tenants: dict[str, _Tenant] = {}
        self.queues: dict[str, DurableQueue] = {}  # what the graphs' queue nodes read
        self.ledgers: dict[str, tuple[Ledger, Ledger]] = {}  # tenant -> (fleet, mqtt)
        # with tenant leases (cluster start --state postgresql://...), minute writes are fenced
        cluster = getattr(options, "cluster", None)
        self.fenced = cluster is not None and getattr(cluster, "leases", None) is not None
        self.epochs: dict[str, int] = {}  # tenant -> its lease epoch when it started here
        # checkpoints are fenced too when they live in the leases' database (one --state)
        self.fenced_state = self.fenced and getattr(options, "state", None) == \
            options.cluster.leases.store.dsn
        self.graph = build_graph(lambda tenant: self.queues[tenant], self.db, self.store,
                                 self.minutes, self.puts_of,
                                 self.fence_of if self.fenced else None, writers=self.writers)
        self.state = getattr(options, "state", None)
        every = getattr(options, "checkpoint_every", 0.0)  # (the command line's default: 5 s)
        if self.state is not None and not self.state.startswith(("postgresql://",
                                                                  "postgres://")):
            raise SystemExit(f"iot_cloud: --state must be a postgresql:// URL, got "
                             f"{self.state!r}")
        if every < 0:
            raise SystemExit("iot_cloud: --checkpoint-every must be >= 0")
        self.checkpoints: Any = None
        if every > 0:
            store = (PostgresCheckpoints(self.state, fence=self.fence_checkpoint
                                         if self.fenced_state else None) if self.state else
                     SqliteCheckpoints(os.path.join(self.data_dir, "checkpoints.db")))
            self.checkpoints = Checkpoints(store, every=every)
        self.instances: dict[str, Any] = {}  # shared with the chaos actor
        self.mqtt: Any = None  # the node's one MQTT client (MqttIngest): a ChildHandle
        self.mqtt_sup: Any = None  # ... under its own supervisor
        self.mqtt_dead: DurableQueue | None = None
        self.mqtt_stats: Any = None  # its last statistics (it reports them every second)
        self.mqtt_rejected = 0  # readings in its dead letters since the start
        self.mqtt_base = 0      # ... and before (a reused --data-dir)
        self.in_cluster = getattr(options, "cluster", None) is not None
        self.starting = 0  # tenants the starter has yet to start
        self.starter: Any = None
        self.routes: dict[str, CountedQueue] = {}  # tenant -> its queue, as the MQTT ingest puts
        self.bases: dict[Any, dict[str, int]] | None = None  # the queue file at the first start
        self.started: set[str] = set()  # every tenant started in this process

    def mqtt_settings(self) -> MqttOptions:
        """The broker settings of ``--mqtt*``: ``SystemExit`` with the reason for a bad one
        (checked in ``start``, before anything runs)."""
        options = self.options
        node = getattr(options.cluster, "id", None) if self.in_cluster else None
        client_id = options.mqtt_client_id or ("iot-cloud" if node is None else f"iot-cloud-{node}")
        return mqtt_options(options, client_id)

    def start_mqtt(self, rt: Runtime, mqtt: MqttOptions) -> None:
        """One MQTT client for the whole node: readings are routed to their tenant's queue (the
        broker is acked after the commit); readings of a tenant this node does not host, and
        bad payloads, go to the node's dead letters (queue ``mqtt-dead``), with their reason. A
        single node reads every tenant's topic; a cluster node subscribes to its own tenants.
        The client is supervised (a crash restarts it with backoff; its unacked readings are
        redelivered by the broker); what each tenant received is counted by the tenant's
        ``CountedQueue``, outside the actor, so the progress line's ledger survives a restart."""
        options = self.options
        self.mqtt_dead = DurableQueue(self.queues_path, "mqtt-dead")
        self.mqtt_base = _queued(self.mqtt_dead.stats())
        # a restarted incarnation subscribes to the tenants hosted then
        filters = (lambda: [readings_filter(t) for t in self.routes]) if self.in_cluster else None
        spec = ChildSpec("mqtt", MqttIngest, args=(mqtt, self.routes.get), kwargs=dict(
            dead_letters=self.mqtt_dead, filters=filters, group=options.mqtt_group,
            capacity=2000, batch_size=1000, report=self.mqtt_report),
            shutdown=5.0, backoff=Backoff(min=0.2, max=5.0, jitter=0.2))
        self.mqtt_sup = rt.spawn(Supervisor, strategy=Strategy.ONE_FOR_ONE, intensity=10,
                                 period=60.0, children=[spec], name="mqtt")
        self.mqtt = supervisors.child(self.mqtt_sup, "mqtt")

    def mqtt_report(self, stats: Any) -> None:
        """Called by the MQTT client after each of its ticks (its own thread of control)."""
        self.mqtt_stats = stats

    def fence_of(self, tenant: str) -> tuple[int, str]:
        """(epoch the tenant was started with, lease table); epoch 0 (never valid: epochs start
        at 1) once the tenant was stopped here, so a straggling write is refused."""
        return self.epochs.get(tenant, 0), self.options.cluster.leases.store.table

    def puts_of(self, tenant: str) -> Any:
        """A function counting the puts into the tenant's queue (both producers' ledgers)."""
        fleet, mqtt = self.ledgers[tenant]
        return lambda: fleet.seq + mqtt.seq

    def base_of(self, tenant: str) -> dict[str, int]:
        """What the tenant's queue held before it started here (a reused --data-dir): from one
        read of the whole file, taken when the first tenant starts; a tenant started again, or
        in a cluster (another node may have run it meanwhile), is read on its own."""
        if self.bases is None:
            self.bases = stats_many(self.queues_path) if os.path.exists(self.queues_path) else {}
        if self.in_cluster or tenant in self.started:
            return dict(stats_many(self.queues_path, [(tenant, QUEUE)])[(tenant, QUEUE)])
        return dict(self.bases.get((tenant, QUEUE), {}))

    def fence_checkpoint(self, conn: Any, tenant: str) -> None:
        """Inside a checkpoint's commit: refuse it unless this node still holds the tenant's
        lease at the epoch the tenant started with (``StaleEpoch``)."""
        epoch, table = self.fence_of(tenant)
        fenced_commit(conn, tenant, epoch, table=table)

    def start_tenant(self, rt: Runtime, tenant: str) -> None:
        options, scope, t = self.options, rt.tenant(tenant), _Tenant(tenant)
        if self.fenced:
            self.epochs[tenant] = options.cluster.lease(tenant) or 0
        seed = sum(map(ord, tenant))
        if self.state:  # the tenant's queue in PostgreSQL: it resumes on whichever host runs it
            t.queue = DurableQueue.postgres(self.state, QUEUE, tenant=tenant, max_deliveries=5,
                                            visibility_timeout=10.0)
            t.base = dict(t.queue.stats())
        else:
            t.queue = DurableQueue(self.queues_path, QUEUE, tenant=tenant, max_deliveries=5,
                                   visibility_timeout=10.0)
            t.base = self.base_of(tenant)  # a reused --data-dir: what was there before this run
        self.queues[tenant] = t.queue
        self.ledgers[tenant] = (t.fleet, t.mqtt)
        t.instance = instance = self.graph.instantiate(rt, tenant, checkpoint=self.checkpoints)

        def wake() -> None:
            instance.wake("queue")
        t.actors["alerts"] = scope.spawn(Alerts, t.tally, name="alerts")
        scope.pubsub.subscribe("alerts/#", t.actors["alerts"])
        t.actors["local-time"] = scope.spawn(LocalTime, TIMEZONES[seed % len(TIMEZONES)],
                                             t.tally, name="local-time")
        if options.devices:
            if self.feeder is None:
                self.feeder = FleetFeeder(rt)
            t.actors["fleet"] = scope.spawn(Fleet, self.feeder.queue(CountedQueue(
                                                t.queue, t.fleet, wake)),
                                            options.devices, options.period, seed=seed)
        self.instances[tenant] = instance
        self.tenants[tenant] = t  # the progress line sees it once it is complete
        self.started.add(tenant)
        self.routes[tenant] = CountedQueue(t.queue, t.mqtt, wake)  # MQTT readings from now on
        if self.mqtt is not None and self.in_cluster:
            self.mqtt.tell(("subscribe", tenant))

    def stop_tenants(self, rt: Runtime, names: list[str]) -> None:
        """Stop tenants in phases across all of them: first every producer (no new readings
        anywhere, so the workers are free for the rest), then the graphs, the other actors, and
        last the queues (what is still queued stays on disk for the next start)."""
        tenants = [t for t in (self.tenants.pop(n, None) for n in names) if t is not None]
        for n in names:
            self.epochs.pop(n, None)  # a straggling minute write of it is refused from now on
        for t in tenants:
            self.routes.pop(t.name, None)  # MQTT readings for it are dead-lettered from now on
            self.instances.pop(t.name, None)
            if self.mqtt is not None and self.in_cluster:
                self.mqtt.tell(("unsubscribe", t.name))  # (unacked: redelivered elsewhere)
        stop_all(rt, [t.actors.pop("fleet") for t in tenants if "fleet" in t.actors])
        if self.feeder is not None:
            self.feeder.drain()  # what the stopped fleets handed over, into the queues
        stop_all(rt, [t.instance.root for t in tenants if t.instance.root is not None])
        stop_all(rt, [ref for t in tenants for ref in t.actors.values()])
        for t in tenants:
            self.queues.pop(t.name, None)
            self.ledgers.pop(t.name, None)
            if t.queue is not None:
                t.queue.close()

    def stop_tenant(self, rt: Runtime, tenant: str) -> None:
        self.stop_tenants(rt, [tenant])

    def stop(self, rt: Runtime) -> None:
        if self.starter is not None:
            rt.stop(self.starter, "shutdown")  # no tenant starts from now on
        if self.mqtt_sup is not None:  # no new readings first
            rt.stop(self.mqtt_sup, "shutdown")
            self.mqtt_sup = self.mqtt = None
        self.stop_tenants(rt, list(self.tenants))
        if self.mqtt_dead is not None:
            self.mqtt_dead.close()
        for writer in self.writers:
            writer.close()  # what the stopped tenants handed over is committed first
        self.store.close()
        self.minutes.close()
        if self.checkpoints is not None:
            self.checkpoints.store.close()

    def read_queues(self, tenants: list[_Tenant]) -> list[dict[str, int] | None]:
        """Every tenant's queue counts (and the MQTT dead letters') in one transaction."""
        if self.state:  # the queues are in PostgreSQL: each asked on its own
            return [t.queue.stats() for t in tenants]
        try:
            found = stats_many(self.queues_path, [(t.name, QUEUE) for t in tenants]
                               + ([(None, "mqtt-dead")] if self.mqtt_dead is not None else []))
        except OSError:  # the file busy beyond its timeout: no new line this time
            return [None] * len(tenants)
        if self.mqtt_dead is not None and (None, "mqtt-dead") in found:
            self.mqtt_rejected = _queued(found[(None, "mqtt-dead")]) - self.mqtt_base
        return [found.get((t.name, QUEUE)) for t in tenants]

    def progress(self) -> dict[str, Any]:
        """The progress line: no message to any tenant's actor (ledgers, tallies and one
        consistent read of every queue), so a busy tenant delays nothing."""
        tenants = list(self.tenants.values())
        lines = queue_lines(tenants, self.read_queues)
        line: dict[str, Any] = {"tenants": len(tenants)}
        if self.starting:
            line["starting"] = self.starting
        line.update({"in": sum(x.readings_in for x in lines),
                     "stored": sum(x.stored for x in lines),
                     "dead_lettered": sum(x.dead for x in lines),
                     "queued": sum(x.queued for x in lines),
                     "alerts": sum(t.tally.alerts for t in tenants),
                     # node restarts, and whole-graph restarts from the last checkpoint
                     "restarts": sum(t.instance.restarts() for t in tenants)})
        if self.mqtt is not None:  # a reading is acked to the broker once it is in its queue
            line["mqtt_in"] = sum(x.mqtt_in for x in lines)
            line["mqtt_rejected"] = self.mqtt_rejected
            # the node's one client: its connection state as it last reported it (no ask)
            line["mqtt_subscribed"] = int(bool(self.mqtt_stats and self.mqtt_stats.subscribed))
        unaccounted = sum(x.unaccounted for x in lines)
        if unaccounted:
            line["unaccounted"] = unaccounted
        refused = sum(t.fleet.refused + t.fleet.overflow for t in tenants)
        if refused:
            line["refused"] = refused  # the fleets' readings a full queue refused (dropped)
        if tenants:
            first = min(self.tenants)
            line[f"{first}_time"] = self.tenants[first].tally.local_time
        return line


class TenantStarter(Actor):
    """Starts the node's tenants in short batches, one batch per turn (at most ``slice``
    seconds each), so that while a thousand start the node already runs the first ones, prints
    its progress line and serves its status: a start opens the tenant's queue in the shared
    file and spawns a few actors, between other actors' turns."""

    turn_budget = 1  # one "next" per turn: other actors run between two batches

    def __init__(self, app: "_App", names: list[str], slice: float = 0.02,
                 then: Any = None) -> None:
        self.app, self.pending, self.slice = app, list(reversed(names)), slice
        self.then = then  # called once every tenant is up
        app.starting = len(self.pending)

    def on_start(self) -> None:
        self.ref.tell("next")

    def receive(self, message: Any) -> None:
        until = time.monotonic() + self.slice
        while self.pending:
            self.app.start_tenant(self.runtime, self.pending.pop())
            self.app.starting = len(self.pending)
            if time.monotonic() >= until:
                break
        if self.pending:
            self.ref.tell("next")  # behind whatever else arrived meanwhile
        elif self.then is not None:
            then, self.then = self.then, None
            then()

    def on_stop(self, reason: Any) -> None:
        self.app.starting = 0


_app: _App | None = None  # this process's app (one per node)


def start(rt: Runtime, options: Any) -> Any:
    """Once per node. A single node (``streamvisor run``) hosts every tenant of ``--tenants``
    (started a few per turn by a ``TenantStarter``); in a cluster the node calls
    ``start_tenant`` for the tenants placed on it."""
    global _app
    if options.mqtt:  # a bad --mqtt (URL, files, a clear password) stops the app before it starts
        mqtt_options(options, "iot-cloud")
    names: list[str] = []
    if getattr(options, "cluster", None) is None:
        names = tenant_names(options.tenant_names)
        for tenant in names:  # every name checked before anything starts
            try:
                rt.tenant(tenant)
            except ValueError as exc:
                raise SystemExit(f"iot_cloud: --tenants: {exc}") from None
    _app = _App(options)
    rt.spawn(Clock, name="clock")
    if options.chaos > 0:
        rt.spawn(Chaos, _app.instances, options.chaos, seed=7, name="chaos")
    app = _app
    # MQTT after the tenants: a reading never finds its tenant missing (it would be
    # dead-lettered as unknown)
    settings = app.mqtt_settings() if options.mqtt else None  # a bad --mqtt stops us here
    mqtt = (lambda: app.start_mqtt(rt, settings)) if settings is not None else None
    if names:
        _app.starter = rt.spawn(TenantStarter, _app, names, then=mqtt, name="tenant-starter")
    elif mqtt is not None:
        mqtt()
    print(f"iot_cloud: {options.devices} devices per tenant, readings -> {_app.db}")
    return _app.progress


def start_tenant(rt: Runtime, tenant: str, options: Any) -> None:
    assert _app is not None
    _app.start_tenant(rt, tenant)


def stop_tenant(rt: Runtime, tenant: str) -> None:
    assert _app is not None
    _app.stop_tenant(rt, tenant)


def stop(rt: Runtime) -> None:
    assert _app is not None
    _app.stop(rt)
    rows = count_rows(_app.db)
    print("rows stored per tenant: " + ", ".join(f"{t}={n}" for t, n in rows))


if __name__ == "__main__":
    import sys

    from streamvisor.cli import main
    sys.exit(main(["run", __file__, "--duration", "10", *sys.argv[1:]]))
