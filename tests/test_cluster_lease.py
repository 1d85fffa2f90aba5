"""Tenant leases with fencing (supervisors/cluster/_lease.py).

The keeper's state machine runs on a manual clock against ``FakeTable``, which keeps the lease
table's rules (the same as the SQL of ``LeaseStore``) on a database clock of its own: it may
run fast or slow and lag the node (statement latency), so the timing argument is checked with
drift. Then ``LeaseStore`` and ``fenced_commit`` against the real PostgreSQL (leases are aged by
moving ``expires_at`` back in SQL, never by sleeping), and ``TenantHost`` with a keeper.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import pytest

from actors import Runtime
from actors.testing import ManualClock
from supervisors.cluster import (Lease, LeaseKeeper, LeaseStore, LeaseUnavailable, StaleEpoch,
                                 fenced_commit)
from supervisors.cluster._tenants import TenantHost
from tests.conftest import require_service

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


class FakeTable:
    """The lease table's rules on a database clock ``db_now()`` (seconds)."""

    def __init__(self, db_now: Callable[[], float]) -> None:
        self.db_now = db_now
        self.rows: dict[str, list[Any]] = {}      # tenant -> [owner, epoch, expires_at]
        self.down = False
        self.calls: list[tuple[str, str, float]] = []   # (what, owner, db time)

    def _up(self, what: str, owner: str) -> float:
        if self.down:
            raise LeaseUnavailable("store unreachable (test)")
        now = self.db_now()
        self.calls.append((what, owner, now))
        return now

    def acquire(self, tenant: str, owner: str, ttl: float, grace: float) -> int | None:
        now = self._up("acquire", owner)
        row = self.rows.get(tenant)
        if row is None:
            self.rows[tenant] = [owner, 1, now + ttl]
            return 1
        if row[2] + grace < now:
            row[:] = [owner, row[1] + 1, now + ttl]
            return row[1]
        return None

    def renew(self, tenant: str, owner: str, epoch: int, ttl: float) -> bool:
        now = self._up("renew", owner)
        row = self.rows.get(tenant)
        if row is None or row[0] != owner or row[1] != epoch or not row[2] > now:
            return False
        row[2] = now + ttl
        return True

    def release(self, tenant: str, owner: str, epoch: int) -> bool:
        self._up("release", owner)
        row = self.rows.get(tenant)
        if row is None or row[0] != owner or row[1] != epoch:
            return False
        row[2] = float("-inf")
        return True


def keeper(table: FakeTable, owner: str, clock: ManualClock, lost: list, **kw: Any) -> LeaseKeeper:
    kw.setdefault("ttl", 6.0)
    kw.setdefault("grace", 1.0)
    return LeaseKeeper(table, owner, clock=clock.now,
                       on_lost=lambda t, e, why: lost.append((owner, t, e, why, clock.now())), **kw)


def test_lease_deadline_counts_from_the_send_time_minus_the_margin() -> None:
    lease = Lease.granted("t", 3, ttl=6.0, margin=2.0, sent=10.0)
    assert lease.deadline == 14.0 and lease.renew_at == 12.0
    assert lease.held(13.99) and not lease.held(14.0)
    lease.renewed(12.5)
    assert lease.deadline == 16.5
    lease.renewed(11.0)                      # an older renewal answered late: no step back
    assert lease.deadline == 16.5
    assert lease.lose("expired") and not lease.lose("again")
    lease.renewed(20.0)                      # a lost lease stays lost
    assert lease.deadline == 16.5 and not lease.held(15.0)


def test_acquire_renew_and_a_second_node_waits() -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    lost: list = []
    a = keeper(table, "a", clock, lost)
    b = keeper(table, "b", clock, lost)
    assert a.acquire("t").epoch == 1
    assert b.acquire("t") is None
    for _ in range(30):                      # 60 s of renewals every ttl/3
        clock.advance(2.0)
        a.renew_due(clock.now())
        a.tick(clock.now())
        assert b.acquire("t") is None
    assert lost == [] and a.held() == {"t": 1}
    renewals = [c for c in table.calls if c[0] == "renew"]
    assert len(renewals) == 30


