"""Keyed timers on the runtime clock (a ManualClock here: no sleeps)."""

from __future__ import annotations

import pytest

from actors import Actor, ActorCrashed, TimerKey
from actors.testing import Recorder
from tests.conftest import settle


class Timed(Actor):
    def __init__(self, log):
        self.events = log

    def receive(self, message):
        match message:
            case ("after", delay, msg, key):
                return self.send_after(delay, msg, key)
            case ("cancel", key):
                return self.cancel_timer(key)
            case _:
                self.events.append((self.runtime.clock.now(), message))


def test_send_after_delivers_when_the_clock_reaches_the_deadline(rt, clock):
    log = Recorder()
    ref = rt.spawn(Timed, log)
    ref.ask(("after", 5.0, "ping", None))
    clock.advance(4.999)
    settle(rt)
    assert log.items == []
    clock.advance(0.001)
    settle(rt)
    assert log.items == [(5.0, "ping")]


def test_timers_fire_in_deadline_order(rt, clock):
    log = Recorder()
    ref = rt.spawn(Timed, log)
    for delay, msg in [(3, "c"), (1, "a"), (2, "b")]:
        ref.ask(("after", delay, msg, None))
    clock.advance(10)
    settle(rt)
    assert [m for _, m in log.items] == ["a", "b", "c"]


def test_send_after_returns_a_generated_key_and_cancel_stops_the_timer(rt, clock):
    log = Recorder()
    ref = rt.spawn(Timed, log)
    key = ref.ask(("after", 1.0, "x", None))
    assert isinstance(key, TimerKey)
    assert ref.ask(("cancel", key)) is True
    assert ref.ask(("cancel", key)) is False
    clock.advance(2)
    settle(rt)
    assert log.items == []


def test_a_timer_with_an_existing_key_replaces_the_old_one(rt, clock):
    log = Recorder()
    ref = rt.spawn(Timed, log)
    assert ref.ask(("after", 1.0, "first", "k")) == "k"
    ref.ask(("after", 3.0, "second", "k"))
    clock.advance(5)
    settle(rt)
    assert log.items == [(5.0, "second")]
    assert rt.statistics().timers == 0


def test_timers_are_cancelled_when_the_actor_stops(rt, clock):
    log = Recorder()
    ref = rt.spawn(Timed, log)
    ref.ask(("after", 1.0, "never", None))
    assert rt.statistics().timers == 1
    rt.stop(ref)
    assert rt.statistics().timers == 0
    clock.advance(2)
    settle(rt)
    assert log.items == [] and rt.statistics().dead_letters == 0


@pytest.mark.parametrize("delay", [-1, "1", None, float("nan")])
def test_send_after_rejects_a_bad_delay(rt, delay):
    ref = rt.spawn(Timed, Recorder())
    with pytest.raises(ActorCrashed) as info:
        ref.ask(("after", delay, "x", None))
    assert isinstance(info.value.reason, ValueError)
    assert "send_after delay must be a number of seconds >= 0" in str(info.value.reason)


def test_rearming_a_watchdog_many_times_keeps_the_timer_heap_small(rt, clock):
    ref = rt.spawn(Timed, Recorder())
    for _ in range(2000):
        ref.tell(("after", 30.0, "watchdog", "wd"))
    settle(rt)
    assert rt.statistics().timers == 1
    assert len(rt._timers._heap) < 200


def test_the_real_clock_fires_timers_on_the_thread_pool():
    from actors import Runtime
    log = Recorder()
    with Runtime(workers=2) as rt:
        ref = rt.spawn(Timed, log)
        ref.ask(("after", 0.02, "tick", None))
        log.wait_for(1, timeout=5)


class _Held(Actor):
    """Arms a timer, then blocks in a handler while its one-slot BLOCK mailbox is full."""

    def __init__(self, started, gate):
        self.started, self.gate = started, gate

    def on_start(self):
        self.send_after(1.0, "tick")

    def receive(self, message):
        if message == "hold":
            self.started.set()
            self.gate.wait(10.0)


class _Pinged(Actor):
    def __init__(self, got, armed):
        self.got, self.armed = got, armed

    def on_start(self):
        self.send_after(1.5, "ping")
        self.armed.set()

    def receive(self, message):
        self.got.set()


def test_a_full_block_mailbox_does_not_stall_other_timers_and_counts_the_refusal():
    import threading

    from actors import Overflow, Runtime
    from actors.testing import ManualClock
    clock = ManualClock()
    with Runtime(workers=2, clock=clock) as rt:
        started, gate, got = threading.Event(), threading.Event(), threading.Event()
        armed = threading.Event()
        held = rt.spawn(_Held, started, gate, mailbox_size=1, overflow=Overflow.BLOCK)
        held._cell.block_timeout = 30.0  # a timer that waited would wait this long
        rt.spawn(_Pinged, got, armed)
        held.tell("hold")
        assert started.wait(5)
        # The ping's timer must be armed before the clock moves: with one worker held, the
        # pinged actor starts only once the stall watch wakes the other worker.
        assert armed.wait(5)
        held.tell("fill")
        advancer = threading.Thread(target=clock.advance, args=(2.0,))
        advancer.start()
        try:
            assert got.wait(10.0), "the ping timer waited behind a full BLOCK mailbox"
            advancer.join(10.0)
            assert not advancer.is_alive()
            assert held.statistics().dropped == 1  # the refused tick is counted
        finally:
            gate.set()


def test_a_timer_for_an_actor_killed_meanwhile_is_dropped_quietly(rt, clock):
    log = Recorder()
    ref = rt.spawn(Timed, log)
    ref.ask(("after", 1.0, "late", None))
    rt.kill(ref)
    clock.advance(2.0)  # must not raise
    settle(rt)
    assert log.items == []
