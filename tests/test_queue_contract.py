"""The durable queue's contract, run against every backend: SQLite and PostgreSQL.

Every test takes ``backend`` (params ``sqlite`` and ``postgresql``) and opens queues through
``backend.open(name, **options)``; the PostgreSQL param skips with the reason when the server
(127.0.0.1:5432, database ``test``, user ``postgres``) is absent, and fails under CI=true. Each
test gets its own SQLite file or its own PostgreSQL schema, dropped afterwards.

Deterministic: TTLs, delays and visibility timeouts run on an injected wall clock that the
tests move; nothing sleeps. Process and thread tests are bounded by counts and timeouts.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from actors.queue import (DeadLetter, DurableQueue, PostgresQueue, QueueClosed, QueueFull,
                          QueueUnavailable, open_queue, put_each)
from actors.queue._pg import drop_tables
from tests._queue_support import WallClock, kill_writer
from tests._tcp_proxy import TcpProxy
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("_queue_contract_child.py")
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
STATS_KEYS = {"ready", "in_flight", "delayed", "dead", "acked", "bytes", "refused_full"}


class Backend:
    """One backend's store for one test: ``open`` queues on it, ``store`` names it for a
    child process, ``cleanup`` closes what is open and drops it."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.schema = f"svtest_{uuid.uuid4().hex[:12]}"
        self.path = tmp_path / "queue.db"
        self.opened: list[DurableQueue] = []

    @property
    def store(self) -> str:
        return f"{PG_DSN}#{self.schema}" if self.kind == "postgresql" else str(self.path)

    def open(self, name: str = "q", **options: Any) -> DurableQueue:
        if self.kind == "postgresql":
            q: DurableQueue = DurableQueue.postgres(PG_DSN, name, schema=self.schema, **options)
        else:
            q = DurableQueue(self.path, name, **options)
        self.opened.append(q)
        return q

    def cleanup(self) -> None:
        for q in self.opened:
            q.close()
        if self.kind == "postgresql":
            drop_tables(PG_DSN, schema=self.schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgresql":
        require_service(PG_HOST, PG_PORT, "PostgreSQL")
    b = Backend(request.param, tmp_path)
    try:
        yield b
    finally:
        b.cleanup()


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def queue(backend: Backend, clock: WallClock) -> DurableQueue:
    return backend.open(max_deliveries=3, visibility_timeout=10.0, clock=clock)


# ---------------------------------------------------------------- put / get / ack


def test_put_get_ack_round_trip_with_key_payload_and_first_attempt(queue):
    first = queue.put({"n": 1, "b": b"\x00\xff"}, key="dev-1")
    second = queue.put((2, "two"))
    a, b = queue.get(max_items=10)
    assert (a.id, a.payload, a.key, a.attempt) == (first, {"n": 1, "b": b"\x00\xff"}, "dev-1", 1)
    assert (b.id, b.payload, b.key, b.attempt) == (second, (2, "two"), None, 1)
    assert a.ack(wait=True) is True and b.ack(wait=True) is True
    assert queue.get(max_items=10) == []
    assert queue.stats()["acked"] == 2


def test_ids_are_unique_and_increasing_across_put_put_many_and_reopen(backend, clock):
    q = backend.open(clock=clock)
    ids = [q.put(i) for i in range(5)] + q.put_many(range(20)) + [q.put("x")]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    q.ack_many(q.get(max_items=100))  # the newest records are gone: ids still never reused
    q.close()
    q = backend.open(clock=clock)
    assert q.put("after") > ids[-1]


def test_get_returns_at_most_max_items_oldest_first_and_empty_without_waiting(queue):
    assert queue.get(max_items=5) == []
    ids = queue.put_many(range(10))
    assert [d.id for d in queue.get(max_items=4)] == ids[:4]
    assert [d.id for d in queue.get(max_items=100)] == ids[4:]


def test_bad_arguments_raise_value_errors_naming_them(queue):
    with pytest.raises(ValueError, match="max_items"):
        queue.get(max_items=0)
    with pytest.raises(ValueError, match="key"):
        queue.put("x", key="a\x00b")
    with pytest.raises(TypeError):
        queue.put(object())
    queue.put("x")
    (d,) = queue.get()
    with pytest.raises(ValueError, match="delay"):
        d.nack(delay=-1)
    with pytest.raises(ValueError, match="reject needs an error"):
        d.reject(None)  # type: ignore[arg-type]  # the wrong type is the test
    assert queue.stats()["in_flight"] == 1


def test_buffered_ack_returns_at_once_and_flush_makes_it_durable(backend, clock):
    q = backend.open(clock=clock)
    q.put_many(range(3))
    batch = q.get(max_items=3)
    assert [d.ack() for d in batch] == [True, True, True]
    assert batch[0].ack() is False  # already settled through this object
    q.flush()
    assert q.stats()["acked"] == 3
    q.close()
    assert backend.open(clock=clock).stats()["acked"] == 3


def test_records_and_attempt_counts_survive_close_and_reopen(backend, clock):
    q = backend.open(clock=clock, visibility_timeout=5)
    ids = q.put_many(["a", "b"])
    q.get(max_items=1)  # leased, never settled: the claim is durable
    q.close()
    clock.advance(6)
    q = backend.open(clock=clock, visibility_timeout=5)
    assert {d.id: d.attempt for d in q.get(max_items=10)} == {ids[0]: 2, ids[1]: 1}


# ---------------------------------------------------------------- leases


def test_a_leased_record_is_invisible_until_its_visibility_timeout_then_redelivered(
        queue, clock):
    rid = queue.put("x")
    (first,) = queue.get()
    assert queue.get() == []
    clock.advance(9.9)
    assert queue.get() == []
    assert queue.stats()["in_flight"] == 1
    clock.advance(0.2)
    assert queue.stats()["ready"] == 1  # the lease ran out
    (second,) = queue.get()
    assert (second.id, second.attempt) == (rid, 2)
    assert first.ack(wait=True) is False  # stale: delivered again meanwhile
    assert first.nack(wait=True) is False and first.reject("late", wait=True) is False
    assert second.ack(wait=True) is True
    assert queue.stats()["acked"] == 1


def test_a_late_ack_whose_record_was_not_delivered_again_still_succeeds(queue, clock):
    queue.put("x")
    (d,) = queue.get()
    clock.advance(11)
    assert d.ack(wait=True) is True
    assert queue.get() == [] and queue.stats()["acked"] == 1


def test_a_stale_buffered_ack_is_accepted_but_settles_nothing(queue, clock):
    queue.put("x")
    (late,) = queue.get()
    clock.advance(11)
    (current,) = queue.get()
    assert late.ack() is True  # buffered: staleness is found at commit
    queue.flush()
    assert queue.stats()["in_flight"] == 1 and queue.stats()["acked"] == 0
    assert current.ack(wait=True) is True


def test_ack_many_reports_stale_and_settled_deliveries_as_false(queue, clock):
    queue.put_many(["a", "b", "c"])
    a, b, c = queue.get(max_items=3)
    assert a.ack(wait=True) is True
    clock.advance(11)
    (b2, c2) = queue.get(max_items=3)  # b and c again
    assert queue.ack_many([a, b, b2]) == [False, False, True]
    assert c2.nack(wait=True) is True
    assert queue.ack_many([c2]) == [False]


# ---------------------------------------------------------------- nack, max deliveries, reject


def test_nack_with_delay_redelivers_only_after_the_delay(queue, clock):
    rid = queue.put("x")
    (d,) = queue.get()
    assert d.nack(delay=5.0, wait=True) is True
    assert queue.stats()["delayed"] == 1 and queue.get() == []
    clock.advance(4.9)
    assert queue.get() == []
    clock.advance(0.1)
    (again,) = queue.get()
    assert (again.id, again.attempt) == (rid, 2)


def test_the_delivery_that_reaches_max_deliveries_and_is_nacked_is_dead_at_once(queue):
    rid = queue.put("x")
    for attempt in (1, 2):
        (d,) = queue.get()
        assert d.attempt == attempt
        d.nack(wait=True)
    (d,) = queue.get()
    assert d.attempt == 3 and d.nack(wait=True) is True
    assert queue.get() == []
    assert queue.dead_letters() == [DeadLetter(rid, "x", "max_deliveries", 3)]
    assert queue.stats()["dead"] == 1


def test_nack_with_an_error_on_the_last_delivery_keeps_the_error_as_the_reason(queue):
    rid = queue.put("x")
    for _ in range(3):
        (d,) = queue.get()
        d.nack(error="sensor offline", wait=True)
    assert queue.dead_letters() == [DeadLetter(rid, "x", "error: sensor offline", 3)]


def test_a_lease_that_runs_out_on_the_last_delivery_dead_letters_it(queue, clock):
    rid = queue.put("x")
    for _ in range(3):
        assert len(queue.get()) == 1
        clock.advance(11)
    assert queue.get() == []
    assert queue.dead_letters() == [DeadLetter(rid, "x", "max_deliveries", 3)]


def test_reject_dead_letters_at_once_and_settling_a_dead_one_is_a_no_op(queue):
    rid = queue.put({"bad": True})
    (d,) = queue.get()
    assert d.reject("poison", wait=True) is True
    assert d.ack(wait=True) is False
    assert queue.dead_letters() == [DeadLetter(rid, {"bad": True}, "error: poison", 1)]


def test_buffered_nack_and_reject_take_effect_at_the_next_commit(queue):
    a, b = queue.put_many(["a", "b"])
    da, db = queue.get(max_items=2)
    assert da.nack() is True and db.reject("no") is True
    queue.flush()
    assert [d.id for d in queue.get(max_items=2)] == [a]
    assert [x.reason for x in queue.dead_letters()] == ["error: no"]


def test_requeue_dead_and_purge_dead(queue):
    a, b = queue.put_many(["a", "b"])
    for d in queue.get(max_items=2):
        d.reject("x", wait=True)
    assert queue.requeue_dead([a, 999_999]) == 1
    (d,) = queue.get()
    assert (d.id, d.attempt) == (a, 1)
    before = queue.stats()["bytes"]
    assert queue.purge_dead([b]) == 1
    assert queue.stats()["dead"] == 0 and queue.stats()["bytes"] < before


# ---------------------------------------------------------------- TTL


def test_a_record_past_its_ttl_is_never_delivered_and_is_dead_as_expired(backend, clock):
    q = backend.open(ttl=60.0, clock=clock)
    rid = q.put("old")
    clock.advance(60.0)
    assert q.get() == []
    assert q.dead_letters() == [DeadLetter(rid, "old", "expired", 0)]


def test_the_ttl_deadline_survives_reopen_as_wall_clock_time(backend, clock):
    q = backend.open(ttl=60.0, clock=clock)
    keep, gone = q.put("young"), None
    q.close()
    clock.advance(30)
    q = backend.open(ttl=60.0, clock=clock)
    gone = keep
    keep = q.put("younger")
    q.close()
    clock.advance(31)  # 61 s after the first put, 31 s after the second
    q = backend.open(ttl=60.0, clock=clock)
    assert [d.id for d in q.get(max_items=10)] == [keep]
    assert [(x.id, x.reason) for x in q.dead_letters()] == [(gone, "expired")]


def test_an_in_flight_record_whose_ttl_passes_is_still_ackable_then_expires(backend, clock):
    q = backend.open(ttl=5.0, visibility_timeout=10.0, clock=clock)
    a, b = q.put_many(["a", "b"])
    da, db = q.get(max_items=2)
    clock.advance(6)  # TTL passed while in flight
    assert da.ack(wait=True) is True
    clock.advance(5)  # the lease of b ran out: it is expired, not redelivered
    assert q.get() == []
    assert [(x.id, x.reason) for x in q.dead_letters()] == [(b, "expired")]


# ---------------------------------------------------------------- stats and bounds


def test_stats_has_the_same_keys_and_counts_every_state(queue, clock):
    assert set(queue.stats()) == STATS_KEYS
    queue.put_many(range(5))
    got = queue.get(max_items=3)
    got[0].ack(wait=True)
    got[1].nack(delay=100, wait=True)
    got[2].reject("bad", wait=True)
    stats = queue.stats()
    assert {k: stats[k] for k in ("ready", "in_flight", "delayed", "dead", "acked",
                                  "refused_full")} == {
        "ready": 2, "in_flight": 0, "delayed": 1, "dead": 1, "acked": 1, "refused_full": 0}
    assert stats["bytes"] > 0


def test_max_bytes_refuses_a_whole_put_with_queue_full_counts_it_and_drains(backend, clock):
    q = backend.open(max_bytes=4096, clock=clock)
    stored: list[int] = []
    with pytest.raises(QueueFull) as info:
        for _ in range(100):  # bounded
            stored += q.put_many(["x" * 300] * 2)
    assert info.value.errno == errno.ENOSPC and "max_bytes=4096" in str(info.value)
    stats = q.stats()
    assert stats["refused_full"] == 2 and stats["bytes"] <= 4096
    assert stats["ready"] == len(stored)  # nothing of the refused put was written
    assert all(q.ack_many(q.get(max_items=100)))  # acks are never refused
    assert q.stats()["bytes"] == 0
    assert len(q.put_many(["x" * 300] * 2)) == 2


# ---------------------------------------------------------------- tenants and names


def test_tenants_share_the_store_but_never_see_each_others_records(backend, clock):
    a = backend.open("readings", tenant="acme", clock=clock)
    b = backend.open("readings", tenant="globex", clock=clock)
    none = backend.open("readings", clock=clock)
    a_ids = a.put_many([f"a{i}" for i in range(5)])
    b_ids = b.put_many([f"b{i}" for i in range(3)])
    none.put("nobody's")
    got = a.get(max_items=100)
    assert [d.id for d in got] == a_ids and all(d.payload.startswith("a") for d in got)
    assert a.get(max_items=100) == []
    assert [d.id for d in b.get(max_items=100)] == b_ids
    assert [d.payload for d in none.get(max_items=100)] == ["nobody's"]
    assert a.stats()["in_flight"] == 5 and b.stats()["in_flight"] == 3
    assert backend.open("other", tenant="acme", clock=clock).get(max_items=100) == []


def test_put_each_puts_into_many_tenants_queues_at_once_and_refuses_per_queue(backend, clock):
    queues = [backend.open("readings", tenant=f"t{i}", clock=clock) for i in range(30)]
    small = backend.open("readings", tenant="small", max_bytes=4096, clock=clock)
    batches = [(q, [{"tenant": q.tenant, "i": i} for i in range(3)]) for q in queues]
    batches.append((small, [{"pad": "x" * 2000}] * 3))  # over its 4 KiB: refused, alone
    batches.append((queues[1], [{1, 2}]))  # unencodable: refused, alone
    out = put_each(batches)
    assert isinstance(out[-2], QueueFull) and small.stats()["refused_full"] == 3
    assert isinstance(out[-1], TypeError)
    assert small.stats()["ready"] == 0
    for (q, rows), ids in zip(batches[:-2], out):
        assert len(ids) == 3
        assert [d.payload for d in q.get(max_items=10)] == rows


def test_put_each_stores_per_queue_and_reports_each_refusal(backend, clock):
    a = backend.open("a", tenant="a", clock=clock)
    b = backend.open("b", tenant="b", max_bytes=4096, clock=clock)
    closed = backend.open("gone", clock=clock)
    closed.close()
    out = put_each([(a, [[i] for i in range(100)]), (b, [["x" * 200] for _ in range(50)]),
                    (closed, [[3]])])
    assert out[0] == sorted(out[0]) and len(out[0]) == 100
    assert isinstance(out[1], QueueFull) and b.stats()["refused_full"] == 50
    assert isinstance(out[2], QueueClosed)
    assert [d.payload for d in a.get(200)] == [[i] for i in range(100)]
    assert b.get(10) == []


def test_bad_tenant_and_name_are_refused_with_a_clear_error(backend):
    with pytest.raises(ValueError, match="tenant"):
        backend.open("q", tenant="")
    with pytest.raises(ValueError, match="name"):
        backend.open("a\x1fb")


def test_close_is_idempotent_and_calls_after_it_raise_queue_closed(backend):
    q = backend.open()
    q.put("x")
    q.close()
    q.close()
    with pytest.raises(QueueClosed):
        q.put("y")
    with backend.open() as q2:
        assert [d.payload for d in q2.get()] == ["x"]


# ---------------------------------------------------------------- concurrency


def test_consumer_threads_never_get_the_same_record(backend):
    producer = backend.open("work")
    ids = producer.put_many(range(600))
    seen: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        q = backend.open("work", visibility_timeout=600.0)
        for _ in range(1000):  # bounded
            batch = q.get(max_items=7)
            if not batch:
                return
            with lock:
                seen.extend(d.id for d in batch)
            assert all(q.ack_many(batch))

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert sorted(seen) == ids


def _child(*args: str, stdin: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin else None,
                            stderr=subprocess.PIPE, cwd=str(ROOT),
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_consumer_processes_never_get_the_same_record(backend):
    with backend.open("work") as q:
        ids = q.put_many(range(900))
    procs = [_child("consume", backend.store, "work", stdin=True) for _ in range(3)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    for p in procs:  # start them together
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    delivered: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        delivered += [int(x) for x in out.split()]
    assert sorted(delivered) == ids, "a record was delivered twice or never"
    with backend.open("work") as q:
        assert q.stats()["acked"] == 900


# ---------------------------------------------------------------- crash safety


KILLS = 10


def test_every_acknowledged_id_survives_sigkill_of_the_writer_at_random_moments(backend):
    rnd = random.Random(16)
    seen: set[int] = set()
    printed_total = 0
    budget = time.monotonic() + 120
    for i in range(KILLS):
        assert time.monotonic() < budget, "crash loop over its time budget"
        proc = _child("write", backend.store, "crash")
        # most kills land among the writes; some anywhere in start-up
        printed = kill_writer(proc, rnd, after_ready=bool(i % 3), within=0.3)
        printed_total += len(printed)
        with backend.open("crash") as q:
            stored: dict[int, Any] = {}
            for _ in range(10_000):  # bounded drain
                batch = q.get(max_items=1000)
                if not batch:
                    break
                stored.update((d.id, d.payload) for d in batch)
                assert all(q.ack_many(batch))
        assert printed <= stored.keys(), f"acknowledged but lost: {sorted(printed - stored.keys())}"
        assert not seen & stored.keys(), "an id was reused"
        seen |= stored.keys()
    assert printed_total > 0, "no kill landed after a put: the test proved nothing"


def test_a_poison_record_that_kills_its_consumer_still_reaches_max_deliveries(backend, clock):
    with backend.open("poison", clock=clock) as q:
        rid = q.put("kills its consumer")
    for attempt in (1, 2, 3):
        now = clock.now + attempt * 100.0  # each lease (10 s) ran out before the next consumer
        proc = _child("poison", backend.store, "poison", str(now), stdin=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)  # crashed while holding the lease, nothing settled
        proc.communicate(timeout=30)
        assert line.split() == [str(rid).encode(), str(attempt).encode()]
    clock.advance(400.0)
    with backend.open("poison", clock=clock, max_deliveries=3) as q:
        assert q.get() == []
        assert q.dead_letters() == [DeadLetter(rid, "kills its consumer", "max_deliveries", 3)]


# ---------------------------------------------------------------- PostgreSQL: the server


@pytest.fixture
def pg_schema() -> Iterator[str]:
    require_service(PG_HOST, PG_PORT, "PostgreSQL")
    schema = f"svtest_{uuid.uuid4().hex[:12]}"
    yield schema
    drop_tables(PG_DSN, schema=schema)


def test_postgres_server_down_at_open_raises_queue_unavailable_naming_server_and_cause():
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://postgres:secret-word@127.0.0.1:{port}/test"
    with pytest.raises(QueueUnavailable) as info:
        DurableQueue.postgres(dsn, "q", connect_timeout=2)
    text = str(info.value)
    assert f"127.0.0.1:{port}/test" in text and "refused" in text.lower()
    assert "secret-word" not in text
    assert info.value.errno == errno.ECONNREFUSED
    assert "corrupt" not in text.lower()


def test_postgres_connection_loss_raises_queue_unavailable_then_recovers(pg_schema):
    proxy = TcpProxy(PG_HOST, PG_PORT)
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
    try:
        with DurableQueue.postgres(dsn, "q", schema=pg_schema, connect_timeout=2) as q:
            first = q.put("before")
            proxy.close()
            with pytest.raises(QueueUnavailable) as info:
                q.put("during")
            assert f"127.0.0.1:{proxy.port}" in str(info.value)
            assert "corrupt" not in str(info.value).lower()
            with pytest.raises(QueueUnavailable):
                q.get(max_items=10)
            proxy.open()  # the server is back: the next call reconnects
            got = q.get(max_items=10)
            assert first in [d.id for d in got]
            assert all(q.ack_many(got))
            assert q.put("after") > first
    finally:
        proxy.close()


def test_postgres_server_that_stops_answering_raises_queue_unavailable_within_io_timeout(
        pg_schema):
    proxy = TcpProxy(PG_HOST, PG_PORT)
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
    try:
        with DurableQueue.postgres(dsn, "q", schema=pg_schema, connect_timeout=1,
                                   io_timeout=1.5) as q:
            first = q.put("before")
            proxy.frozen.set()  # no RST, no FIN: only silence
            started = time.monotonic()
            with pytest.raises(QueueUnavailable) as info:
                q.put("during")
            assert time.monotonic() - started < 30, "the watchdog did not bound the call"
            assert "corrupt" not in str(info.value).lower()
            proxy.frozen.clear()
            assert [d.id for d in q.get(max_items=10)][:1] == [first]
    finally:
        proxy.close()


def test_postgres_a_put_from_another_process_wakes_a_waiting_get_at_once(pg_schema):
    store = f"{PG_DSN}#{pg_schema}"
    proc = _child("wait", store, "q")
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        with DurableQueue.postgres(PG_DSN, "q", schema=pg_schema) as q:
            rid = q.put("wake up")
        # The child waits up to 120 s and does not poll before it ends: only the server's
        # notification brings the record while we still listen (a generous bound, not a speed
        # measurement).
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("the waiting get was not woken by the put") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert out.split() == [str(rid).encode()], err.decode()


def test_postgres_terminated_connection_is_replaced_transparently(pg_schema):
    import psycopg

    with DurableQueue.postgres(PG_DSN, "q", schema=pg_schema) as q:
        q.put("x")
        pid = q._engine._conn.info.backend_pid  # only this queue's connection, nobody else's
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        before = q._engine.reconnects
        (d,) = q.get()  # the broken idle connection is replaced before anything was sent
        assert q._engine.reconnects == before + 1  # it really was broken, and replaced
        assert d.ack(wait=True) is True


def test_postgres_queue_is_a_durable_queue_with_configurable_tables(pg_schema):
    with DurableQueue.postgres(PG_DSN, "q", schema=pg_schema, prefix="other_q") as q:
        assert isinstance(q, DurableQueue) and isinstance(q, PostgresQueue)
        q.put("x")
    import psycopg
    with psycopg.connect(PG_DSN) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (pg_schema,))}
        version = conn.execute(f'SELECT v FROM "{pg_schema}".other_q_meta'
                               " WHERE k = 'schema_version'").fetchone()[0]
    assert tables == {"other_q_messages", "other_q_counters", "other_q_meta"}
    assert version == 1
    drop_tables(PG_DSN, schema=pg_schema, prefix="other_q")
    with pytest.raises(ValueError, match="prefix"):
        DurableQueue.postgres(PG_DSN, "q", prefix='x"; DROP TABLE y; --')
    with pytest.raises(ValueError, match="schema"):
        DurableQueue.postgres(PG_DSN, "q", schema="a b")


def test_postgres_concurrent_first_opens_create_the_schema_once(pg_schema):
    errors: list[BaseException] = []

    def open_one(k: int) -> None:
        try:
            with DurableQueue.postgres(PG_DSN, f"q{k}", schema=pg_schema,
                                       prefix=f"p{k % 2}") as q:
                q.put(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    drop_tables(PG_DSN, schema=pg_schema, prefix="p1")
    drop_tables(PG_DSN, schema=pg_schema, prefix="p0")


def test_postgres_undecodable_payload_is_dead_lettered_not_delivered(pg_schema):
    import psycopg

    with DurableQueue.postgres(PG_DSN, "q", schema=pg_schema) as q:
        bad, good = q.put_many(["bad", "good"])
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'UPDATE "{pg_schema}".streamvisor_queue_messages'
                          " SET payload = %s WHERE id = %s", (b"\xc1", bad))
        assert [d.id for d in q.get(max_items=10)] == [good]
        (dead,) = q.dead_letters()
        assert dead.id == bad and dead.reason.startswith("error: undecodable payload")


# ---------------------------------------------------------------- open_queue


def test_open_queue_chooses_the_backend_by_url_scheme(tmp_path, request):
    with open_queue(tmp_path / "a.db", "q") as q:
        assert type(q) is DurableQueue and q.path == str(tmp_path / "a.db")
    with open_queue(str(tmp_path / "b.db"), "q") as q:
        assert type(q) is DurableQueue
    with open_queue(f"sqlite:///{tmp_path}/c.db", "q") as q:
        assert q.path == f"{tmp_path}/c.db"
    for bad in ("", "mysql://u:pw@h/db", "sqlite://"):
        with pytest.raises(ValueError) as info:
            open_queue(bad, "q")
        assert "pw" not in str(info.value)
    require_service(PG_HOST, PG_PORT, "PostgreSQL")
    schema = f"svtest_{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: drop_tables(PG_DSN, schema=schema))
    for url in (PG_DSN, PG_DSN.replace("postgresql://", "postgres://")):
        with open_queue(url, "q", schema=schema, tenant="t") as q:
            assert isinstance(q, PostgresQueue) and q.tenant == "t"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_engine_and_connections(backend):
    """A forked child inherits the parent's engine registry, but not its committer threads,
    and must never use the parent's connections (SQLite handles, or one PostgreSQL protocol
    stream spoken by two processes): its queues get an engine of their own, and both sides
    keep working."""
    q = backend.open("work")
    q.put("from the parent")
    pid = os.fork()
    if pid == 0:
        code = 1
        signal.alarm(20)  # a child stuck on the parent's engine dies (and the test fails)
        try:
            mine = backend.open("work")
            mine.put("from the child")
            code = 0 if mine._engine is not q._engine else 2
            mine.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    q.put("the parent again")
    assert sorted(d.payload for d in q.get(max_items=10)) == [
        "from the child", "from the parent", "the parent again"]
