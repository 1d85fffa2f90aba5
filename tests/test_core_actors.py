"""Core actor behaviour: spawn, tell, ask, names, lifecycle callbacks, stop, statistics.
Every test taking ``rt`` runs on the inline runtime and on the thread pool."""

from __future__ import annotations

import threading

import pytest

from actors import (Actor, ActorCrashed, ActorDead, ActorError, AskTimeout, Overflow, Runtime)
from actors.testing import Recorder
from tests.conftest import settle


class Echo(Actor):
    def receive(self, message):
        return message


class Boom(Exception):
    pass


class Lifecycle(Actor):
    """Records what happened to it in ``log`` (a Recorder)."""

    def __init__(self, log, fail_start=False):
        self.events = log
        self.fail_start = fail_start

    def on_start(self):
        self.events.append("start")
        if self.fail_start:
            raise Boom("no start")

    def receive(self, message):
        self.events.append(("got", message))
        if message == "crash":
            raise Boom("crash")
        if message == "stop-me":
            self.stop("done")
        return message

    def on_stop(self, reason):
        self.events.append(("stop", reason))


class Gate(Actor):
    """Blocks in its handler until ``release`` is set (only used on the thread pool)."""

    def __init__(self, entered, release, seen=None):
        self.entered, self.release, self.seen = entered, release, seen

    def receive(self, message):
        if message == "block":
            self.entered.set()
            assert self.release.wait(10)
        elif self.seen is not None:
            self.seen.append(message)
        return message


def test_spawn_rejects_a_class_that_is_not_an_actor(rt):
    with pytest.raises(TypeError, match="subclass of actors.Actor"):
        rt.spawn(dict)


@pytest.mark.parametrize("size", [0, -1, 2.5, "10", True])
def test_spawn_rejects_a_bad_mailbox_size_and_names_it(rt, size):
    with pytest.raises(ValueError, match="mailbox_size of Echo"):
        rt.spawn(Echo, mailbox_size=size)


def test_spawn_rejects_an_unknown_overflow_policy_and_lists_the_choices(rt):
    with pytest.raises(ValueError, match="unknown Overflow 'drop_everything'; choose one of DROP_OLDEST"):
        rt.spawn(Echo, overflow="drop_everything")


def test_overflow_policy_accepts_enum_and_name(rt):
    assert rt.spawn(Echo, overflow="drop_newest").statistics().overflow == "DROP_NEWEST"
    assert rt.spawn(Echo, overflow=Overflow.BLOCK).statistics().overflow == "BLOCK"


@pytest.mark.parametrize("timeout", [0, -1.0, "1", None, float("nan")])
def test_ask_rejects_a_timeout_that_is_not_a_positive_number(rt, timeout):
    ref = rt.spawn(Echo)
    with pytest.raises(ValueError, match="ask timeout must be a positive number"):
        ref.ask("x", timeout=timeout)


def test_ask_returns_the_handlers_return_value(rt):
    assert rt.spawn(Echo).ask(("reading", 21.5), timeout=2) == ("reading", 21.5)


def test_ask_to_a_crashing_handler_raises_actor_crashed_and_the_actor_exits(rt):
    ref = rt.spawn(Lifecycle, Recorder())
    with pytest.raises(ActorCrashed, match="crash") as info:
        ref.ask("crash")
    assert isinstance(info.value.reason, Boom)
    settle(rt)
    assert not ref.is_alive()


def test_ask_to_a_dead_actor_raises_actor_dead(rt):
    ref = rt.spawn(Echo)
    assert rt.stop(ref)
    with pytest.raises(ActorDead):
        ref.ask("anyone?")


def test_asks_queued_behind_an_exit_fail_at_once_with_actor_dead():
    with Runtime(workers=2) as rt:
        _asks_fail_when_killed(rt)


def _asks_fail_when_killed(rt):
    entered, release = threading.Event(), threading.Event()
    ref = rt.spawn(Gate, entered, release)
    ref.tell("block")
    assert entered.wait(5)
    errors = Recorder()

    def asker():
        try:
            ref.ask("late", timeout=10)
        except ActorDead as exc:
            errors.append(exc)

    t = threading.Thread(target=asker)
    t.start()
    from actors.testing import wait_until
    wait_until(lambda: ref.statistics().queued == 1, message="the ask to be queued")
    rt.kill(ref)
    errors.wait_for(1)
    release.set()
    t.join(5)


