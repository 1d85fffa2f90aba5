"""``put_each``: records for several queues in one call - one transaction per file, each queue's
outcome on its own (a full queue refused, its neighbours stored)."""

from __future__ import annotations

from pathlib import Path

from actors.queue import DurableQueue, QueueClosed, QueueFull
from actors.queue._routed import put_each


def test_queues_of_one_file_share_one_transaction_and_fail_alone(tmp_path: Path) -> None:
    path = tmp_path / "queues.db"
    a = DurableQueue(path, "a", tenant="a")
    b = DurableQueue(path, "b", tenant="b", max_bytes=4096)
    c = DurableQueue(tmp_path / "other.db", "c")
    closed = DurableQueue(path, "gone")
    closed.close()
    try:
        committer = a._committer
        assert b._committer is committer and c._committer is not committer
        before = committer.groups
        out = put_each([(a, [[i] for i in range(100)]), (b, [["x" * 200] for _ in range(50)]),
                        (c, [[1], [2]]), (closed, [[3]])])
        assert committer.groups == before + 1  # a and b (refused) in one group commit
        assert out[0] == sorted(out[0]) and len(out[0]) == 100
        assert isinstance(out[1], QueueFull) and b.stats()["refused_full"] == 50
        assert len(out[2]) == 2 and isinstance(out[3], QueueClosed)
        assert [d.payload for d in a.get(200)] == [[i] for i in range(100)]  # stored, in order
        assert b.get(10) == [] and [d.payload for d in c.get(10)] == [[1], [2]]
    finally:
        for q in (a, b, c):
            q.close()


def test_other_queue_like_objects_are_called_one_by_one(tmp_path: Path) -> None:
    class Wrapper:
        def __init__(self, queue: DurableQueue) -> None:
            self.queue, self.calls = queue, 0

        def put_many(self, rows: list) -> list[int]:
            self.calls += 1
            return self.queue.put_many(rows)

    with DurableQueue(tmp_path / "w.db", "w") as q:
        w = Wrapper(q)
        out = put_each([(w, [[1], [2]]), (w, [])])
        assert w.calls == 2 and len(out[0]) == 2 and out[1] == []


class Counting:
    """A counting wrapper (``wrapped_queue``, ``before_put``, ``after_put``)."""

    def __init__(self, queue: DurableQueue) -> None:
        self.wrapped_queue, self.events = queue, []

    def before_put(self, n: int) -> None:
        self.events.append(("before", n))

    def after_put(self, outcome: object, n: int) -> None:
        self.events.append(("after", type(outcome).__name__, n))


def test_counting_wrappers_share_their_queues_transaction_and_see_each_outcome(
        tmp_path: Path) -> None:
    path = tmp_path / "queues.db"
    queues = [DurableQueue(path, "r", tenant=f"t{i}") for i in range(20)]
    full = DurableQueue(path, "r", tenant="full", max_bytes=4096)
    try:
        wrappers = [Counting(q) for q in [*queues, full]]
        committer = queues[0]._committer
        before = committer.groups
        out = put_each([(w, [["x" * 200]] * 30) for w in wrappers])
        assert committer.groups == before + 1  # 21 tenants, one transaction
        assert all(w.events == [("before", 30), ("after", "list", 30)] for w in wrappers[:-1])
        assert wrappers[-1].events == [("before", 30), ("after", "QueueFull", 30)]
        assert isinstance(out[-1], QueueFull) and all(len(o) == 30 for o in out[:-1])
        assert all(q.stats()["ready"] == 30 for q in queues)
    finally:
        for q in [*queues, full]:
            q.close()


def test_a_failed_shared_transaction_reaches_every_wrapper_then_raises(tmp_path: Path) -> None:
    import pytest

    from actors.queue import QueueUnavailable
    from actors.queue import _routed
    with DurableQueue(tmp_path / "q.db", "r") as q:
        w = Counting(q)

        def down(batches: object) -> list:
            raise QueueUnavailable("test: the disk went away")
        real, _routed._put_each = _routed._put_each, down
        try:
            with pytest.raises(QueueUnavailable):
                put_each([(w, [[1]])])
        finally:
            _routed._put_each = real
        assert w.events == [("before", 1), ("after", "QueueUnavailable", 1)]


def test_a_failed_transaction_of_one_file_is_only_its_entries_outcome(tmp_path: Path) -> None:
    """Two files: the second one's transaction fails. Its entries get the error, the first
    file's entry keeps its ids (it was stored) - nothing stored is reported refused."""
    from actors.queue import QueueUnavailable
    a = DurableQueue(tmp_path / "a.db", "r")
    b = DurableQueue(tmp_path / "b.db", "r")
    try:
        wa, wb = Counting(a), Counting(b)

        def down(*args: object, **kwargs: object) -> list:
            raise QueueUnavailable("test: b.db is failing I/O")
        b._committer.submit = down  # type: ignore[method-assign]
        out = put_each([(wa, [[1], [2]]), (wb, [[3]]), (b, [[4]])])
        assert len(out[0]) == 2 and isinstance(out[1], QueueUnavailable)
        assert isinstance(out[2], QueueUnavailable)
        assert wa.events[-1] == ("after", "list", 2)
        assert wb.events[-1] == ("after", "QueueUnavailable", 1)
        assert [d.payload for d in a.get(10)] == [[1], [2]]
    finally:
        del b._committer.submit
        a.close()
        b.close()
