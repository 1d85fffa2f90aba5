"""The management API (vectors A20, A35-A38), child handles, supervision events and the rule
that ``supervisors`` imports only what ``actors`` exports. On the inline runtime and on threads.
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

import actors
import supervisors
from actors import ActorDead, ActorRef
from actors.testing import Faults, Recorder, wait_until
from supervisors import (ChildExited, ChildInfo, ChildRestarted, ChildSpec, Restart, Strategy,
                         Supervisor, SupervisorError, SupervisorGaveUp)
from tests.conftest import settle
from tests.test_supervisor_otp import (WAIT, Collector, Worker, _plain_crash_logs, counts, crash,
                                       refs, start_sup, threads_only, w)

__all__ = ["_plain_crash_logs"]  # the module-scoped logging fixture, shared
SIMPLE = Strategy.SIMPLE_ONE_FOR_ONE
SUPERVISORS_DIR = Path(supervisors.__file__).parent
STREAMVISOR_DIR = SUPERVISORS_DIR.parent / "streamvisor"  # the command and views: same rule


# ----------------------------------------------------------------------------------------------
# A35. Fixed, idempotent answers
# ----------------------------------------------------------------------------------------------


def test_management_calls_have_fixed_and_idempotent_answers(rt):
    """A35: already_started (with the ref) / already_present; terminate_child twice is fine;
    restart/delete of a running child: running; unknown id: not_found; delete is for good."""
    spec = w("c")
    sup = start_sup(rt, spec)
    running = refs(sup)["c"]
    with pytest.raises(SupervisorError) as err:
        supervisors.start_child(sup, spec)
    assert (err.value.reason, err.value.ref) == ("already_started", running)
    for call in (supervisors.restart_child, supervisors.delete_child):
        with pytest.raises(SupervisorError) as err:
            call(sup, "c")
        assert err.value.reason == "running"
    assert supervisors.terminate_child(sup, "c") is None
    assert supervisors.terminate_child(sup, "c") is None
    with pytest.raises(SupervisorError) as err:
        supervisors.start_child(sup, spec)
    assert err.value.reason == "already_present"
    for call in (supervisors.terminate_child, supervisors.restart_child, supervisors.delete_child,
                 supervisors.child):
        with pytest.raises(SupervisorError) as err:
            call(sup, "nope")
        assert err.value.reason == "not_found"
    supervisors.delete_child(sup, "c")
    assert refs(sup) == {}
    with pytest.raises(SupervisorError) as err:
        supervisors.restart_child(sup, "c")
    assert err.value.reason == "not_found"
    assert isinstance(supervisors.start_child(sup, spec), ActorRef)


def test_a_call_to_a_supervisor_that_does_not_exist_raises_actor_dead(rt):
    """A35: OTP exits the caller with noproc; we raise ActorDead."""
    sup = start_sup(rt)
    assert rt.stop(sup, timeout=WAIT)
    with pytest.raises(ActorDead):
        supervisors.which_children(sup)


def test_start_child_with_something_that_is_not_a_spec_is_a_value_error(rt):
    """A34/A35: start_child(sup, spec) checks the spec against the supervisor's flags."""
    sup = start_sup(rt)
    with pytest.raises(ValueError, match="ChildSpec"):
        supervisors.start_child(sup, "not a spec")
    with pytest.raises(ValueError, match="significant"):
        supervisors.start_child(sup, w("s", restart=Restart.TRANSIENT, significant=True))
    with pytest.raises(ValueError, match="one ChildSpec"):
        supervisors.start_child(sup, w("a"), w("b"))
    assert sup.is_alive() and refs(sup) == {}


def test_a_name_held_outside_the_tree_is_reported_not_adopted(rt):
    """A36: a child whose registered name another actor holds: already_started with that
    actor's ref, which is left alone; the supervisor stops cleanly."""
    outsider = rt.spawn(Worker, name="db")
    sup = start_sup(rt)
    with pytest.raises(SupervisorError) as err:
        supervisors.start_child(sup, ChildSpec("db", Worker, kwargs={"name": "db"}))
    assert (err.value.reason, err.value.ref) == ("already_started", outsider)
    assert outsider.is_alive() and refs(sup) == {}
    assert rt.stop(sup, "shutdown", timeout=WAIT) and outsider.is_alive()