class Mutual(Actor):
    """A asks B; B asks A back (A is busy waiting for B): B's ask must time out."""

    def __init__(self, answers):
        self.answers = answers
        self.peer = None

    def receive(self, message):
        match message:
            case ("peer", ref):
                self.peer = ref
            case "ask-peer":
                return self.peer.ask("ask-back", timeout=5)
            case "ask-back":
                try:
                    return self.peer.ask("value", timeout=0.05)
                except AskTimeout as exc:
                    self.answers.append(str(exc))
                    return "timed out"
            case "value":
                return "late value"
            case other:
                return other


def test_ask_timeout_raises_and_the_late_reply_is_dropped(rt):
    answers = Recorder()
    a, b = rt.spawn(Mutual, answers), rt.spawn(Mutual, answers)
    a.tell(("peer", b))
    b.tell(("peer", a))
    assert a.ask("ask-peer", timeout=5) == "timed out"
    assert "no reply" in answers.items[0]
    settle(rt)  # a now handles b's abandoned ask; its reply goes nowhere
    assert a.ask("next", timeout=2) == "next"
    assert b.ask("next", timeout=2) == "next"


def test_an_actor_asking_itself_raises_instead_of_deadlocking(rt):
    class SelfAsker(Actor):
        def receive(self, message):
            try:
                self.ref.ask("me", timeout=1)
            except ActorError as exc:
                return str(exc)

    assert "asked itself" in rt.spawn(SelfAsker).ask("go")


def test_messages_from_one_sender_arrive_in_send_order(rt):
    seen = Recorder()

    class Collect(Actor):
        def receive(self, message):
            seen.append(message)

    ref = rt.spawn(Collect)
    for i in range(5000):
        ref.tell(i)
    settle(rt)
    assert seen.items == list(range(5000))


def test_messages_from_many_threads_keep_each_senders_order():
    seen = Recorder()

    class Collect(Actor):
        def receive(self, message):
            seen.append(message)

    with Runtime(workers=2) as rt:
        ref = rt.spawn(Collect, mailbox_size=100_000)
        senders, per = 6, 3000

        def send(k):
            for i in range(per):
                ref.tell((k, i))

        threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seen.wait_for(senders * per, timeout=20)
    for k in range(senders):
        assert [i for (s, i) in seen.items if s == k] == list(range(per))


def test_names_register_and_unregister_with_the_actor(rt):
    ref = rt.spawn(Echo, name="avg")
    assert rt.whereis("avg") is ref and ref.name == "avg"
    with pytest.raises(ActorError, match="already registered"):
        rt.spawn(Echo, name="avg")
    rt.stop(ref)
    assert rt.whereis("avg") is None
    assert rt.spawn(Echo, name="avg").is_alive()


@pytest.mark.parametrize("name", ["", "a/b", 7])
def test_a_bad_name_is_rejected(rt, name):
    with pytest.raises(ValueError, match="actor name"):
        rt.spawn(Echo, name=name)


def test_on_start_runs_before_the_first_message(rt):
    log = Recorder()
    ref = rt.spawn(Lifecycle, log)
    ref.tell("a")
    settle(rt)
    assert log.items[:2] == ["start", ("got", "a")]


def test_on_start_raising_exits_with_that_error_without_on_stop(rt):
    log = Recorder()
    ref = rt.spawn(Lifecycle, log, fail_start=True)
    settle(rt)
    assert not ref.is_alive()
    assert log.items == ["start"]


@pytest.mark.parametrize("how, expected", [
    ("stop", "normal"), ("stop-shutdown", "shutdown"), ("self-stop", "done"), ("crash", Boom),
    ("kill", None),
])
def test_on_stop_gets_the_exit_reason_except_after_kill(rt, how, expected):
    log = Recorder()
    ref = rt.spawn(Lifecycle, log)
    settle(rt)
    if how == "stop":
        assert rt.stop(ref)
    elif how == "stop-shutdown":
        assert rt.stop(ref, "shutdown")
    elif how == "self-stop":
        ref.tell("stop-me")
    elif how == "crash":
        ref.tell("crash")
    else:
        rt.kill(ref)
    settle(rt)
    assert not ref.is_alive()
    stops = [e for e in log.items if isinstance(e, tuple) and e[0] == "stop"]
    if expected is None:
        assert stops == []
    elif isinstance(expected, type):
        assert len(stops) == 1 and isinstance(stops[0][1], expected)
    else:
        assert stops == [("stop", expected)]


