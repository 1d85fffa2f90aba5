"""The main job with many tenants: its progress line never waits on a busy tenant and its ledger
(in = stored + dead-lettered + queued) holds on every line; ``--tenants`` takes a count or names;
tenants start and stop while the others keep running. On the ManualClock (inline and threads)."""

from __future__ import annotations

import itertools
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actors import Actor, ManualClock, Runtime
from actors.testing import inline_runtime, wait_until
from streamvisor.cli import load_app
from tests.conftest import run_script, settle
from tests.test_stream_kit import advance

ROOT = Path(__file__).resolve().parent.parent
app = load_app(str(ROOT / "examples" / "iot_cloud.py"))


def options(tmp_path: Path, **extra: Any) -> SimpleNamespace:
    base = dict(tenant_names="acme,globex,initech", devices=4, period=0.5, db=None, mqtt=None,
                data_dir=str(tmp_path), chaos=0.0)
    return SimpleNamespace(**{**base, **extra})


def holds(line: dict[str, Any]) -> bool:
    return (line["in"] == line["stored"] + line["dead_lettered"] + line["queued"]
            and "unaccounted" not in line and "refused" not in line)


@pytest.fixture
def started(rt: Runtime, tmp_path: Path) -> Any:
    progress = app.start(rt, options(tmp_path, chaos=1.0))
    settle(rt)
    yield rt, progress
    app.stop(rt)


# -- the ledger ---------------------------------------------------------------------------------
class FakeTenant:
    def __init__(self) -> None:
        self.name = "acme"
        self.fleet, self.mqtt = app.Ledger(), app.Ledger()
        self.ledger = self.fleet
        self.base: dict[str, int] = {}
        self.line = app.Line(0, 0, 0, 0, 0)


def stats(ready: int = 0, acked: int = 0, dead: int = 0) -> dict[str, int]:
    return {"ready": ready, "in_flight": 0, "delayed": 0, "dead": dead, "acked": acked}


def test_a_tenant_whose_ledger_moves_during_the_read_keeps_its_last_consistent_line():
    t = FakeTenant()
    t.ledger.sent = 10
    [line] = app.queue_lines([t], lambda queues: [stats(ready=3, acked=6, dead=1)])
    assert line == app.Line(10, 6, 1, 3, 0)

    def read_while_a_put_completes(queues: Any) -> list[dict[str, int]]:
        t.ledger.putting, t.ledger.seq = 5, t.ledger.seq + 1
        t.ledger.sent, t.ledger.seq = t.ledger.sent + 5, t.ledger.seq + 1
        return [stats(ready=8, acked=6, dead=1)]

    assert app.queue_lines([t], read_while_a_put_completes) == [line]  # the last one
    assert app.queue_lines([t], lambda queues: [stats(ready=8, acked=6, dead=1)]) == [
        app.Line(15, 6, 1, 8, 0)]  # the next read catches up


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_put_under_way_counts_as_in_once_the_queue_has_it(on_disk):
    t = FakeTenant()
    t.ledger.sent, t.ledger.putting, t.ledger.seq = 10, 4, 1  # a put of 4 under way
    ready = 14 if on_disk else 10
    [line] = app.queue_lines([t], lambda queues: [stats(ready=ready)])
    assert line == app.Line(ready, 0, 0, ready, 0)


@pytest.mark.parametrize("landed, expected_mqtt", [((0, 0), 20), ((4, 0), 20), ((0, 7), 27),
                                                    ((4, 7), 27)])
def test_puts_of_the_fleet_and_the_mqtt_ingest_under_way_together(landed, expected_mqtt):
    t = FakeTenant()
    t.fleet.sent, t.fleet.putting, t.fleet.seq = 10, 4, 3
    t.mqtt.sent, t.mqtt.putting, t.mqtt.seq = 20, 7, 5
    ready = 30 + sum(landed)
    [line] = app.queue_lines([t], lambda tenants: [stats(ready=ready)])
    assert line == app.Line(ready, 0, 0, ready, 0, expected_mqtt)


def test_a_reading_that_went_missing_shows_as_unaccounted():
    t = FakeTenant()
    t.ledger.sent = 10
    [line] = app.queue_lines([t], lambda queues: [stats(ready=2, acked=7)])
    assert line.unaccounted == -1 and line.readings_in == 10