def test_a_named_child_keeps_its_name_across_restarts(rt):
    """A36 (the other side): the registered name follows the child through a restart."""
    sup = start_sup(rt, ChildSpec("db", Worker, kwargs={"name": "db"}), intensity=3)
    first = rt.whereis("db")
    assert first == refs(sup)["db"]
    crash(rt, first)
    assert rt.whereis("db") == refs(sup)["db"] != first


# ----------------------------------------------------------------------------------------------
# A37, A38. Introspection and scale
# ----------------------------------------------------------------------------------------------


class SubSupervisor(Supervisor):
    """A Supervisor subclass: listed with kind "supervisor"."""


def test_which_children_lists_static_children_in_start_order_with_their_kind(rt):
    """A37 (our contract: start order, not OTP's newest-first): id, ref, restart, kind."""
    sup = start_sup(rt, w("b"), ChildSpec("a", SubSupervisor), w("c", restart=Restart.TRANSIENT))
    supervisors.start_child(sup, w("0"))
    infos = supervisors.which_children(sup)
    assert [i.id for i in infos] == ["b", "a", "c", "0"]
    assert [i.kind for i in infos] == ["worker", "supervisor", "worker", "worker"]
    assert infos[2].restart is Restart.TRANSIENT
    assert all(isinstance(i, ChildInfo) and i.ref.is_alive() for i in infos)
    assert counts(sup) == (4, 4, 1, 3)


def test_count_children_with_many_dynamic_workers_is_exact_and_consistent(rt):
    """A37: 2000 dynamic workers count [1, 2000, 0, 2000] every time; terminating them brings
    it back to [1, 0, 0, 0]; which_children lists them with undefined ids in start order."""
    sup = start_sup(rt, ChildSpec("d", Worker, restart=Restart.TEMPORARY), strategy=SIMPLE)
    children = [supervisors.start_child(sup) for _ in range(2000)]
    assert counts(sup) == counts(sup) == (1, 2000, 0, 2000)
    infos = supervisors.which_children(sup)
    assert [i.ref for i in infos] == children and {i.id for i in infos} == {None}
    for child in children:
        supervisors.terminate_child(sup, child)
    assert counts(sup) == (1, 0, 0, 0)


def test_count_children_counts_dynamic_supervisors_as_supervisors(rt):
    """A37 (count_children_supervisor)."""
    sup = start_sup(rt, ChildSpec("s", SubSupervisor), strategy=SIMPLE)
    for _ in range(3):
        supervisors.start_child(sup)
    assert counts(sup) == (1, 3, 3, 0)


def timed(call: Any) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


@pytest.mark.parametrize("n", [100])
def test_terminating_ten_times_more_temporary_children_takes_at_most_fifty_times_longer(rt, n):
    """A38 (OTP-9242): the bookkeeping is linear (a loose ratio: timing on a shared machine)."""
    def run(count: int) -> float:
        sup = start_sup(rt, ChildSpec("t", Worker, restart=Restart.TEMPORARY), strategy=SIMPLE)
        children = [supervisors.start_child(sup) for _ in range(count)]
        took = timed(lambda: [supervisors.terminate_child(sup, c) for c in children])
        rt.stop(sup, timeout=WAIT)
        return took

    run(n)  # warm up
    small, large = run(n), run(10 * n)
    assert large <= 50 * small + 0.05, (small, large)


def test_starting_and_stopping_many_static_children_stays_near_linear(rt):
    """A38 (scale_start_stop_many_children): 10x more children cost at most 10x of linear."""
    def run(count: int) -> float:
        specs = [w(str(i)) for i in range(count)]
        return timed(lambda: rt.stop(start_sup(rt, *specs), "shutdown", timeout=30.0))

    run(50)
    small, large = run(100), run(1000)
    assert large <= 100 * small + 0.05, (small, large)


def test_simple_one_for_one_start_child_appends_its_arguments_to_the_specs(rt):
    """A20: start_child(sup, *extra_args) starts an instance with the spec's args + extra."""
    journal = Recorder()
    sup = start_sup(rt, ChildSpec("d", Worker, args=("label",)), strategy=SIMPLE)
    supervisors.start_child(sup, journal)  # Worker("label", journal)
    assert [e[:2] for e in journal.items] == [("start", "label")]


# ----------------------------------------------------------------------------------------------
# Child handles
# ----------------------------------------------------------------------------------------------