def test_stop_jumps_ahead_of_queued_messages_but_lets_the_current_handler_finish():
    with Runtime(workers=2) as rt:
        entered, release = threading.Event(), threading.Event()
        seen = Recorder()
        ref = rt.spawn(Gate, entered, release, seen)
        ref.tell("block")
        assert entered.wait(5)
        for i in range(10):
            ref.tell(i)
        result = {}
        stopper = threading.Thread(target=lambda: result.setdefault("ok", rt.stop(ref)))
        stopper.start()
        from actors.testing import wait_until
        wait_until(lambda: ref._cell._signals, message="the stop signal")
        release.set()
        stopper.join(5)
        assert result == {"ok": True}
        assert seen.items == []  # queued messages never ran
        assert rt.statistics().dead_letters == 10


def test_stop_of_a_dead_actor_returns_true(rt):
    ref = rt.spawn(Echo)
    rt.kill(ref)
    assert rt.stop(ref) is True


def test_stop_that_times_out_kills_and_returns_false():
    with Runtime(workers=2) as rt:
        entered, release = threading.Event(), threading.Event()
        ref = rt.spawn(Gate, entered, release)
        ref.tell("block")
        assert entered.wait(5)
        assert rt.stop(ref, timeout=0.05) is False
        assert not ref.is_alive()
        release.set()


def test_stop_rejects_a_bad_timeout(rt):
    with pytest.raises(ValueError, match="stop timeout"):
        rt.stop(rt.spawn(Echo), timeout=-1)


def test_shutdown_is_idempotent_and_stops_top_level_actors_in_reverse_order(clock):
    from actors.testing import inline_runtime
    order = Recorder()

    class Tracked(Actor):
        def __init__(self, tag):
            self.tag = tag

        def receive(self, message):
            return None

        def on_stop(self, reason):
            order.append((self.tag, reason))

    rt = inline_runtime(clock)
    for tag in "abc":
        rt.spawn(Tracked, tag)
    rt.shutdown()
    rt.shutdown()
    assert order.items == [("c", "shutdown"), ("b", "shutdown"), ("a", "shutdown")]
    with pytest.raises(ActorError, match="shut down"):
        rt.spawn(Echo)


def test_statistics_are_frozen_value_objects_with_the_contract_fields(rt):
    ref = rt.spawn(Echo, mailbox_size=50)
    for i in range(3):
        ref.tell(i)
    settle(rt)
    s = ref.statistics()
    assert (s.processed, s.dropped, s.capacity, s.overflow, s.queued) == (3, 0, 50, "FAIL", 0)
    with pytest.raises(AttributeError):
        s.processed = 4  # type: ignore[misc]  # frozen on purpose: the test
    r = rt.statistics()
    assert r.actors == 1 and r.processed >= 3 and r.dropped == 0 and r.run_queue == 0
    assert r.workers == (0 if rt._scheduler.inline else 2)
    assert "Echo" in repr(ref._cell) and "0/50" in repr(ref._cell)


def test_default_mailbox_is_ten_thousand_with_fail(rt):
    s = rt.spawn(Echo).statistics()
    assert (s.capacity, s.overflow) == (10_000, "FAIL")


def test_tell_to_a_dead_actor_is_a_counted_dead_letter(rt):
    ref = rt.spawn(Echo)
    rt.stop(ref)
    before = rt.statistics().dead_letters
    assert ref.tell("hello?") is False
    assert rt.statistics().dead_letters == before + 1


def test_runtime_rejects_bad_construction_arguments():
    with pytest.raises(ValueError, match="Runtime workers"):
        Runtime(workers=0)
    with pytest.raises(ValueError, match="Runtime budget"):
        Runtime(workers=1, budget=0)


def test_tenant_actors_carry_the_tenant_in_their_identity(rt):
    acme = rt.tenant("acme")
    ref = acme.spawn(Echo, name="store")
    assert ref.tenant == "acme" and ref.path == "/tenants/acme/store"
    assert acme.whereis("store") is ref and rt.whereis("store") is None
    with pytest.raises(ValueError, match="tenant name"):
        rt.tenant("a/b")


def test_children_inherit_the_tenant_and_live_under_the_parents_path(rt):
    class Parent(Actor):
        def receive(self, message):
            child = self.spawn(Echo, name="kid")
            return child.tenant, child.path

    ref = rt.tenant("globex").spawn(Parent, name="p")
    assert ref.ask("go") == ("globex", "/tenants/globex/p/kid")


def test_asking_yourself_after_a_nested_inline_stop_still_raises_actor_error(inline_rt):
    class Child(Actor):
        def receive(self, message):
            return message

    class Parent(Actor):
        def receive(self, message):
            self.runtime.stop(self.spawn(Child))  # runs the child's exit nested, inline
            try:
                self.ref.ask("x", timeout=0.1)
            except ActorError as exc:
                return type(exc).__name__

    assert inline_rt.spawn(Parent).ask("go") == "ActorError"
