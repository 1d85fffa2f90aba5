"""Checkpoints (aligned barriers, commit, restore, acks after the commit) on the inline runtime
with a ManualClock; both stores (PostgreSQL skips when absent, fails under CI=true)."""

from __future__ import annotations

import os
import stat

import pytest

from actors import codec
from actors.queue import DurableQueue, QueueSource
from actors.stream import (Checkpoints, Graph, IterableSource, Node, PostgresCheckpoints, Sink, Source,
                           SqliteCheckpoints)
from actors.stream._checkpoint import TICK
from actors.testing import ManualClock, inline_runtime
from tests.conftest import require_service, run_script, settle

PG = "postgresql://postgres@127.0.0.1:5432/test"
VISIBILITY = 5.0


class WallClock:
    def __init__(self, clock):
        self.clock = clock

    def time(self):
        return 1_800_000_000.0 + self.clock.now()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteCheckpoints(tmp_path / "state" / "checkpoints.db")
    else:
        require_service("127.0.0.1", 5432, "PostgreSQL")
        s = PostgresCheckpoints(PG)
        with s._lock:
            s._conn.execute("DELETE FROM stream_checkpoints WHERE tenant LIKE 'ckpt-test%'")
    yield s
    s.close()


class Feed(Source):
    """Replays ``items`` (a list the test appends to) from a position: its snapshot."""

    poll_interval = 0.05

    def __init__(self, items):
        self.items = items
        self.position = 0

    def produce(self, demand):
        batch = self.items[self.position:self.position + demand]
        self.position += len(batch)
        return batch

    def snapshot(self):
        return self.position

    def restore(self, position):
        self.position = position


class Merge(Node):
    """Two inputs; counts and sums what it saw per input."""

    inputs = ("a", "b")

    def __init__(self):
        self.seen = {"a": 0, "b": 0}
        self.total = {"a": 0, "b": 0}

    def process_batch(self, items, port):
        self.seen[port] += len(items)
        self.total[port] += sum(items)
        self.emit_many(items)

    def snapshot(self):
        return {"seen": dict(self.seen), "total": dict(self.total)}

    def restore(self, state):
        self.seen, self.total = dict(state["seen"]), dict(state["total"])


class Relay(Node):
    def process_batch(self, items, port):
        self.emit_many(items)


class Drop(Sink):
    def process_batch(self, items, port):
        pass


def two_feeds(a, b, checkpoint):
    g = Graph("merge", checkpoint=checkpoint)
    g.add("a", Feed, a)
    g.add("b", Feed, b)
    g.add("merge", Merge)
    g.add("out", Drop)
    g.connect("a", "merge.a", window=64)
    # b's barrier takes a longer way: a's items behind its own barrier arrive first (held)
    g.add("r1", Relay)
    g.add("r2", Relay)
    g.add("r3", Relay)
    g.pipe("b", "r1", "r2", "r3", window=8)
    g.connect("r3", "merge.b", window=8)
    g.connect("merge", "out")
    return g


def settle_committed(rt, store):
    """Idle, and every checkpoint handed to the store's group writer committed and told (on
    worker threads a commit lands after the turn that asked for it)."""
    settle(rt)
    store.flush()
    settle(rt)


def committed(store, tenant, graph):
    cid, data = store.load(tenant, graph)
    doc = codec.decode(data)
    return cid, {name: codec.decode(blob) for name, blob in doc["nodes"].items()}


