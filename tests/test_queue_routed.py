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