def test_renewal_not_due_sends_nothing() -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    a = keeper(table, "a", clock, [])
    a.acquire("t")
    clock.advance(1.9)
    a.renew_due(clock.now())
    assert [c[0] for c in table.calls] == ["acquire"]


@pytest.mark.parametrize("drift", [-0.001, 0.0, 0.001])
@pytest.mark.parametrize("latency", [0.0, 0.4])
def test_self_fence_strictly_before_another_node_can_acquire(drift: float,
                                                             latency: float) -> None:
    """A loses the store; its keeper fences at its local deadline. B polls every 50 ms and
    acquires only after the database's expiry + grace. The database clock runs at (1 + drift)
    of the nodes' and each statement runs ``latency`` seconds after it was sent."""
    clock = ManualClock(start=100.0)
    db_origin = 5000.0
    pending = {"latency": latency}
    table = FakeTable(lambda: db_origin + (clock.now() + pending["latency"]) * (1 + drift))
    lost: list = []
    a = keeper(table, "a", clock, lost, ttl=3.0, margin=1.0, grace=1.0)
    b = keeper(table, "b", clock, lost, ttl=3.0, margin=1.0, grace=1.0)
    assert a.acquire("t").epoch == 1
    clock.advance(1.0)
    a.renew_due(clock.now())
    last_ok = table.calls[-1][2]
    clock.advance(0.3)
    table.down = True                        # the partition: A can no longer reach the store
    fenced_at = taken_at = None
    for _ in range(200):                     # 10 s in steps of 50 ms
        clock.advance(0.05)
        a.renew_due(clock.now())             # fails (unreachable): the deadline decides
        a.tick(clock.now())
        if lost and fenced_at is None:
            fenced_at = lost[0][4]
        table.down = False                   # B reaches the store
        got = b.acquire("t")
        table.down = True
        if got is not None:
            taken_at = clock.now()
            assert got.epoch == 2
            break
    assert lost and lost[0][:4] == ("a", "t", 1, "expired")
    assert fenced_at is not None and taken_at is not None
    assert fenced_at < taken_at
    # A fenced at (last renewal sent) + ttl - margin on its own clock; B took over after the
    # database's expiry (sent + latency + ttl) + grace, counted on the database clock
    assert fenced_at == pytest.approx(101.0 + 3.0 - 1.0, abs=0.051)
    db_at_take = db_origin + (taken_at + latency) * (1 + drift)
    assert db_at_take > last_ok + 3.0 + 1.0


def test_a_rejected_renewal_loses_the_lease_at_once() -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    lost: list = []
    a = keeper(table, "a", clock, lost)
    a.acquire("t")
    table.rows["t"] = ["b", 2, 100.0]        # somebody else holds it now
    clock.advance(2.0)
    a.renew_due(clock.now())
    assert lost == [("a", "t", 1, "taken", 2.0)]
    assert a.lease("t") is None and a.held() == {}


def test_a_lost_lease_is_not_renewed_nor_released() -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    lost: list = []
    a = keeper(table, "a", clock, lost, ttl=3.0, margin=1.0)
    a.acquire("t")
    table.down = True
    clock.advance(2.0)
    a.tick(clock.now())
    assert lost and lost[0][3] == "expired"
    table.down = False
    calls = len(table.calls)
    a.renew_due(clock.now() + 10)
    a.release("t")
    assert len(table.calls) == calls         # nothing sent for a lost lease


def test_release_lets_the_next_node_acquire_at_once() -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    a = keeper(table, "a", clock, [])
    b = keeper(table, "b", clock, [])
    a.acquire("t")
    assert b.acquire("t") is None
    a.release("t")
    assert b.acquire("t").epoch == 2


class BatchTable(FakeTable):
    """``FakeTable`` with ``renew_many`` (as ``LeaseStore``): one call for many leases."""

    def renew_many(self, leases: list[tuple[str, int]], owner: str, ttl: float) -> set[str]:
        now = self._up("renew_many", owner)
        done = set()
        for tenant, epoch in leases:
            row = self.rows.get(tenant)
            if row is not None and row[0] == owner and row[1] == epoch and row[2] > now:
                row[2] = now + ttl
                done.add(tenant)
        return done


