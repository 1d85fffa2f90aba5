"""The durable queue in a stream graph: end-to-end at-least-once (RELIABILITY promise 3, F1, F3).

accepted = stored-and-acked + dead-lettered (with a reason) + counted drops, checked with unique
ids while a node crashes in the middle of the stream."""

from __future__ import annotations

import math

import pytest

from actors.queue import DurableQueue, QueueItem, QueueSink, QueueSource
from actors.stream import Graph, Node
from supervisors import GraphSupervision
from tests.conftest import settle

TOTAL, VISIBILITY = 300, 5.0


class WallClock:
    """The queue's wall clock, driven by the test's ManualClock (so leases expire on demand)."""

    def __init__(self, clock):
        self.clock = clock

    def time(self):
        return 1_800_000_000.0 + self.clock.now()


class Validate(Node):
    def __init__(self, crash_at, crashed):
        self.crash_at, self.crashed = crash_at, crashed

    def process(self, item, port):
        reading = item.payload
        if reading["uid"] == self.crash_at and not self.crashed:
            self.crashed.append(reading["uid"])
            raise RuntimeError("injected crash in validate")
        temp = reading["temp"]
        if not isinstance(temp, float) or math.isnan(temp):
            item.reject(f"temp is not a number: {temp!r}")
            return
        self.emit(item.derive({**reading, "temp": round(temp, 1)}))


class Store(QueueSink):
    def __init__(self, queue, stored):
        super().__init__(queue)
        self.stored = stored

    def store(self, items):
        self.stored.extend(item.payload["uid"] for item in items)


def reading(uid):
    temp = "n/a" if uid % 10 == 3 else float("nan") if uid % 10 == 7 else 20.0 + uid / 100
    return {"uid": uid, "device": f"d{uid % 7}", "temp": temp}


@pytest.fixture(params=["sqlite", "postgresql"])
def queue(request, tmp_path, clock):
    """The graph's queue on each backend (PostgreSQL: a fresh schema, dropped afterwards;
    skipped, or failed under CI=true, when the server is absent)."""
    options = dict(visibility_timeout=VISIBILITY, max_deliveries=5, clock=WallClock(clock))
    if request.param == "sqlite":
        q = DurableQueue(tmp_path / "ingest.db", "readings", **options)
        yield q
        q.close()
        return
    import uuid

    from actors.queue._pg import drop_tables
    from tests.conftest import require_service

    require_service("127.0.0.1", 5432, "PostgreSQL")
    dsn, schema = "postgresql://postgres@127.0.0.1:5432/test", f"svtest_{uuid.uuid4().hex[:12]}"
    q = DurableQueue.postgres(dsn, "readings", schema=schema, **options)
    yield q
    q.close()
    drop_tables(dsn, schema=schema)


def test_every_record_is_stored_or_dead_lettered_even_when_a_node_crashes(rt, clock, queue):
    queue.put_many([reading(uid) for uid in range(TOTAL)])
    stored, crashed = [], []
    g = Graph("ingest", supervision=GraphSupervision())
    g.add("queue", QueueSource, queue)
    g.add("validate", Validate, 120, crashed)
    g.add("store", Store, queue, stored)
    g.pipe("queue", "validate", "store")
    instance = g.instantiate(rt, "acme")
    for _ in range(600):  # bounded: 30 virtual seconds in steps of 50 ms
        clock.advance(0.05)
        settle(rt)
        stats = queue.stats()
        if stats["ready"] == stats["in_flight"] == stats["delayed"] == 0:
            break
    valid = {uid for uid in range(TOTAL) if uid % 10 not in (3, 7)}
    invalid = set(range(TOTAL)) - valid
    dead = queue.dead_letters()
    assert crashed == [120]  # the crash really happened
    assert set(stored) == valid  # nothing valid was lost...
    assert {d.payload["uid"] for d in dead} == invalid  # ...and every bad one has a reason
    assert all(d.reason.startswith("error: temp is not a number") for d in dead)
    stats = queue.stats()
    assert stats["acked"] == len(valid) and stats["dead"] == len(invalid)
    assert stats["acked"] + stats["dead"] == TOTAL  # accepted = acked + dead-lettered (+0 drops)
    stream = instance.statistics()
    assert stream.lost >= 1  # the crash lost leased items: counted, then redelivered by the queue
    assert stream.node("validate").restarts == 1
    instance.stop()


def test_a_sink_that_fails_to_store_acks_nothing_and_the_records_come_back(rt, clock, queue):
    class Flaky(QueueSink):
        def __init__(self, q, stored, failures):
            super().__init__(q)
            self.stored, self.failures = stored, failures

        def store(self, items):
            if self.failures:
                self.failures.pop()
                raise OSError("database unavailable")
            self.stored.extend(item.payload["uid"] for item in items)

    queue.put_many([{"uid": uid} for uid in range(50)])
    stored = []
    g = Graph("flaky", supervision=GraphSupervision())
    g.add("queue", QueueSource, queue)
    g.add("store", Flaky, queue, stored, [1])
    g.pipe("queue", "store")
    instance = g.instantiate(rt, "acme")
    for _ in range(400):
        clock.advance(0.05)
        settle(rt)
        if queue.stats()["acked"] == 50:
            break
    assert sorted(set(stored)) == list(range(50))
    assert queue.stats()["acked"] == 50 and queue.stats()["dead"] == 0
    instance.stop()


def test_a_queue_item_keeps_its_lease_through_derive(tmp_path):
    with DurableQueue(tmp_path / "q.db") as q:
        q.put({"a": 1})
        [delivery] = q.get()
        item = QueueItem(delivery, delivery.payload).derive({"a": 2})
        assert (item.id, item.attempt, item.payload) == (delivery.id, 1, {"a": 2})
        assert item.ack() is True
        assert q.stats()["acked"] == 1


def test_queue_source_rejects_something_that_is_not_a_durable_queue(inline_rt):
    g = Graph("bad")
    g.add("queue", QueueSource, "ingest.db")
    g.add("store", QueueSink, None)
    g.pipe("queue", "store")
    with pytest.raises(TypeError, match="QueueSource needs a DurableQueue or a function "
                                        "tenant -> DurableQueue, got str"):
        g.instantiate(inline_rt, "acme")


def test_an_actor_waiting_for_a_commit_leaves_the_pool_to_the_others(tmp_path):
    """A worker blocked in a queue call counts as blocked (as in ``ask``): with one worker,
    another actor still runs while the commit waits (on a spare), and joins the same group."""
    import threading

    from actors import Actor, Runtime
    from actors.queue import DurableQueue

    held, release, other_ran = threading.Event(), threading.Event(), threading.Event()

    class Putter(Actor):
        def receive(self, message):
            queue.put({"n": 1})  # waits behind the held committer

    class Other(Actor):
        def receive(self, message):
            other_ran.set()

    def hold(conn):  # a raw op: the committer runs it alone, so it holds every later commit
        held.set()
        assert release.wait(30)

    queue = DurableQueue(tmp_path / "q.db", "q")
    holder = threading.Thread(target=queue._committer.submit, args=("hold", hold),
                              kwargs={"raw": True})
    holder.start()
    try:
        assert held.wait(30)
        with Runtime(workers=1) as rt:
            rt.spawn(Putter).tell("go")
            rt.spawn(Other).tell("go")
            assert other_ran.wait(30)  # the only worker is inside Putter's commit wait
            release.set()
            assert rt.wait_idle(30)
        assert queue.stats()["ready"] == 1
    finally:
        release.set()
        holder.join(30)
        queue.close()
