"""Links and monitors with Erlang's semantics, on the inline runtime and on threads."""

from __future__ import annotations

import pytest

from actors import Actor, Down, Exit
from actors.testing import Faults, InjectedFault, Recorder
from tests.conftest import settle


class Boom(Exception):
    pass


class Worker(Actor):
    def __init__(self, log=None, trap=False):
        self.events = log
        self.trap_exits = trap

    def receive(self, message):
        match message:
            case ("link", ref):
                self.link(ref)
            case ("unlink", ref):
                self.unlink(ref)
            case ("monitor", ref):
                return self.monitor(ref)
            case ("demonitor", m):
                return self.demonitor(m)
            case "crash":
                raise Boom("worker crashed")
            case ("exit", reason):
                self.stop(reason)
            case Exit() | Down():
                self.events.append(message)
            case _:
                return message

    def on_stop(self, reason):
        if self.events is not None:
            self.events.append(("stopped", reason))


def linked_pair(rt, trap=False):
    log = Recorder()
    a = rt.spawn(Worker, log, trap)
    b = rt.spawn(Worker)
    a.ask(("link", b))
    return a, b, log


@pytest.mark.parametrize("reason_kind", ["exception", "custom", "killed"])
def test_an_abnormal_exit_kills_a_linked_actor_that_does_not_trap(rt, reason_kind):
    a, b, log = linked_pair(rt)
    if reason_kind == "exception":
        b.tell("crash")
    elif reason_kind == "custom":
        b.tell(("exit", "bad_input"))
    else:
        rt.kill(b)
    settle(rt)
    assert not a.is_alive()
    stops = [e for e in log.items if e[0] == "stopped"]
    if reason_kind == "killed":
        assert stops == []  # a "killed" exit propagates as "killed": no on_stop
    elif reason_kind == "custom":
        assert stops == [("stopped", "bad_input")]
    else:
        assert isinstance(stops[0][1], Boom)


@pytest.mark.parametrize("reason", ["normal"])
def test_a_normal_exit_does_not_kill_linked_actors(rt, reason):
    a, b, log = linked_pair(rt)
    b.tell(("exit", reason))
    settle(rt)
    assert a.is_alive() and not b.is_alive()


@pytest.mark.parametrize("how, expected", [("crash", Boom), ("exit-normal", "normal"),
                                           ("exit-shutdown", "shutdown"), ("kill", "killed")])
def test_a_trapping_actor_receives_exit_messages_instead_of_dying(rt, how, expected):
    a, b, log = linked_pair(rt, trap=True)
    if how == "crash":
        b.tell("crash")
    elif how == "kill":
        rt.kill(b)
    else:
        b.tell(("exit", expected))
    settle(rt)
    assert a.is_alive()
    exits = [e for e in log.items if isinstance(e, Exit)]
    assert len(exits) == 1 and exits[0].ref is b
    if isinstance(expected, type):
        assert isinstance(exits[0].reason, expected)
    else:
        assert exits[0].reason == expected


def test_links_are_bidirectional(rt):
    a, b, log = linked_pair(rt)
    a.tell("crash")
    settle(rt)
    assert not b.is_alive()


def test_unlink_removes_both_directions(rt):
    a, b, log = linked_pair(rt)
    a.ask(("unlink", b))
    b.tell("crash")
    settle(rt)
    assert a.is_alive()


def test_linking_a_dead_actor_delivers_noproc(rt):
    log = Recorder()
    trapper = rt.spawn(Worker, log, True)
    dead = rt.spawn(Worker)
    rt.stop(dead)
    trapper.ask(("link", dead))
    settle(rt)
    assert log.items == [Exit(dead, "noproc")]
    plain = rt.spawn(Worker, Recorder())
    plain.tell(("link", dead))
    settle(rt)
    assert not plain.is_alive()


@pytest.mark.parametrize("how, expected", [("crash", Boom), ("exit-normal", "normal"),
                                           ("kill", "killed"), ("stop", "shutdown")])
def test_a_monitor_delivers_one_down_with_the_reason(rt, how, expected):
    log = Recorder()
    watcher = rt.spawn(Worker, log)
    target = rt.spawn(Worker)
    monitor = watcher.ask(("monitor", target))
    if how == "crash":
        target.tell("crash")
    elif how == "kill":
        rt.kill(target)
    elif how == "stop":
        rt.stop(target, "shutdown")
    else:
        target.tell(("exit", "normal"))
    settle(rt)
    downs = [e for e in log.items if isinstance(e, Down)]
    assert len(downs) == 1
    assert downs[0].ref is target and downs[0].monitor == monitor
    if isinstance(expected, type):
        assert isinstance(downs[0].reason, expected)
    else:
        assert downs[0].reason == expected
    assert watcher.is_alive()


def test_monitoring_a_dead_actor_delivers_down_noproc(rt):
    log = Recorder()
    watcher = rt.spawn(Worker, log)
    target = rt.spawn(Worker)
    rt.stop(target)
    monitor = watcher.ask(("monitor", target))
    settle(rt)
    assert log.items == [Down(target, "noproc", monitor)]


def test_demonitor_prevents_the_down(rt):
    log = Recorder()
    watcher = rt.spawn(Worker, log)
    target = rt.spawn(Worker)
    monitor = watcher.ask(("monitor", target))
    assert watcher.ask(("demonitor", monitor)) is True
    rt.kill(target)
    settle(rt)
    assert log.items == []
    assert watcher.ask(("demonitor", monitor)) is False


def test_two_monitors_give_two_downs(rt):
    log = Recorder()
    watcher = rt.spawn(Worker, log)
    target = rt.spawn(Worker)
    m1 = watcher.ask(("monitor", target))
    m2 = watcher.ask(("monitor", target))
    rt.kill(target)
    settle(rt)
    assert sorted(d.monitor.id for d in log.items) == sorted([m1.id, m2.id])


def test_a_message_sent_before_exiting_arrives_before_the_down(rt):
    log = Recorder()

    class Last(Actor):
        def receive(self, message):
            watcher, = message
            watcher.tell("last words")
            self.stop("normal")

    class Watch(Actor):
        def receive(self, message):
            if isinstance(message, tuple) and message[0] == "watch":
                self.monitor(message[1])
            else:
                log.append(message if not isinstance(message, Down) else "down")

    watcher = rt.spawn(Watch)
    target = rt.spawn(Last)
    watcher.tell(("watch", target))
    settle(rt)
    target.tell((watcher,))
    settle(rt)
    assert log.items == ["last words", "down"]


def test_spawn_link_links_before_the_child_starts(rt):
    log = Recorder()

    class FailsAtStart(Actor):
        def on_start(self):
            raise Boom("cannot start")

        def receive(self, message):
            return None

    class Parent(Actor):
        trap_exits = True

        def receive(self, message):
            if message == "spawn":
                self.spawn_link(FailsAtStart)
            else:
                log.append(message)

    parent = rt.spawn(Parent)
    parent.tell("spawn")
    settle(rt)
    assert len(log.items) == 1 and isinstance(log.items[0], Exit)
    assert isinstance(log.items[0].reason, Boom)


def test_injected_crash_runs_ahead_of_queued_messages_and_propagates_over_links(rt):
    a, b, log = linked_pair(rt, trap=True)
    assert Faults(rt).crash(b)
    settle(rt)
    exits = [e for e in log.items if isinstance(e, Exit)]
    assert len(exits) == 1 and isinstance(exits[0].reason, InjectedFault)
    assert Faults(rt).crash(b) is False
