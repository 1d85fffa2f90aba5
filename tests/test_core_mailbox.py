"""Mailbox overflow policies with exact drop counts; system messages always get through.

On the inline runtime a flooder actor sends a burst inside one turn, so the target cannot run in
between; on threads the target is held inside a handler while the test floods it."""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from actors import (Actor, Down, MailboxFull, MessageDropped, Overflow, Runtime)
from actors.testing import Recorder, inline_runtime, wait_until
from tests.conftest import settle

CAPACITY, BURST = 5, 12


class Target(Actor):
    def __init__(self, seen, entered=None, release=None):
        self.seen, self.entered, self.release = seen, entered, release

    def receive(self, message):
        if message == "block":
            self.entered.set()
            assert self.release.wait(10)
            return
        self.seen.append(message)


class Flooder(Actor):
    def __init__(self, refused):
        self.refused = refused

    def receive(self, message):
        target, burst = message
        for i in range(burst):
            try:
                target.tell(i)
            except MailboxFull:
                self.refused.append(i)


# policy -> (messages the target processes, dropped count) for a burst of BURST into CAPACITY
EXPECTED = {
    Overflow.DROP_NEWEST: (list(range(CAPACITY)), BURST - CAPACITY),
    Overflow.DROP_OLDEST: (list(range(BURST - CAPACITY, BURST)), BURST - CAPACITY),
    Overflow.LATEST: ([BURST - 1], BURST - 1),
    Overflow.FAIL: (list(range(CAPACITY)), BURST - CAPACITY),
    Overflow.BLOCK: (list(range(CAPACITY)), BURST - CAPACITY),  # a pool worker never blocks
}


@pytest.mark.parametrize("policy", list(Overflow), ids=lambda p: p.name)
def test_overflow_policy_keeps_and_drops_exactly_the_documented_messages_inline(clock, policy):
    rt = inline_runtime(clock)
    seen, refused = Recorder(), Recorder()
    target = rt.spawn(Target, seen, mailbox_size=CAPACITY, overflow=policy)
    rt.spawn(Flooder, refused).tell((target, BURST))
    settle(rt)
    kept, dropped = EXPECTED[policy]
    assert seen.items == kept
    stats = target.statistics()
    assert stats.dropped == dropped == rt.statistics().dropped
    assert len(seen.items) + stats.dropped == BURST  # accepted = delivered + counted drops
    if policy in (Overflow.FAIL, Overflow.BLOCK):
        assert refused.items == list(range(CAPACITY, BURST))
    else:
        assert refused.items == []
    rt.shutdown()


@pytest.mark.parametrize("policy", [p for p in Overflow if p is not Overflow.BLOCK],
                         ids=lambda p: p.name)
def test_overflow_policy_drop_counts_are_exact_on_threads(policy):
    with Runtime(workers=2) as rt:
        seen, entered, release = Recorder(), threading.Event(), threading.Event()
        target = rt.spawn(Target, seen, entered, release, mailbox_size=CAPACITY, overflow=policy)
        target.tell("block")
        assert entered.wait(5)
        refused = 0
        for i in range(BURST):
            try:
                target.tell(i)
            except MailboxFull:
                refused += 1
        release.set()
        settle(rt)
        kept, dropped = EXPECTED[policy]
        assert seen.items == kept
        assert target.statistics().dropped == dropped
        assert refused == (dropped if policy is Overflow.FAIL else 0)


def test_block_policy_makes_a_plain_thread_wait_until_there_is_room():
    with Runtime(workers=2) as rt:
        seen, entered, release = Recorder(), threading.Event(), threading.Event()
        target = rt.spawn(Target, seen, entered, release, mailbox_size=2, overflow="block")
        target.tell("block")
        assert entered.wait(5)
        target.tell(0)
        target.tell(1)
        done = threading.Event()

        def blocked_sender():
            target.tell(2)  # waits: the mailbox is full
            done.set()

        t = threading.Thread(target=blocked_sender)
        t.start()
        assert not done.wait(0.05)
        release.set()
        assert done.wait(5)
        t.join()
        settle(rt)
        assert seen.items == [0, 1, 2] and target.statistics().dropped == 0


def test_block_policy_times_out_with_mailbox_full_and_counts_it():
    with Runtime(workers=2) as rt:
        seen, entered, release = Recorder(), threading.Event(), threading.Event()
        target = rt.spawn(Target, seen, entered, release, mailbox_size=1, overflow="block")
        target._cell.block_timeout = 0.05
        target.tell("block")
        assert entered.wait(5)
        target.tell(0)
        with pytest.raises(MailboxFull, match="stayed full"):
            target.tell(1)
        release.set()
        settle(rt)
        assert target.statistics().dropped == 1


def test_system_messages_get_through_a_full_mailbox(clock):
    rt = inline_runtime(clock)
    downs = Recorder()

    class Watcher(Actor):
        def receive(self, message):
            match message:
                case ("watch", _, victim, burst):
                    self.monitor(victim)
                    for i in range(burst):
                        try:
                            self.ref.tell(i)
                        except MailboxFull:
                            pass
                    self.runtime.kill(victim)
                case Down():
                    downs.append(message)

    victim = rt.spawn(Target, Recorder())
    watcher = rt.spawn(Watcher, mailbox_size=3)
    watcher.tell(("watch", watcher, victim, 10))
    settle(rt)
    assert len(downs.items) == 1 and downs.items[0].reason == "killed"
    rt.shutdown()


