"""The event bus (``runtime.bus``): timeliness first.

Every behaviour test takes ``rt`` and so runs inline and on threads, on a manual clock. A "slow
subscriber" is made without sleeping: a ``Script`` actor does the publishing in one turn while
the subscriber is held on a gate (inline, the subscriber simply runs after the script's turn; on
threads it waits for the gate, which the script opens last).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import pytest

from actors import (Actor, ActorExited, ActorStarted, Event, LifecycleEvent, ManualClock,
                    Overflow, Runtime)
from actors.testing import wait_until

from .conftest import run_script, settle


# -- helpers ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading(Event):
    value: int


@dataclass(frozen=True)
class Alarm(Reading):
    level: str = "high"


@dataclass(frozen=True)
class Other(Event):
    note: str = ""


class Sink(Actor):
    """Records what it receives; ``"hold"`` blocks it on ``gate`` (a slow subscriber)."""

    def __init__(self, seen: list[Any], gate: threading.Event | None = None) -> None:
        self.seen = seen
        self.gate = gate

    def receive(self, message: Any) -> Any:
        if message == "hold":
            assert self.gate is not None and self.gate.wait(5.0), "gate never opened"
            return None
        if message == "crash":
            raise RuntimeError("asked to crash")
        self.seen.append(message)
        return None


def held_sink(rt: Runtime, **spawn: Any) -> tuple[Any, list[Any], threading.Event]:
    seen: list[Any] = []
    gate = threading.Event()
    return rt.spawn(Sink, seen, gate, **spawn), seen, gate


# -- delivery ---------------------------------------------------------------------------------------
def test_subscriber_receives_the_published_event_object_itself(rt: Runtime) -> None:
    seen: list[Any] = []
    ref = rt.spawn(Sink, seen)
    rt.bus.subscribe(Reading, ref)
    event = Reading(7)
    assert rt.bus.publish(event) == 1
    settle(rt)
    assert len(seen) == 1 and seen[0] is event


@pytest.mark.parametrize("events", [2, 5, 50])
def test_slow_subscriber_gets_only_the_newest_event_and_replacements_are_counted(
        rt: Runtime, events: int) -> None:
    ref, seen, gate = held_sink(rt)
    sub = rt.bus.subscribe("readings", ref)
    run_script(rt, lambda: ref.tell("hold"),
               *[lambda i=i: rt.bus.publish(Reading(i), channel="readings")
                 for i in range(events)],
               gate.set)
    assert seen == [Reading(events - 1)]
    assert (sub.delivered, sub.replaced, sub.expired) == (1, events - 1, 0)


def test_subscriber_that_keeps_up_gets_every_event_in_order(rt: Runtime) -> None:
    seen: list[Any] = []
    ref = rt.spawn(Sink, seen)
    sub = rt.bus.subscribe("readings", ref)
    for i in range(20):
        rt.bus.publish(Reading(i), channel="readings")
        settle(rt)
    assert seen == [Reading(i) for i in range(20)]
    assert sub.replaced == 0


@pytest.mark.parametrize("max_age, waited, delivered", [
    (1.0, 0.0, True),
    (1.0, 0.5, True),
    (1.0, 1.0, True),     # not older than max_age: still timely
    (1.0, 1.001, False),
    (0.05, 10.0, False),
])
def test_event_older_than_max_age_when_taken_is_dropped_and_counted(
        rt: Runtime, clock: ManualClock, max_age: float, waited: float, delivered: bool) -> None:
    ref, seen, gate = held_sink(rt)
    sub = rt.bus.subscribe(Reading, ref, max_age=max_age)
    run_script(rt, lambda: ref.tell("hold"), lambda: rt.bus.publish(Reading(1)),
               lambda: clock.advance(waited), gate.set)
    assert seen == ([Reading(1)] if delivered else [])
    assert (sub.delivered, sub.expired) == ((1, 0) if delivered else (0, 1))
    assert rt.bus.statistics().expired == (0 if delivered else 1)


def test_age_is_measured_from_the_newest_event_in_the_slot(rt: Runtime, clock: ManualClock) -> None:
    ref, seen, gate = held_sink(rt)
    sub = rt.bus.subscribe(Reading, ref, max_age=1.0)
    run_script(rt, lambda: ref.tell("hold"), lambda: rt.bus.publish(Reading(1)),
               lambda: clock.advance(5.0), lambda: rt.bus.publish(Reading(2)), gate.set)
    assert seen == [Reading(2)]
    assert (sub.replaced, sub.expired) == (1, 0)


def test_each_subscription_holds_its_own_newest_event(rt: Runtime) -> None:
    ref, seen, gate = held_sink(rt)
    rt.bus.subscribe("a", ref)
    rt.bus.subscribe("b", ref)
    run_script(rt, lambda: ref.tell("hold"),
               lambda: rt.bus.publish(Reading(1), channel="a"),
               lambda: rt.bus.publish(Reading(2), channel="b"),
               lambda: rt.bus.publish(Reading(3), channel="a"), gate.set)
    assert sorted(seen, key=lambda e: e.value) == [Reading(2), Reading(3)]


# -- routing by type and channel --------------------------------------------------------------------
@pytest.mark.parametrize("subscribed, event, received", [
    (Reading, Reading(1), True),
    (Reading, Alarm(1), True),          # a subclass
    (Event, Alarm(1), True),            # any depth
    (Alarm, Reading(1), False),         # not a base class
    (Other, Reading(1), False),
    (LifecycleEvent, Reading(1), False),
    (object, Other("x"), True),
])
def test_type_subscription_receives_the_type_and_its_subclasses(
        rt: Runtime, subscribed: type, event: Any, received: bool) -> None:
    seen: list[Any] = []
    ref = rt.spawn(Sink, seen)
    settle(rt)  # started: its own ActorStarted is not what this test is about
    rt.bus.subscribe(subscribed, ref)
    assert rt.bus.publish(event) == int(received)
    settle(rt)
    assert seen == ([event] if received else [])


@pytest.mark.parametrize("channel, subscribed, received", [
    ("clock", "clock", True),
    ("clock", "clocks", False),
    (None, "clock", False),
    ("clock", Reading, True),    # a channel event also goes to its type's subscribers
])
def test_channel_events_reach_channel_and_type_subscribers(
        rt: Runtime, channel: str | None, subscribed: Any, received: bool) -> None:
    seen: list[Any] = []
    ref = rt.spawn(Sink, seen)
    rt.bus.subscribe(subscribed, ref)
    rt.bus.publish(Reading(1), channel=channel)
    settle(rt)
    assert seen == ([Reading(1)] if received else [])


def test_subscriber_subscribed_twice_gets_one_event_per_subscription(rt: Runtime) -> None:
    seen: list[Any] = []
    ref = rt.spawn(Sink, seen)
    rt.bus.subscribe("clock", ref)
    rt.bus.subscribe(Reading, ref)
    assert rt.bus.publish(Reading(1), channel="clock") == 2
    settle(rt)
    assert seen == [Reading(1), Reading(1)]


# -- lifecycle events -------------------------------------------------------------------------------
class Crashes(Actor):
    def receive(self, message: Any) -> None:
        raise ValueError(f"cannot handle {message!r}")


@pytest.mark.parametrize("ending, expected", [
    ("stop", "normal"),
    ("shutdown", "shutdown"),
    ("kill", "killed"),
    ("crash", ValueError),
])
def test_actor_exits_are_published_with_their_reason(rt: Runtime, ending: str,
                                                     expected: Any) -> None:
    seen: list[Any] = []
    watcher = rt.spawn(Sink, seen)
    rt.bus.subscribe(ActorExited, watcher)
    victim = rt.spawn(Crashes)
    settle(rt)
    if ending == "stop":
        assert rt.stop(victim)
    elif ending == "shutdown":
        assert rt.stop(victim, reason="shutdown")
    elif ending == "kill":
        rt.kill(victim)
    else:
        victim.tell("x")
    settle(rt)
    exits = [e for e in seen if e.ref == victim]
    assert len(exits) == 1
    reason = exits[0].reason
    assert isinstance(reason, expected) if isinstance(expected, type) else reason == expected
    assert exits[0].path == victim.path


def test_actor_started_is_published_and_subscribing_to_lifecycle_gets_both(rt: Runtime) -> None:
    seen: list[Any] = []
    watcher = rt.spawn(Sink, seen)
    rt.bus.subscribe(LifecycleEvent, watcher)
    ref = rt.spawn(Sink, [])
    settle(rt)
    assert [type(e) for e in seen if e.ref == ref] == [ActorStarted]
    rt.stop(ref)
    settle(rt)
    assert [type(e) for e in seen if e.ref == ref] == [ActorStarted, ActorExited]


def test_many_exits_at_once_leave_only_the_newest_in_a_slow_watchers_slot(rt: Runtime) -> None:
    watcher, seen, gate = held_sink(rt)
    sub = rt.bus.subscribe(ActorExited, watcher)
    victims = [rt.spawn(Sink, []) for _ in range(5)]
    settle(rt)
    run_script(rt, lambda: watcher.tell("hold"), *[lambda v=v: rt.kill(v) for v in victims],
               gate.set)
    assert [e.ref for e in seen] == [victims[-1]]
    assert sub.replaced == 4


# -- subscriptions end ------------------------------------------------------------------------------
def test_unsubscribed_subscription_gets_nothing_more_not_even_its_waiting_event(
        rt: Runtime) -> None:
    ref, seen, gate = held_sink(rt)
    sub = rt.bus.subscribe("x", ref)
    run_script(rt, lambda: ref.tell("hold"), lambda: rt.bus.publish(Reading(1), channel="x"),
               lambda: rt.bus.unsubscribe(sub), gate.set)
    assert rt.bus.publish(Reading(2), channel="x") == 0
    settle(rt)
    assert seen == []
    assert not sub.active and rt.bus.unsubscribe(sub) is False


def test_dead_subscriber_is_unsubscribed_when_an_event_finds_it_and_counted(rt: Runtime) -> None:
    ref = rt.spawn(Sink, [])
    rt.bus.subscribe("x", ref)
    rt.stop(ref)
    assert rt.bus.statistics().subscriptions == 1
    assert rt.bus.publish(Reading(1), channel="x") == 0
    stats = rt.bus.statistics()
    assert (stats.subscriptions, stats.dead) == (0, 1)


@pytest.mark.parametrize("policy", list(Overflow))
def test_bus_slot_gets_through_a_full_mailbox_of_any_policy(rt: Runtime, policy: Overflow) -> None:
    if policy is Overflow.BLOCK:
        pytest.skip("BLOCK makes a non-worker sender wait: covered by the other policies")
    ref, seen, gate = held_sink(rt, mailbox_size=2, overflow=policy)
    rt.bus.subscribe("x", ref)

    def flood() -> None:
        for i in range(5):
            try:
                ref.tell(f"m{i}")
            except Exception:
                pass  # FAIL refuses: counted by the mailbox

    run_script(rt, lambda: ref.tell("hold"), flood,
               lambda: rt.bus.publish(Reading(1), channel="x"), gate.set)
    assert Reading(1) in seen


# -- arguments --------------------------------------------------------------------------------------
@pytest.mark.parametrize("topic, max_age, error", [
    ("", None, ValueError),
    (5, None, ValueError),
    (Reading(1), None, ValueError),
    ("x", 0, ValueError),
    ("x", -1.0, ValueError),
    ("x", True, ValueError),
    ("x", "1", ValueError),
    ("x", float("nan"), ValueError),
])
def test_bad_subscribe_arguments_raise_naming_the_problem(rt: Runtime, topic: Any, max_age: Any,
                                                          error: type) -> None:
    ref = rt.spawn(Sink, [])
    with pytest.raises(error):
        rt.bus.subscribe(topic, ref, max_age=max_age)


def test_subscribing_something_that_is_not_a_ref_raises_type_error(rt: Runtime) -> None:
    with pytest.raises(TypeError, match="ActorRef"):
        rt.bus.subscribe("x", "not a ref")  # type: ignore[arg-type]  # the wrong type is the test


@pytest.mark.parametrize("channel", ["", 5, Reading])
def test_publishing_on_a_channel_that_is_not_a_name_raises(rt: Runtime, channel: Any) -> None:
    with pytest.raises(ValueError, match="channel"):
        rt.bus.publish(Reading(1), channel=channel)


# -- statistics -------------------------------------------------------------------------------------
def test_every_offer_is_delivered_replaced_or_expired(rt: Runtime, clock: ManualClock) -> None:
    fast, slow = rt.spawn(Sink, []), held_sink(rt)
    slow_ref, slow_seen, gate = slow
    rt.bus.subscribe("x", fast)
    rt.bus.subscribe("x", slow_ref, max_age=0.5)
    steps: list[Callable[[], Any]] = [lambda: slow_ref.tell("hold")]
    for i in range(10):
        steps.append(lambda i=i: rt.bus.publish(Reading(i), channel="x"))
    steps += [lambda: clock.advance(1.0), gate.set]
    run_script(rt, *steps)
    stats = rt.bus.statistics()
    assert stats.published == 10
    offered = 20
    assert stats.delivered + stats.replaced + stats.expired == offered
    assert slow_seen == [] and stats.expired == 1
    assert "replaced" in repr(rt.bus)


# -- tenants ----------------------------------------------------------------------------------------
class Publisher(Actor):
    def receive(self, message: Any) -> None:
        event, channel = message
        self.runtime.bus.publish(event, channel=channel)


@pytest.mark.parametrize("publisher, receivers", [
    ("acme", {"acme", "system"}),
    ("beta", {"beta", "system"}),
    ("system", {"acme", "beta", "system"}),   # a system clock is for everyone
])
def test_tenant_subscriber_gets_its_own_tenants_events_and_system_ones(
        rt: Runtime, publisher: str, receivers: set[str]) -> None:
    seen: dict[str, list[Any]] = {"acme": [], "beta": [], "system": []}
    for name in ("acme", "beta"):
        rt.bus.subscribe("news", rt.tenant(name).spawn(Sink, seen[name]))
        rt.bus.subscribe(Reading, rt.tenant(name).spawn(Sink, seen[name]))
    rt.bus.subscribe("news", rt.spawn(Sink, seen["system"]))
    pub = rt.spawn(Publisher) if publisher == "system" else rt.tenant(publisher).spawn(Publisher)
    pub.tell((Reading(1), "news"))
    settle(rt)
    got = {name for name, events in seen.items() if events}
    assert got == receivers
    for name in receivers - {"system"}:
        assert seen[name] == [Reading(1), Reading(1)]


def test_tenant_subscriber_sees_lifecycle_events_of_its_own_tenant_only(rt: Runtime) -> None:
    seen: dict[str, list[Any]] = {"acme": [], "beta": [], "system": []}
    for name in ("acme", "beta"):
        rt.bus.subscribe(ActorExited, rt.tenant(name).spawn(Sink, seen[name]))
    rt.bus.subscribe(ActorExited, rt.spawn(Sink, seen["system"]))
    for victim in (rt.tenant("acme").spawn(Crashes), rt.spawn(Crashes)):
        settle(rt)
        rt.stop(victim)
        settle(rt)
    assert {e.tenant for e in seen["acme"]} == {"acme"}
    assert seen["beta"] == []
    assert [e.tenant for e in seen["system"]] == ["acme", None]


# -- the internal synchronous listener (used by pub/sub to watch exits) -----------------------------
def test_listener_is_called_synchronously_for_every_event_never_replaced(rt: Runtime) -> None:
    calls: list[Any] = []
    rt.bus._listen(Reading, calls.append)
    assert rt.bus.has_subscribers(Alarm)
    for i in range(5):
        rt.bus.publish(Alarm(i))
    assert calls == [Alarm(i) for i in range(5)]


def test_a_raising_listener_does_not_break_the_publisher(rt: Runtime) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("listener bug")

    rt.bus._listen(Other, broken)
    seen: list[Any] = []
    rt.bus.subscribe(Other, rt.spawn(Sink, seen))
    assert rt.bus.publish(Other("x")) == 1
    settle(rt)
    assert seen == [Other("x")]


def test_has_subscribers_follows_subscribe_and_unsubscribe(rt: Runtime) -> None:
    assert not rt.bus.has_subscribers(Other)
    sub = rt.bus.subscribe(Event, rt.spawn(Sink, []))
    assert rt.bus.has_subscribers(Other)
    rt.bus.unsubscribe(sub)
    assert not rt.bus.has_subscribers(Other)


# -- the clock example ------------------------------------------------------------------------------
def _clock_example() -> Any:
    path = Path(__file__).resolve().parent.parent / "examples" / "clock_bus.py"
    spec = importlib.util.spec_from_file_location("clock_bus_example", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:  # load once: its dataclasses need the module registered
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


EPOCH = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: winter time in Paris and New York


def test_clock_example_shows_every_tick_in_each_tenants_timezone(rt: Runtime,
                                                                 clock: ManualClock) -> None:
    example = _clock_example()
    frames: list[tuple[str, int, datetime]] = []
    offsets = {"paris": 1, "newyork": -5, "tokyo": 9}
    for name, (zone, _work, max_age) in example.TENANTS.items():
        rt.tenant(name).spawn(example.LocalTimeDisplay, zone, 0.0, max_age,
                              show=lambda *frame: frames.append(frame))
    settle(rt)
    rt.spawn(example.ClockSource, wall=lambda: EPOCH + clock.now())
    settle(rt)
    for _ in range(10):
        clock.advance(0.1)
        settle(rt)
    for name, hours in offsets.items():
        mine = [f for f in frames if f[0] == name]
        assert [seq for _, seq, _ in mine] == list(range(1, 11))
        assert all(local.utcoffset() == timedelta(hours=hours) for _, _, local in mine)
        assert mine[0][2].timestamp() == pytest.approx(EPOCH + 0.1)


def test_clock_example_slow_display_skips_to_the_newest_tick() -> None:
    example = _clock_example()
    clock = ManualClock()
    frames: list[int] = []
    first_frame = threading.Event()
    release = threading.Event()

    def show(tenant: str, seq: int, local: datetime) -> None:
        frames.append(seq)
        first_frame.set()
        assert release.wait(5.0)  # the first frame takes "long": ticks pile up meanwhile

    with Runtime(workers=2, clock=clock, node="test") as rt:
        display = rt.tenant("paris").spawn(example.LocalTimeDisplay, "Europe/Paris", show=show)
        settle(rt)
        sub = rt.bus.subscribe(example.Tick, rt.spawn(Sink, []))  # a fast watcher, for counting
        rt.spawn(example.ClockSource, wall=lambda: EPOCH + clock.now())
        settle(rt)  # its first timer is armed
        for tick in range(1, 7):
            clock.advance(0.1)
            # published, and the next timer armed (so the next advance fires it)
            wait_until(lambda: (rt.bus.statistics().published, rt.statistics().timers)
                       == (tick, 1), message=f"tick {tick}")
            if tick == 1:
                assert first_frame.wait(5.0)
        release.set()
        wait_until(lambda: len(frames) == 2, message="the second frame")
        assert settle(rt) is None
        assert frames == [1, 6]          # never a backlog: tick 6 right after tick 1
        assert display.is_alive() and sub.delivered >= 1