def test_a_handle_tells_the_current_incarnation_without_the_supervisors_mailbox(rt):
    """The handle's tell goes straight to the child: the supervisor processes nothing for it."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal), intensity=3)
    handle = supervisors.child(sup, "c")
    settle(rt)
    before = sup.statistics().processed
    for i in range(100):
        assert handle.tell(("msg", i))
    settle(rt)
    assert sup.statistics().processed == before
    assert [e[2] for e in journal.items if e[0] == "got"] == [("msg", i) for i in range(100)]
    assert handle.ref == refs(sup)["c"] and handle.state == "running" and handle.id == "c"
    assert "running" in repr(handle)


def test_handle_messages_survive_many_restarts_in_order_and_none_is_lost_silently(rt):
    """Race-freedom: 2000 messages, every 100th of them a crash, told while the child keeps
    restarting; every other message is handled exactly once, in order, or counted as dropped."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal), intensity=1000, period=60.0)
    handle = supervisors.child(sup, "c")
    total, dies = 2000, 0
    for i in range(total):
        if i % 100 == 99:
            handle.tell("die")
            dies += 1
        else:
            handle.tell(("n", i))
    settle(rt)
    wait_until(lambda: handle.pending == 0, WAIT, "the handle's queue to drain")
    got = [e[2][1] for e in journal.items if e[0] == "got"]
    assert got == sorted(got) and len(set(got)) == len(got)
    assert len(got) + handle.dropped == total - dies
    assert handle.dropped == 0
    assert refs(sup)["c"].statistics().restarts == dies


def test_a_handle_on_a_running_child_drops_beyond_its_mailbox_capacity(rt):
    """A full child (its capacity in the handle's queue) drops the newest, counted and logged."""
    threads_only(rt)
    import threading
    journal, release = Recorder(), threading.Event()
    sup = start_sup(rt, ChildSpec("c", Worker, kwargs={"label": "c", "journal": journal,
                                                        "mailbox_size": 3}))
    handle = supervisors.child(sup, "c")
    try:
        handle.tell(("block", release))
        wait_until(lambda: ("blocked", "c") in journal.items, WAIT, "the blocked handler")
        accepted = [handle.tell(i) for i in range(5)]
    finally:
        release.set()
    assert accepted == [True, True, True, False, False] and handle.dropped == 2
    settle(rt)
    assert [e[2] for e in journal.items if e[0] == "got"] == [0, 1, 2]


def test_a_handle_goes_dead_when_its_child_is_deleted_or_its_supervisor_exits(rt):
    """Gone: every tell is dropped and counted; a handle is refused for unknown or dynamic ids."""
    sup = start_sup(rt, w("c"), w("d"))
    c, d = supervisors.child(sup, "c"), supervisors.child(sup, "d")
    supervisors.terminate_child(sup, "c")
    supervisors.delete_child(sup, "c")
    assert c.state == "gone" and c.tell("x") is False and c.dropped == 1
    rt.stop(sup, timeout=WAIT)
    assert d.state == "gone" and d.tell("x") is False and d.ref is None
    dyn = start_sup(rt, ChildSpec("x", Worker), strategy=SIMPLE)
    with pytest.raises(SupervisorError) as err:
        supervisors.child(dyn, "x")
    assert err.value.reason == "not_found"


