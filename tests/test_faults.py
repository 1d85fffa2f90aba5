"""``actors.testing.Faults``: crashes now, on a message, at start (across restarts), kills and
delayed messages; on the inline runtime and on threads, with the manual clock."""

from __future__ import annotations

from typing import Any

import pytest

from actors import ActorCrashed, ActorRef
from actors.testing import Faults, InjectedFault, Injection, Recorder
from supervisors import ChildSpec, Supervisor
from supervisors._child import TryAgain
from tests.conftest import settle
from tests.test_supervisor_otp import (WAIT, Boom, Other, Watch, Worker, _plain_crash_logs,
                                       refs, start_sup)

__all__ = ["_plain_crash_logs"]  # the module-scoped logging fixture, shared


def got(journal: Recorder) -> list[Any]:
    return [e[2] for e in journal.items if e[0] == "got"]


def spawn(rt: Any, journal: Recorder, cls: type = Worker, **kwargs: Any) -> ActorRef:
    return rt.spawn(cls, "w", journal, **kwargs)


def test_crash_makes_the_actor_raise_on_its_next_turn_ahead_of_queued_messages(rt):
    journal = Recorder()
    ref = spawn(rt, journal)
    watch = Watch(rt, ref)
    assert Faults(rt).crash(ref, Boom("now"))
    assert isinstance(watch.reason(ref), Boom)
    assert Faults(rt).crash(ref) is False  # dead already


def test_kill_is_untrappable_and_skips_on_stop(rt):
    journal = Recorder()
    ref = spawn(rt, journal, trap=True)
    watch = Watch(rt, ref)
    Faults(rt).kill(ref)
    assert watch.reason(ref) == "killed" and ("stop", "w", "killed") not in journal.items


@pytest.mark.parametrize("nth,when,crashes_on", [
    (None, None, 1),                                   # the next message
    (3, None, 3),                                      # the third message
    (None, lambda m: m == 4, 4),                       # the first message that matches
    (2, lambda m: m % 2 == 0, 4),                      # the second message that matches
])
def test_crash_on_raises_in_the_handler_on_the_chosen_message(rt, nth, when, crashes_on):
    journal = Recorder()
    ref = spawn(rt, journal)
    watch = Watch(rt, ref)
    fault = Faults(rt).crash_on(ref, nth=nth, when=when)
    for i in range(1, 7):
        ref.tell(i)
    settle(rt)
    assert isinstance(watch.reason(ref), InjectedFault)
    assert got(journal) == list(range(1, crashes_on)) and fault.fired == 1 and not fault.active


@pytest.mark.parametrize("error,kind", [(Boom, Boom), (Boom("given"), Boom), (None, InjectedFault)])
def test_crash_on_raises_the_given_error_class_or_instance(rt, error, kind):
    ref = spawn(rt, Recorder())
    watch = Watch(rt, ref)
    Faults(rt).crash_on(ref, error=error)
    ref.tell("x")
    assert isinstance(watch.reason(ref), kind)


def test_crash_on_an_asked_message_fails_the_ask(rt):
    ref = spawn(rt, Recorder())
    Faults(rt).crash_on(ref, when=lambda m: m == "ping")
    with pytest.raises(ActorCrashed):
        ref.ask("ping", timeout=WAIT)


@pytest.mark.parametrize("by", ["class", "name"])
def test_crash_on_a_class_or_name_follows_future_spawns_until_times_is_spent(rt, by):
    faults = Faults(rt)
    fault = faults.crash_on(Other if by == "class" else "victim", times=2)
    reasons = []
    for _ in range(3):
        journal = Recorder()
        ref = rt.spawn(Other, "w", journal, name="victim")
        watch = Watch(rt, ref)
        ref.tell("hello")
        settle(rt)
        reasons.append(watch.reason(ref) if not ref.is_alive() else None)
        if ref.is_alive():
            assert got(journal) == ["hello"]
            rt.stop(ref, timeout=WAIT)
    assert [type(r) for r in reasons] == [InjectedFault, InjectedFault, type(None)]
    assert fault.fired == 2 and not fault.active
    assert rt._spawn_hooks == []  # a spent fault removes its hook
    other = spawn(rt, Recorder())  # another class is never touched
    other.tell("x")
    settle(rt)
    assert other.is_alive()


def test_crash_on_start_makes_the_next_spawns_fail_to_start_then_stops(rt):
    faults = Faults(rt)
    already = rt.spawn(Other, "old", Recorder())
    fault = faults.crash_on_start(Other, times=2)
    journal = Recorder()
    refs_ = [rt.spawn(Other, str(i), journal) for i in range(3)]
    settle(rt)
    assert [r.is_alive() for r in refs_] == [False, False, True]
    assert [e[1] for e in journal.items if e[0] == "start"] == ["2"]
    assert already.is_alive() and fault.fired == 2 and rt._spawn_hooks == []