def test_a_reused_data_dir_counts_from_what_the_queue_held_at_start():
    t = FakeTenant()
    t.base = stats(ready=5, acked=100, dead=3)
    t.ledger.sent = 10
    [line] = app.queue_lines([t], lambda queues: [stats(ready=1, acked=112, dead=5)])
    assert line == app.Line(15, 12, 2, 1, 0)  # 5 carried over + 10 put this run


# -- the app ------------------------------------------------------------------------------------
def test_the_ledger_holds_on_every_line_while_chaos_restarts_nodes(started):
    rt, progress = started
    lines = []
    for _ in range(40):
        advance(rt, 0.25)
        lines.append(progress())
    for line in lines:
        assert holds(line), line
    last = lines[-1]
    assert last["tenants"] == 3 and last["in"] > 0 and last["stored"] > 0
    assert last["restarts"] >= 1 and last["acme_time"] != "--:--:--"


def test_the_progress_line_does_not_wait_for_a_put_stuck_in_its_commit(inline_rt, tmp_path):
    rt = inline_rt
    progress = app.start(rt, options(tmp_path, devices=2))
    try:
        settle(rt)
        advance(rt, 2.0, steps=4)
        acme = app._app.tenants["acme"]
        entered, release = threading.Event(), threading.Event()
        from actors.queue import _routed  # the fleets' readings go in through the node's
        real = _routed._put_each           # FleetFeeder's put_each: stuck after its commit,
                                           # before the ledgers are settled

        def slow_put(batches: Any) -> Any:  # on disk, then stuck before it returns
            outcomes = real(batches)
            if any(q is acme.queue for q, _batch in batches):
                entered.set()
                assert release.wait(30), "never released"
            return outcomes

        _routed._put_each = slow_put
        # runs the fleets' turns, then (a timer 20 ms later) the feeder's grouped put
        driver = threading.Thread(target=advance, args=(rt, 1.0, 2))
        driver.start()
        try:
            assert entered.wait(30)
            line = progress()  # on this thread, while the feeder is inside its put
            assert driver.is_alive() and not release.is_set()
            assert holds(line), line
            assert acme.line.readings_in == acme.fleet.sent + 2  # its put is on disk: in
        finally:
            release.set()
            driver.join(30)
            _routed._put_each = real
        settle(rt)
        assert holds(progress())
    finally:
        app.stop(rt)


def test_a_tenant_starts_and_stops_while_the_others_keep_their_ledger(started):
    rt, progress = started
    advance(rt, 1.0, steps=4)
    app.start_tenant(rt, "umbrella", None)
    advance(rt, 1.0, steps=4)
    line = progress()
    assert line["tenants"] == 4 and holds(line)
    assert app._app.tenants["umbrella"].fleet.sent > 0
    app.stop_tenant(rt, "globex")
    assert not [a for a in rt.actors() if a.tenant == "globex"]
    before = line["in"]
    advance(rt, 1.0, steps=4)
    line = progress()
    assert line["tenants"] == 3 and holds(line) and line["in"] > before - 1000


def test_tenants_named_by_a_count_store_their_readings(inline_rt, tmp_path):
    rt = inline_rt
    progress = app.start(rt, options(tmp_path, tenant_names="2"))
    try:
        settle(rt)
        advance(rt, 2.0, steps=8)
        line = progress()
        assert line["tenants"] == 2 and line["stored"] > 0 and holds(line)
        for name in ("tenant-01", "tenant-02"):
            assert app._app.tenants[name].line.stored > 0, name
    finally:
        app.stop(rt)
    assert app.device_kind("cold-room-tenant-01.0003") == "cold-room"
    assert app.device_kind("server-a-b.0001") == "server" and app.device_kind("x") == "office"


class Watcher(Actor):
    """Notes how many tenants are up each time it runs, until none is left to start."""

    turn_budget = 1

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        self.seen.append(len(app._app.tenants))
        if app._app.starting:
            self.ref.tell("look")


