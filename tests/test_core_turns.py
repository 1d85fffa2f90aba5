"""Turns: the per-actor ``turn_budget``, and the unchecked chunk of the turn loop (taken while no
Ask or Deferred can be among the queued messages) never hands an envelope or a signal's queue
marker to ``receive``."""

from __future__ import annotations

import threading

import pytest

from actors import Actor, ActorDead, MailboxFull, Overflow, Runtime
from actors.testing import Recorder, inline_runtime, wait_until
from tests.conftest import settle


class Log(Actor):
    def __init__(self, tag, log):
        self.tag, self.out = tag, log

    def receive(self, message):
        self.out.append((self.tag, message))


class OneAtATime(Log):
    turn_budget = 1


class Feeder(Actor):
    def receive(self, message):
        for ref, items in message:
            for item in items:
                ref.tell(item)


@pytest.mark.parametrize("cls, expected", [
    (Log, [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]),
    (OneAtATime, [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]),
], ids=["runtime-budget", "turn-budget-1"])
def test_turn_budget_caps_the_messages_of_one_turn(cls, expected):
    rt = inline_runtime()
    log = Recorder()
    a, b = rt.spawn(cls, "a", log), rt.spawn(cls, "b", log)
    rt.spawn(Feeder).tell([(a, [1, 2, 3]), (b, [1, 2, 3])])  # all queued before either runs
    assert log.items == expected
    rt.shutdown()


@pytest.mark.parametrize("budget", [0, -1, 1.5, "2", True])
def test_spawn_rejects_a_bad_turn_budget_and_names_the_class(budget):
    bad = type("BadBudget", (Log,), {"turn_budget": budget})
    with inline_runtime() as rt, pytest.raises(ValueError, match="turn_budget of BadBudget"):
        rt.spawn(bad, "x", Recorder())


class Echo(Actor):
    def __init__(self):
        self.seen = []

    def receive(self, message):
        assert isinstance(message, int), f"receive got {message!r}"
        self.seen.append(message)
        return message


def test_asks_among_tells_are_answered_in_order_and_uncounted_once_taken(rt):
    ref = rt.spawn(Echo, mailbox_size=10_000)
    for i in range(40):
        ref.tell(i)
    assert ref.ask(40) == 40
    for i in range(41, 80):
        ref.tell(i)
    assert ref.ask(80) == 80
    settle(rt)
    assert ref.ask(-1) == -1
    assert not ref._cell._envelopes


class Gate(Actor):
    """Holds its worker on "hold" until ``release`` is set; answers anything else."""

    def __init__(self, entered, release):
        self.entered, self.release = entered, release

    def receive(self, message):
        if message == "hold":
            self.entered.set()
            assert self.release.wait(10)
        return message


def test_an_ask_to_a_dead_actor_is_uncounted(rt):
    ref = rt.spawn(Gate, threading.Event(), threading.Event(), mailbox_size=1)
    rt.kill(ref)
    with pytest.raises(ActorDead):
        ref.ask("late", timeout=1)
    assert not ref._cell._envelopes


def test_an_ask_refused_by_a_full_mailbox_is_uncounted():
    with Runtime(workers=2) as rt:
        entered, release = threading.Event(), threading.Event()
        ref = rt.spawn(Gate, entered, release, mailbox_size=1, overflow=Overflow.FAIL)
        ref.tell("hold")
        assert entered.wait(5)
        ref.tell("fills the one slot")
        try:
            with pytest.raises(MailboxFull):
                ref.ask("refused", timeout=1)
            assert not ref._cell._envelopes
        finally:
            release.set()
        wait_until(lambda: ref.statistics().queued == 0, message="the held message handled")
        assert ref.ask("after", timeout=5) == "after"
        assert not ref._cell._envelopes


def test_a_lossy_mailbox_always_takes_the_checked_path_and_still_answers_asks(rt):
    ref = rt.spawn(Echo, mailbox_size=100, overflow=Overflow.DROP_OLDEST)
    ref.tell(1)
    assert ref.ask(2) == 2
    settle(rt)
    assert ref._cell._envelopes == [None]  # for good: senders delete from a lossy queue


def test_bus_events_are_uncounted_once_delivered(rt):
    got = Recorder()

    class Sub(Actor):
        def receive(self, message):
            got.append(message)

    ref = rt.spawn(Sub)
    rt.bus.subscribe("news", ref)
    for i in range(5):
        rt.bus.publish(i, channel="news")
        settle(rt)
    assert got.items == [0, 1, 2, 3, 4] and not ref._cell._envelopes


class Slow(Actor):
    """Each message takes a little while, so a stop from another thread lands mid-chunk."""

    def __init__(self, started):
        self.started, self.seen = started, []

    def receive(self, message):
        assert isinstance(message, int), f"receive got {message!r}"
        self.started.set()
        self.seen.append(message)
        sum(range(2_000))


def test_a_stop_from_another_thread_mid_chunk_is_never_delivered_as_a_message():
    with Runtime(workers=2) as rt:
        for _ in range(5):
            started = threading.Event()
            ref = rt.spawn(Slow, started, mailbox_size=100_000)
            actor = ref._cell.actor
            for i in range(20_000):
                ref.tell(i)
            assert started.wait(5)
            assert rt.stop(ref, timeout=10)
            seen = actor.seen
            assert seen == list(range(len(seen))) and len(seen) < 20_000
            assert ref.statistics().processed == len(seen)


def test_many_askers_and_tellers_on_threads_all_get_answers():
    with Runtime(workers=2) as rt:
        ref = rt.spawn(Echo, mailbox_size=1_000_000)
        errors = Recorder()

        def ask_loop(base):
            for i in range(200):
                try:
                    assert ref.ask(base + i, timeout=10) == base + i
                except Exception as exc:
                    errors.append(exc)

        def tell_loop():
            for i in range(5_000):
                ref.tell(i)

        threads = ([threading.Thread(target=ask_loop, args=(k * 1000,)) for k in range(3)]
                   + [threading.Thread(target=tell_loop) for _ in range(2)])
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors.items
        wait_until(lambda: len(ref._cell.actor.seen) == 600 + 10_000, timeout=20,
                   message="every message handled")
        assert not ref._cell._envelopes