def test_barriers_align_on_a_two_input_node_and_snapshots_match_the_sources(store):
    clock = ManualClock()
    rt = inline_runtime(clock)
    a, b = [], []
    inst = two_feeds(a, b, Checkpoints(store, every=100.0)).instantiate(rt, "ckpt-test-align")
    settle(rt)
    a.extend(range(5000))
    b.extend(range(1000, 1200))
    # (inline, a fired timer runs to idle: the checkpoint timer is told by hand, in one turn
    # right behind the wake-ups, so that the barriers start while items flow)
    run_script(rt, lambda: inst.wake("a"), lambda: inst.wake("b"),
               lambda: inst.ref("a").tell(TICK), lambda: inst.ref("b").tell(TICK))
    status = inst.checkpoints()
    assert status["committed"] == 1 and status["failed"] is None
    assert status["held"] > 0  # a's items behind its barrier really waited for b's barrier
    cid, nodes = committed(store, "ckpt-test-align", "merge")
    assert cid == 1
    # the merge node's snapshot holds exactly what the sources had emitted at their barriers
    assert nodes["merge"]["seen"] == {"a": nodes["a"], "b": nodes["b"]}
    assert nodes["merge"]["total"] == {"a": sum(a[:nodes["a"]]), "b": sum(b[:nodes["b"]])}
    assert 0 < nodes["a"] < len(a)  # the barrier fell in the middle of a's stream
    clock.advance(100.0)  # the timers' checkpoint
    settle(rt)
    cid, nodes = committed(store, "ckpt-test-align", "merge")
    assert cid == 2 and nodes["merge"]["seen"] == {"a": 5000, "b": 200}
    inst.stop()
    rt.shutdown()


def test_restore_after_a_crash_gives_the_final_state_of_an_uninterrupted_run(store, tmp_path):
    a = list(range(3000))
    b = list(range(7, 2007, 2))
    # the reference: one uninterrupted run, no checkpoints
    clock = ManualClock()
    rt = inline_runtime(clock)
    ref = two_feeds(a, b, None).instantiate(rt, "ckpt-test-ref")
    clock.advance(1.0)
    settle(rt)
    reference = ref._shared.snapshots[ref.plan.index["merge"]]
    ref.stop()
    rt.shutdown()
    # the same stream, crashed twice: everything after the last commit is lost with the process
    seen_restored = []
    for life in range(3):
        clock = ManualClock()
        rt = inline_runtime(clock)
        inst = two_feeds(a, b, Checkpoints(store, every=0.5)).instantiate(rt, "ckpt-test-crash")
        seen_restored.append(inst.checkpoints()["restored"])
        clock.advance(0.5)
        settle(rt)
        if life < 2:
            rt.shutdown()  # a crash: no stop, no last checkpoint
    clock.advance(0.5)
    settle(rt)
    state = inst._shared.snapshots[inst.plan.index["merge"]]
    assert seen_restored[0] == 0 and seen_restored[1] >= 1 and seen_restored[2] > seen_restored[1]
    assert state == reference
    assert reference["seen"] == {"a": len(a), "b": len(b)}
    inst.stop()
    rt.shutdown()


# -- a queue-fed graph ------------------------------------------------------------------------------
class Sum(Node):
    """Sums ``v`` per key (the state whose exactly-once-ness is checked)."""

    def __init__(self):
        self.sums = {}

    def process_batch(self, items, port):
        for item in items:
            p = item.payload
            self.sums[p["k"]] = self.sums.get(p["k"], 0) + p["v"]

    def snapshot(self):
        return dict(self.sums)

    def restore(self, state):
        self.sums = dict(state)


def summing(queue, checkpoint):
    g = Graph("sums", checkpoint=checkpoint)
    g.add("queue", QueueSource, queue)
    g.add("sum", Sum)
    g.pipe("queue", "sum")
    return g


def records(n):
    return [{"k": f"k{i % 7}", "v": i} for i in range(n)]


def expected(n):
    out = {}
    for r in records(n):
        out[r["k"]] = out.get(r["k"], 0) + r["v"]
    return out


class CrashAfterCommit:
    """A store whose commit reaches the disk and then 'crashes' the process: the acks that
    follow a commit never happen."""

    def __init__(self, inner):
        self.inner = inner
        self.armed = True

    def load(self, tenant, graph):
        return self.inner.load(tenant, graph)

    def commit(self, tenant, graph, cid, data):
        self.inner.commit(tenant, graph, cid, data)
        if self.armed:
            raise SystemError("crash between the commit and the acks")


def sums_of(inst):
    return inst._shared.snapshots[inst.plan.index["sum"]]