def test_a_thousand_leases_are_renewed_in_a_few_statements_not_a_thousand() -> None:
    """1,000 tenants acquired over 10 s (so their renewals start out of step): within a round
    the due leases and those due soon go in one ``renew_many``, the renewals fall into step, and
    60 s cost a few dozen statements instead of 30,000 - with every lease held throughout."""
    clock = ManualClock()
    table = BatchTable(clock.now)
    lost: list = []
    a = keeper(table, "a", clock, lost, ttl=6.0)
    for i in range(1000):
        a.acquire(f"t{i}")
        clock.advance(0.01)
        if i % 10 == 0:
            a.renew_due(clock.now())
            a.tick(clock.now())
    start = len(table.calls)
    for _ in range(600):                         # 60 s in steps of 100 ms
        clock.advance(0.1)
        a.renew_due(clock.now())
        a.tick(clock.now())
        assert len(a.held()) == 1000
    batches = [c for c in table.calls[start:] if c[0] == "renew_many"]
    assert lost == [] and not [c for c in table.calls if c[0] == "renew"]
    assert 30 <= len(batches) <= 45, len(batches)  # one a round (ttl / 3 = 2 s), a few early
    assert all(row[2] > clock.now() + 3.0 for row in table.rows.values())


def test_in_a_batch_a_taken_lease_is_lost_and_a_failed_batch_is_retried() -> None:
    clock = ManualClock()
    table = BatchTable(clock.now)
    lost: list = []
    a = keeper(table, "a", clock, lost)
    for t in ("t1", "t2", "t3"):
        a.acquire(t)
    table.rows["t2"] = ["b", 2, 100.0]           # somebody else holds t2 now
    clock.advance(2.0)
    a.renew_due(clock.now())
    assert [x[:4] for x in lost] == [("a", "t2", 1, "taken")] and set(a.held()) == {"t1", "t3"}
    table.down = True
    clock.advance(2.0)
    a.renew_due(clock.now())                     # unreachable: counted, retried in ttl / 10
    assert a.renew_failures == 1 and set(a.held()) == {"t1", "t3"}
    table.down = False
    clock.advance(0.6)
    a.renew_due(clock.now())
    assert [c[0] for c in table.calls[-1:]] == ["renew_many"] and set(a.held()) == {"t1", "t3"}


def test_bad_timing_parameters_are_refused() -> None:
    table = FakeTable(lambda: 0.0)
    for kw in ({"ttl": 0}, {"ttl": 3, "margin": 3}, {"ttl": 3, "grace": -1}):
        with pytest.raises(ValueError, match="ttl"):
            LeaseKeeper(table, "a", **kw)


# -- TenantHost with a keeper ---------------------------------------------------------------------
class RecordingApp:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def start_tenant(self, rt: Runtime, tenant: str, options: Any) -> None:
        self.calls.append(("start", tenant))

    def stop_tenant(self, rt: Runtime, tenant: str) -> None:
        self.calls.append(("stop", tenant))


def test_tenant_host_starts_only_with_the_lease_and_fences_without_releasing() -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    events: list = []
    app = RecordingApp()
    rt = Runtime(workers=1)
    try:
        host = TenantHost(rt, app, object(), lambda kind, **f: events.append((kind, f)))
        a = keeper(table, "a", clock, [], ttl=3.0, margin=1.0)
        a.on_lost = host.fence
        host.leases = a
        table.rows["t"] = ["b", 4, 100.0]    # held by b
        assert host._start_one("t") is None  # waits for the lease
        assert app.calls == [] and ("lease_wait", {"tenant": "t"}) in events
        table.rows["t"][2] = -10.0           # b's lease expired long ago
        assert host._start_one("t") is True
        assert app.calls == [("start", "t")] and host.hosted() == ["t"]
        table.down = True
        clock.advance(2.0)
        a.tick(clock.now())                  # deadline: fenced on this thread
        assert app.calls == [("start", "t"), ("stop", "t")] and host.hosted() == []
        fenced = [f for k, f in events if k == "tenant_fenced"]
        assert fenced and fenced[0]["epoch"] == 5 and fenced[0]["why"] == "expired"
        assert not [c for c in table.calls if c[0] == "release"]
    finally:
        rt.shutdown(5.0)