def test_tenants_start_in_short_batches_while_other_actors_run(inline_rt, tmp_path):
    rt, seen = inline_rt, []
    names = [f"t{i}" for i in range(6)]
    app._app = app._App(options(tmp_path, devices=0))
    try:
        run_script(rt, lambda: rt.spawn(app.TenantStarter, app._app, names, slice=0.0),
                   lambda: rt.spawn(Watcher, seen).tell("look"))
        # slice 0: one tenant per turn, and the watcher ran between every two starts
        assert [n for n, _ in itertools.groupby(seen)] == [1, 2, 3, 4, 5, 6]
        assert app._app.starting == 0 and sorted(app._app.tenants) == names
    finally:
        app.stop(rt)


def test_a_second_run_on_the_same_data_dir_keeps_the_ledger(tmp_path):
    for run in range(2):
        rt = inline_runtime(ManualClock())
        progress = app.start(rt, options(tmp_path, tenant_names="acme,globex"))
        try:
            settle(rt)
            advance(rt, 2.0, steps=8)
            line = progress()
            assert holds(line) and line["stored"] > 0, (run, line)
            assert line["stored"] <= 2 * 4 * 4  # this run's readings, not the first run's too
        finally:
            app.stop(rt)
            rt.shutdown()


def test_the_queue_source_reads_after_a_counted_put_and_polls_for_the_rest(inline_rt, tmp_path):
    rt = inline_rt
    progress = app.start(rt, options(tmp_path, tenant_names="acme", devices=0))
    try:
        settle(rt)
        acme = app._app.tenants["acme"]
        reading = {"device": "office-acme.0001", "ts": 1.0, "temp": 20.0, "hum": 40.0}
        gets = []
        real_get = acme.queue.get
        acme.queue.get = lambda *a, **kw: gets.append(1) or real_get(*a, **kw)
        app._app.routes["acme"].put_many([reading])  # counted and woken (the MQTT path)
        advance(rt, 0.1, steps=2)  # (the store's batch delay)
        assert progress()["stored"] == 1 and len(gets) == 1  # one get: no empty re-read
        acme.queue.put_many([{**reading, "ts": 2.0}])  # by someone else: no wake, no count
        advance(rt, 4.0, steps=4)
        assert progress()["queued"] == 1 and len(gets) == 1  # not read: nothing counted put
        advance(rt, 1.5, steps=2)
        advance(rt, 0.1, steps=2)
        assert progress()["stored"] == 2 and len(gets) == 2  # the poll found it
        del acme.queue.get
    finally:
        app.stop(rt)


# -- the knobs ----------------------------------------------------------------------------------
def test_tenants_is_a_count_or_a_list_of_names():
    assert app.tenant_names("3") == ["tenant-01", "tenant-02", "tenant-03"]
    assert len(app.tenant_names("1000")) == 1000 and app.tenant_names("1000")[-1] == "tenant-1000"
    assert app.tenant_names(" acme, globex ") == ["acme", "globex"]


@pytest.mark.parametrize("value, words", [
    ("0", "a count must be 1..100000"), (",", "names no tenant"),
    ("acme,globex,acme", "'acme' more than once")])
def test_a_bad_tenants_value_is_refused_with_its_reason(value, words):
    with pytest.raises(SystemExit, match=words):
        app.tenant_names(value)


def test_a_bad_tenant_name_is_refused_before_anything_starts(inline_rt, tmp_path):
    with pytest.raises(SystemExit, match="contains '/'"):
        app.start(inline_rt, options(tmp_path, tenant_names="acme,a/b"))
    assert inline_rt.actors() == [] and list(tmp_path.iterdir()) == []


