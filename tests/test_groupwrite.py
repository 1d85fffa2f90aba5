"""GroupWriter: one commit serves many callers; a failed group is written again item by item,
so a bad item fails only its own caller and nothing is lost or written twice; checkpoint stores
commit many tenants' checkpoints in one transaction, and a checkpoint that cannot be committed
restarts only its own tenant's instance, acknowledging nothing. Deterministic: a writer whose
``delay`` is an hour commits only when ``flush`` (or ``close``) says so."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors import ManualClock, Runtime
from actors.groupwrite import GroupWriter, WriterClosed
from actors.queue import DurableQueue, QueueSource
from actors.stream import Checkpoints, Graph, Sink, SqliteCheckpoints
from tests.conftest import settle

HOUR = 3600.0


class Table:
    """An all-or-nothing store: ``write`` raises before writing anything if an item is bad."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.calls: list[list[Any]] = []

    def write(self, items: list[Any]) -> None:
        self.calls.append(list(items))
        bad = [i for i in items if str(i).startswith("bad")]
        if bad:
            raise ValueError(f"refused {bad[0]}")
        self.rows.extend(items)


def outcomes() -> tuple[dict[Any, Any], Any]:
    got: dict[Any, Any] = {}

    def done_for(item: Any) -> Any:
        def done(error: BaseException | None) -> None:
            assert item not in got, "done called twice"
            got[item] = error
        return done
    return got, done_for


def test_one_commit_serves_every_caller_that_came_meanwhile() -> None:
    table = Table()
    writer: GroupWriter[str] = GroupWriter(table.write, name="t", delay=HOUR)
    got, done_for = outcomes()
    items = [f"tenant-{i}" for i in range(1000)]
    for item in items:
        writer.submit(item, done_for(item))
    assert writer.pending == 1000 and table.calls == []  # lingering: nothing written yet
    writer.flush()
    assert table.calls == [items]  # one transaction for the thousand
    assert got == {item: None for item in items}
    assert (writer.groups, writer.items, writer.retried, writer.failed) == (1, 1000, 0, 0)
    writer.close()


def test_max_items_bounds_a_group() -> None:
    table = Table()
    writer: GroupWriter[int] = GroupWriter(table.write, delay=HOUR, max_items=300)
    got, done_for = outcomes()
    for i in range(700):
        writer.submit(i, done_for(i))
    writer.flush()
    assert [len(c) for c in table.calls][-1] <= 300 and all(len(c) <= 300 for c in table.calls)
    assert table.rows == list(range(700)) and len(got) == 700
    writer.close()


def test_a_failed_group_is_written_again_item_by_item_and_fails_only_its_bad_item() -> None:
    table = Table()
    writer: GroupWriter[str] = GroupWriter(table.write, delay=HOUR)
    got, done_for = outcomes()
    items = ["a", "b", "bad-c", "d"]
    for item in items:
        writer.submit(item, done_for(item))
    writer.flush()
    # the group was refused as a whole (nothing of it written), then each item alone
    assert table.calls == [items, ["a"], ["b"], ["bad-c"], ["d"]]
    assert table.rows == ["a", "b", "d"]  # each good item exactly once, nothing lost
    assert got["a"] is None and got["b"] is None and got["d"] is None
    assert isinstance(got["bad-c"], ValueError) and "bad-c" in str(got["bad-c"])
    assert (writer.groups, writer.items, writer.retried, writer.failed) == (3, 3, 1, 1)
    writer.close()


def test_write_blocks_until_committed_and_raises_what_failed_it() -> None:
    table = Table()
    writer: GroupWriter[str] = GroupWriter(table.write, delay=0.0)
    writer.write("x")
    assert table.rows == ["x"]
    with pytest.raises(ValueError, match="bad-y"):
        writer.write("bad-y")
    writer.close()


def test_close_commits_what_is_pending_and_then_refuses() -> None:
    table = Table()
    writer: GroupWriter[str] = GroupWriter(table.write, delay=HOUR)
    got, done_for = outcomes()
    writer.submit("last", done_for("last"))
    writer.close()
    assert table.rows == ["last"] and got == {"last": None}
    with pytest.raises(WriterClosed):
        writer.submit("late", done_for("late"))
    writer.close()  # idempotent