# -- the PostgreSQL table ------------------------------------------------------------------------
@pytest.fixture
def pg_table() -> Any:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    import psycopg
    name = f"lease_test_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(PG_URL, autocommit=True)
    yield name, conn
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"DROP TABLE IF EXISTS {name}_data")
    conn.close()


def _age(conn: Any, table: str, tenant: str, seconds: float) -> None:
    conn.execute(f"UPDATE {table} SET expires_at = now() - make_interval(secs => %s) "
                 "WHERE tenant = %s", (seconds, tenant))


def test_postgres_store_epochs_grow_and_grace_is_by_the_server_clock(pg_table: Any) -> None:
    table, conn = pg_table
    a, b = LeaseStore(PG_URL, table=table), LeaseStore(PG_URL, table=table)
    try:
        assert a.acquire("t", "a", 30.0, 1.0) == 1
        assert b.acquire("t", "b", 30.0, 1.0) is None
        assert a.renew("t", "a", 1, 30.0)
        assert not b.renew("t", "b", 1, 30.0)          # not its owner
        _age(conn, table, "t", 0.5)                    # expired 0.5 s ago: within the grace
        assert not a.renew("t", "a", 1, 30.0)          # an expired lease is not renewed
        assert b.acquire("t", "b", 30.0, 1.0) is None
        _age(conn, table, "t", 1.5)                    # past the grace
        assert b.acquire("t", "b", 30.0, 1.0) == 2
        owner, epoch, left = b.holder("t")
        assert (owner, epoch) == ("b", 2) and 25 < left <= 30
        assert not a.release("t", "a", 1)              # no longer a's
        assert b.release("t", "b", 2)
        assert a.acquire("t", "a", 30.0, 1.0) == 3     # released: at once
    finally:
        a.close()
        b.close()


def test_postgres_renew_many_extends_only_the_leases_still_ours(pg_table: Any) -> None:
    table, conn = pg_table
    a, b = LeaseStore(PG_URL, table=table), LeaseStore(PG_URL, table=table)
    try:
        for t in ("t1", "t2", "t3", "t4"):
            assert a.acquire(t, "a", 30.0, 1.0) == 1
        _age(conn, table, "t2", 5.0)                   # expired: past the grace
        assert b.acquire("t2", "b", 30.0, 1.0) == 2    # ... and taken by b
        _age(conn, table, "t3", 0.5)                   # expired, within the grace: not renewed
        assert a.renew_many([("t1", 1), ("t2", 1), ("t3", 1), ("t4", 1), ("t5", 1)], "a",
                            30.0) == {"t1", "t4"}
        assert a.renew_many([], "a", 30.0) == set()
        assert a.holder("t1")[2] > 25 and a.holder("t2")[0] == "b"
    finally:
        a.close()
        b.close()


def test_postgres_unreachable_store_raises_lease_unavailable() -> None:
    store = LeaseStore("postgresql://postgres@127.0.0.1:9/test", io_timeout=1.0)
    with pytest.raises(LeaseUnavailable, match="unreachable"):
        store.acquire("t", "a", 3.0, 1.0)
    with pytest.raises(ValueError, match="postgresql://"):
        LeaseStore("sqlite:///x")
    with pytest.raises(ValueError, match="identifier"):
        LeaseStore(PG_URL, table="x; DROP TABLE y")


def _write(conn: Any, data: str, tenant: str, epoch: int, table: str, value: int) -> None:
    with conn.transaction():
        fenced_commit(conn, tenant, epoch, table=table)
        conn.execute(f"INSERT INTO {data} (tenant, epoch, value) VALUES (%s, %s, %s)",
                     (tenant, epoch, value))