def test_drop_oldest_never_drops_a_down_message(clock):
    rt = inline_runtime(clock)
    seen = Recorder()

    class Watcher(Actor):
        overflow = Overflow.DROP_OLDEST
        mailbox_size = 3

        def receive(self, message):
            match message:
                case ("go", victim):
                    self.monitor(victim)
                    self.runtime.kill(victim)  # the Down is now the oldest message
                    for i in range(6):
                        self.ref.tell(i)
                case _:
                    seen.append("down" if isinstance(message, Down) else message)

    watcher = rt.spawn(Watcher)
    watcher.tell(("go", rt.spawn(Target, Recorder())))
    settle(rt)
    assert seen.items == ["down", 4, 5]
    assert watcher.statistics().dropped == 4
    rt.shutdown()


def test_drops_are_reported_in_logs_and_on_the_bus(clock):
    rt = inline_runtime(clock)
    events = Recorder()

    class Listen(Actor):
        def receive(self, message):
            events.append(message)

    rt.bus.subscribe(MessageDropped, rt.spawn(Listen))
    target = rt.spawn(Target, Recorder(), mailbox_size=2, overflow="drop_newest")
    with capture_logs() as logs:
        rt.spawn(Flooder, Recorder()).tell((target, 7))
        settle(rt)
        rt.stop(target)
    drops = [e for e in logs if e["event"] == "messages dropped"]
    assert drops and drops[-1]["total"] == 5 and drops[0]["actor"] == target.path
    assert sum(d["since_last"] for d in drops) == 5
    assert events.items and events.items[-1].total == 5
    rt.shutdown()


def test_a_dropped_ask_fails_at_once(clock):
    rt = inline_runtime(clock)
    results = Recorder()

    class Asker(Actor):
        def receive(self, message):
            target = message
            for i in range(3):
                target.tell(i)  # fills the LATEST slot and replaces it
            return None

    target = rt.spawn(Target, results, overflow="latest")
    rt.spawn(Asker).tell(target)
    settle(rt)
    assert results.items == [2]
    rt.shutdown()


def test_peak_and_queued_show_the_backlog():
    with Runtime(workers=2) as rt:
        seen, entered, release = Recorder(), threading.Event(), threading.Event()
        target = rt.spawn(Target, seen, entered, release, mailbox_size=100)
        target.tell("block")
        assert entered.wait(5)
        for i in range(40):
            target.tell(i)
        assert target.statistics().queued == 40
        release.set()
        settle(rt)
        stats = target.statistics()
        # 40 arrived while the worker held the turn: sampled every 16 messages, the peak may
        # read low by at most 16 (the mailbox docstring); it never reads high.
        assert stats.queued == 0 and 40 - 16 <= stats.peak <= 41 and stats.processed == 41


def test_peak_is_exact_when_no_sender_runs_during_the_turn():
    rt = inline_runtime()
    seen, refused = Recorder(), Recorder()
    target = rt.spawn(Target, seen, mailbox_size=100)
    rt.spawn(Flooder, refused).tell((target, 40))  # 40 queue up before the target's turn
    stats = target.statistics()
    assert seen.items == list(range(40)) and not refused.items
    assert stats.peak == 40 and stats.queued == 0 and stats.processed == 40
    rt.shutdown()


def test_a_crashed_actors_unprocessed_messages_are_counted_as_dead_letters():
    with Runtime(workers=2) as rt:
        seen, entered, release = Recorder(), threading.Event(), threading.Event()
        target = rt.spawn(Target, seen, entered, release)
        target.tell("block")
        assert entered.wait(5)
        for i in range(25):
            target.tell(i)
        rt.kill(target)
        release.set()
        wait_until(lambda: rt.statistics().dead_letters == 25, message="25 dead letters")


def test_tell_returns_whether_the_message_was_queued(clock):
    rt = inline_runtime(clock)
    results = Recorder()

    class Sender(Actor):
        def receive(self, message):
            target = message
            for i in range(4):
                results.append(target.tell(i))

    target = rt.spawn(Target, Recorder(), mailbox_size=2, overflow="drop_newest")
    rt.spawn(Sender).tell(target)
    settle(rt)
    assert results.items == [True, True, False, False]
    rt.stop(target)
    assert target.tell("x") is False
    rt.shutdown()


class _CrashAt(Actor):
    """Raises on message ``at``: the messages before it were handled."""

    def __init__(self, at, seen):
        self.at, self.seen = at, seen

    def receive(self, message):
        if message == self.at:
            raise ValueError(f"crash at {message}")
        self.seen.append(message)


class _StopAfter(_CrashAt):
    """Stops itself while handling message ``at``: a signal, so it goes ahead of the messages
    still queued; ``at`` itself was handled."""

    def receive(self, message):
        self.seen.append(message)
        if message == self.at:
            self.stop()


@pytest.mark.parametrize("cls, at", [(_CrashAt, k) for k in (0, 1, 15, 16, 17, 127, 128, 129, 199)]
                         + [(_StopAfter, k) for k in (0, 5, 15, 16, 20, 127, 130)],
                         ids=lambda v: v.__name__.strip("_") if isinstance(v, type) else str(v))
def test_a_turn_ended_mid_chunk_counts_processed_messages_and_dead_letters_exactly(cls, at):
    # Turns take messages in chunks of 16 between looks at the clock; a crash or a stop anywhere
    # in a chunk must count exactly the messages handled (a signal's queue marker is not a
    # message), and the rest as dead letters.
    rt = inline_runtime()
    seen, refused = Recorder(), Recorder()
    target = rt.spawn(cls, at, seen, mailbox_size=1000)
    rt.spawn(Flooder, refused).tell((target, 200))
    stats, totals = target.statistics(), rt.statistics()
    handled = at if cls is _CrashAt else at + 1
    assert not stats.alive and seen.items == list(range(handled))
    assert stats.processed == handled
    assert totals.dead_letters == 200 - at - 1
    rt.shutdown()