def test_a_callback_that_raises_does_not_stop_the_others() -> None:
    table = Table()
    writer: GroupWriter[int] = GroupWriter(table.write, delay=HOUR)
    seen = []

    def boom(error: BaseException | None) -> None:
        raise RuntimeError("callback fault")
    writer.submit(1, boom)
    writer.submit(2, lambda error: seen.append(error))
    writer.flush()
    assert seen == [None] and table.rows == [1, 2]
    writer.close()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        GroupWriter(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay"):
        GroupWriter(Table().write, delay=-1)
    with pytest.raises(ValueError, match="max_items"):
        GroupWriter(Table().write, max_items=0)


# -- checkpoint stores ------------------------------------------------------------------------------
def test_checkpoints_of_many_tenants_are_one_transaction(tmp_path: Any) -> None:
    store = SqliteCheckpoints(tmp_path / "c.db")
    store.group_delay = HOUR
    got, done_for = outcomes()
    for i in range(200):
        store.commit_async(f"t{i}", "g", 1, b"state-%d" % i, done_for(i))
    assert store.load("t0", "g") is None  # not committed yet
    store.flush()
    assert store._writer is not None and store._writer.groups == 1
    assert got == {i: None for i in range(200)}
    assert [store.load(f"t{i}", "g") for i in (0, 199)] == [(1, b"state-0"), (1, b"state-199")]
    for cid in (2, 3, 4, 5):  # keep=3: the older ones go, in the same grouped transactions
        store.commit_async("t0", "g", cid, b"x", lambda error: None)
    store.close()  # commits what was pending first
    again = SqliteCheckpoints(tmp_path / "c.db")
    assert again.ids("t0", "g") == [3, 4, 5]
    again.close()


class RefusingCheckpoints(SqliteCheckpoints):
    """Refuses (before writing anything) every transaction that holds tenant ``bad``'s."""

    def _commit_many(self, entries: list[Any]) -> None:
        if any(tenant == "bad" for tenant, *_ in entries):
            raise OSError("disk refused bad's checkpoint")
        super()._commit_many(entries)


class Sum(Sink):
    def on_start(self) -> None:
        self.total = 0

    def process(self, item: Any, port: str) -> None:
        self.total += item.payload

    def snapshot(self) -> Any:
        return self.total

    def restore(self, total: Any) -> None:
        self.total = total


def test_a_checkpoint_that_fails_in_a_shared_commit_fails_only_its_tenant(tmp_path: Any) -> None:
    clock = ManualClock()
    store = RefusingCheckpoints(tmp_path / "c.db")
    store.group_delay = HOUR  # both tenants' checkpoints meet in one group (at flush)
    rt = Runtime(workers=2, clock=clock, node="test")
    queues = {t: DurableQueue(tmp_path / "q.db", "in", tenant=t, clock=_Wall(clock))
              for t in ("good", "bad")}
    g = Graph("sums", checkpoint=Checkpoints(store, every=1.0))
    g.add("queue", QueueSource, lambda tenant: queues[tenant])
    g.add("sum", Sum)
    g.pipe("queue", "sum")
    for q in queues.values():
        q.put_many(list(range(1, 101)))
    insts = {t: g.instantiate(rt, t) for t in queues}
    try:
        for _ in range(10):  # bounded: until both first checkpoints wait in the writer
            clock.advance(0.5)
            settle(rt)
            if store._writer is not None and store._writer.pending == 2:
                break
        store.flush()  # the group (good's and bad's) fails; each is then committed alone
        assert store._writer is not None and store._writer.retried == 1
        for _ in range(4):
            settle(rt)
            clock.advance(0.5)
            settle(rt)
            store.flush()
        settle(rt)
        good, bad = insts["good"].checkpoints(), insts["bad"].checkpoints()
        assert good["commits"] >= 1 and good["failed"] is None and good["recoveries"] == 0
        assert queues["good"].stats()["acked"] == 100  # acknowledged once committed
        assert bad["commits"] == 0 and bad["recoveries"] >= 1  # restarted from nothing ...
        assert queues["bad"].stats()["acked"] == 0  # ... and nothing of it acknowledged
        assert store.load("bad", "sums") is None and store.load("good", "sums") is not None
    finally:
        for inst in insts.values():
            inst.stop()
        rt.shutdown()
        for q in queues.values():
            q.close()
        store.close()


class _Wall:
    """Wall-clock seconds that follow a ManualClock (the queue's leases)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.base = 1_700_000_000.0

    def time(self) -> float:
        return self.base + self.clock.now()


def test_the_writer_thread_is_one_per_writer_not_per_caller() -> None:
    before = threading.active_count()
    writer: GroupWriter[int] = GroupWriter(Table().write, delay=HOUR)
    for i in range(100):
        writer.submit(i, lambda error: None)
    assert threading.active_count() == before + 1
    writer.close()