def test_queue_records_are_acked_only_when_a_checkpoint_that_contains_them_commits(
        store, tmp_path):
    clock = ManualClock()
    rt = inline_runtime(clock)
    q = DurableQueue(tmp_path / "q.db", "in", visibility_timeout=VISIBILITY, clock=WallClock(clock))
    q.put_many(records(500))
    inst = summing(q, Checkpoints(store, every=2.0)).instantiate(rt, "ckpt-test-acks")
    for _ in range(10):  # 1.5 s: everything processed, no checkpoint yet
        clock.advance(0.15)
        settle(rt)
    assert sums_of(inst) == expected(500)
    assert q.stats()["acked"] == 0 and q.stats()["in_flight"] == 500
    clock.advance(0.6)  # the checkpoint: committed, then acked
    settle(rt)
    assert inst.checkpoints()["committed"] == 1
    assert q.stats()["acked"] == 500 and q.stats()["in_flight"] == 0
    inst.stop()
    rt.shutdown()
    q.close()


def test_a_crash_before_the_commit_replays_the_records_into_the_restored_state(store, tmp_path):
    clock = ManualClock()
    path = tmp_path / "q.db"
    q = DurableQueue(path, "in", visibility_timeout=VISIBILITY, clock=WallClock(clock))
    q.put_many(records(300))
    rt = inline_runtime(clock)
    summing(q, Checkpoints(store, every=1.0)).instantiate(rt, "ckpt-test-before")
    clock.advance(1.0)
    settle(rt)  # checkpoint 1 holds all 300
    q.put_many(records(600)[300:])
    clock.advance(0.5)
    settle(rt)  # processed, not checkpointed
    rt.shutdown()  # crash
    q.close()
    clock.advance(VISIBILITY + 1)  # the dead process's leases run out
    q = DurableQueue(path, "in", visibility_timeout=VISIBILITY, clock=WallClock(clock))
    rt = inline_runtime(clock)
    inst = summing(q, Checkpoints(store, every=1.0)).instantiate(rt, "ckpt-test-before")
    assert inst.checkpoints()["restored"] == 1
    for _ in range(4):
        clock.advance(0.5)
        settle(rt)
    assert sums_of(inst) == expected(600)  # the 300 replayed counted once, the first 300 once
    assert q.stats()["acked"] == 600 and q.stats()["in_flight"] == 0
    assert inst.statistics().node("queue").emitted == 300
    inst.stop()
    rt.shutdown()
    q.close()


def test_records_redelivered_after_a_crash_between_commit_and_acks_are_dropped(store, tmp_path):
    clock = ManualClock()
    path = tmp_path / "q.db"
    q = DurableQueue(path, "in", visibility_timeout=VISIBILITY, clock=WallClock(clock))
    q.put_many(records(400))
    crashing = CrashAfterCommit(store)
    rt = inline_runtime(clock)
    summing(q, Checkpoints(crashing, every=1.0)).instantiate(rt, "ckpt-test-between")
    clock.advance(1.0)
    settle(rt)
    assert q.stats()["acked"] == 0 and store.load("ckpt-test-between", "sums") is not None
    rt.shutdown()
    q.close()
    clock.advance(VISIBILITY + 1)
    q = DurableQueue(path, "in", visibility_timeout=VISIBILITY, clock=WallClock(clock))
    crashing.armed = False
    rt = inline_runtime(clock)
    inst = summing(q, Checkpoints(crashing, every=1.0)).instantiate(rt, "ckpt-test-between")
    for _ in range(4):
        clock.advance(0.5)
        settle(rt)
    assert sums_of(inst) == expected(400)  # not doubled: all 400 were in the restored state
    stats = inst.statistics()
    assert stats.node("queue").emitted == 0
    assert q.stats()["acked"] == 400 and q.stats()["in_flight"] == 0
    inst.stop()
    rt.shutdown()
    q.close()


