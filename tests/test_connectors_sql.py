"""SQL sinks: idempotent batched inserts (sqlite3 always; PostgreSQL as an integration test), and
the durable queue in front - acked only after the commit, so redelivery never duplicates a row."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actors import Runtime
from actors.connectors import (PostgresStore, QueueWriter, Reading, RowRejected, SqliteStore,
                               SqlWriter, StoreUnavailable)
from actors.queue import DurableQueue
from actors.testing import wait_until
from tests.conftest import require_service

PG = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def rows(n: int, tenant: str = "acme", start: int = 0) -> list[tuple[str, str, float, float, float]]:
    return [(tenant, f"d{i % 7}", 1_700_000_000.0 + i, 20.0 + i % 5, 50.0) for i in range(start, start + n)]


@pytest.fixture
def queue(tmp_path: Any) -> Iterator[DurableQueue]:
    q = DurableQueue(tmp_path / "q.db", "readings", visibility_timeout=0.3, max_deliveries=3)
    try:
        yield q
    finally:
        q.close()


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "readings.db")
    try:
        yield store
    finally:
        store.close()


class CrashAfterCommit:
    """A store whose insert commits and then 'crashes' (raises) the first ``times`` times:
    the process died between the commit and the queue ack."""

    def __init__(self, store: Any, times: int = 1) -> None:
        self.store, self.times = store, times

    def insert(self, batch: Any) -> int:
        n = self.store.insert(batch)
        if self.times:
            self.times -= 1
            raise RuntimeError("crash between commit and ack")
        return n

    def count(self) -> int:
        return self.store.count()

    def close(self) -> None:
        self.store.close()


class Down:
    """A store that is unavailable the first ``times`` inserts."""

    def __init__(self, store: Any, times: int) -> None:
        self.store, self.times, self.calls = store, times, 0

    def insert(self, batch: Any) -> int:
        self.calls += 1
        if self.times:
            self.times -= 1
            raise StoreUnavailable("database is down")
        return self.store.insert(batch)

    def count(self) -> int:
        return self.store.count()

    def close(self) -> None:
        self.store.close()


# -- the store contract, on sqlite -------------------------------------------------------------
def test_sqlite_insert_is_idempotent_on_tenant_device_ts(sqlite_store):
    batch = rows(100)
    assert sqlite_store.insert(batch) == 100
    assert sqlite_store.insert(batch) == 0
    assert sqlite_store.insert(batch[:10] + rows(5, start=100)) == 5
    assert sqlite_store.count() == 105


def test_sqlite_same_ts_for_another_tenant_or_device_is_another_row(sqlite_store):
    base = ("acme", "d1", 1.5, 20.0, 50.0)
    assert sqlite_store.insert([base, ("globex", "d1", 1.5, 20.0, 50.0),
                                ("acme", "d2", 1.5, 20.0, 50.0), base]) == 3


@pytest.mark.parametrize("table", ["Readings", "r; drop table x", "1abc", "", "a" * 64])
def test_table_names_are_validated_identifiers(tmp_path, table):
    with pytest.raises(ValueError, match="table"):
        SqliteStore(tmp_path / "x.db", table)


def test_reading_rows_round_trip_and_bad_rows_are_refused():
    r = Reading("acme", "d1", 1.0, 2.0, 3.0)
    assert Reading.from_row(list(r.as_row())) == r
    for bad in (None, [1, 2], ("a", "b", "x", 1, 2), ("a", 1, 1, 1, 1)):
        with pytest.raises(ValueError):
            Reading.from_row(bad)


# -- the queue in front ------------------------------------------------------------------------
def test_writer_acks_the_queue_only_after_the_commit(queue, sqlite_store):
    queue.put_many(rows(250))
    writer = QueueWriter(queue, sqlite_store, batch_size=100)
    results = [writer.drain() for _ in range(4)]
    assert [r.taken for r in results] == [100, 100, 50, 0]
    assert sqlite_store.count() == 250
    assert queue.stats()["ready"] == 0 and queue.stats()["in_flight"] == 0
    assert queue.stats()["acked"] == 250


def test_a_crash_between_commit_and_ack_redelivers_without_duplicate_rows(queue, sqlite_store):
    queue.put_many(rows(50))
    crashing = QueueWriter(queue, CrashAfterCommit(sqlite_store), batch_size=50)
    with pytest.raises(RuntimeError, match="crash"):
        crashing.drain()
    assert sqlite_store.count() == 50 and queue.stats()["in_flight"] == 50
    # A fresh writer (the restarted actor) gets the redelivery once the lease runs out.
    writer = QueueWriter(queue, sqlite_store, batch_size=50)
    wait_until(lambda: writer.drain().taken > 0, timeout=5.0, message="the redelivery")
    assert writer.totals["duplicates"] == 50 and writer.totals["inserted"] == 0
    assert sqlite_store.count() == 50
    assert queue.stats() == {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 0, "acked": 50,
                             "bytes": 0, "refused_full": 0}


def test_an_unavailable_store_keeps_the_batch_and_consumes_no_delivery_attempts(queue, sqlite_store):
    queue.put_many(rows(20))
    down = Down(sqlite_store, times=5)  # more outages than max_deliveries=3
    writer = QueueWriter(queue, down, batch_size=20)
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            writer.drain()
        assert writer.holding == 20
    assert writer.drain().inserted == 20
    assert queue.dead_letters() == [] and sqlite_store.count() == 20
    assert writer.totals["unavailable"] == 5 and writer.totals["taken"] == 20


def test_records_that_are_not_readings_are_dead_lettered_with_a_reason(queue, sqlite_store):
    queue.put_many([*rows(3), {"not": "a row"}, ["acme", "d", "soon", 1, 2]])
    writer = QueueWriter(queue, sqlite_store)
    result = writer.drain()
    assert (result.taken, result.inserted, result.rejected) == (5, 3, 2)
    reasons = sorted(d.reason for d in queue.dead_letters())
    assert len(reasons) == 2 and all(r.startswith("error: not a reading row") for r in reasons)


def test_sql_writer_actor_drains_the_queue_on_the_thread_pool(tmp_path, queue):
    path = tmp_path / "w.db"
    with Runtime(workers=2) as rt:
        writer = rt.spawn(SqlWriter, queue, lambda: SqliteStore(path), batch_size=200,
                          poll_interval=0.01)
        queue.put_many(rows(1000))
        wait_until(lambda: writer.ask("statistics")["inserted"] == 1000, timeout=20.0,
                   message="1000 rows inserted")
        queue.put_many(rows(1000))  # the same readings again: redelivered duplicates
        wait_until(lambda: writer.ask("statistics")["duplicates"] == 1000, timeout=20.0,
                   message="1000 duplicates skipped")
    check = SqliteStore(path)
    try:
        assert check.count() == 1000
    finally:
        check.close()


def test_sql_writer_retries_an_unavailable_store_with_backoff(queue, sqlite_store):
    down = Down(sqlite_store, times=3)
    queue.put_many(rows(10))
    with Runtime(workers=2) as rt:
        rt.spawn(SqlWriter, queue, lambda: down, poll_interval=0.01, retry_min=0.01,
                 retry_max=0.05)
        wait_until(lambda: sqlite_store.count() == 10, timeout=10.0, message="the retry")
    assert down.calls == 4


# -- PostgreSQL (integration) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    import psycopg
    schema = f"sv_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["copy", "executemany"])
def pg_store(request: pytest.FixtureRequest, pg_schema: str) -> Iterator[PostgresStore]:
    store = PostgresStore(PG, f"readings_{request.param}_{uuid.uuid4().hex[:6]}",
                          schema=pg_schema, method=request.param)
    try:
        yield store
    finally:
        store.close()


@pytest.mark.integration
def test_postgres_insert_is_idempotent(pg_store):
    batch = rows(1000)
    assert pg_store.insert(batch) == 1000
    assert pg_store.insert(batch) == 0
    assert pg_store.insert(batch[500:] + rows(10, start=1000)) == 10
    assert pg_store.count() == 1010


@pytest.mark.integration
def test_postgres_exactly_once_rows_under_redelivery(pg_store, queue):
    queue.put_many(rows(300))
    crashing = QueueWriter(queue, CrashAfterCommit(pg_store), batch_size=300)
    with pytest.raises(RuntimeError):
        crashing.drain()
    writer = QueueWriter(queue, pg_store, batch_size=300)
    wait_until(lambda: writer.drain().taken > 0, timeout=5.0, message="the redelivery")
    assert pg_store.count() == 300 and writer.totals["duplicates"] == 300
    assert queue.stats()["acked"] == 300 and queue.stats()["ready"] == 0


@pytest.mark.integration
def test_postgres_store_reconnects_after_its_connection_is_killed(pg_store):
    import psycopg
    assert pg_store.insert(rows(10)) == 10
    pid = pg_store._conn.info.backend_pid
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreUnavailable):
        pg_store.insert(rows(10, start=10))
    assert pg_store.insert(rows(10, start=10)) == 10  # reconnected
    assert pg_store.count() == 20


@pytest.mark.integration
def test_postgres_refused_rows_are_isolated_and_dead_lettered(pg_store, queue):
    queue.put_many([*rows(2), ("acme", "bad\x00device", 5.0, 1.0, 1.0)])
    writer = QueueWriter(queue, pg_store)
    result = writer.drain()
    assert (result.inserted, result.rejected) == (2, 1)
    [dead] = queue.dead_letters()
    assert dead.reason.startswith("error: database refused the row")
    with pytest.raises(RowRejected):
        pg_store.insert([("acme", "x\x00", 1.0, 1.0, 1.0)])


@pytest.mark.integration
def test_postgres_unreachable_is_store_unavailable():
    with pytest.raises(StoreUnavailable):
        PostgresStore("host=127.0.0.1 port=1 user=postgres dbname=test", connect_timeout=1)


@pytest.mark.integration
def test_postgres_batched_insert_rate(pg_store, capsys):
    """Not a benchmark gate: prints rows/s so the figure in the report can be reproduced."""
    batch = rows(20_000)
    started = time.perf_counter()
    for i in range(0, len(batch), 2000):
        pg_store.insert(batch[i:i + 2000])
    elapsed = time.perf_counter() - started
    assert pg_store.count() == 20_000
    with capsys.disabled():
        print(f"\n[{pg_store.method}] {20_000 / elapsed:,.0f} rows/s into PostgreSQL "
              f"(batches of 2000)")
