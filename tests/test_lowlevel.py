"""``actors.lowlevel``: the hooks that behaviours (supervisors, the cluster) build on. Each runs
on the inline runtime and on real threads (the ``rt`` fixture) unless it is about threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors import Actor, ActorDead, ActorRef, AskTimeout, Down, Exit, Runtime, lowlevel
from actors.lowlevel import SKIP, Deferred, Reply
from tests.conftest import run_script, settle

WAIT = 5.0


class Sink(Actor):
    def __init__(self, got: list[Any] | None = None, started: list[str] | None = None) -> None:
        self.got = got if got is not None else []
        self.started = started

    def on_start(self) -> None:
        if self.started is not None:
            self.started.append(threading.current_thread().name)

    def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom")
        self.got.append(message)
        return ("echo", message)


class FailsToStart(Actor):
    def on_start(self) -> None:
        raise ValueError("no database")

    def receive(self, message: Any) -> None:
        pass


class Stopper(Actor):
    """Records what happens when it stops (``on_stop`` and its reason)."""

    def __init__(self, journal: list[Any]) -> None:
        self.journal = journal

    def receive(self, message: Any) -> None:
        self.journal.append(message)

    def on_stop(self, reason: Any) -> None:
        self.journal.append(("on_stop", reason))


class Watcher(Actor):
    trap_exits = True

    def __init__(self, got: list[Any]) -> None:
        self.got = got

    def receive(self, message: Any) -> Any:
        if callable(message):
            return message(self)
        self.got.append(message)
        return None


# -- lifecycle ------------------------------------------------------------------------------------
def test_wait_started_returns_once_on_start_has_run(rt: Runtime) -> None:
    started: list[str] = []
    outcome: list[bool] = []

    def step() -> None:
        ref = rt.spawn(Sink, started=started)
        outcome.append(lowlevel.wait_started(ref))
        outcome.append(bool(started))  # on_start ran before wait_started returned

    run_script(rt, step)
    assert outcome == [True, True]


def test_wait_started_is_false_and_exit_reason_says_why_when_on_start_raises(rt: Runtime) -> None:
    ref = rt.spawn(FailsToStart)
    assert lowlevel.wait_started(ref) is False
    assert lowlevel.is_dead(ref)
    reason = lowlevel.exit_reason(ref)
    assert isinstance(reason, ValueError) and str(reason) == "no database"


def test_exit_reason_is_none_while_the_actor_is_alive(rt: Runtime) -> None:
    ref = rt.spawn(Sink)
    assert lowlevel.exit_reason(ref) is None and not lowlevel.is_dead(ref)
    assert rt.stop(ref, "done", timeout=WAIT)
    assert lowlevel.exit_reason(ref) == "done" and lowlevel.is_dead(ref)


def test_stop_from_a_turn_waits_until_the_victim_has_run_on_stop(rt: Runtime) -> None:
    log: list[Any] = []
    victim = rt.spawn(Stopper, log)
    seen: list[Any] = []

    def step() -> None:
        seen.append(lowlevel.stop(victim, "shutdown", WAIT))
        seen.append(list(log))  # on_stop has run by now

    run_script(rt, step)
    assert seen == [True, [("on_stop", "shutdown")]]
    assert lowlevel.stop(victim, "again", WAIT) is True  # already dead: nothing to do


def test_request_stop_does_not_wait_and_wait_exited_does(rt: Runtime) -> None:
    log: list[Any] = []
    victim = rt.spawn(Stopper, log)
    assert lowlevel.request_stop(victim, ("shutdown", "test")) is True
    assert lowlevel.wait_exited(victim, WAIT)
    assert log == [("on_stop", ("shutdown", "test"))]
    assert lowlevel.request_stop(victim, "shutdown") is False  # dead already


def test_exit_quietly_runs_on_stop_and_links_fire_with_that_reason(rt: Runtime) -> None:
    log: list[Any] = []
    got: list[Any] = []
    watcher = rt.spawn(Watcher, got)
    victim = rt.spawn(Stopper, log)
    watcher.ask(lambda self: self.link(victim), timeout=WAIT)
    assert lowlevel.exit_quietly(victim, "noconnection") is True
    assert lowlevel.exit_quietly(victim, "again") is False
    settle(rt)
    assert log == [("on_stop", "noconnection")]
    assert got == [Exit(victim, "noconnection")]


def test_parent_actor_class_and_set_restarts(rt: Runtime) -> None:
    children: list[ActorRef] = []

    class Parent(Actor):
        def receive(self, message: Any) -> None:
            children.append(self.spawn(Sink))

    top = rt.spawn(Parent)
    top.tell("spawn")
    settle(rt)
    [child] = children
    assert lowlevel.parent(child) == top and lowlevel.parent(top) is None
    assert lowlevel.actor_class(child) is Sink
    lowlevel.set_restarts(child, 3)
    assert child.statistics().restarts == 3


# -- the caller -----------------------------------------------------------------------------------
def test_caller_tenant_is_the_running_actors_tenant_and_none_outside(rt: Runtime) -> None:
    seen: list[Any] = []

    class Probe(Actor):
        def receive(self, message: Any) -> None:
            seen.append(lowlevel.caller_tenant())

    rt.tenant("acme").spawn(Probe).tell("?")
    rt.spawn(Probe).tell("?")
    settle(rt)
    assert sorted(seen, key=str) == [None, "acme"]
    assert lowlevel.caller_tenant() is None


def test_blocking_is_allowed_off_the_pool_and_never_on_a_worker() -> None:
    with Runtime(workers=1, node="t") as rt:
        can_block = lowlevel.blocking_allowed(rt)
        on_worker = rt.spawn(Watcher, []).ask(lambda self: can_block(), timeout=WAIT)
        assert can_block() is True and on_worker is False


# -- deferred delivery ----------------------------------------------------------------------------
def test_a_deferred_message_is_opened_in_the_actors_turn_and_skip_delivers_nothing(
        rt: Runtime) -> None:
    got: list[Any] = []
    opened: list[Any] = []
    ref = rt.tenant("acme").spawn(Sink, got)

    def first() -> Any:
        opened.append(lowlevel.caller_tenant())  # "acme": inside the actor, not the sender
        return "first"

    def nothing() -> Any:
        opened.append(lowlevel.caller_tenant())
        return SKIP

    assert lowlevel.deliver(ref, Deferred(first)) and lowlevel.deliver(ref, Deferred(nothing))
    ref.tell("plain")
    settle(rt)
    assert got == ["first", "plain"] and opened == ["acme", "acme"]


def test_deliver_to_a_dead_actor_is_false(rt: Runtime) -> None:
    ref = rt.spawn(Sink)
    rt.stop(ref, timeout=WAIT)
    assert lowlevel.deliver(ref, Deferred(lambda: "x")) is False


# -- asks answered elsewhere ----------------------------------------------------------------------
class Collect:
    """A ``ReplyTo`` that records what it was given."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    def set(self, value: Any) -> bool:
        self.outcomes.append(("set", value))
        return True

    def fail(self, error: BaseException) -> bool:
        self.outcomes.append(("fail", type(error).__name__))
        return True