def test_a_handle_taken_while_the_child_restarts_stashes_until_it_is_back(rt, clock):
    """A handle obtained during a backoff starts out stashing."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, backoff=supervisors.Backoff(min=1.0, jitter=0.0)),
                    intensity=3)
    crash(rt, refs(sup)["c"])
    handle = supervisors.child(sup, "c")
    assert handle.state == "restarting" and handle.ref is None
    handle.tell("hello")
    assert handle.pending == 1
    clock.advance(1.0)
    settle(rt)
    assert ("got", "c", "hello") in journal.items and handle.pending == 0


# ----------------------------------------------------------------------------------------------
# Events and logs
# ----------------------------------------------------------------------------------------------


def test_supervision_events_describe_exits_restarts_and_giving_up(rt):
    """ChildExited (with the reason), ChildRestarted (with the count) and SupervisorGaveUp are
    published on the bus; exits and giving up are logged as warning and error."""
    seen = {cls: Recorder() for cls in (ChildExited, ChildRestarted, SupervisorGaveUp)}
    for cls, journal in seen.items():
        rt.bus.subscribe(cls, rt.spawn(Collector, journal))
    sup = start_sup(rt, w("c"), intensity=1)
    old = refs(sup)["c"]
    crash(rt, old)
    new = refs(sup)["c"]
    wait_until(lambda: len(seen[ChildRestarted]) == 1, WAIT, "ChildRestarted")
    restarted = seen[ChildRestarted].items[0]
    assert (restarted.ref, restarted.child_id, restarted.restarts) == (new, "c", 1)
    exited = seen[ChildExited].items[0]
    assert (exited.ref, exited.supervisor, exited.path) == (old, sup, old.path)
    assert isinstance(exited.reason, Exception)
    with structlog.testing.capture_logs() as logs:
        crash(rt, new)
        settle(rt)
    wait_until(lambda: len(seen[SupervisorGaveUp]) == 1, WAIT, "SupervisorGaveUp")
    events = {e["event"]: e for e in logs}
    assert events["child exited"]["log_level"] == "warning"
    gave_up = events["supervisor gave up: restart intensity reached"]
    assert gave_up["log_level"] == "error" and gave_up["child"] == "c"


def test_a_tenants_supervision_tree_stays_in_the_tenant(rt):
    """Children inherit the tenant; names are registered under it; events carry it."""
    acme = rt.tenant("acme")
    sup = acme.spawn(Supervisor, children=[ChildSpec("db", Worker, kwargs={"name": "db"})])
    settle(rt)
    child = refs(sup)["db"]
    assert child.tenant == "acme" and acme.whereis("db") == child
    assert child.path.startswith("/tenants/acme/")
    rt.spawn(Worker, name="db")  # the same name outside the tenant does not collide
    assert refs(sup)["db"].is_alive()


# ----------------------------------------------------------------------------------------------
# The import rule
# ----------------------------------------------------------------------------------------------


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def test_supervisors_imports_only_names_that_actors_exports():
    """STYLE 1: ``supervisors`` (every module, subpackages too) and the examples use only
    ``actors.__all__`` and public submodules (``actors.codec``, ``actors.lowlevel``: the hooks
    for code that builds behaviours on the core), and touch no internals of the core."""
    package = Path(actors.__file__).parent
    public = set(actors.__all__) | {p.stem for p in package.iterdir()  # public submodules
                                    if not p.name.startswith("_") and p.suffix in ("", ".py")}
    offences = []
    examples = Path(__file__).parents[1] / "examples"
    for path in sorted([*SUPERVISORS_DIR.rglob("*.py"), *STREAMVISOR_DIR.rglob("*.py"),
                        *examples.rglob("*.py")]):
        for module, names in _imports(path):
            if module == "actors":
                offences += [f"{path.name}: actors.{n}" for n in names if n not in public]
            elif module.startswith("actors.") and _private(module):
                offences.append(f"{path.name}: imports {module}")
        text = path.read_text(encoding="utf-8")
        # an attribute of something (``ref._cell``), not a relative import (``from ._tls``)
        for internal in re.findall(r"(?<=[\w)\]])\._(?:cell|scheduler|runq|signal|tell_system|"
                                   r"timers|spawn_hooks|tls)\b", text):
            offences.append(f"{path.name}: uses {internal}")
    assert offences == []


def test_the_public_names_are_exported_once():
    assert len(supervisors.__all__) == len(set(supervisors.__all__))
    for name in ("Supervisor", "ChildSpec", "ChildInfo", "Strategy", "Restart", "Backoff",
                 "AutoShutdown", "SupervisorError", "which_children", "count_children",
                 "start_child", "terminate_child", "restart_child", "delete_child", "child",
                 "ChildStarted", "ChildExited", "ChildRestarted", "SupervisorGaveUp"):
        assert name in supervisors.__all__ and hasattr(supervisors, name), name
    assert issubclass(SupervisorGaveUp, actors.LifecycleEvent)


def test_faults_can_make_a_child_crash_on_a_given_message_through_its_handle(rt):
    """Faults and handles together: crash_on the current incarnation, by message."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal), intensity=3)
    handle = supervisors.child(sup, "c")
    Faults(rt).crash_on(handle.ref, when=lambda m: m == "poison")
    for m in ("a", "poison", "b"):
        handle.tell(m)
    settle(rt)
    assert [e[2] for e in journal.items if e[0] == "got"] == ["a", "b"]
    assert handle.ref.statistics().restarts == 1
