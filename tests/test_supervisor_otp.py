"""OTP supervision semantics, behaviour by behaviour (vectors A1-A34, A39-A40).

Each test states one behaviour of tests/data/supervisor_behaviours.md (the number is in its
docstring) and runs on the inline runtime and on real threads (the ``rt`` fixture), both on a
manual clock. Exit reasons are checked exactly, with monitors; orders are checked by tracing
``on_start``/``on_stop`` in a journal, never by timing. The shared kit (test children, watchers)
lives here and the other supervisor test modules import it.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import supervisors
from actors import Actor, ActorRef, Down, Exit, Runtime, configure_logging
from actors.testing import Faults, InjectedFault, ManualClock, Recorder, wait_until
from supervisors import (AutoShutdown, ChildSpec, ChildStarted, Ignore, Restart, Strategy,
                         Supervisor, SupervisorError, SupervisorGaveUp)
from tests.conftest import settle

ONE_FOR_ONE, ONE_FOR_ALL = Strategy.ONE_FOR_ONE, Strategy.ONE_FOR_ALL
REST_FOR_ONE, SIMPLE = Strategy.REST_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE
PERMANENT, TRANSIENT, TEMPORARY = Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY
ALL_STRATEGIES = [ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE, SIMPLE]
WAIT = 5.0  # the bound of every wait in these tests (seconds)


# ----------------------------------------------------------------------------------------------
# The kit: scripted children (OTP's supervisor_1), a watcher, helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _plain_crash_logs() -> Iterator[None]:
    """Crashes are logged with a traceback; the console renderer makes that ~50 ms each. These
    modules crash hundreds of actors, so they log JSON while they run (restored afterwards)."""
    configure_logging(json=True, force=True)
    yield
    configure_logging(force=True)


class Boom(Exception):
    """The abnormal exit of the test children (OTP's ``died``)."""


class Worker(Actor):
    """A test child. ``label`` names it in the journal: ``("start", label, ref)``,
    ``("stop", label, reason)``, ``("got", label, message)``. Messages: ``"die"`` (raise Boom),
    ``("exit", reason)`` (stop with it), ``"ping"``, ``("block", event)`` (hold the handler until
    the event is set: ignores shutdown meanwhile), ``("link"|"unlink", ref)``."""

    def __init__(self, label: str = "w", journal: Recorder | None = None, payload: Any = None,
                 trap: bool = False, ignore: bool = False) -> None:
        if ignore:
            raise Ignore()
        self.label = label
        self.journal = journal
        if trap:
            self.trap_exits = True

    def _note(self, *entry: Any) -> None:
        if self.journal is not None:
            self.journal.append(entry)

    def on_start(self) -> None:
        self._note("start", self.label, self.ref)

    def receive(self, message: Any) -> Any:
        match message:
            case "die":
                raise Boom(f"{self.label} died")
            case ("exit", reason):
                self.stop(reason)
            case "ping":
                return ("pong", self.label)
            case ("block", event):
                self._note("blocked", self.label)
                event.wait(WAIT)
            case ("link", ref):
                self.link(ref)
            case ("unlink", ref):
                self.unlink(ref)
            case _:
                self._note("got", self.label, message)
                return message

    def on_stop(self, reason: Any) -> None:
        self._note("stop", self.label, reason)


class Other(Worker):
    """A second worker class, for faults aimed at one class only."""


class Watcher(Actor):
    """Monitors refs (``("watch", ref)``) and links (``("link", ref)``, trapping exits); records
    ``(ref, reason)`` for every ``Down`` and ``("exit", ref, reason)`` for every ``Exit``."""

    trap_exits = True

    def __init__(self, journal: Recorder) -> None:
        self.journal = journal

    def receive(self, message: Any) -> Any:
        match message:
            case ("watch", ref):
                self.monitor(ref)
            case ("link", ref):
                self.link(ref)
            case ("spawn_link", cls, kwargs):
                return self.spawn_link(cls, **kwargs)
            case Down(ref, reason, _):
                self.journal.append((ref, reason))
            case Exit(ref, reason):
                self.journal.append(("exit", ref, reason))
        return True


class Watch:
    """Exit reasons of watched actors, exactly (``reason(ref)`` waits for the ``Down``)."""

    def __init__(self, rt: Runtime, *refs: ActorRef) -> None:
        self.journal = Recorder()
        self.rt = rt
        self.ref = rt.spawn(Watcher, self.journal)
        for ref in refs:
            self.watch(ref)

    def watch(self, ref: ActorRef) -> None:
        self.ref.ask(("watch", ref), timeout=WAIT)

    def link(self, ref: ActorRef) -> None:
        self.ref.ask(("link", ref), timeout=WAIT)

    def spawn_link(self, cls: type, **kwargs: Any) -> ActorRef:
        """Spawn ``cls`` linked to the watcher (OTP's start_link caller); its exit is recorded."""
        return self.ref.ask(("spawn_link", cls, kwargs), timeout=WAIT)

    def exit_reason(self, ref: ActorRef) -> Any:
        wait_until(lambda: any(r == ref for r, _ in self.exits()), WAIT, f"the EXIT of {ref!r}")
        return next(reason for r, reason in self.exits() if r == ref)

    def reasons(self) -> dict[ActorRef, Any]:
        return {e[0]: e[1] for e in self.journal.items if len(e) == 2}

    def exits(self) -> list[tuple[ActorRef, Any]]:
        return [(e[1], e[2]) for e in self.journal.items if len(e) == 3]

    def reason(self, ref: ActorRef) -> Any:
        wait_until(lambda: ref in self.reasons(), WAIT, f"the exit of {ref!r}")
        return self.reasons()[ref]

    def down(self, ref: ActorRef) -> bool:
        settle(self.rt)
        return ref in self.reasons()


def w(child_id: str, journal: Recorder | None = None, cls: type = Worker, **fields: Any
      ) -> ChildSpec:
    """A worker spec whose journal label is its id."""
    kwargs = {"label": child_id, "journal": journal}
    kwargs.update(fields.pop("kwargs", {}))
    return ChildSpec(child_id, cls, kwargs=kwargs, **fields)


def start_sup(rt: Runtime, *children: ChildSpec, strategy: Strategy = ONE_FOR_ONE,
              **flags: Any) -> ActorRef:
    sup = rt.spawn(Supervisor, strategy=strategy, children=list(children), **flags)
    settle(rt)
    return sup


def refs(sup: ActorRef) -> dict[Any, Any]:
    """``{id: ref | "restarting" | None}`` (dynamic instances: in start order, by index)."""
    infos = supervisors.which_children(sup, timeout=WAIT)
    return {(i.id if i.id is not None else n): i.ref for n, i in enumerate(infos)}


def counts(sup: ActorRef) -> tuple[int, int, int, int]:
    c = supervisors.count_children(sup, timeout=WAIT)
    return (c["specs"], c["active"], c["supervisors"], c["workers"])


def crash(rt: Runtime, ref: ActorRef) -> None:
    """Make ``ref`` raise ``InjectedFault`` (an abnormal exit) and let the supervisor react."""
    assert Faults(rt).crash(ref)
    settle(rt)


def journal_of(journal: Recorder, kind: str) -> list[Any]:
    return [e[1] for e in journal.items if e[0] == kind]


def started(journal: Recorder) -> list[str]:
    return journal_of(journal, "start")


def stopped(journal: Recorder) -> list[str]:
    return journal_of(journal, "stop")


def threads_only(rt: Runtime) -> None:
    if rt.statistics().workers == 0:  # inline: a blocked handler would block the test itself
        pytest.skip("needs a handler blocked on another thread: real threads only")


# ----------------------------------------------------------------------------------------------
# A1. Restart intensity and escalation
# ----------------------------------------------------------------------------------------------


INTENSITY_TABLE = [
    # (intensity, period, crash times, supervisor alive afterwards)
    (2, 10.0, [0.0, 4.0], True),
    (2, 10.0, [0.0, 4.0, 9.0], False),             # three within ten seconds
    (2, 10.0, [0.0, 4.0, 10.5, 10.5], False),      # t=0 left the window; 4, 10.5, 10.5 are three
    (2, 10.0, [0.0, 4.0, 10.5], True),             # the window slides: 4 and 10.5 only
    (2, 10.0, [0.0, 5.0, 10.0], False),            # a restart exactly `period` old still counts
    (0, 5.0, [0.0], False),                        # intensity 0: the first restart is one too many
    (1, 5.0, [0.0, 5.5], True),
]


@pytest.mark.parametrize("intensity,period,times,alive", INTENSITY_TABLE)
def test_restart_intensity_is_a_sliding_window_counting_the_restart_being_made(
        rt, clock, intensity, period, times, alive):
    """A1: restarts older than ``period`` leave the window; the one being made counts."""
    sup = start_sup(rt, w("a"), intensity=intensity, period=period)
    watch = Watch(rt, sup)
    now = 0.0
    for t in times:
        clock.advance(t - now)
        now = t
        if not sup.is_alive():
            break
        crash(rt, refs(sup)["a"])
    assert watch.down(sup) is (not alive)
    if alive:
        assert isinstance(refs(sup)["a"], ActorRef) and refs(sup)["a"].is_alive()
    else:
        assert watch.reason(sup) == "shutdown"


@pytest.mark.parametrize("strategy", ALL_STRATEGIES, ids=lambda s: s.name)
def test_exceeding_the_intensity_terminates_the_children_and_exits_with_plain_shutdown(
        rt, strategy):
    """A2: the third abnormal exit within the period (intensity 2) terminates every child, then
    the supervisor; parents see plain ``"shutdown"``; the cause is published separately."""
    if strategy is SIMPLE:
        sup = start_sup(rt, w("dyn"), strategy=SIMPLE, intensity=2, period=3600)
        other = supervisors.start_child(sup)
        supervisors.start_child(sup)

        def victim() -> ActorRef:
            return next(r for r in refs(sup).values() if r != other)
    else:
        sup = start_sup(rt, w("a"), w("b"), strategy=strategy, intensity=2, period=3600)

        def victim() -> ActorRef:
            return refs(sup)["a"]
    children = list(refs(sup).values())
    gave_up = Recorder()
    listener = rt.spawn(Collector, gave_up)
    rt.bus.subscribe(SupervisorGaveUp, listener)
    watch = Watch(rt, sup)
    for _ in range(3):
        crash(rt, victim())
    assert watch.reason(sup) == "shutdown"
    assert set(refs_alive(rt)) == {watch.ref, listener}
    assert not any(c.is_alive() for c in children)
    wait_until(lambda: len(gave_up) == 1, WAIT, "SupervisorGaveUp")
    event = gave_up.items[0]
    assert (event.ref, event.intensity, event.period) == (sup, 2, 3600.0)
    assert isinstance(event.reason, InjectedFault)


class Collector(Actor):
    """Appends every message (bus events) to a Recorder."""

    def __init__(self, journal: Recorder) -> None:
        self.journal = journal

    def receive(self, message: Any) -> None:
        self.journal.append(message)


def refs_alive(rt: Runtime) -> list[ActorRef]:
    settle(rt)
    return [r for r in rt.actors() if r.is_alive()]


def test_restarts_spaced_further_apart_than_the_period_never_trip_the_limit(rt, clock):
    """A3: intensity 1, period 1: four crashes 2.1 s apart leave the supervisor alive."""
    sup = start_sup(rt, w("a"), intensity=1, period=1.0)
    for _ in range(4):
        crash(rt, refs(sup)["a"])
        clock.advance(2.1)
    assert sup.is_alive()
    assert refs(sup)["a"].statistics().restarts == 4


@pytest.mark.parametrize("strategy", ALL_STRATEGIES, ids=lambda s: s.name)
def test_a_child_that_cannot_restart_is_retried_until_the_budget_is_gone_then_escalates(
        rt, strategy):
    """A4: every failed restart counts; intensity 4 gives four attempts, then the supervisor
    terminates the others (a linked sibling's observer gets its EXIT) and exits shutdown."""
    if strategy is SIMPLE:
        sup = start_sup(rt, ChildSpec("dyn", Worker), strategy=SIMPLE, intensity=4, period=60)
        sibling = supervisors.start_child(sup, "sibling")
        bad = supervisors.start_child(sup, "bad")
    else:
        sup = start_sup(rt, w("sibling"), w("bad", cls=Other), strategy=strategy, intensity=4,
                        period=60)
        sibling, bad = refs(sup)["sibling"], refs(sup)["bad"]
    watch = Watch(rt, sup)
    watch.link(sibling)
    faults = Faults(rt)
    failing = faults.crash_on_start(Worker if strategy is SIMPLE else Other, times=None)
    crash(rt, bad)
    assert watch.reason(sup) == "shutdown"
    assert failing.fired == 4
    settle(rt)
    assert (sibling, "shutdown") in watch.exits()
    faults.clear()


@pytest.mark.parametrize("strategy", [ONE_FOR_ONE, REST_FOR_ONE], ids=lambda s: s.name)
def test_during_a_restart_loop_the_child_is_restarting_and_management_calls_are_answered(
        rt, clock, strategy):
    """A5: retries go through messages, so the supervisor answers meanwhile: the child shows
    ``"restarting"``, is not active, and start/restart/delete give OTP's answers."""
    sup = start_sup(rt, w("a"), w("b", cls=Other), w("c"), strategy=strategy, intensity=8,
                    period=10, retry_delay=2.0)
    faults = Faults(rt)
    failing = faults.crash_on_start(Other, times=None)
    crash(rt, refs(sup)["b"])
    active = 2 if strategy is ONE_FOR_ONE else 1  # rest_for_one: "c" waits for "b"
    for _ in range(3):  # attempts at 0, 2, 4, 6: 4 in any 10 s, never over 8: a loop for ever
        assert refs(sup)["b"] == "restarting"
        assert counts(sup) == (3, active, 0, 3)
        clock.advance(2.0)
        settle(rt)
    assert failing.fired == 4
    with pytest.raises(SupervisorError) as err:
        supervisors.start_child(sup, w("b"))
    assert err.value.reason == "already_present"
    for call in (supervisors.restart_child, supervisors.delete_child):
        with pytest.raises(SupervisorError) as err:
            call(sup, "b")
        assert err.value.reason == "restarting"
    faults.clear()


def test_terminate_child_ends_a_restart_loop_and_leaves_the_child_undefined(rt, clock):
    """A5: ``terminate_child`` on a restarting child ends the loop; it stays undefined."""
    sup = start_sup(rt, w("a", cls=Other), intensity=8, period=10, retry_delay=1.0)
    faults = Faults(rt)
    failing = faults.crash_on_start(Other, times=None)
    crash(rt, refs(sup)["a"])
    assert refs(sup) == {"a": "restarting"}
    supervisors.terminate_child(sup, "a")
    assert refs(sup) == {"a": None}
    fired = failing.fired
    clock.advance(5.0)
    settle(rt)
    assert failing.fired == fired and refs(sup) == {"a": None} and sup.is_alive()
    faults.clear()
    assert isinstance(supervisors.restart_child(sup, "a"), ActorRef)


def test_a_dynamic_child_in_a_restart_loop_is_listed_restarting_and_not_counted_active(
        rt, clock):
    """A5 (simple_one_for_one, count_restarting_children): a restarting instance is listed as
    ``"restarting"``, counted as a worker, not as active; terminating it ends the loop."""
    sup = start_sup(rt, ChildSpec("dyn", Other), strategy=SIMPLE, intensity=8, period=10,
                    retry_delay=1.0)
    first = supervisors.start_child(sup)
    supervisors.start_child(sup)
    faults = Faults(rt)
    faults.crash_on_start(Other, times=None)
    crash(rt, first)
    assert refs(sup)[0] == "restarting"
    assert counts(sup) == (1, 1, 0, 2)
    supervisors.terminate_child(sup, first)
    assert counts(sup) == (1, 1, 0, 1)
    faults.clear()


@pytest.mark.parametrize("strategy", [ONE_FOR_ONE, REST_FOR_ONE, SIMPLE], ids=lambda s: s.name)
def test_a_supervisor_in_a_restart_loop_stops_promptly(rt, clock, strategy):
    """A5 (OTP-9549): stopping the supervisor mid-loop completes at once, children included."""
    flags = {"strategy": strategy, "intensity": 8, "period": 10, "retry_delay": 2.0}
    if strategy is SIMPLE:
        sup = start_sup(rt, ChildSpec("x", Other), **flags)
        supervisors.start_child(sup)
    else:
        sup = start_sup(rt, ChildSpec("x", Other), w("y"), **flags)
    faults = Faults(rt)
    faults.crash_on_start(Other, times=None)
    crash(rt, list(refs(sup).values())[0])
    clock.advance(2.0)
    settle(rt)
    began = time.monotonic()
    assert rt.stop(sup, "shutdown", timeout=WAIT)
    assert time.monotonic() - began < 1.0
    assert refs_alive(rt) == []
    faults.clear()


def test_a_worker_that_cannot_restart_escalates_through_a_tree(rt):
    """A6: the worker exhausts its one_for_one sub-supervisor (only it was restarted there; its
    sibling kept its ref), the sub-supervisor dies ``shutdown``, and the one_for_all top restarts
    every sub-supervisor, which come back with their static children only."""
    journal = Recorder()
    sub1 = ChildSpec("sub1", Supervisor, kwargs={"intensity": 1, "children": [
        w("w1", journal), w("w2", journal, cls=Other)]})
    sub2 = ChildSpec("sub2", Supervisor, kwargs={"children": [w("w3", journal)]})
    top = start_sup(rt, sub1, sub2, strategy=ONE_FOR_ALL, intensity=3)
    s1, s2 = refs(top)["sub1"], refs(top)["sub2"]
    supervisors.start_child(s1, w("dynamic", journal))
    before = refs(s1)
    watch = Watch(rt, s1, s2)
    faults = Faults(rt)
    faults.crash_on_start(Other, times=1)  # the one restart sub1 may make fails
    crash(rt, before["w2"])
    assert watch.reason(s1) == "shutdown"
    assert watch.reason(s2) == "shutdown"  # a one_for_all victim
    settle(rt)
    # Only w2 was (tried to be) restarted in sub1: w1 stopped only when sub1 gave up, in
    # reverse start order after "dynamic"; then the top terminated sub2.
    assert [str(x) if not isinstance(x, str) else x for x in stopped(journal)] == [
        "w2", "dynamic", "w1", "w3"]
    after = refs(top)
    assert after["sub1"] not in (s1, None) and after["sub2"] not in (s2, None)
    assert list(refs(after["sub1"])) == ["w1", "w2"]  # static children only: "dynamic" is gone
    assert started(journal) == ["w1", "w2", "w3", "dynamic", "w1", "w2", "w3"]


@pytest.mark.parametrize("reason", ["killed", "normal"])
def test_a_supervisor_stops_with_its_parent_and_takes_its_children_along(rt, reason):
    """A6 (links): a supervisor spawn_linked by a parent exits when the parent does, with the
    same reason, terminating its children (OTP's gen_server parent rule)."""
    parent = rt.spawn(Watcher, Recorder())
    sup = parent.ask(("spawn_link", Supervisor, {"children": [w("a")]}), timeout=WAIT)
    settle(rt)
    child = refs(sup)["a"]
    watch = Watch(rt, sup, child)
    if reason == "killed":
        rt.kill(parent)
    else:
        rt.stop(parent, "normal", timeout=WAIT)
    assert watch.reason(sup) == reason and watch.reason(child) == "shutdown"


def test_the_exit_of_a_linked_actor_that_is_not_a_child_is_ignored(rt):
    """A6 (links): only children and the parent matter; another linked actor's crash does not
    restart anything nor stop the supervisor."""
    sup = start_sup(rt, w("a"))
    stranger = rt.spawn(Worker, "stranger")
    stranger.ask(("link", sup), timeout=WAIT)
    before = refs(sup)
    stranger.tell("die")
    settle(rt)
    assert sup.is_alive() and refs(sup) == before


# ----------------------------------------------------------------------------------------------
# A2. Restart types: the matrix restart type x exit reason
# ----------------------------------------------------------------------------------------------


REASONS = {
    "normal": "normal",
    "shutdown": "shutdown",
    "shutdown-term": ("shutdown", "maintenance"),
    "abnormal": "bad_input",
    "exception": None,  # the child raises Boom
    "killed": "killed",
}
# (restart type, reason) -> outcome: "restarted", "kept" (spec kept, undefined), "removed"
MATRIX = {
    PERMANENT: dict.fromkeys(REASONS, "restarted"),
    TRANSIENT: {"normal": "kept", "shutdown": "kept", "shutdown-term": "kept",
                "abnormal": "restarted", "exception": "restarted", "killed": "restarted"},
    TEMPORARY: dict.fromkeys(REASONS, "removed"),
}


def exit_child(rt: Runtime, ref: ActorRef, reason_key: str) -> None:
    if reason_key == "exception":
        ref.tell("die")
    elif reason_key == "killed":
        rt.kill(ref)
    else:
        ref.tell(("exit", REASONS[reason_key]))
    settle(rt)


@pytest.mark.parametrize("restart", [PERMANENT, TRANSIENT, TEMPORARY], ids=lambda r: r.name)
@pytest.mark.parametrize("reason_key", list(REASONS))
def test_restart_type_and_exit_reason_decide_whether_the_child_comes_back(
        rt, restart, reason_key):
    """A7 (permanent: always), A8 (transient: not after normal/shutdown, spec kept undefined),
    A9 (transient: after abnormal exits), A10 (temporary: never, spec removed)."""
    sup = start_sup(rt, w("c", restart=restart), w("other"), intensity=5)
    old = refs(sup)["c"]
    watch = Watch(rt, old)
    exit_child(rt, old, reason_key)
    expected = REASONS[reason_key]
    got = watch.reason(old)
    assert got == expected if expected is not None else isinstance(got, Boom)
    outcome = MATRIX[restart][reason_key]
    now = refs(sup)
    if outcome == "restarted":
        assert isinstance(now["c"], ActorRef) and now["c"] != old and now["c"].is_alive()
        assert counts(sup) == (2, 2, 0, 2)
    elif outcome == "kept":
        assert now["c"] is None and counts(sup) == (2, 1, 0, 2)
        assert isinstance(supervisors.restart_child(sup, "c"), ActorRef)  # by hand
    else:
        assert "c" not in now and counts(sup) == (1, 1, 0, 1)


@pytest.mark.parametrize("strategy", [ONE_FOR_ALL, REST_FOR_ONE], ids=lambda s: s.name)
def test_a_temporary_bystander_is_not_restarted_with_the_group(rt, strategy):
    """A11: the temporary child killed because its sibling died is not restarted and its spec
    is dropped; only the permanent child comes back, and the supervisor (intensity 1) survives."""
    journal = Recorder()
    sup = start_sup(rt, w("perm", journal), w("temp", journal, restart=TEMPORARY),
                    strategy=strategy, intensity=1)
    temp = refs(sup)["temp"]
    watch = Watch(rt, temp)
    crash(rt, refs(sup)["perm"])
    assert watch.reason(temp) == "shutdown"
    assert list(refs(sup)) == ["perm"] and refs(sup)["perm"].is_alive() and sup.is_alive()
    assert started(journal) == ["perm", "temp", "perm"]


@pytest.mark.parametrize("restart", [PERMANENT, TRANSIENT, TEMPORARY], ids=lambda r: r.name)
def test_spec_retention_after_terminate_child_depends_on_the_restart_type(rt, restart):
    """A12: after terminate_child a temporary child's spec is gone (the same spec starts again
    at once); a permanent or transient one is kept (already_present; restart_child works)."""
    spec = w("c", restart=restart)
    sup = start_sup(rt)
    supervisors.start_child(sup, spec)
    supervisors.terminate_child(sup, "c")
    if restart is TEMPORARY:
        assert refs(sup) == {}
        assert isinstance(supervisors.start_child(sup, spec), ActorRef)
    else:
        with pytest.raises(SupervisorError) as err:
            supervisors.start_child(sup, spec)
        assert err.value.reason == "already_present"
        assert isinstance(supervisors.restart_child(sup, "c"), ActorRef)


def test_a_killed_permanent_child_is_restarted_and_start_child_reports_it_running(rt):
    """A12: a killed permanent child is back at once: start_child gives already_started."""
    spec = w("c")
    sup = start_sup(rt, spec, intensity=3)
    rt.kill(refs(sup)["c"])
    settle(rt)
    with pytest.raises(SupervisorError) as err:
        supervisors.start_child(sup, spec)
    assert err.value.reason == "already_started" and err.value.ref == refs(sup)["c"]


class Big:
    """A large start argument, observable through a weak reference."""

    def __init__(self) -> None:
        self.blob = bytearray(50_000)


@pytest.mark.parametrize("strategy", [ONE_FOR_ONE, SIMPLE], ids=lambda s: s.name)
def test_a_temporary_childs_start_arguments_are_not_kept(rt, strategy):
    """A13 (and OTP-16804): the supervisor holds no reference to the arguments of a temporary
    child, so they are freed with the child (checked with a weak reference after GC)."""
    big = Big()
    alive = weakref.ref(big)
    if strategy is SIMPLE:
        sup = start_sup(rt, ChildSpec("t", Worker, restart=TEMPORARY), strategy=SIMPLE)
        child = supervisors.start_child(sup, "t", None, big)
    else:
        sup = start_sup(rt)
        child = supervisors.start_child(sup, ChildSpec("t", Worker, restart=TEMPORARY,
                                                       kwargs={"payload": big}))
    del big
    child.tell(("exit", "normal"))
    settle(rt)
    del child
    gc.collect()
    assert alive() is None
    assert sup.is_alive()


# ----------------------------------------------------------------------------------------------
# A3. Strategies and ordering
# ----------------------------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_child_that_died(rt):
    """A14: the sibling keeps its ref; the count does not change."""
    sup = start_sup(rt, w("c1"), w("c2"), intensity=3)
    before = refs(sup)
    crash(rt, before["c1"])
    after = refs(sup)
    assert after["c1"] != before["c1"] and after["c2"] == before["c2"]
    assert counts(sup) == (2, 2, 0, 2)


def test_one_for_all_restarts_every_child_when_one_dies(rt):
    """A15: child2 is terminated (its linked observer gets the EXIT), both start fresh."""
    sup = start_sup(rt, w("c1"), w("c2"), strategy=ONE_FOR_ALL, intensity=3)
    before = refs(sup)
    watch = Watch(rt)
    watch.link(before["c2"])
    crash(rt, before["c1"])
    after = refs(sup)
    assert not set(after.values()) & set(before.values())
    assert all(r.is_alive() for r in after.values())
    assert (before["c2"], "shutdown") in watch.exits()


def test_rest_for_one_restarts_the_dead_child_and_those_after_it(rt):
    """A16: when child2 of [1, 2, 3] dies, child3 is terminated; 2 and 3 get new refs; 1 not."""
    sup = start_sup(rt, w("c1"), w("c2"), w("c3"), strategy=REST_FOR_ONE, intensity=3)
    before = refs(sup)
    watch = Watch(rt, before["c3"])
    crash(rt, before["c2"])
    after = refs(sup)
    assert after["c1"] == before["c1"]
    assert after["c2"] != before["c2"] and after["c3"] != before["c3"]
    assert watch.reason(before["c3"]) == "shutdown"


ORDER = ["c", "a", "e", "b", "d"]  # start order; the third child is "e"


@pytest.mark.parametrize("strategy,terminated,restarted", [
    (REST_FOR_ONE, ["d", "b"], ["e", "b", "d"]),
    (ONE_FOR_ALL, ["d", "b", "a", "c"], ["c", "a", "e", "b", "d"]),
], ids=["rest_for_one", "one_for_all"])
def test_victims_are_terminated_in_reverse_start_order_and_restarted_in_start_order(
        rt, strategy, terminated, restarted):
    """A17: five children whose ids do not sort like their start order; the third one dies."""
    journal = Recorder()
    sup = start_sup(rt, *[w(i, journal) for i in ORDER], strategy=strategy, intensity=3)
    assert started(journal) == ORDER
    before = refs(sup)
    crash(rt, before["e"])
    assert stopped(journal)[1:] == terminated  # [0] is "e" itself, crashing
    assert started(journal)[5:] == restarted
    after = refs(sup)
    assert list(after) == ORDER
    assert all(after[i] == before[i] for i in ORDER if i not in restarted)


def test_a_one_for_all_group_restart_that_fails_part_way_is_unwound_and_retried(rt):
    """A18: child1 restarts, child2 fails to start: the fresh child1 is terminated (shutdown)
    and the whole group is tried again; nothing is left half-started."""
    journal = Recorder()
    sup = start_sup(rt, w("c1", journal), w("c2", journal, cls=Other), w("c3", journal),
                    strategy=ONE_FOR_ALL, intensity=5)
    faults = Faults(rt)
    faults.crash_on_start(Other, times=1)
    crash(rt, refs(sup)["c1"])
    assert started(journal) == ["c1", "c2", "c3", "c1", "c1", "c2", "c3"]
    stops = [(e[1], e[2]) for e in journal.items if e[0] == "stop"]
    assert stops[-1] == ("c1", "shutdown")  # the freshly restarted child1, unwound
    assert all(r.is_alive() for r in refs(sup).values())


def test_a_rest_for_one_group_restart_retries_from_the_child_that_failed(rt):
    """A19: the same under rest_for_one: the retry starts at child2; child1 is not restarted."""
    journal = Recorder()
    sup = start_sup(rt, w("c1", journal), w("c2", journal, cls=Other), w("c3", journal),
                    strategy=REST_FOR_ONE, intensity=5)
    faults = Faults(rt)
    faults.crash_on_start(Other, times=1)
    crash(rt, refs(sup)["c1"])
    assert started(journal) == ["c1", "c2", "c3", "c1", "c2", "c3"]
    assert all(r.is_alive() for r in refs(sup).values())


def test_simple_one_for_one_restarts_only_the_crashed_instance_and_has_no_ids(rt):
    """A20: instances of one spec, restarted one at a time; ids are undefined; by-id calls are
    refused; terminate_child by ref works, is ``ok`` for a dead instance, and refuses (leaving
    it alive) an actor that is not a child."""
    sup = start_sup(rt, ChildSpec("dyn", Worker), strategy=SIMPLE, intensity=3)
    a, b = supervisors.start_child(sup, "a"), supervisors.start_child(sup, "b")
    infos = supervisors.which_children(sup)
    assert [i.id for i in infos] == [None, None] and [i.ref for i in infos] == [a, b]
    crash(rt, a)
    infos = supervisors.which_children(sup)
    assert infos[1].ref == b and infos[0].ref not in (a, None)
    for call in (supervisors.terminate_child, supervisors.restart_child,
                 supervisors.delete_child):
        with pytest.raises(SupervisorError) as err:
            call(sup, "dyn")
        assert err.value.reason == "not_found"
    supervisors.terminate_child(sup, b)
    assert not b.is_alive() and counts(sup) == (1, 1, 0, 1)
    supervisors.terminate_child(sup, b)  # already dead: ok
    stranger = rt.spawn(Worker)
    with pytest.raises(SupervisorError) as err:
        supervisors.terminate_child(sup, stranger)
    assert err.value.reason == "not_found" and stranger.is_alive()


@pytest.mark.parametrize("restart", [PERMANENT, TRANSIENT], ids=lambda r: r.name)
def test_a_dynamic_child_whose_restart_is_ignored_is_dropped(rt, restart):
    """A21: the restart of a dynamic child raises Ignore: it is removed, not retried."""
    sup = start_sup(rt, ChildSpec("dyn", Other, restart=restart), strategy=SIMPLE, intensity=3)
    child = supervisors.start_child(sup)
    faults = Faults(rt)
    ignoring = faults.crash_on_start(Other, times=None, error=Ignore)
    crash(rt, child)
    assert ignoring.fired == 1
    assert refs(sup) == {} and counts(sup) == (1, 0, 0, 0) and sup.is_alive()
    faults.clear()


def test_a_one_for_all_restart_also_starts_children_stopped_by_hand(rt):
    """A22: a transient child stopped with terminate_child (3 specs, 2 active) runs again after
    the group restart (3 specs, 3 active)."""
    sup = start_sup(rt, w("a"), w("b", restart=TRANSIENT), w("c"), strategy=ONE_FOR_ALL,
                    intensity=3)
    supervisors.terminate_child(sup, "b")
    assert counts(sup) == (3, 2, 0, 3)
    crash(rt, refs(sup)["a"])
    assert counts(sup) == (3, 3, 0, 3)


# ----------------------------------------------------------------------------------------------
# A4. Shutdown semantics
# ----------------------------------------------------------------------------------------------


def test_on_supervisor_stop_a_cooperating_child_exits_with_shutdown(rt):
    """A23: a child that cooperates exits ``shutdown`` (its on_stop sees it)."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, shutdown=1.0))
    child = refs(sup)["c"]
    watch = Watch(rt, child)
    assert rt.stop(sup, "shutdown", timeout=WAIT)
    assert watch.reason(child) == "shutdown" and ("stop", "c", "shutdown") in journal.items


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_a_child_that_ignores_shutdown_is_killed_when_its_timeout_expires(rt, dynamic):
    """A23: a child busy past its shutdown timeout is killed (reason ``killed``), no sooner."""
    threads_only(rt)
    release = threading.Event()
    journal = Recorder()
    spec = w("c", journal, shutdown=0.3)
    sup = start_sup(rt, spec, strategy=SIMPLE) if dynamic else start_sup(rt, spec)
    child = supervisors.start_child(sup) if dynamic else refs(sup)["c"]
    watch = Watch(rt, child)
    child.tell(("block", release))
    wait_until(lambda: ("blocked", "c") in journal.items, WAIT, "the child's blocked handler")
    try:
        began = time.monotonic()
        assert rt.stop(sup, "shutdown", timeout=WAIT)
        took = time.monotonic() - began
        assert watch.reason(child) == "killed"
        assert 0.3 <= took < 3.0
    finally:
        release.set()


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_brutal_kill_children_are_killed_outright(rt, dynamic):
    """A24: brutal_kill children die with ``killed`` (on_stop does not run), all 10 dynamic
    instances of a simple_one_for_one included."""
    journal = Recorder()
    spec = w("c", journal, shutdown="brutal_kill")
    if dynamic:
        sup = start_sup(rt, spec, strategy=SIMPLE)
        children = [supervisors.start_child(sup) for _ in range(10)]
    else:
        sup = start_sup(rt, spec)
        children = [refs(sup)["c"]]
    watch = Watch(rt, *children)
    assert rt.stop(sup, "shutdown", timeout=WAIT)
    assert all(watch.reason(c) == "killed" for c in children)
    assert stopped(journal) == []


def test_shutdown_infinity_waits_for_supervisors_and_workers(rt):
    """A25: ``infinity`` is allowed for a supervisor and for a worker; both exit shutdown."""
    sub = ChildSpec("sub", Supervisor, kwargs={"children": [w("leaf")]})
    sup = start_sup(rt, sub, w("worker", shutdown="infinity"))
    assert supervisors.which_children(sup)[0].kind == "supervisor"
    children = list(refs(sup).values())
    watch = Watch(rt, *children)
    assert rt.stop(sup, "shutdown", timeout=WAIT)
    assert [watch.reason(c) for c in children] == ["shutdown", "shutdown"]


def test_a_slow_child_with_shutdown_infinity_is_waited_for(rt):
    """A25: however long it takes (here: until the test releases its handler)."""
    threads_only(rt)
    release = threading.Event()
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, shutdown="infinity"))
    child = refs(sup)["c"]
    watch = Watch(rt, child)
    child.tell(("block", release))
    wait_until(lambda: ("blocked", "c") in journal.items, WAIT, "the child's blocked handler")
    stopper = threading.Thread(target=rt.stop, args=(sup, "shutdown", None))
    stopper.start()
    try:  # OTP's check_no_exit: nothing within a bounded wait
        with pytest.raises(TimeoutError):
            wait_until(lambda: not child.is_alive(), 0.3, "the exit of the slow child")
    finally:
        release.set()
    stopper.join(WAIT)
    assert watch.reason(child) == "shutdown"


def test_dynamic_children_are_shut_down_in_parallel():
    """A26: four instances that ignore shutdown (timeout 0.5 s) stop in about 0.5 s, not 2 s."""
    rt = Runtime(workers=6, clock=ManualClock(), node="test")
    release = threading.Event()
    try:
        journal = Recorder()
        sup = start_sup(rt, w("c", journal, shutdown=0.5), strategy=SIMPLE)
        children = [supervisors.start_child(sup) for _ in range(4)]
        for child in children:
            child.tell(("block", release))
        wait_until(lambda: len(journal_of(journal, "blocked")) == 4, WAIT, "4 blocked handlers")
        began = time.monotonic()
        assert rt.stop(sup, "shutdown", timeout=WAIT)
        took = time.monotonic() - began
        assert 0.5 <= took < 1.5, took
    finally:
        release.set()
        rt.shutdown()


class Saboteur(Worker):
    """When stopped, it first stops each ``(ref, reason)`` in ``targets`` (siblings that thereby
    exit on their own, with their own reasons, while the supervisor is shutting down)."""

    def __init__(self, label: str = "s", journal: Recorder | None = None,
                 targets: dict[ActorRef, Any] | None = None) -> None:
        super().__init__(label, journal)
        self.targets = targets if targets is not None else {}

    def on_stop(self, reason: Any) -> None:
        for ref, own in self.targets.items():
            self.runtime.stop(ref, own, timeout=WAIT)
        super().on_stop(reason)


def test_children_exiting_on_their_own_during_shutdown_do_not_derail_it(rt):
    """A27: while the supervisor stops, children of every restart type exit by themselves with
    assorted reasons: their reasons are kept, the rest get shutdown, the supervisor exits
    shutdown and restarts nothing."""
    journal = Recorder()
    targets: dict[ActorRef, Any] = {}
    sup = start_sup(rt, w("perm", journal), w("trans", journal, restart=TRANSIENT),
                    w("temp", journal, restart=TEMPORARY), w("plain", journal),
                    w("saboteur", journal, cls=Saboteur, kwargs={"targets": targets}),
                    intensity=10)
    r = refs(sup)
    own = {r["perm"]: "normal", r["trans"]: ("shutdown", "x"), r["temp"]: "bad_input"}
    targets.update(own)
    watch = Watch(rt, sup, *r.values())
    assert rt.stop(sup, "shutdown", timeout=WAIT)
    for ref, reason in own.items():
        assert watch.reason(ref) == reason
    assert watch.reason(r["plain"]) == "shutdown" and watch.reason(sup) == "shutdown"
    assert started(journal) == ["perm", "trans", "temp", "plain", "saboteur"]
    assert refs_alive(rt) == [watch.ref]


def test_whole_supervisor_shutdown_terminates_children_in_reverse_start_order(rt):
    """A28: traced: 5, 4, 3, 2, 1."""
    journal = Recorder()
    sup = start_sup(rt, *[w(str(i), journal) for i in range(1, 6)])
    assert rt.stop(sup, "shutdown", timeout=WAIT)
    assert stopped(journal) == ["5", "4", "3", "2", "1"]


def test_a_child_that_unlinks_from_its_supervisor_cannot_hang_it(rt):
    """A29: terminate_child on a child that unlinked itself completes, and the supervisor's
    mailbox is empty afterwards."""
    sup = start_sup(rt)
    child = supervisors.start_child(sup, w("u"))
    child.ask(("unlink", sup))
    watch = Watch(rt, child)
    supervisors.terminate_child(sup, "u")
    assert watch.reason(child) == "shutdown"
    settle(rt)
    assert sup.statistics().queued == 0 and sup.is_alive()


# ----------------------------------------------------------------------------------------------
# A5. Starting, ignore, errors
# ----------------------------------------------------------------------------------------------


class IgnoringSupervisor(Supervisor):
    """A supervisor whose init says ``ignore``."""

    def __init__(self, **flags: Any) -> None:
        raise Ignore()


def test_a_supervisor_whose_init_ignores_does_not_exist_and_sends_no_exit(rt):
    """A30: started as a child it is recorded without a ref; its parent gets no EXIT and no
    actor is left behind. (Spawned directly, ``spawn`` raises ``Ignore``.)"""
    watch = Watch(rt)
    top = watch.spawn_link(Supervisor, children=[ChildSpec("sub", IgnoringSupervisor)])
    settle(rt)
    assert refs(top) == {"sub": None} and top.is_alive()
    assert set(refs_alive(rt)) == {watch.ref, top} and watch.exits() == []
    with pytest.raises(Ignore):
        rt.spawn(IgnoringSupervisor)


def test_a_bad_init_fails_the_start_cleanly(rt):
    """A31: invalid flags raise ValueError in the spawner and leave nothing behind; a crash in
    a child's start fails the supervisor's start: its linked caller gets exactly one EXIT with
    ``start_failed`` (the crash as ``error``), and no child is left."""
    with pytest.raises(ValueError, match="intensity"):
        rt.spawn(Supervisor, intensity=-1)
    assert rt.actors() == []
    journal = Recorder()
    faults = Faults(rt)
    faults.crash_on_start(Other)
    watch = Watch(rt)
    sup = watch.spawn_link(Supervisor, children=[w("ok", journal), w("bad", journal, cls=Other),
                                                 w("never", journal)])
    reason = watch.exit_reason(sup)
    assert isinstance(reason, SupervisorError) and reason.reason == "start_failed"
    assert isinstance(reason.error, InjectedFault)
    assert started(journal) == ["ok"] and stopped(journal) == ["ok"]
    assert refs_alive(rt) == [watch.ref] and len(watch.exits()) == 1


def test_a_child_start_failure_fails_the_supervisor_start_and_stops_started_children(rt):
    """A31: children started before the failing one are terminated in reverse order."""
    journal = Recorder()
    faults = Faults(rt)
    faults.crash_on_start(Other)
    sup = rt.spawn(Supervisor, children=[w("a", journal), w("b", journal),
                                         w("bad", journal, cls=Other), w("c", journal)])
    settle(rt)
    assert not sup.is_alive()
    assert started(journal) == ["a", "b"] and stopped(journal) == ["b", "a"]


def test_a_static_child_that_ignores_its_start_is_recorded_but_not_running(rt):
    """A32: start_child gives None, the spec stays undefined (2 specs, 1 active); the supervisor
    still shuts down cleanly."""
    sup = start_sup(rt, w("a"))
    assert supervisors.start_child(sup, w("i", kwargs={"ignore": True})) is None
    assert refs(sup)["i"] is None and counts(sup) == (2, 1, 0, 2)
    assert rt.stop(sup, "shutdown", timeout=WAIT)


@pytest.mark.parametrize("dynamic", [False, True], ids=["temporary", "simple_one_for_one"])
def test_a_temporary_or_dynamic_child_that_ignores_its_start_is_not_recorded(rt, dynamic):
    """A32: a temporary child, or any simple_one_for_one instance, that ignores is not kept."""
    if dynamic:
        sup = start_sup(rt, w("i", restart=PERMANENT, kwargs={"ignore": True}), strategy=SIMPLE)
        assert supervisors.start_child(sup) is None
        assert counts(sup) == (1, 0, 0, 0)
    else:
        sup = start_sup(rt, w("i", restart=TEMPORARY, kwargs={"ignore": True}))
        assert refs(sup) == {}
        assert supervisors.start_child(sup, w("j", restart=TEMPORARY,
                                              kwargs={"ignore": True})) is None
        assert refs(sup) == {}
    assert rt.stop(sup, "shutdown", timeout=WAIT)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "simple_one_for_one"])
def test_a_failed_child_start_adds_nothing(rt, dynamic):
    """A33: start_child whose start fails raises start_failed; which_children stays empty."""
    faults = Faults(rt)
    faults.crash_on_start(Other, times=None)
    if dynamic:
        sup = start_sup(rt, ChildSpec("d", Other), strategy=SIMPLE)
        with pytest.raises(SupervisorError) as err:
            supervisors.start_child(sup)
    else:
        sup = start_sup(rt)
        with pytest.raises(SupervisorError) as err:
            supervisors.start_child(sup, w("x", cls=Other))
    assert err.value.reason == "start_failed" and isinstance(err.value.error, InjectedFault)
    assert refs(sup) == {} and sup.is_alive()
    faults.clear()


def test_restart_child_whose_start_fails_returns_the_error_and_leaves_it_undefined(rt):
    """A33: restart_child on a stopped child whose start fails: start_failed, still undefined."""
    sup = start_sup(rt, w("x", cls=Other))
    supervisors.terminate_child(sup, "x")
    faults = Faults(rt)
    faults.crash_on_start(Other)
    with pytest.raises(SupervisorError) as err:
        supervisors.restart_child(sup, "x")
    assert err.value.reason == "start_failed"
    assert refs(sup) == {"x": None}
    assert isinstance(supervisors.restart_child(sup, "x"), ActorRef)


class NotAnActor:
    pass


@pytest.mark.parametrize("make,field", [
    (lambda: ChildSpec("c", NotAnActor), "start"),
    (lambda: ChildSpec("c", Worker, restart="permanent"), "restart"),
    (lambda: ChildSpec("c", Worker, shutdown=-1), "shutdown"),
    (lambda: ChildSpec("c", Worker, kind="daemon"), "kind"),
    (lambda: ChildSpec("c", Worker, significant="yes"), "significant"),
    (lambda: ChildSpec("c", Worker, restart=PERMANENT, significant=True), "significant"),
    (lambda: Supervisor(children=[ChildSpec("c", Worker), ChildSpec("c", Worker)]), "duplicate"),
    (lambda: Supervisor(strategy=SIMPLE, children=[]), "SIMPLE_ONE_FOR_ONE"),
    (lambda: Supervisor(strategy="one_for_one"), "strategy"),
    (lambda: Supervisor(intensity=float("inf")), "intensity"),
    (lambda: Supervisor(period=0), "period"),
    (lambda: Supervisor(auto_shutdown="never"), "auto_shutdown"),
    (lambda: Supervisor(children=[ChildSpec("c", Worker, restart=TRANSIENT, significant=True)]),
     "significant"),
    (lambda: Supervisor(strategy=SIMPLE, children=[ChildSpec("c", Worker)],
                        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT), "auto_shutdown"),
    (lambda: Supervisor(retry_delay=-1), "retry_delay"),
], ids=["start", "restart", "shutdown", "kind", "significant", "significant-permanent",
        "duplicate-id", "simple-without-spec", "strategy", "intensity-infinity", "period-0",
        "auto-shutdown", "significant-never", "simple-auto-shutdown", "retry-delay"])
def test_specs_and_flags_are_validated_at_the_door_with_precise_errors(make, field):
    """A34: each bad spec or flag is a ValueError naming the field (and the child)."""
    with pytest.raises(ValueError, match=field):
        make()


def test_spec_errors_reach_the_spawner_and_defaults_are_otps(rt):
    """A34: spawn raises the ValueError; defaults: permanent worker, 5 s (supervisor: infinity)."""
    with pytest.raises(ValueError, match="child 'd': significant"):
        rt.spawn(Supervisor, children=[ChildSpec("c", Worker),
                                       ChildSpec("d", Worker, restart=TRANSIENT,
                                                 significant=True)])
    worker, sub = ChildSpec("c", Worker), ChildSpec("s", Supervisor)
    assert (worker.restart, worker.kind, worker.shutdown) == (PERMANENT, "worker", 5.0)
    assert (sub.kind, sub.shutdown) == ("supervisor", "infinity")


# ----------------------------------------------------------------------------------------------
# A7. Auto-shutdown (significant children)
# ----------------------------------------------------------------------------------------------


ANY, ALL = AutoShutdown.ANY_SIGNIFICANT, AutoShutdown.ALL_SIGNIFICANT
SIGNIFICANT_TABLE = [
    # (restart, how it ends, auto-shutdown?)
    (TEMPORARY, "normal", True),
    (TEMPORARY, "exception", True),
    (TEMPORARY, "killed", True),
    (TEMPORARY, "terminate_child", False),
    (TRANSIENT, "normal", True),
    (TRANSIENT, "exception", False),  # restarted instead
    (TRANSIENT, "killed", False),
    (TRANSIENT, "terminate_child", False),
]


@pytest.mark.parametrize("restart,how,shuts_down", SIGNIFICANT_TABLE,
                         ids=[f"{r.name}-{h}" for r, h, _ in SIGNIFICANT_TABLE])
def test_only_a_real_exit_of_a_significant_child_triggers_any_significant(
        rt, restart, how, shuts_down):
    """A39: any_significant: a significant child's own exit that is not restarted shuts the
    supervisor down (shutdown); terminate_child never does; a restart never does."""
    sup = start_sup(rt, w("other"), w("sig", restart=restart, significant=True),
                    auto_shutdown=ANY, intensity=3)
    watch = Watch(rt, sup)
    sig = refs(sup)["sig"]
    if how == "terminate_child":
        supervisors.terminate_child(sup, "sig")
    elif how == "normal":
        sig.tell(("exit", "normal"))
    elif how == "exception":
        sig.tell("die")
    else:
        rt.kill(sig)
    assert watch.down(sup) is shuts_down
    if shuts_down:
        assert watch.reason(sup) == "shutdown" and refs_alive(rt) == [watch.ref]


def test_all_significant_shuts_down_only_after_the_last_significant_child_exits(rt):
    """A39: all_significant: the first significant exit does not, the last one does."""
    sup = start_sup(rt, w("a", restart=TEMPORARY, significant=True),
                    w("b", restart=TEMPORARY, significant=True), w("plain"), auto_shutdown=ALL)
    watch = Watch(rt, sup)
    refs(sup)["a"].tell(("exit", "normal"))
    assert not watch.down(sup)
    refs(sup)["b"].tell(("exit", "normal"))
    assert watch.reason(sup) == "shutdown"


@pytest.mark.parametrize("mode", [ANY, ALL], ids=lambda m: m.name)
@pytest.mark.parametrize("restart", [TRANSIENT, TEMPORARY], ids=lambda r: r.name)
def test_non_significant_children_never_trigger_auto_shutdown(rt, mode, restart):
    """A39: in every mode, a non-significant child's exit leaves the supervisor running."""
    sup = start_sup(rt, w("plain", restart=restart), w("sig", restart=TRANSIENT,
                                                       significant=True), auto_shutdown=mode)
    refs(sup)["plain"].tell(("exit", "normal"))
    settle(rt)
    assert sup.is_alive()


@pytest.mark.parametrize("strategy", [ONE_FOR_ALL, REST_FOR_ONE], ids=lambda s: s.name)
def test_significant_bystanders_of_a_group_restart_do_not_trigger_auto_shutdown(rt, strategy):
    """A40: significant children terminated as bystanders of a sibling's restart do not count."""
    sup = start_sup(rt, w("perm"), w("sig", restart=TEMPORARY, significant=True),
                    strategy=strategy, auto_shutdown=ANY, intensity=3)
    crash(rt, refs(sup)["perm"])
    assert sup.is_alive() and list(refs(sup)) == ["perm"]


@pytest.mark.parametrize("significant", [True, False])
def test_auto_shutdown_escalates_only_through_significant_links(rt, significant):
    """A40: sub-supervisor B auto-shuts-down; parent A follows only if B is significant in A."""
    b_spec = ChildSpec("b", Supervisor, restart=TRANSIENT, significant=significant, kwargs={
        "auto_shutdown": ANY, "children": [w("leaf", restart=TEMPORARY, significant=True)]})
    a = start_sup(rt, b_spec, w("other"), auto_shutdown=ANY if significant else
                  AutoShutdown.NEVER)
    b = refs(a)["b"]
    watch = Watch(rt, a, b)
    refs(b)["leaf"].tell(("exit", "normal"))
    assert watch.reason(b) == "shutdown"
    assert watch.down(a) is significant
    if not significant:
        assert refs(a)["b"] is None  # transient, normal-ish exit: kept, not restarted


def test_auto_shutdown_is_refused_for_simple_one_for_one():
    """A40: simple_one_for_one with auto_shutdown other than NEVER is invalid."""
    with pytest.raises(ValueError, match="SIMPLE_ONE_FOR_ONE"):
        Supervisor(strategy=SIMPLE, children=[ChildSpec("c", Worker)], auto_shutdown=ANY)


def test_supervision_events_are_published_for_starts_and_restarts(rt):
    """A14 (events): a restart publishes ChildStarted for the new incarnation."""
    seen = Recorder()
    listener = rt.spawn(Collector, seen)
    rt.bus.subscribe(ChildStarted, listener)
    sup = start_sup(rt, w("a"), intensity=2)
    wait_until(lambda: len(seen) >= 1, WAIT, "ChildStarted")
    old = refs(sup)["a"]
    crash(rt, old)
    new = refs(sup)["a"]
    wait_until(lambda: seen.items[-1].ref == new, WAIT, "the restart's ChildStarted")
    event = seen.items[-1]
    assert (event.child_id, event.supervisor, event.path) == ("a", sup, new.path)