def test_ask_async_hands_the_answer_or_the_crash_to_the_reply(rt: Runtime) -> None:
    reply = Collect()
    ref = rt.spawn(Sink)
    assert lowlevel.ask_async(ref, "hi", reply)
    assert lowlevel.ask_async(ref, "boom", reply)
    settle(rt)
    assert reply.outcomes == [("set", ("echo", "hi")), ("fail", "ActorCrashed")]
    assert lowlevel.ask_async(ref, "late", reply) is False  # dead: the caller decides


def test_wait_reply_returns_the_value_and_times_out_with_the_name_given(rt: Runtime) -> None:
    ref = rt.spawn(Sink)
    reply = Reply()
    lowlevel.ask_async(ref, "hi", reply)
    assert lowlevel.wait_reply(rt, reply, WAIT, "sink") == ("echo", "hi")
    never = Reply()
    with pytest.raises(AskTimeout, match="nobody"):
        lowlevel.wait_reply(rt, never, 0.01, "nobody")


# -- processes and links --------------------------------------------------------------------------
class Named(ActorRef):
    """A ref subclass built around another ref's process (as the cluster's RemoteRef is)."""

    __slots__ = ()


def test_process_ref_and_actor_round_trip_and_set_ref_changes_the_ref_in_signals(
        rt: Runtime) -> None:
    got: list[Any] = []
    watcher = rt.spawn(Watcher, got)
    ref = rt.spawn(Sink)
    process = lowlevel.process_of(ref)
    assert lowlevel.ref_of(process) == ref and isinstance(lowlevel.actor_of(process), Sink)
    alias = Named(process)
    lowlevel.set_ref(ref, alias)
    assert lowlevel.ref_of(process) is alias
    monitor = watcher.ask(lambda self: self.monitor(ref), timeout=WAIT)
    rt.stop(ref, "bye", timeout=WAIT)
    settle(rt)
    assert got == [Down(alias, "bye", monitor)] and type(got[0].ref) is Named


def test_a_link_observer_sees_links_made_and_removed(rt: Runtime) -> None:
    events: list[tuple[str, Any, bool]] = []
    observed = rt.spawn(Sink)
    lowlevel.install_link_observer(
        observed,
        lambda p: events.append(("add", lowlevel.ref_of(p), lowlevel.is_dead(lowlevel.ref_of(p)))),
        lambda p: events.append(("drop", lowlevel.ref_of(p),
                                 lowlevel.is_dead(lowlevel.ref_of(p)))))
    a = rt.spawn(Watcher, [])
    b = rt.spawn(Watcher, [])
    a.ask(lambda self: lowlevel.link(self.ref, observed), timeout=WAIT)
    b.ask(lambda self: lowlevel.link(self.ref, observed), timeout=WAIT)
    a.ask(lambda self: lowlevel.unlink(self.ref, observed), timeout=WAIT)
    rt.stop(b, "bye", timeout=WAIT)
    assert events == [("add", a, False), ("add", b, False), ("drop", a, False),
                      ("drop", b, True)]  # an exit, told apart from an unlink by is_dead