def test_fenced_commit_rejects_a_stale_epoch_and_writes_nothing(pg_table: Any) -> None:
    import psycopg
    table, conn = pg_table
    data = f"{table}_data"
    a, b = LeaseStore(PG_URL, table=table), LeaseStore(PG_URL, table=table)
    wa, wb = psycopg.connect(PG_URL, autocommit=True), psycopg.connect(PG_URL, autocommit=True)
    try:
        assert a.acquire("t", "a", 30.0, 0.0) == 1
        conn.execute(f"CREATE TABLE {data} (tenant TEXT, epoch BIGINT, value INT)")
        _write(wa, data, "t", 1, table, 1)
        _age(conn, table, "t", 1.0)
        assert b.acquire("t", "b", 30.0, 0.0) == 2
        with pytest.raises(StaleEpoch, match="epoch 1, the lease is at 2"):
            _write(wa, data, "t", 1, table, 2)         # A, a zombie, writes with its old epoch
        _write(wb, data, "t", 2, table, 3)
        with pytest.raises(StaleEpoch, match="no epoch"):
            _write(wb, data, "other", 2, table, 4)
        rows = conn.execute(f"SELECT epoch, value FROM {data} ORDER BY value").fetchall()
        assert rows == [(1, 1), (2, 3)]
    finally:
        for c in (wa, wb):
            c.close()
        a.close()
        b.close()


def test_an_acquisition_waits_for_an_open_fenced_write(pg_table: Any) -> None:
    """The lease row is share-locked by the write: a takeover cannot slip between the epoch
    check and the commit (it fails on the lock timeout and is retried)."""
    import psycopg
    table, conn = pg_table
    data = f"{table}_data"
    a = LeaseStore(PG_URL, table=table)
    b = LeaseStore(PG_URL, table=table, io_timeout=0.5)
    wa = psycopg.connect(PG_URL, autocommit=True)
    try:
        assert a.acquire("t", "a", 30.0, 0.0) == 1
        conn.execute(f"CREATE TABLE {data} (tenant TEXT, epoch BIGINT, value INT)")
        _age(conn, table, "t", 1.0)
        with wa.transaction():
            fenced_commit(wa, "t", 1, table=table)
            with pytest.raises(LeaseUnavailable, match="lock timeout"):
                b.acquire("t", "b", 30.0, 0.0)
            wa.execute(f"INSERT INTO {data} VALUES ('t', 1, 1)")
        assert b.acquire("t", "b", 30.0, 0.0) == 2
        with pytest.raises(StaleEpoch):
            _write(wa, data, "t", 1, table, 2)
        assert conn.execute(f"SELECT count(*) FROM {data}").fetchone() == (1,)
    finally:
        wa.close()
        a.close()
        b.close()


def test_iot_cloud_minute_writes_are_fenced_by_the_tenant_epoch(pg_table: Any) -> None:
    """The example's real write path: ``MinuteTable.upsert(rows, fence=...)`` commits with the
    current epoch and refuses a stale one without writing anything."""
    from pathlib import Path

    from supervisors.apps import load_app
    app = load_app(str(Path(__file__).resolve().parent.parent / "examples" / "iot_cloud.py"))
    table, conn = pg_table
    a, b = LeaseStore(PG_URL, table=table), LeaseStore(PG_URL, table=table)
    tenant = f"fz-{uuid.uuid4().hex[:8]}"
    minutes = app.MinuteTable(PG_URL)
    try:
        assert a.acquire(tenant, "a", 30.0, 0.0) == 1
        minutes.upsert([(tenant, "d1", 0.0, 60.0, 20.0, 3)], fence=(tenant, 1, table))
        _age(conn, table, tenant, 1.0)
        assert b.acquire(tenant, "b", 30.0, 0.0) == 2
        with pytest.raises(StaleEpoch):
            minutes.upsert([(tenant, "d1", 0.0, 60.0, 99.0, 9), (tenant, "d2", 0.0, 60.0, 1.0, 1)],
                           fence=(tenant, 1, table))
        minutes.upsert([(tenant, "d1", 0.0, 60.0, 21.0, 4)], fence=(tenant, 2, table))
        rows = conn.execute("SELECT device, mean_temp, n FROM minute_averages WHERE tenant = %s "
                            "ORDER BY device", (tenant,)).fetchall()
        assert rows == [("d1", 21.0, 4)]
        with pytest.raises(ValueError, match="PostgreSQL"):
            app.MinuteTable(":memory:").upsert([], fence=(tenant, 2, table))
    finally:
        conn.execute("DELETE FROM minute_averages WHERE tenant = %s", (tenant,))
        minutes.close()
        a.close()
        b.close()


