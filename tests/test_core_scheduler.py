"""The M:N scheduler on real threads: no lost wake-ups, one worker per actor at a time, a fixed
pool whatever the number of actors, stalls reported while other actors keep running."""

from __future__ import annotations

import threading
from collections import deque

from structlog.testing import capture_logs

from actors import Actor, HandlerOverrun, Runtime
from actors.testing import Recorder, wait_until


class Counter(Actor):
    def __init__(self):
        self.count = 0

    def receive(self, message):
        if message == "count":
            return self.count
        self.count += 1


def test_no_lost_wakeups_when_many_producer_threads_race_one_consumer():
    """Tiny bursts make the consumer go idle between them, so every tell races the
    end-of-turn release of the scheduling token."""
    rounds, producers, burst = 200, 6, 5
    with Runtime(workers=2) as rt:
        consumer = rt.spawn(Counter, mailbox_size=1_000_000)
        barrier = threading.Barrier(producers)

        def produce():
            for _ in range(rounds):
                barrier.wait()
                for _ in range(burst):
                    consumer.tell(1)

        threads = [threading.Thread(target=produce) for _ in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        expected = rounds * producers * burst
        wait_until(lambda: consumer.ask("count") == expected, timeout=20,
                   message=f"{expected} messages counted")
        assert consumer.statistics().dropped == 0


def test_an_actor_never_runs_on_two_workers_at_once():
    overlaps = Recorder()

    class Exclusive(Actor):
        def __init__(self):
            self.inside = 0
            self.seen = 0

        def receive(self, message):
            if message == "seen":
                return self.seen
            self.inside += 1
            if self.inside != 1:
                overlaps.append(self.inside)
            self.seen += 1
            self.inside -= 1

    with Runtime(workers=2, budget=1) as rt:  # budget 1: maximal rescheduling
        refs = [rt.spawn(Exclusive, mailbox_size=100_000) for _ in range(4)]

        def hammer():
            for i in range(4000):
                refs[i % 4].tell(i)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        wait_until(lambda: sum(r.ask("seen") for r in refs) == 16000, timeout=20,
                   message="all messages handled")
    assert overlaps.items == []


def test_a_hundred_thousand_actors_add_no_threads():
    before = threading.active_count()
    with Runtime(workers=2) as rt:
        with_pool = threading.active_count()
        refs = [rt.spawn(Counter) for _ in range(100_000)]
        assert rt.wait_idle(60)
        assert threading.active_count() == with_pool
        assert with_pool - before == 3  # two workers and the service thread
        for ref in refs[::997]:
            ref.tell(1)
        assert rt.wait_idle(10)
        assert rt.statistics().actors == 100_000
    del refs


def test_a_blocked_handler_is_reported_and_other_actors_keep_running():
    events = Recorder()

    class Listen(Actor):
        def receive(self, message):
            events.append(message)

    class Stuck(Actor):
        def __init__(self, release):
            self.release = release

        def receive(self, message):
            assert self.release.wait(10)

    release = threading.Event()
    with capture_logs() as logs:
        with Runtime(workers=2, time_slice=0.005) as rt:
            rt.bus.subscribe(HandlerOverrun, rt.spawn(Listen))
            stuck = rt.spawn(Stuck, release)
            counter = rt.spawn(Counter)
            stuck.tell("block a worker")
            for _ in range(100):
                counter.tell(1)
            wait_until(lambda: counter.ask("count", timeout=5) == 100, message="others to run")
            overrun = events.wait_for(1, timeout=10)[0]
            assert overrun.path == stuck.path and overrun.seconds > 0.01
            release.set()
    warnings = [e for e in logs if e["event"] == "handler overran its time slice"]
    assert warnings and warnings[0]["actor"] == stuck.path


def test_a_single_worker_is_woken_when_another_is_blocked_in_an_ask():
    class Asker(Actor):
        def receive(self, message):
            return message.ask("count", timeout=5)

    with Runtime(workers=2) as rt:
        counter = rt.spawn(Counter)
        asker = rt.spawn(Asker)
        for _ in range(10):
            counter.tell(1)
        assert asker.ask(counter, timeout=5) == 10


def test_wait_idle_returns_when_all_work_is_done():
    with Runtime(workers=2) as rt:
        counters = [rt.spawn(Counter) for _ in range(50)]
        for c in counters:
            for _ in range(100):
                c.tell(1)
        assert rt.wait_idle(10)
        assert rt.statistics().run_queue == 0
        assert sum(c.statistics().processed for c in counters) == 5000


def test_a_chain_of_blocking_stops_does_not_starve_the_pool():
    """A's handler stops B; B's on_stop stops C: both workers block, C must still run."""

    class Leaf(Actor):
        def receive(self, message):
            return message

    class Middle(Actor):
        def __init__(self, leaf):
            self.leaf = leaf

        def receive(self, message):
            return message

        def on_stop(self, reason):
            self.stopped_leaf = self.runtime.stop(self.leaf, timeout=5.0)
            results.append(("leaf stopped in time", self.stopped_leaf))

    class Top(Actor):
        def receive(self, message):
            return self.runtime.stop(message, timeout=5.0)

    results = Recorder()
    with Runtime(workers=2) as rt:
        leaf = rt.spawn(Leaf)
        middle = rt.spawn(Middle, leaf)
        top = rt.spawn(Top)
        assert top.ask(middle, timeout=10) is True
        assert results.items == [("leaf stopped in time", True)]
        assert not leaf.is_alive()
        assert rt.wait_idle(5)
        assert rt._scheduler._spares == 0


class _NoScan(deque):
    """A run queue that refuses every operation costing O(length): helping must claim a cell
    without searching the queue (a scan per wait made starting or stopping thousands of
    supervisors quadratic)."""

    def _scan(self, *args, **kwargs):
        raise AssertionError("the run queue was scanned")

    remove = index = count = __contains__ = __iter__ = __reversed__ = _scan


class _FakeCell:
    def __init__(self):
        self.turns = 0

    def _run(self, budget, time_slice):
        self.turns += 1
        return False  # went idle


def test_directed_helping_claims_a_queued_cell_without_scanning_the_run_queue():
    """``wait_for`` runs the awaited actor's queued turn on the waiting worker: the claim is
    O(1), whatever the length of the run queue, and the entry it leaves behind is skipped."""
    from actors import _scheduler

    sched = _scheduler.ThreadScheduler(2, 128, 0.01, timers=None, manual_clock=True,
                                       on_overrun=lambda cell, seconds: None)
    sched._runq = _NoScan()
    cells = [_FakeCell() for _ in range(20_000)]
    for cell in cells:
        sched.submit(cell)
    assert sched.run_queue() == len(cells)
    _scheduler._tls.worker = True  # this thread acts as a pool worker (only workers help)
    try:
        last, first = cells[-1], cells[0]
        assert sched._help(last) and last.turns == 1
        assert not sched._help(last)  # claimed already: nobody runs that turn twice
        assert sched._help(first) and first.turns == 1
        assert sched.run_queue() == len(cells) - 2
        sched._closing = True  # the worker loop drains the queue, then returns
        sched._worker(0)
    finally:
        _scheduler._tls.worker = False
    assert [c.turns for c in cells] == [1] * len(cells)  # stale entries were skipped
    assert sched.run_queue() == 0 and not sched._runq and not sched._ready


def test_a_spare_that_ran_out_of_work_lingers_and_is_reused_then_ends():
    """Needing a spare many times a second (every worker waiting on a commit) reuses one
    lingering thread instead of starting a thread each time; unused, it ends by itself."""
    from actors.testing import wait_until
    with Runtime(workers=2) as rt:
        sched = rt._scheduler
        spares = lambda: [t for t in threading.enumerate() if t.name.endswith("-spare")]  # noqa: E731
        before = len(spares())
        for _ in range(5):  # each need as _blocking hands it over: counted, then started
            with sched._lock:
                sched._spares += 1
            sched._start_spare()
            wait_until(lambda: sched._spares == 0 and sched._lingering == 1, 5.0,
                       "the spare ran (nothing to do) and lingers")
            assert len(spares()) == before + 1  # one thread, reused
        wait_until(lambda: not sched._lingering and len(spares()) == before, 5.0,
                   "the lingering spare to end")
        assert sched._revivals == 0 and sched._spares == 0


def test_no_more_spares_linger_than_there_are_workers():
    from actors.testing import wait_until
    with Runtime(workers=2) as rt:
        sched = rt._scheduler
        with sched._lock:
            sched._spares += 5
        for _ in range(5):  # five needs at once: five threads, then at most two stay
            threading.Thread(target=sched._spare_thread, daemon=True,
                             name="test-spare").start()
        wait_until(lambda: sched._spares == 0, 5.0, "the spares ran")
        wait_until(lambda: len([t for t in threading.enumerate() if t.name == "test-spare"])
                   <= 2, 5.0, "the extra spares to end at once")
        assert sched._lingering <= 2