def test_link_to_a_dead_actor_delivers_noproc(rt: Runtime) -> None:
    got: list[Any] = []
    watcher = rt.spawn(Watcher, got)
    dead = rt.spawn(Sink)
    rt.stop(dead, timeout=WAIT)
    watcher.ask(lambda self: lowlevel.link(self.ref, dead), timeout=WAIT)
    settle(rt)
    assert got == [Exit(dead, "noproc")]


# -- directed helping (threads) -------------------------------------------------------------------
def test_a_waiting_worker_runs_the_actor_it_waits_for_on_a_one_worker_pool() -> None:
    """The only worker waits in a turn for a child's start and then its exit: it runs the
    child's turns itself (no spare thread is needed, nothing starves)."""
    started: list[str] = []
    log: list[Any] = []
    seen: list[Any] = []

    class Parent(Actor):
        def receive(self, message: Any) -> None:
            child = self.spawn(Sink, started=started)
            seen.append(lowlevel.wait_started(child))
            seen.append(threading.current_thread().name)
            victim = self.spawn(Stopper, log)
            seen.append(lowlevel.stop(victim, "shutdown", WAIT))

    with Runtime(workers=1, node="t") as rt:
        rt.spawn(Parent).ask("go", timeout=WAIT)
    assert seen[0] is True and started == [seen[1]] and seen[2] is True
    assert log == [("on_stop", "shutdown")]


def test_stop_kills_an_actor_that_does_not_exit_in_time() -> None:
    release = threading.Event()
    outcome: list[Any] = []

    class Stuck(Actor):
        def receive(self, message: Any) -> None:
            release.wait(WAIT)

    with Runtime(workers=2, node="t") as rt:
        stuck = rt.spawn(Stuck)
        stuck.tell("block")
        run_script(rt, lambda: outcome.append(lowlevel.stop(stuck, "shutdown", 0.05)),
                   release.set)
        assert outcome == [False] and lowlevel.exit_reason(stuck) == "killed"
        with pytest.raises(ActorDead):
            stuck.ask("?", timeout=WAIT)


# -- arguments ------------------------------------------------------------------------------------
CHECKS: list[tuple[str, Any, dict[str, Any], str | None]] = [
    ("positive-ok", 0.5, {"positive": True}, None),
    ("zero-not-positive", 0, {"positive": True, "unit": "seconds"},
     "t must be a positive number of seconds, got 0"),
    ("bool-is-not-a-number", True, {}, "t must be a number, got True"),
    ("nan", float("nan"), {"low": 0}, "t must be a number >= 0, got nan"),
    ("infinity", float("inf"), {"positive": True}, "t must be a positive number, got inf"),
    ("string", "5", {"positive": True}, "t must be a positive number, got '5'"),
    ("float-for-integer", 1.5, {"integer": True, "low": 1},
     "t must be an integer >= 1, got 1.5"),
    ("integer-range", 0, {"integer": True, "low": 1, "high": 10},
     "t must be an integer in 1..10, got 0"),
    ("number-range", 1.5, {"low": 0, "high": 1}, "t must be a number between 0 and 1, got 1.5"),
    ("none-allowed", None, {"positive": True, "or_none": True}, None),
    ("none-refused", None, {"positive": True}, "t must be a positive number, got None"),
    ("none-allowed-names-it", -1, {"integer": True, "positive": True, "or_none": True},
     "t must be a positive integer or None, got -1"),
]


@pytest.mark.parametrize(("value", "options", "error"), [row[1:] for row in CHECKS],
                         ids=[row[0] for row in CHECKS])
def test_check_number_returns_good_values_and_names_the_argument_otherwise(
        value: Any, options: dict[str, Any], error: str | None) -> None:
    if error is None:
        assert lowlevel.check_number(value, "t", **options) is value
    else:
        with pytest.raises(ValueError) as caught:
            lowlevel.check_number(value, "t", **options)
        assert str(caught.value) == error


def test_the_core_checks_its_numeric_arguments_with_the_one_checker(rt: Runtime) -> None:
    ref = rt.spawn(Sink)
    with pytest.raises(ValueError, match=r"^ask timeout must be a positive number of seconds, "
                                         r"got True$"):
        ref.ask("x", timeout=True)
    with pytest.raises(ValueError, match=r"^stop timeout must be a positive number of seconds"):
        rt.stop(ref, timeout=float("inf"))