def test_sqlite_store_file_is_private_and_keeps_the_newest(tmp_path):
    s = SqliteCheckpoints(tmp_path / "c.db", keep=2)
    assert stat.S_IMODE(os.stat(tmp_path / "c.db").st_mode) == 0o600
    for cid in range(1, 6):
        s.commit("t", "g", cid, b"x%d" % cid)
    assert s.ids("t", "g") == [4, 5] and s.load("t", "g") == (5, b"x5")
    assert s.load("t", "other") is None
    mode = s._conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = s._conn.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)
    s.close()


def test_bad_checkpoint_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="load"):
        Checkpoints(object())
    with pytest.raises(ValueError, match="every"):
        Checkpoints(SqliteCheckpoints(tmp_path / "c.db"), every=0)
    with pytest.raises(TypeError, match="Checkpoints"):
        Graph("g", checkpoint="state.db")
    with pytest.raises(ValueError, match="postgresql"):
        PostgresCheckpoints("sqlite:///x")


def test_a_damaged_checkpoint_is_refused_at_start(tmp_path):
    s = SqliteCheckpoints(tmp_path / "c.db")
    s.commit("ckpt-test-bad", "sums", 3, b"\xc1 not msgpack")
    rt = inline_runtime(ManualClock())
    q = DurableQueue(tmp_path / "q.db", "in")
    with pytest.raises(ValueError, match="checkpoint 3 .* damaged"):
        summing(q, Checkpoints(s)).instantiate(rt, "ckpt-test-bad")
    rt.shutdown()
    q.close()


class CrashOnce(Sum):
    def __init__(self, crashed):
        super().__init__()
        self.crashed = crashed

    def process_batch(self, items, port):
        if not self.crashed and any(item.payload["v"] == 150 for item in items):
            self.crashed.append(True)
            raise RuntimeError("injected crash")
        super().process_batch(items, port)


def test_a_node_crash_restarts_the_instance_from_its_last_checkpoint(tmp_path, clock):
    from actors import Runtime
    from supervisors import GraphSupervision
    store = SqliteCheckpoints(tmp_path / "c.db")
    rt = Runtime(workers=2, clock=clock, node="test")
    q = DurableQueue(tmp_path / "q.db", "in", visibility_timeout=VISIBILITY, clock=WallClock(clock))
    q.put_many(records(100))
    crashed = []
    g = Graph("sums", checkpoint=Checkpoints(store, every=1.0),
              supervision=GraphSupervision())
    g.add("queue", QueueSource, q)
    g.add("sum", CrashOnce, crashed)
    g.pipe("queue", "sum")
    inst = g.instantiate(rt, "acme")
    for _ in range(20):
        clock.advance(0.5)
        settle_committed(rt, store)
    assert inst.checkpoints()["committed"] >= 1 and q.stats()["acked"] == 100
    q.put_many(records(300)[100:])  # v=150 crashes the node once
    for _ in range(200):  # bounded: 100 virtual seconds
        clock.advance(0.5)
        settle_committed(rt, store)
        status = inst.checkpoints()
        if q.stats()["acked"] == 300 and status["recoveries"] == 1 and status["commits"] >= 1:
            break
    assert crashed == [True]
    status = inst.checkpoints()
    assert status["recoveries"] == 1 and status["failed"] is None
    assert inst.restarts() == 1 + sum(n.restarts for n in inst.statistics().nodes)
    assert q.stats()["acked"] == 300 and q.stats()["dead"] == 0
    clock.advance(1.0)
    settle_committed(rt, store)
    assert sums_of(inst) == expected(300)  # the records lost in the crash counted once
    inst.stop()
    rt.shutdown()
    q.close()
    store.close()


class RejectOdd(Node):
    def process_batch(self, items, port):
        for item in items:
            if item.payload["v"] % 2:
                item.reject("odd")
            else:
                self.emit(item)


