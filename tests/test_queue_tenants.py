"""Many queues and tenants in one file: one engine per file, consistent stats, export, delete.

docs/ARCHITECTURE.md section 2: a node's threads and file descriptors do not grow with its tenants, and a
tenant's data can be exported and deleted as a unit. The delete test reads the raw bytes of the
file and its WAL: no byte of the deleted tenant's payloads may be left.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import threading
from pathlib import Path

import pytest

from actors.queue import (DurableQueue, QueueClosed, QueueFull, delete_tenant, export_tenant,
                          put_each, stats_many)
from actors.queue._engine import open_engines

DATA = Path(__file__).with_name("data")


def _committers() -> int:
    return sum(t.name.startswith("streamvisor-queue") for t in threading.enumerate())


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_a_thousand_tenant_queues_in_one_file_share_one_thread_and_a_fixed_set_of_fds(tmp_path):
    path = tmp_path / "tenants.db"
    threads_before, first = _committers(), DurableQueue(path, "readings", tenant="t0")
    fds_one_queue = _fds()
    queues = [first] + [DurableQueue(path, "readings", tenant=f"t{i}") for i in range(1, 1000)]
    try:
        for i, q in enumerate(queues):
            q.put({"tenant": i})
        assert _committers() == threads_before + 1
        assert _fds() == fds_one_queue  # the WAL may have been opened since: never per queue
        assert open_engines()[os.path.realpath(path)] == 1000
        counts = stats_many(path)
        assert len(counts) == 1000
        assert all(counts[(f"t{i}", "readings")]["ready"] == 1 for i in range(1000))
        got = queues[500].get(max_items=10)
        assert [d.payload for d in got] == [{"tenant": 500}]  # each tenant sees only its own
    finally:
        for q in queues[:-1]:
            q.close()
        assert _committers() == threads_before + 1  # still one user
        queues[-1].close()
    assert _committers() == threads_before  # the last close stops the thread
    assert os.path.realpath(path) not in open_engines()


def test_closing_one_queue_of_a_shared_file_leaves_the_others_working(tmp_path):
    path = tmp_path / "q.db"
    a, b = DurableQueue(path, "a"), DurableQueue(path, "b")
    a.close()
    with pytest.raises(QueueClosed):
        a.put(1)
    assert b.put(2) > 0 and [d.payload for d in b.get()] == [2]
    b.close()


def test_the_same_name_of_two_tenants_are_two_queues(tmp_path):
    path = tmp_path / "q.db"
    with DurableQueue(path, "work", tenant="acme") as acme, \
            DurableQueue(path, "work", tenant="globex") as globex, \
            DurableQueue(path, "work") as shared:
        acme.put("for acme")
        globex.put_many(["for globex"] * 2)
        assert [d.payload for d in acme.get(max_items=10)] == ["for acme"]
        assert [d.payload for d in globex.get(max_items=10)] == ["for globex"] * 2
        assert shared.get(max_items=10) == []


@pytest.mark.parametrize("bad", ["", "a\x1fb", "a\x00b", 7])
def test_tenant_and_name_may_not_hold_the_separator(tmp_path, bad):
    with pytest.raises(ValueError, match="tenant"):
        DurableQueue(tmp_path / "q.db", "work", tenant=bad)
    if isinstance(bad, str) and bad:
        with pytest.raises(ValueError, match="name"):
            DurableQueue(tmp_path / "q.db", bad)


def test_stats_many_reads_every_queue_in_one_transaction_and_the_ledger_adds_up(tmp_path):
    path = tmp_path / "q.db"
    with DurableQueue(path, "in", tenant="acme", max_deliveries=1) as q, \
            DurableQueue(path, "in", tenant="globex") as other:
        q.put_many(range(10))
        other.put("x")
        batch = q.get(max_items=6)
        batch[0].ack()
        batch[1].reject("bad")
        batch[2].nack(delay=100)  # max_deliveries=1: the last try, dead at once
        q.flush()  # stats_many reads what is committed
        counts = stats_many(path)
        acme = counts[("acme", "in")]
        assert acme == {"ready": 4, "in_flight": 3, "delayed": 0, "dead": 2, "acked": 1,
                        "bytes": acme["bytes"]}
        assert acme["bytes"] == 9 * (1 + 64)
        assert counts[("globex", "in")]["ready"] == 1
        asked = stats_many(path, [("acme", "in"), ("nobody", "in"), (None, "in")])
        assert set(asked) == {("acme", "in"), ("nobody", "in"), (None, "in")}
        assert asked[("nobody", "in")] == dict.fromkeys(acme, 0)

        stop, seen = threading.Event(), []

        def churn() -> None:  # moves records between states while the stats are read
            for _ in range(200):
                if stop.is_set():
                    return
                q.put_many(range(5))
                for d in q.get(max_items=5):
                    d.ack()

        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(20):
                seen.append(stats_many(path, [("acme", "in")])[("acme", "in")])
        finally:
            stop.set()
            t.join()
        for c in seen:  # every snapshot: what went in is queued, dead or acked, nothing else
            queued = c["ready"] + c["in_flight"] + c["delayed"]
            assert c["bytes"] == (queued + c["dead"]) * (1 + 64)


def test_export_tenant_copies_exactly_that_tenants_queues_into_a_private_file(tmp_path):
    path, out = tmp_path / "q.db", tmp_path / "acme-export.db"
    with DurableQueue(path, "work", tenant="acme") as a, \
            DurableQueue(path, "alerts", tenant="acme") as a2, \
            DurableQueue(path, "work", tenant="globex") as g:
        a.put_many([{"acme": i} for i in range(20)])
        a2.put({"alert": "hot"})
        g.put_many([{"globex-secret": i} for i in range(20)])
        a.get(max_items=5)[0].reject("bad")
        a.flush()
        assert export_tenant(path, "acme", out) == 21
        with pytest.raises(FileExistsError):
            export_tenant(path, "acme", out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"globex-secret" not in out.read_bytes()
    with DurableQueue(out, "work", tenant="acme", visibility_timeout=30) as a:
        assert [x.reason for x in a.dead_letters()] == ["error: bad"]
        assert a.stats()["in_flight"] == 4 and a.stats()["ready"] == 15
    with DurableQueue(out, "alerts", tenant="acme") as a2:
        assert [d.payload for d in a2.get()] == [{"alert": "hot"}]
    assert stats_many(out).keys() == {("acme", "work"), ("acme", "alerts")}


def _raw(path: Path) -> bytes:
    return b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal")
                    if Path(f"{path}{s}").exists())


def test_delete_tenant_leaves_no_byte_of_its_payloads_in_the_file_and_others_intact(tmp_path):
    path = tmp_path / "q.db"
    secret = f"ACME-SECRET-{secrets.token_hex(8)}"
    other = f"GLOBEX-DATA-{secrets.token_hex(8)}"
    with DurableQueue(path, "work", tenant="acme", max_deliveries=2) as a, \
            DurableQueue(path, "dead", tenant="acme") as a2, \
            DurableQueue(path, "work", tenant="globex") as g:
        ids_g = g.put_many([{"v": other, "i": i} for i in range(300)])
        a.put_many([{"v": secret, "i": i, "pad": "p" * 300} for i in range(300)])
        a2.put({"v": secret})
        acked = a.get(max_items=100)  # acked records leave their bytes in free space ...
        a.ack_many(acked)
        a.get(max_items=10)[0].reject("poison")  # ... dead letters and leases stay in the file
        g.ack_many(g.get(max_items=50))
        assert secret.encode() in _raw(path)
        assert delete_tenant(path, "acme") == 201
        assert secret.encode() not in _raw(path)  # not in the file, not in the WAL
        assert other.encode() in _raw(path)
        assert stats_many(path).keys() == {("globex", "work")}
        rest = g.get(max_items=1000)
        assert sorted(d.id for d in rest) == ids_g[50:]
        assert all(d.payload["v"] == other for d in rest)
        assert a.get() == [] and a.stats()["acked"] == 0  # nothing left of acme
    with pytest.raises(ValueError, match="tenant"):
        delete_tenant(path, "a\x1fb")


def test_an_old_format_file_is_upgraded_at_open_with_every_record_kept(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(DATA / "queue-v2.db", path)  # written by schema version 2 (no byte counters)
    with DurableQueue(path, "readings") as q:
        assert not q.recovery_report.corrupt
        stats = q.stats()
        assert (stats["ready"] + stats["in_flight"], stats["dead"], stats["acked"]) == (8, 1, 2)
        assert stats["bytes"] > 8 * 64
        payloads = [d.payload for d in q.get(max_items=100)]
        assert {"device": "k", "temp": 1.5} in payloads and len(payloads) == 8
        assert [x.reason for x in q.dead_letters()] == ["error: bad reading"]
    with DurableQueue(path, "alerts") as q:
        assert [d.payload for d in q.get()] == [{"alert": "hot"}]
    import sqlite3
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    finally:
        conn.close()


def test_put_each_puts_into_many_tenants_queues_in_one_commit_and_refuses_per_queue(tmp_path):
    path = tmp_path / "q.db"
    queues = [DurableQueue(path, "readings", tenant=f"t{i}") for i in range(300)]
    small = DurableQueue(path, "readings", tenant="small", max_bytes=4096)
    try:
        groups = queues[0]._committer.groups
        batches = [(q, [{"tenant": q.tenant, "i": i} for i in range(3)]) for q in queues]
        out = put_each([*batches, (small, [{"pad": "x" * 2000}] * 3)])  # small: over 4 KiB
        assert queues[0]._committer.groups == groups + 1  # one transaction, one fsync
        assert isinstance(out[-1], QueueFull) and small.stats()["refused_full"] == 3
        assert small.stats()["ready"] == 0
        for (q, payloads), ids in zip(batches, out):
            assert len(ids) == 3
            assert [d.payload for d in q.get(max_items=10)] == payloads
        bad = put_each([(queues[0], [1]), (queues[1], [{1, 2}])])  # a set cannot be encoded
        assert isinstance(bad[1], TypeError) and len(bad[0]) == 1
        assert queues[1].stats()["ready"] == 0
    finally:
        for q in [*queues, small]:
            q.close()