def test_one_commit_serves_the_rows_and_the_puts_of_many_tenants(tmp_path):
    """On worker threads every tenant's rows go through the node's readings GroupWriter and
    every fleet's readings through the FleetFeeder: with the writer lingering (an hour), the
    rows of all 20 tenants wait, their store nodes paused, until one flush commits them in one
    transaction; nothing is acknowledged twice and the ledger holds throughout."""
    rt = Runtime(workers=2, clock=ManualClock(), node="test")
    names = [f"t{i:02d}" for i in range(20)]
    progress = app.start(rt, options(tmp_path, tenant_names=",".join(names), devices=2,
                                     period=1.0, checkpoint_every=0.0))
    try:
        settle(rt)
        rows = app._app.writers[0]
        rows.delay = 3600.0
        feeder_before = app._app.feeder.groups
        advance(rt, 2.0, steps=4)  # every fleet ticks; the feeder puts many tenants at once
        assert app._app.feeder.groups - feeder_before <= 4  # a put per step, not per fleet
        line = progress()
        assert holds(line) and line["in"] >= 40
        wait_until(lambda: rows.pending >= 20, 10, "every tenant's rows handed to the writer")
        groups = rows.groups
        rows.flush()
        assert rows.groups == groups + 1  # one transaction for every tenant's rows
        settle(rt)
        for _ in range(4):
            advance(rt, 0.5)
            rows.flush()
        settle(rt)
        line = progress()
        assert holds(line) and line["stored"] > 0 and rows.failed == 0
        stored = {t: app._app.tenants[t].line.stored for t in names}
        assert all(n > 0 for n in stored.values()), stored
    finally:
        app.stop(rt)
        rt.shutdown()
    import sqlite3
    with sqlite3.connect(tmp_path / "readings.db") as conn:
        per_tenant = dict(conn.execute("SELECT tenant, count(*) FROM readings GROUP BY tenant"))
    assert sorted(per_tenant) == names
    assert sum(stored.values()) <= sum(per_tenant.values())  # acked only once on disk


# -- the cost of a tenant does not grow with the tenants ----------------------------------------
def _lines_run(work: Any) -> int:
    """Python line events executed by ``work()`` on this thread: a count of operations,
    deterministic on the inline runtime (everything runs here, in FIFO order), never a time."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        work()
    finally:
        sys.settrace(previous)
    return count


def test_starting_and_stopping_a_tenant_costs_the_same_with_5_or_205_tenants_up(tmp_path):
    """Starting (or stopping) a tenant never walks every tenant, actor, child, queue or
    subscription: the work per tenant, counted in Python line events on the inline runtime, is
    the same with 5 or 205 tenants already up. One step over all tenants (12 actors each) would
    add at least 200 lines per tenant here; the slack allows for hash-order noise only. (Work
    in C that scans a container is out of this count's sight: the scheduler's test checks its
    run queue is never scanned.)"""
    k = 5
    per_tenant: dict[int, tuple[float, float]] = {}
    for n in (5, 205):
        rt = inline_runtime()
        a = app._App(options(tmp_path / str(n), devices=2, period=3600.0))
        try:
            for i in range(n):
                a.start_tenant(rt, f"up-{i:04d}")
            rt.wait_idle(1)
            start = _lines_run(lambda: ([a.start_tenant(rt, f"new-{i:04d}") for i in range(k)],
                                        rt.wait_idle(1)))
            stop = _lines_run(lambda: (a.stop_tenants(rt, [f"up-{i:04d}" for i in range(k)]),
                                       rt.wait_idle(1)))
            per_tenant[n] = (start / k, stop / k)
        finally:
            a.stop(rt)
            rt.shutdown()
    (start_few, stop_few), (start_many, stop_many) = per_tenant[5], per_tenant[205]
    assert start_few > 1000 and stop_few > 500, per_tenant  # the count does see the work
    assert abs(start_many - start_few) <= 20 and abs(stop_many - stop_few) <= 20, per_tenant


def test_the_fleet_feeder_is_bounded_and_counts_what_it_refuses(inline_rt, tmp_path):
    """While the queue file is not keeping up, what the feeder holds stays under max_pending:
    a fleet's hand-over beyond it is refused (QueueFull) and counted in the tenant's ledger,
    so the progress line shows it as refused and nothing goes missing unseen."""
    from actors.queue import DurableQueue, QueueFull
    rt = inline_rt
    with DurableQueue(tmp_path / "q.db", "readings", tenant="acme") as q:
        ledger = app.Ledger()
        feeder = app.FleetFeeder(rt, max_pending=10)
        fed = feeder.queue(app.CountedQueue(q, ledger))
        fed.put_many([{"n": i} for i in range(6)])
        with pytest.raises(QueueFull, match="max_pending 10"):
            fed.put_many([{"n": i} for i in range(6)])  # 12 > 10: refused, nothing taken
        assert feeder.held == 6 and ledger.overflow == 6 and ledger.sent == 0
        feeder.drain()
        assert feeder.held == 0 and ledger.sent == 6 and q.stats()["ready"] == 6
        fed.put_many([{"n": i} for i in range(10)])  # room again
        assert feeder.held == 10
        feeder.drain()
        assert ledger.sent == 16 and ledger.overflow == 6 and ledger.seq % 2 == 0