def test_rejected_records_are_not_kept_in_the_checkpoint_and_finished_sources_still_checkpoint(
        tmp_path, store):
    clock = ManualClock()
    rt = inline_runtime(clock)
    q = DurableQueue(tmp_path / "q.db", "in", visibility_timeout=VISIBILITY, clock=WallClock(clock))
    q.put_many(records(200))
    g = Graph("odd", checkpoint=Checkpoints(store, every=1.0))
    g.add("queue", QueueSource, q)
    g.add("odd", RejectOdd)
    g.add("sum", Sum)
    g.pipe("queue", "odd", "sum")
    inst = g.instantiate(rt, "ckpt-test-odd")
    for _ in range(3):
        clock.advance(1.0)
        settle(rt)
    _, nodes = committed(store, "ckpt-test-odd", "odd")
    assert nodes["queue"] == {"open": []}  # all acked or dead-lettered: nothing left to carry
    assert q.stats()["acked"] == 100 and q.stats()["dead"] == 100
    inst.stop()
    rt.shutdown()
    q.close()
    # a finite source beside an endless one: checkpoints go on until every node has ended
    clock = ManualClock()
    rt = inline_runtime(clock)
    g = Graph("finite", checkpoint=Checkpoints(store, every=1.0))
    g.add("a", IterableSource, range(10))
    g.add("b", Feed, list(range(5)))
    g.add("merge", Merge)
    g.add("out", Drop)
    g.connect("a", "merge.a")
    g.connect("b", "merge.b")
    g.connect("merge", "out")
    inst = g.instantiate(rt, "ckpt-test-finite")
    settle(rt)
    assert inst.statistics().node("a").emitted == 10  # finished
    clock.advance(1.0)
    settle(rt)
    assert inst.checkpoints()["committed"] == 1
    _, nodes = committed(store, "ckpt-test-finite", "finite")
    assert nodes["merge"]["seen"] == {"a": 10, "b": 5}
    inst.stop()
    rt.shutdown()


class Batched(Node):
    """Counts in batches of up to 1,000 or after 100 s: a barrier hands over the partial batch."""

    max_items = 1000
    max_delay = 100.0

    def __init__(self):
        self.count = 0

    def process_batch(self, items, port):
        self.count += len(items)
        self.emit_many(items)

    def snapshot(self):
        return self.count

    def restore(self, count):
        self.count = count


def test_a_barrier_hands_a_partial_batch_over_before_the_snapshot(store):
    clock = ManualClock()
    rt = inline_runtime(clock)
    items = list(range(50))
    g = Graph("batched", checkpoint=Checkpoints(store, every=1.0))
    g.add("numbers", Feed, items)
    g.add("batch", Batched)
    g.add("out", Drop)
    g.pipe("numbers", "batch", "out")
    inst = g.instantiate(rt, "ckpt-test-batched")
    settle(rt)
    assert inst.statistics().node("batch").processed == 0  # waiting in the batch
    clock.advance(1.0)
    settle(rt)
    _, nodes = committed(store, "ckpt-test-batched", "batched")
    assert nodes["numbers"] == 50 and nodes["batch"] == 50
    inst.stop()
    rt.shutdown()


def test_snapshots_are_consistent_with_the_sources_on_worker_threads(tmp_path, clock):
    from actors import Runtime
    store = SqliteCheckpoints(tmp_path / "c.db")
    rt = Runtime(workers=2, clock=clock, node="test")
    a, b = [], []
    inst = two_feeds(a, b, Checkpoints(store, every=0.5)).instantiate(rt, "acme")
    seen = set()
    for step in range(12):
        a.extend(range(step * 3000, (step + 1) * 3000))
        b.extend(range(step * 500, (step + 1) * 500))
        clock.advance(0.25)
        settle(rt)
        store.flush()  # the checkpoints handed to its group writer are committed
        found = store.load("acme", "merge")
        if found is None or found[0] in seen:
            continue
        seen.add(found[0])
        _, nodes = committed(store, "acme", "merge")
        assert nodes["merge"]["seen"] == {"a": nodes["a"], "b": nodes["b"]}
        assert nodes["merge"]["total"] == {"a": sum(a[:nodes["a"]]), "b": sum(b[:nodes["b"]])}
    assert len(seen) >= 3
    inst.stop()
    rt.shutdown()
    store.close()