def test_iot_cloud_on_a_leased_node_writes_fenced_minutes_and_stops_when_the_lease_is_taken(
        tmp_path: Any) -> None:
    """A real ``ClusterNode`` with ``lease_dsn`` hosting the example app with its minute table
    in PostgreSQL: the minutes are written under epoch 1; when another holder takes the lease
    (an acquisition in SQL, as a node on the other side of a partition would), the node's next
    renewal is refused and it stops the tenant (``tenant_fenced``)."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    import psycopg

    from actors.testing import wait_until
    from supervisors.apps import load_app
    from supervisors.cluster import ClusterNode
    from tests.test_iot_cloud_minutes import readings

    app = load_app(str(__import__("pathlib").Path(__file__).resolve().parent.parent
                       / "examples" / "iot_cloud.py"))
    table = f"lease_test_{uuid.uuid4().hex[:10]}"
    tenant = f"fz{uuid.uuid4().hex[:6]}"
    conn = psycopg.connect(PG_URL, autocommit=True)
    events: list = []
    node = ClusterNode("solo", cookie="c", tenants=[tenant], app=app,
                       app_options={"devices": 0, "period": 1.0, "chaos": 0.0, "db": PG_URL,
                                    "data_dir": str(tmp_path), "mqtt": None,
                                    "state": PG_URL, "checkpoint_every": 0.2},
                       lease_dsn=PG_URL, lease_ttl=3.0, lease_grace=0.5, lease_table=table,
                       on_event=events.append)
    try:
        node.start()
        wait_until(lambda: node.hosted() == [tenant], timeout=20, message="the tenant starts")
        assert node.lease(tenant) == 1 and app._app.epochs[tenant] == 1
        app._app.tenants[tenant].queue.put_many(readings(tenant))
        wait_until(lambda: conn.execute("SELECT count(*) FROM minute_averages WHERE tenant = %s",
                                        (tenant,)).fetchone()[0] == 6, timeout=20,
                   message="six fenced minute rows")
        assert app._app.fenced_state     # the checkpoints share the leases' database
        wait_until(lambda: conn.execute("SELECT count(*) FROM stream_checkpoints WHERE "
                                        "tenant = %s", (tenant,)).fetchone()[0] > 0,
                   timeout=20, message="a fenced checkpoint commit")
        conn.execute(f"UPDATE {table} SET owner = 'other', epoch = epoch + 1, "
                     "expires_at = now() + interval '30 seconds' WHERE tenant = %s", (tenant,))
        wait_until(lambda: node.hosted() == [], timeout=10, message="the node fences")
        fenced = [e for e in events if e["event"] == "tenant_fenced"]
        assert fenced and fenced[0]["epoch"] == 1 and fenced[0]["why"] == "taken"
        assert node.lease(tenant) is None
        assert app._app.fence_of(tenant) == (0, table)    # a straggler's write is refused
    finally:
        node.stop()
        conn.execute("DELETE FROM minute_averages WHERE tenant = %s", (tenant,))
        conn.execute("DELETE FROM stream_checkpoints WHERE tenant = %s", (tenant,))
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def test_an_unreachable_store_is_one_event_per_outage_and_the_tenant_waits() -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    events: list = []
    app = RecordingApp()
    rt = Runtime(workers=1)
    try:
        host = TenantHost(rt, app, object(), lambda kind, **f: events.append(kind))
        host.leases = keeper(table, "a", clock, [])
        table.down = True
        assert [host._start_one("t") for _ in range(5)] == [False] * 5
        assert events.count("lease_unavailable") == 1 and app.calls == []
        table.down = False
        assert host._start_one("t") is True
        assert app.calls == [("start", "t")]
        assert host.leases.renew_failures == 0
    finally:
        rt.shutdown(5.0)


@pytest.mark.parametrize("stop_takes, overrun", [(1.4, False), (1.6, True)])
def test_a_fence_slower_than_margin_plus_grace_is_reported(stop_takes: float,
                                                          overrun: bool) -> None:
    clock = ManualClock()
    table = FakeTable(clock.now)
    events: list = []
    a = LeaseKeeper(table, "a", ttl=3.0, margin=1.0, grace=1.0, clock=clock.now,
                    event=lambda kind, **f: events.append((kind, f)),
                    on_lost=lambda t, e, why: clock.advance(stop_takes))
    a.acquire("t")
    table.down = True
    clock.advance(2.5)                       # the fence starts 0.5 s late: 1.5 s of budget left
    a.tick(clock.now())
    overruns = [f for k, f in events if k == "fence_overrun"]
    if overrun:
        assert len(overruns) == 1 and overruns[0]["budget"] == 1.5
    else:
        assert overruns == []


def test_many_leases_lost_at_once_are_fenced_side_by_side() -> None:
    """The store is gone: every tenant is fenced in parallel, so each has the whole budget
    (one after another, the last would start late by the sum of the others' stops)."""
    import threading
    clock = ManualClock()
    table = FakeTable(clock.now)
    started: list = []
    barrier = threading.Barrier(5, timeout=5.0)

    def fence(tenant: str, epoch: int, why: str) -> None:
        started.append(tenant)
        barrier.wait()                       # all five fences are running at the same time

    a = LeaseKeeper(table, "a", ttl=3.0, margin=1.0, grace=1.0, clock=clock.now, on_lost=fence)
    for i in range(5):
        a.acquire(f"t{i}")
    table.down = True
    clock.advance(2.0)
    a.tick(clock.now())
    assert sorted(started) == [f"t{i}" for i in range(5)] and a.held() == {}


def test_a_checkpoint_commit_with_a_stale_epoch_writes_nothing(pg_table: Any) -> None:
    """``PostgresCheckpoints(fence=...)``, as iot_cloud passes it in a cluster whose --state
    holds both the leases and the checkpoints: a node that lost the tenant cannot commit."""
    from actors.stream import PostgresCheckpoints
    table, conn = pg_table
    a, b = LeaseStore(PG_URL, table=table), LeaseStore(PG_URL, table=table)
    tenant = f"fz-{uuid.uuid4().hex[:8]}"
    epochs = {"a": 1, "b": 2}

    def fence_for(node: str) -> Any:
        return lambda c, t: fenced_commit(c, t, epochs[node], table=table)
    store_a = PostgresCheckpoints(PG_URL, fence=fence_for("a"))
    store_b = PostgresCheckpoints(PG_URL, fence=fence_for("b"))
    try:
        assert a.acquire(tenant, "a", 30.0, 0.0) == 1
        store_a.commit(tenant, "g", 1, b"state-1")
        _age(conn, table, tenant, 1.0)
        assert b.acquire(tenant, "b", 30.0, 0.0) == 2
        with pytest.raises(StaleEpoch):
            store_a.commit(tenant, "g", 2, b"forked")
        store_b.commit(tenant, "g", 2, b"state-2")
        assert store_b.load(tenant, "g") == (2, b"state-2")
        assert store_a.ids(tenant, "g") == [1, 2]
    finally:
        conn.execute("DELETE FROM stream_checkpoints WHERE tenant = %s", (tenant,))
        store_a.close()
        store_b.close()
        a.close()
        b.close()


def test_cluster_state_reaches_an_app_that_has_a_state_option() -> None:
    from pathlib import Path

    from supervisors.apps import load_app
    from supervisors.cluster.cli import _app_options
    app = str(Path(__file__).resolve().parent.parent / "examples" / "iot_cloud.py")
    module = load_app(app)
    assert _app_options(module, app, [], PG_URL)["state"] == PG_URL
    assert _app_options(module, app, ["--state", "postgresql://other/db"],
                        PG_URL)["state"] == "postgresql://other/db"
    assert _app_options(module, app, [], None)["state"] is None