def test_crash_on_start_by_name_drives_a_supervisor_into_a_crash_loop(rt):
    """The fault follows restarts: each new incarnation of the named child fails to start."""
    faults = Faults(rt)
    sup = start_sup(rt, ChildSpec("c", Worker, kwargs={"name": "svc"}), intensity=3)
    watch = Watch(rt, sup)
    fault = faults.crash_on_start("svc", times=None)
    faults.crash(refs(sup)["c"])
    assert watch.reason(sup) == "shutdown" and fault.fired == 3
    fault.cancel()
    assert not fault.active and rt._spawn_hooks == []
    sup = start_sup(rt, ChildSpec("c", Worker, kwargs={"name": "svc"}))
    assert refs(sup)["c"].is_alive()


def test_crash_on_start_takes_a_class_or_name_not_a_ref(rt):
    with pytest.raises(TypeError):
        Faults(rt).crash_on_start(spawn(rt, Recorder()))


def test_delay_holds_matching_messages_until_the_clock_moves(rt, clock):
    journal = Recorder()
    ref = spawn(rt, journal)
    fault = Faults(rt).delay(ref, lambda m: m == "late", 2.0)
    for m in ("a", "late", "b"):
        ref.tell(m)
    settle(rt)
    assert got(journal) == ["a", "b"]
    clock.advance(1.9)
    settle(rt)
    assert got(journal) == ["a", "b"]
    ref.tell("c")
    clock.advance(0.1)
    settle(rt)
    assert got(journal) == ["a", "b", "c", "late"]  # not held a second time
    assert fault.fired == 1 and fault.active  # times=None: it keeps holding


def test_delay_holds_at_most_times_messages_and_never_an_ask(rt, clock):
    journal = Recorder()
    ref = spawn(rt, journal)
    Faults(rt).delay(ref, lambda m: True, 1.0, times=1)
    assert ref.ask("asked", timeout=WAIT) == "asked"
    ref.tell("x")
    ref.tell("y")
    settle(rt)
    assert got(journal) == ["asked", "y"]
    clock.advance(1.0)
    settle(rt)
    assert got(journal) == ["asked", "y", "x"]


def test_delay_of_a_message_to_a_supervisor_slows_its_restart_loop(rt, clock):
    """Delaying the supervisor's own retry message: the loop waits for the clock."""
    sup = start_sup(rt, ChildSpec("c", Other), intensity=5)
    faults = Faults(rt)
    faults.delay(sup, lambda m: isinstance(m, TryAgain), 1.0)
    faults.crash_on_start(Other, times=1)
    faults.crash(refs(sup)["c"])
    settle(rt)
    assert refs(sup)["c"] == "restarting"
    clock.advance(1.0)
    settle(rt)
    assert isinstance(refs(sup)["c"], ActorRef)


def test_clear_removes_every_fault(rt, clock):
    journal = Recorder()
    ref = spawn(rt, journal)
    faults = Faults(rt)
    injections = [faults.crash_on(ref), faults.crash_on_start(Other, times=None),
                  faults.delay(ref, lambda m: True, 1.0)]
    faults.clear()
    assert not any(i.active for i in injections) and rt._spawn_hooks == []
    ref.tell("fine")
    settle(rt)
    assert got(journal) == ["fine"] and rt.spawn(Other).is_alive()
    assert "fired=0" in repr(injections[0])


@pytest.mark.parametrize("call,error", [
    (lambda f, r: f.crash_on(r, nth=0), ValueError),
    (lambda f, r: f.crash_on(r, times=0), ValueError),
    (lambda f, r: f.crash_on(r, error="boom"), None),   # checked when it strikes
    (lambda f, r: f.crash_on(42), TypeError),
    (lambda f, r: f.delay(r, bool, -1), ValueError),
    (lambda f, r: f.crash_on_start("", times=1), TypeError),
])
def test_bad_fault_arguments_are_refused(rt, call, error):
    faults = Faults(rt)
    ref = spawn(rt, Recorder())
    if error is None:
        assert isinstance(call(faults, ref), Injection)
        return
    with pytest.raises(error):
        call(faults, ref)


def test_a_supervisor_started_after_crash_on_start_fails_its_start(rt):
    """crash_on_start before the tree starts: the supervisor's own start fails."""
    faults = Faults(rt)
    faults.crash_on_start(Other)
    watch = Watch(rt)
    sup = watch.spawn_link(Supervisor, children=[ChildSpec("c", Other)])
    assert watch.exit_reason(sup).reason == "start_failed"
