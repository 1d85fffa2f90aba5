"""actors.queue.DurableQueue: delivery, retries, TTL, dead letters, leases, threads, processes.

Deterministic: TTLs and visibility timeouts run on an injected wall clock that the tests move;
nothing sleeps. Thread and process tests are bounded by counts and timeouts.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from actors.queue import (DeadLetter, Delivery, DurableQueue, EncodeError, QueueClosed,
                          RecoveryReport)
from tests._queue_support import WallClock

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("_queue_writer.py")


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def queue(path: Path, clock: WallClock):
    with DurableQueue(path, max_deliveries=3, visibility_timeout=10.0, clock=clock) as q:
        yield q


# ---------------------------------------------------------------- put / get / ack


def test_put_returns_increasing_unique_ids_and_get_delivers_payload_key_and_first_attempt(queue):
    first = queue.put({"n": 1}, key="dev-1")
    second = queue.put((2, "two"))
    assert second > first
    a, b = queue.get(max_items=10)
    assert (a.id, a.payload, a.key, a.attempt) == (first, {"n": 1}, "dev-1", 1)
    assert (b.id, b.payload, b.key, b.attempt) == (second, (2, "two"), None, 1)
    assert isinstance(a, Delivery)


def test_get_on_an_empty_queue_returns_an_empty_list_without_waiting(queue):
    assert queue.get(max_items=5) == []


def test_get_returns_at_most_max_items_oldest_first(queue):
    ids = queue.put_many(range(10))
    assert [d.id for d in queue.get(max_items=4)] == ids[:4]
    assert [d.id for d in queue.get(max_items=100)] == ids[4:]


def test_ack_removes_the_record_for_good_and_a_second_ack_returns_false(queue, clock):
    queue.put("x")
    (d,) = queue.get()
    assert d.ack() is True
    assert d.ack() is False
    clock.advance(3600)
    assert queue.get() == []
    assert queue.stats() == {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 0, "acked": 1,
                             "bytes": 0, "refused_full": 0}


def test_ids_are_never_reused_after_the_newest_records_were_acked(path, clock):
    with DurableQueue(path, clock=clock) as q:
        last = q.put("a")
        q.ack_many(q.get())
    with DurableQueue(path, clock=clock) as q:
        assert q.put("b") > last


def test_put_many_returns_ids_in_order_and_ack_many_acks_them_in_one_call(queue):
    ids = queue.put_many([{"i": i} for i in range(50)])
    assert ids == sorted(ids) and len(set(ids)) == 50
    got = queue.get(max_items=50)
    assert [d.payload["i"] for d in got] == list(range(50))
    assert queue.ack_many(got) == [True] * 50
    assert queue.ack_many(got) == [False] * 50
    assert queue.stats()["acked"] == 50


def test_records_and_attempt_counts_survive_close_and_reopen(path, clock):
    with DurableQueue(path, clock=clock, visibility_timeout=5) as q:
        ids = q.put_many(["a", "b"])
        q.get(max_items=1)  # leased, never settled
    clock.advance(6)
    with DurableQueue(path, clock=clock, visibility_timeout=5) as q:
        got = {d.id: d.attempt for d in q.get(max_items=10)}
    assert got == {ids[0]: 2, ids[1]: 1}


def test_queue_names_in_one_file_are_independent(path, clock):
    with DurableQueue(path, "a", clock=clock) as qa, DurableQueue(path, "b", clock=clock) as qb:
        qa.put("for a")
        qb.put("for b")
        assert [d.payload for d in qa.get(10)] == ["for a"]
        assert [d.payload for d in qb.get(10)] == ["for b"]
        assert qa.stats()["in_flight"] == 1 and qb.stats()["in_flight"] == 1


# ---------------------------------------------------------------- refusals


def test_unencodable_payload_raises_type_error_naming_the_path_and_writes_nothing(queue):
    with pytest.raises(TypeError, match=r"type set at payload\['tags'\]") as info:
        queue.put({"tags": {"a"}})
    assert isinstance(info.value, EncodeError)
    with pytest.raises(EncodeError):
        queue.put_many(["fine", object()])
    assert queue.stats()["ready"] == 0


def test_oversize_payload_is_rejected_with_value_error_before_writing(path, clock):
    with DurableQueue(path, clock=clock, max_payload_bytes=1000) as q:
        with pytest.raises(ValueError, match="exceeds max_payload_bytes=1000"):
            q.put(b"x" * 1000)
        q.put(b"x" * 900)
        assert q.stats()["ready"] == 1


@pytest.mark.parametrize("kwargs, field", [
    ({"max_deliveries": 0}, "max_deliveries"),
    ({"ttl": 0}, "ttl"),
    ({"ttl": float("nan")}, "ttl"),
    ({"visibility_timeout": -1}, "visibility_timeout"),
    ({"clock": object()}, "clock"),
    ({"max_bytes": 10}, "max_bytes"),
])
def test_bad_configuration_is_a_value_error_naming_the_field(path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        DurableQueue(path, **kwargs)


def test_bad_call_arguments_are_value_errors(queue):
    queue.put("x")
    with pytest.raises(ValueError, match="max_items"):
        queue.get(max_items=0)
    with pytest.raises(ValueError, match="key"):
        queue.put("x", key=5)  # type: ignore[arg-type]  # the wrong type is the test
    (d,) = queue.get()
    with pytest.raises(ValueError, match="delay"):
        d.nack(delay=-1)


def test_a_closed_queue_refuses_calls_and_close_is_idempotent(path, clock):
    q = DurableQueue(path, clock=clock)
    q.put("x")
    (d,) = q.get()
    q.close()
    q.close()
    with pytest.raises(QueueClosed):
        q.put("y")
    with pytest.raises(QueueClosed):
        d.ack()


# ---------------------------------------------------------------- retries and dead letters


def test_nack_redelivers_with_the_next_attempt_number(queue):
    queue.put("x")
    (d1,) = queue.get()
    assert d1.nack() is True
    (d2,) = queue.get()
    assert (d2.id, d2.attempt) == (d1.id, 2)


def test_nack_with_delay_keeps_the_record_delayed_until_the_delay_passed(queue, clock):
    queue.put("x")
    (d,) = queue.get()
    d.nack(delay=30)
    assert queue.get() == []
    assert queue.stats()["delayed"] == 1
    clock.advance(29.9)
    assert queue.get() == []
    clock.advance(0.2)
    assert [x.attempt for x in queue.get()] == [2]


def test_an_unacked_delivery_becomes_visible_again_after_the_visibility_timeout(queue, clock):
    queue.put("x")
    (d1,) = queue.get()
    assert queue.stats()["in_flight"] == 1
    clock.advance(9.9)
    assert queue.get() == []
    clock.advance(0.2)
    (d2,) = queue.get()
    assert (d2.id, d2.attempt) == (d1.id, 2)


def test_poison_record_is_dead_lettered_after_max_deliveries_and_the_stream_continues(queue):
    poison = queue.put("poison")
    good = queue.put_many(["a", "b"])
    deliveries_of_poison = 0
    processed = []
    for _ in range(10):  # bounded
        batch = queue.get(max_items=10)
        if not batch:
            break
        for d in batch:
            if d.payload == "poison":
                deliveries_of_poison += 1
                d.nack()
            else:
                processed.append(d.id)
                d.ack()
    assert deliveries_of_poison == 3
    assert processed == good
    assert queue.dead_letters() == [DeadLetter(poison, "poison", "max_deliveries", 3)]


def test_the_last_delivery_timing_out_moves_the_record_to_dead_letters_at_once(queue, clock):
    rid = queue.put("slow")
    for attempt in (1, 2, 3):
        (d,) = queue.get()
        assert d.attempt == attempt
        clock.advance(10.5)
    assert queue.get() == []
    assert queue.dead_letters() == [DeadLetter(rid, "slow", "max_deliveries", 3)]


def test_nack_with_error_on_the_last_delivery_gives_reason_error_text(queue):
    rid = queue.put("x")
    for _ in range(3):
        (d,) = queue.get()
        d.nack(error="sensor offline")
    assert queue.dead_letters() == [DeadLetter(rid, "x", "error: sensor offline", 3)]


def test_reject_dead_letters_at_once_with_the_error_text(queue):
    rid = queue.put({"temp": "NaN"})
    (d,) = queue.get()
    assert d.reject("validation: temp is not a number") is True
    assert queue.get() == []
    assert queue.dead_letters() == [
        DeadLetter(rid, {"temp": "NaN"}, "error: validation: temp is not a number", 1)]


def test_requeue_dead_makes_dead_letters_deliverable_again_with_fresh_attempts(queue):
    rid = queue.put("x")
    (d,) = queue.get()
    d.reject("bad")
    assert queue.requeue_dead([rid, 12345]) == 1
    (d2,) = queue.get()
    assert (d2.id, d2.attempt) == (rid, 1)
    assert d.ack() is False  # the old delivery cannot ack the requeued record
    assert queue.dead_letters() == []


def test_purge_dead_deletes_dead_letters_for_good(queue):
    rid = queue.put("x")
    (d,) = queue.get()
    d.reject("bad")
    assert queue.purge_dead([rid]) == 1
    assert queue.dead_letters() == [] and queue.stats()["dead"] == 0
    assert queue.requeue_dead([rid]) == 0


# ---------------------------------------------------------------- TTL


def test_an_expired_record_is_never_delivered_and_goes_to_dead_letters_as_expired(path, clock):
    with DurableQueue(path, ttl=60, clock=clock) as q:
        old = q.put("old")
        clock.advance(30)
        fresh = q.put("fresh")
        clock.advance(31)
        assert [d.id for d in q.get(max_items=10)] == [fresh]
        assert q.dead_letters() == [DeadLetter(old, "old", "expired", 0)]


def test_expiry_is_found_by_the_sweep_in_stats_without_any_get(path, clock):
    with DurableQueue(path, ttl=5, clock=clock) as q:
        q.put_many([1, 2, 3])
        clock.advance(5)
        assert q.stats()["dead"] == 3


def test_ttl_survives_close_and_reopen(path, clock):
    with DurableQueue(path, ttl=100, clock=clock) as q:
        rid = q.put("x")
    clock.advance(101)
    with DurableQueue(path, clock=clock) as q:  # reopened without a ttl: the stored deadline holds
        assert q.get() == []
        assert q.dead_letters() == [DeadLetter(rid, "x", "expired", 0)]


def test_a_leased_record_that_expires_can_still_be_acked_but_is_not_redelivered(path, clock):
    with DurableQueue(path, ttl=10, visibility_timeout=30, clock=clock) as q:
        q.put_many(["acked", "abandoned"])
        a, b = q.get(max_items=2)
        clock.advance(11)
        assert a.ack() is True
        clock.advance(30)
        assert q.get() == []
        assert [(x.id, x.reason) for x in q.dead_letters()] == [(b.id, "expired")]


# ---------------------------------------------------------------- leases


def test_a_late_ack_after_redelivery_is_a_no_op_returning_false(queue, clock):
    queue.put("x")
    (late,) = queue.get()
    clock.advance(11)
    (current,) = queue.get()
    assert late.ack(wait=True) is False
    assert late.nack(wait=True) is False
    assert late.reject("too late", wait=True) is False
    assert queue.stats()["in_flight"] == 1
    assert current.ack(wait=True) is True
    assert queue.stats()["acked"] == 1


def test_a_late_buffered_ack_is_accepted_at_once_but_settles_nothing(queue, clock):
    queue.put("x")
    (late,) = queue.get()
    clock.advance(11)
    (current,) = queue.get()
    assert late.ack() is True  # buffered: that it is stale is found when it is committed
    queue.flush()
    assert queue.stats()["in_flight"] == 1 and queue.stats()["acked"] == 0
    assert current.ack() is True
    queue.flush()
    assert queue.stats()["acked"] == 1


def test_a_late_ack_before_anyone_else_took_the_record_still_succeeds(queue, clock):
    queue.put("x")
    (d,) = queue.get()
    clock.advance(11)
    assert d.ack() is True
    assert queue.get() == []


def test_a_settled_delivery_cannot_be_settled_again(queue):
    queue.put("x")
    (d,) = queue.get()
    assert d.nack(delay=5) is True
    assert d.ack() is False and d.nack() is False
    assert queue.stats()["delayed"] == 1


def test_stats_counts_every_state(queue, clock):
    queue.put_many(range(6))
    ready_later = queue.get(max_items=4)
    ready_later[0].ack()
    ready_later[1].nack(delay=100)
    ready_later[2].reject("bad")
    # 5 records left (dead letters count): 1 msgpack byte each + 64 bytes per-record overhead
    assert queue.stats() == {"ready": 2, "in_flight": 1, "delayed": 1, "dead": 1, "acked": 1,
                             "bytes": 5 * (1 + 64), "refused_full": 0}


# ---------------------------------------------------------------- blocking get


def test_get_with_timeout_wakes_when_another_thread_puts(queue):
    started = threading.Event()

    def produce() -> None:
        started.wait(5)
        queue.put("late")

    t = threading.Thread(target=produce)
    t.start()
    started.set()
    got = queue.get(timeout=5.0)
    t.join(5)
    assert [d.payload for d in got] == ["late"]


# ---------------------------------------------------------------- concurrency


def test_many_producer_and_consumer_threads_keep_the_ledger_exact(path):
    producers, per_producer, consumers = 4, 250, 3
    accepted: list[int] = []
    acked: list[int] = []
    lock = threading.Lock()
    done_producing = threading.Event()

    with DurableQueue(path, max_deliveries=2, visibility_timeout=30) as q:
        def produce(k: int) -> None:
            for i in range(per_producer):
                ids = [q.put({"p": k, "i": i})] if i % 2 else q.put_many([{"p": k, "i": i}])
                with lock:
                    accepted.extend(ids)

        def consume(k: int) -> None:
            rnd = random.Random(k)
            for _ in range(100_000):  # bounded
                batch = q.get(max_items=rnd.randint(1, 20), timeout=0.05)
                if not batch and done_producing.is_set():
                    stats = q.stats()
                    if stats["ready"] == stats["in_flight"] == stats["delayed"] == 0:
                        return
                for d in batch:
                    if rnd.random() < 0.1:
                        d.nack()
                    elif rnd.random() < 0.02:
                        d.reject("unlucky")
                    elif d.ack(wait=True):
                        with lock:
                            acked.append(d.id)

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
        readers = [threading.Thread(target=consume, args=(k,)) for k in range(consumers)]
        for t in threads + readers:
            t.start()
        for t in threads:
            t.join(60)
        done_producing.set()
        for t in readers:
            t.join(60)
        assert not any(t.is_alive() for t in threads + readers)
        dead = [d.id for d in q.dead_letters(limit=10_000)]
        stats = q.stats()

    assert len(accepted) == len(set(accepted)) == producers * per_producer
    assert len(acked) == len(set(acked))
    assert not set(acked) & set(dead)
    assert sorted(acked + dead) == sorted(accepted)  # accepted == acked + dead, exactly
    assert stats["acked"] == len(acked) and stats["dead"] == len(dead)


def _run_helper(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(HELPER), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(ROOT))


def test_two_processes_on_one_file_never_get_the_same_delivery(path):
    total = 2000
    with DurableQueue(path) as q:
        q.put_many(range(total))
    # Each may take at most 1,200 of the 2,000, so both take part whatever the timing.
    procs = [_run_helper("consume", str(path), "1200") for _ in range(2)]
    for p in procs:  # start together, so that both really compete
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
        outputs.append([int(line) for line in out.split()])
    first, second = (set(o) for o in outputs)
    assert len(first) == len(outputs[0]) and len(second) == len(outputs[1])
    assert not first & second
    assert len(first | second) == total
    assert len(first) >= 800 and len(second) >= 800  # both took part
    with DurableQueue(path) as q:
        assert q.stats() == {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 0, "acked": total,
                             "bytes": 0, "refused_full": 0}


def test_a_clean_open_reports_no_damage(queue):
    assert queue.recovery_report == RecoveryReport()


# ---------------------------------------------------------------- damage found after open


def test_a_record_whose_bytes_changed_on_disk_is_dead_lettered_as_corrupt(path, clock):
    import sqlite3

    with DurableQueue(path, clock=clock) as q:
        bad = q.put({"n": 1})
        good = q.put({"n": 2})
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE messages SET payload = ? WHERE id = ?", (b"\x81\xa1n\x05", bad))
    conn.close()
    with DurableQueue(path, clock=clock) as q:
        assert [d.id for d in q.get(max_items=10)] == [good]
        (dead,) = q.dead_letters()
        assert dead.id == bad and dead.reason.startswith("error: corrupt record")


def test_a_damaged_lease_row_found_at_run_time_is_repaired_and_its_records_come_back(path, clock):
    import sqlite3

    with DurableQueue(path, clock=clock, visibility_timeout=5) as q:
        ids = q.put_many(["a", "b", "c"])
        assert len(q.get(max_items=2)) == 2  # leased, then abandoned
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE leases SET ids = '[1,2'")
    conn.close()
    clock.advance(6)
    with DurableQueue(path, clock=clock, visibility_timeout=5) as q:
        assert not q.recovery_report.corrupt  # SQLite's own check cannot see this
        got = sorted(d.id for d in q.get(max_items=10))
        assert got == ids
        assert q.recovery_report.corrupt and "damaged id list" in q.recovery_report.detail
        assert q.recovery_report.salvaged == 3


def test_get_with_a_timeout_returns_an_empty_list_when_nothing_arrives(queue):
    assert queue.get(max_items=3, timeout=0.05) == []


def test_a_nack_delay_survives_close_and_reopen(path, clock):
    with DurableQueue(path, clock=clock) as q:
        q.put("x")
        (d,) = q.get()
        d.nack(delay=60)
    with DurableQueue(path, clock=clock) as q:
        assert q.get() == [] and q.stats()["delayed"] == 1
        clock.advance(61)
        assert [x.attempt for x in q.get()] == [2]


def test_keys_and_names_must_be_plain_utf8_text(path, queue):
    with pytest.raises(ValueError, match="key"):
        queue.put("x", key="a\x00b")
    with pytest.raises(ValueError, match="key"):
        queue.put("x", key="\ud800")
    with pytest.raises(ValueError, match="name"):
        DurableQueue(path, "")


# ---------------------------------------------------------------- random operation sequences

from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402


class QueueMachine(RuleBasedStateMachine):
    """Random puts, gets, acks, nacks, rejects, clock moves and reopens, checked against the
    promises: a record is never handed to two holders at once, attempts grow by one per
    delivery, nothing is delivered after its TTL or after an ack, and the ledger adds up."""

    MAX, VISIBILITY, TTL = 3, 10.0, 50.0

    def __init__(self) -> None:
        super().__init__()
        import tempfile
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "q.db")
        self.clock = WallClock()
        self.q = self._open()
        self.put_at: dict[int, float] = {}
        self.attempts: dict[int, int] = {}
        self.open: dict[int, tuple[Delivery, float]] = {}  # id -> (delivery, lease deadline)
        self.abandoned: dict[int, float] = {}  # held by a closed queue object: id -> deadline
        self.acked: set[int] = set()
        self.rejected: set[int] = set()

    def _open(self) -> DurableQueue:
        return DurableQueue(self.path, max_deliveries=self.MAX, ttl=self.TTL,
                            visibility_timeout=self.VISIBILITY, clock=self.clock)

    @rule(n=st.integers(1, 5))
    def put(self, n: int) -> None:
        for rid in self.q.put_many([{"n": i} for i in range(n)]):
            assert rid not in self.put_at
            self.put_at[rid] = self.clock.now

    @rule(n=st.integers(1, 6))
    def get(self, n: int) -> None:
        now = self.clock.now
        for d in self.q.get(max_items=n):
            assert d.id in self.put_at and d.id not in self.acked and d.id not in self.rejected
            assert now < self.put_at[d.id] + self.TTL, "delivered after its TTL"
            held = self.open[d.id][1] if d.id in self.open else self.abandoned.pop(d.id, now)
            assert held <= now, "delivered while another lease holds it"
            assert d.attempt == self.attempts.get(d.id, 0) + 1 <= self.MAX
            self.attempts[d.id] = d.attempt
            self.open[d.id] = (d, now + self.VISIBILITY)

    @precondition(lambda self: self.open)
    @rule(data=st.data(), action=st.sampled_from(["ack", "nack", "nack_later", "reject"]))
    def settle(self, data: st.DataObject, action: str) -> None:
        rid = data.draw(st.sampled_from(sorted(self.open)))
        d, deadline = self.open.pop(rid)
        current = deadline > self.clock.now
        # A buffered settlement returns True at once; only a waited one says whether a late
        # delivery was still current, which the model needs.
        wait = not current or data.draw(st.booleans())
        if action == "ack":
            ok = d.ack(wait=wait)
            if ok:
                self.acked.add(rid)
        elif action == "reject":
            ok = d.reject("bad", wait=wait)
            if ok:
                self.rejected.add(rid)
        else:
            ok = d.nack(delay=0.0 if action == "nack" else 5.0, wait=wait)
        if current:
            assert ok, f"{action} of a current delivery failed"

    @precondition(lambda self: self.rejected)
    @rule()
    def requeue_rejected(self) -> None:
        ids = sorted(self.rejected)
        assert self.q.requeue_dead(ids) == len(ids)
        for rid in ids:  # attempts start again, and so does the TTL
            self.attempts[rid], self.put_at[rid] = 0, self.clock.now
        self.rejected.clear()

    @rule(seconds=st.sampled_from([1.0, 6.0, 11.0, 30.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reopen(self) -> None:
        self.abandoned.update((rid, deadline) for rid, (_d, deadline) in self.open.items())
        self.open.clear()
        self.q.close()
        self.q = self._open()
        assert not self.q.recovery_report.corrupt

    @invariant()
    def ledger_adds_up(self) -> None:
        stats = self.q.stats()
        live = stats["ready"] + stats["in_flight"] + stats["delayed"]
        assert stats["acked"] == len(self.acked)
        assert live + stats["dead"] + stats["acked"] == len(self.put_at)
        dead = {x.id: x for x in self.q.dead_letters()}
        assert self.rejected <= dead.keys()
        for letter in dead.values():
            assert letter.reason in ("max_deliveries", "expired", "error: bad")
            assert letter.reason != "max_deliveries" or letter.attempts == self.MAX

    def teardown(self) -> None:
        self.q.close()
        self.dir.cleanup()


QueueMachine.TestCase.settings = settings(  # QEXAMPLES=600 for a longer search
    max_examples=int(os.environ.get("QEXAMPLES", 40)), stateful_step_count=40, deadline=None)
test_random_operation_sequences_keep_every_promise = QueueMachine.TestCase


def test_a_second_queue_on_an_open_file_does_not_drop_the_first_ones_locks(tmp_path):
    """Reading the header with open()/close() would release this process's POSIX locks on the
    file; another process closing its last connection would then delete the WAL under us."""
    import subprocess
    import sys
    path = tmp_path / "shared.db"
    work = DurableQueue(path, "work")
    done = DurableQueue(path, "done")  # opens the same file again in this process
    try:
        code = ("import sys; sys.path.insert(0, sys.argv[1]); from actors.queue import DurableQueue;"
                "q = DurableQueue(sys.argv[2], 'work'); q.put_many(list(range(50))); q.close()")
        root = str(Path(__file__).resolve().parent.parent)
        subprocess.run([sys.executable, "-c", code, root, str(path)], check=True, timeout=60)
        got = work.get(max_items=100, timeout=5.0)
        assert sorted(d.payload for d in got) == list(range(50))
    finally:
        done.close()
        work.close()


def test_a_group_interrupted_in_the_callers_thread_releases_every_waiting_call(path, clock):
    """The calling thread runs a group when none is running; if it is interrupted there (a
    KeyboardInterrupt), the other calls of that group get an error instead of hanging, and
    the queue keeps working."""
    from actors.queue import QueueError
    from actors.queue._committer import _nothing, _Op

    with DurableQueue(path, clock=clock) as q:
        committer = q._committer
        real = committer._group

        def interrupted(batch):  # as if Ctrl-C arrived while this thread ran the group
            committer._group = real
            raise KeyboardInterrupt

        mine, other = _Op("flush", _nothing, (), 1), _Op("flush", _nothing, (), 1)
        released = []
        waiter = threading.Thread(target=lambda: released.append(other.done.acquire(timeout=30)))
        waiter.start()
        committer._group = interrupted
        with pytest.raises(KeyboardInterrupt):
            committer._enqueue_and_run([mine, other])  # one batch, run in this thread
        waiter.join(timeout=30)
        assert released == [True] and isinstance(other.error, QueueError)
        assert "interrupted" in str(other.error)
        assert q.put("after") > 0
        assert [d.payload for d in q.get(max_items=10)] == ["after"]
