"""Akka's supervision and backoff behaviours (vectors B1-B12) against our Supervisor.

The backoff runs on the runtime clock: each test advances the ManualClock to just before and
exactly to the expected restart ("too early" and "too late" both fail), on the inline runtime and
on real threads. Messages during a backoff go through a ``ChildHandle`` (Akka's stable ref).
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import structlog

import supervisors
from actors import ActorRef, Runtime
from actors.testing import Faults, Recorder, wait_until
from supervisors import AutoShutdown, Backoff, ChildSpec, Restart, Strategy
from supervisors._backoff import backoff_delay
from tests.conftest import settle
from tests.test_supervisor_otp import (WAIT, Boom, Other, Watch, Worker, _plain_crash_logs,
                                       crash, refs, start_sup, threads_only, w)

__all__ = ["_plain_crash_logs"]  # the module-scoped logging fixture, shared
EPS = 1e-6


def ref_of(sup: ActorRef, child_id: str = "c") -> Any:
    return refs(sup)[child_id]


def restarted_after(rt: Runtime, clock: Any, sup: ActorRef, delay: float,
                    child_id: str = "c") -> ActorRef:
    """Advance to just before ``delay`` (still backing off), then to it (restarted)."""
    clock.advance(delay - EPS)
    settle(rt)
    assert ref_of(sup, child_id) == "restarting", f"restarted before {delay} s"
    clock.advance(2 * EPS)  # (float sums of advances may land a hair short of the deadline)
    settle(rt)
    ref = ref_of(sup, child_id)
    assert isinstance(ref, ActorRef) and ref.is_alive(), f"not restarted after {delay} s"
    return ref


def backoff_sup(rt: Runtime, backoff: Backoff, *extra: ChildSpec, journal: Recorder | None = None,
                **flags: Any) -> ActorRef:
    flags.setdefault("intensity", 10)
    flags.setdefault("period", 60.0)
    return start_sup(rt, w("c", journal, backoff=backoff), *extra, **flags)


# ----------------------------------------------------------------------------------------------


def test_backoff_delay_follows_akkas_formula_with_the_supervisors_seeded_jitter(rt, clock):
    """B1: delay = min(max, min * 2**count) * (1 + U[0,1) * jitter), the draw from the
    supervisor's own ``random.Random(seed)``: the same seed, the same delays."""
    backoff = Backoff(min=0.2, max=1.0, jitter=0.5)
    sup = backoff_sup(rt, backoff, seed=7)
    draws = random.Random(7)
    for count in range(4):  # 0.2, 0.4, 0.8, then capped at 1.0 - each times (1 + U * 0.5)
        delay = backoff_delay(backoff, count, draws.random())
        crash(rt, ref_of(sup))
        restarted_after(rt, clock, sup, delay)


def test_backoff_restarts_grow_exponentially_with_only_one_instance_at_a_time(rt, clock):
    """B2: min 0.2, no jitter: restarts after 0.2, 0.4 and 0.8 s; never two instances."""
    sup = backoff_sup(rt, Backoff(min=0.2, max=10.0, jitter=0.0))
    for delay in (0.2, 0.4, 0.8):
        crash(rt, ref_of(sup))
        assert live_workers(rt) == 0
        restarted_after(rt, clock, sup, delay)
        assert live_workers(rt) == 1


def live_workers(rt: Runtime) -> int:
    settle(rt)
    return sum(1 for r in rt.actors() if r.is_alive() and "/Worker-" in r.path)


def test_backoff_count_resets_after_the_child_ran_for_reset_after(rt, clock):
    """B3: reset_after 0.1, min 1: after a stable run the next failure waits min again."""
    sup = backoff_sup(rt, Backoff(min=1.0, max=10.0, jitter=0.0, reset_after=0.1))
    crash(rt, ref_of(sup))
    restarted_after(rt, clock, sup, 1.0)
    crash(rt, ref_of(sup))  # at once: not stable, so doubled
    restarted_after(rt, clock, sup, 2.0)
    clock.advance(0.1)  # stable now
    crash(rt, ref_of(sup))
    restarted_after(rt, clock, sup, 1.0)


@pytest.mark.parametrize("ran,next_delay", [(1.9, 2.0), (2.0, 1.0)])
def test_default_reset_after_is_the_average_of_min_and_max(rt, clock, ran, next_delay):
    """B3: min 1, max 3: the count resets once the child ran (1 + 3) / 2 = 2 s."""
    sup = backoff_sup(rt, Backoff(min=1.0, max=3.0, jitter=0.0))
    crash(rt, ref_of(sup))
    restarted_after(rt, clock, sup, 1.0)
    clock.advance(ran)
    crash(rt, ref_of(sup))
    restarted_after(rt, clock, sup, next_delay)


def test_nested_backoff_counts_reset_independently(rt, clock):
    """B3 (#31461): a backing-off leaf inside a backing-off sub-supervisor: each level keeps
    its own count; the leaf's failures do not grow the sub-supervisor's delay."""
    backoff = Backoff(min=1.0, max=60.0, jitter=0.0, reset_after=30.0)
    sub = ChildSpec("sub", supervisors.Supervisor, backoff=backoff, kwargs={
        "intensity": 10, "period": 60.0, "children": [w("leaf", backoff=backoff)]})
    top = start_sup(rt, sub, intensity=10, period=60.0)
    inner = ref_of(top, "sub")
    for delay in (1.0, 2.0, 4.0):  # the leaf's count grows
        crash(rt, ref_of(inner, "leaf"))
        restarted_after(rt, clock, inner, delay, "leaf")
    crash(rt, inner)  # the sub-supervisor's first failure: its own count is 0
    restarted_after(rt, clock, top, 1.0, "sub")


def test_manual_reset_puts_the_backoff_count_back_to_zero(rt, clock):
    """B4: with a reset_after the child never reaches (manual mode), the count grows until
    ``reset_backoff``; it reports the count (then 0), and the next failure waits min again."""
    sup = backoff_sup(rt, Backoff(min=1.0, max=60.0, jitter=0.0, reset_after=1e9))
    crash(rt, ref_of(sup))
    restarted_after(rt, clock, sup, 1.0)
    clock.advance(100.0)
    crash(rt, ref_of(sup))
    restarted_after(rt, clock, sup, 2.0)  # no automatic reset
    assert supervisors.reset_backoff(sup, "c") == 2
    assert supervisors.reset_backoff(sup, "c") == 0
    crash(rt, ref_of(sup))
    restarted_after(rt, clock, sup, 1.0)


def test_the_retry_cap_stops_the_child_and_the_supervisor(rt, clock):
    """B5: intensity 2 (maxNrOfRetries): restart counts 0, 1, 2, each a new instance; the
    third failure stops both the child and its supervisor."""
    sup = backoff_sup(rt, Backoff(min=0.1, max=1.0, jitter=0.0), intensity=2)
    watch = Watch(rt, sup)
    seen = []
    for delay in (0.1, 0.2):
        ref = ref_of(sup)
        seen.append((ref, ref.statistics().restarts))
        crash(rt, ref)
        restarted_after(rt, clock, sup, delay)
    ref = ref_of(sup)
    seen.append((ref, ref.statistics().restarts))
    assert [n for _, n in seen] == [0, 1, 2] and len({r for r, _ in seen}) == 3
    crash(rt, ref)
    assert watch.reason(sup) == "shutdown" and not ref.is_alive()


def test_failures_during_a_backoff_restart_count_against_the_cap(rt, clock):
    """B5 (typed withMaxRestarts): a setup that keeps throwing: each failed start is a failure;
    with intensity 2 the supervisor stops after two failed attempts."""
    sup = backoff_sup(rt, Backoff(min=0.1, max=1.0, jitter=0.0), intensity=2)
    watch = Watch(rt, sup)
    faults = Faults(rt)
    failing = faults.crash_on_start(Worker, times=None)
    crash(rt, ref_of(sup))
    clock.advance(0.1)
    settle(rt)
    assert ref_of(sup) == "restarting" and failing.fired == 1
    clock.advance(0.2)
    settle(rt)
    assert failing.fired == 2 and watch.reason(sup) == "shutdown"
    faults.clear()


def test_the_restart_window_forgets_failures_older_than_the_period(rt, clock):
    """B6: 3 retries within 1 s: three rapid failures restart; once the window has passed the
    count starts again; a fourth failure within one window terminates the supervisor."""
    sup = backoff_sup(rt, Backoff(min=0.01, max=0.01, jitter=0.0), intensity=3, period=1.0)
    watch = Watch(rt, sup)
    for _ in range(2):
        for _ in range(3):
            crash(rt, ref_of(sup))
            restarted_after(rt, clock, sup, 0.01)
        clock.advance(1.0)
    for _ in range(3):
        crash(rt, ref_of(sup))
        restarted_after(rt, clock, sup, 0.01)
    crash(rt, ref_of(sup))
    assert watch.reason(sup) == "shutdown"


class Counter(Worker):
    """Counts what it got since it started (its state is initial after a restart)."""

    def on_start(self) -> None:
        super().on_start()
        self.n = 0

    def receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "ping":
            self.n += 1
            self._note("ping", self.label, message[1], self.n)
            return None
        return super().receive(message)


def pings(journal: Recorder) -> list[tuple[Any, int]]:
    return [(e[2], e[3]) for e in journal.items if e[0] == "ping"]


@pytest.mark.parametrize("stash,kept", [(2, [1, 2]), (0, [])])
def test_messages_during_backoff_are_stashed_up_to_the_bound_and_the_rest_dropped_loudly(
        rt, clock, stash, kept):
    """B7: stash 2: Ping 1 and 2 reach the new instance (whose state is initial); 3 and 4 are
    dropped, counted and logged. Stash 0: every message during the backoff is dropped."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, cls=Counter, backoff=Backoff(
        min=1.0, max=1.0, jitter=0.0, stash_size=stash)), intensity=5)
    handle = supervisors.child(sup, "c")
    handle.tell(("ping", 0))
    settle(rt)
    crash(rt, ref_of(sup))
    with structlog.testing.capture_logs() as logs:
        accepted = [handle.tell(("ping", i)) for i in (1, 2, 3, 4)]
        restarted_after(rt, clock, sup, 1.0)
    assert accepted == [i in kept for i in (1, 2, 3, 4)]
    assert handle.dropped == 4 - len(kept)
    assert pings(journal) == [(0, 1)] + [(i, n) for n, i in enumerate(kept, 1)]
    drops = [e for e in logs if e["event"] == "child handle dropped messages"]
    assert drops and drops[-1]["total"] == 4 - len(kept) and drops[-1]["log_level"] == "warning"


def test_a_handle_forwards_to_the_current_child_and_drops_loudly_while_it_is_stopped(rt):
    """B8: messages go to whichever incarnation runs; while the child is stopped (not
    restarting) they are dropped with a warning, not delivered later."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, cls=Counter, restart=Restart.TRANSIENT), intensity=5)
    handle = supervisors.child(sup, "c")
    handle.tell(("ping", 1))
    crash(rt, ref_of(sup))
    handle.tell(("ping", 2))
    settle(rt)
    ref_of(sup).tell(("exit", "normal"))  # transient, normal: stays stopped
    settle(rt)
    with structlog.testing.capture_logs() as logs:
        assert handle.tell(("ping", 3)) is False
    assert handle.state == "stopped" and handle.dropped == 1
    assert [e["event"] for e in logs] == ["child handle dropped messages"]
    supervisors.restart_child(sup, "c")
    handle.tell(("ping", 4))
    settle(rt)
    assert pings(journal) == [(1, 1), (2, 1), (4, 1)]


def test_a_final_stop_message_ends_supervision_instead_of_a_restart(rt):
    """B9: a significant transient child told to finish stops normally, and the supervisor
    (any_significant) stops with it; any other stop of the child is a restart."""
    sup = start_sup(rt, w("c", restart=Restart.TRANSIENT, significant=True),
                    auto_shutdown=AutoShutdown.ANY_SIGNIFICANT, intensity=5)
    watch = Watch(rt, sup)
    crash(rt, ref_of(sup))  # not the final message: restarted
    assert isinstance(ref_of(sup), ActorRef) and sup.is_alive()
    ref_of(sup).tell(("exit", "normal"))  # the final message
    assert watch.reason(sup) == "shutdown"


class SlowStop(Worker):
    """Its on_stop waits for ``gate`` (set it to let the old incarnation finish)."""

    def __init__(self, label: str = "s", journal: Recorder | None = None,
                 gate: threading.Event | None = None) -> None:
        super().__init__(label, journal)
        self.gate = gate

    def on_stop(self, reason: Any) -> None:
        self._note("stopping", self.label)
        if self.gate is not None:
            self.gate.wait(WAIT)
        super().on_stop(reason)


def test_the_new_child_starts_only_after_the_old_one_fully_terminated(rt):
    """B10: the old incarnation's on_stop completes before the new one's on_start."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, cls=SlowStop), intensity=5)
    crash(rt, ref_of(sup))
    kinds = [e[0] for e in journal.items]
    assert kinds == ["start", "stopping", "stop", "start"]


def test_while_the_old_child_terminates_the_supervisor_answers_and_reports_it_current(rt):
    """B10: while the failed child's on_stop still runs, queries are answered: the old ref is
    the current one and its restart count is 0; the new one appears after it finished."""
    threads_only(rt)
    journal, gate = Recorder(), threading.Event()
    sup = start_sup(rt, w("c", journal, cls=SlowStop, kwargs={"gate": gate}), intensity=5)
    old = ref_of(sup)
    try:
        Faults(rt).crash(old)
        wait_until(lambda: ("stopping", "c") in journal.items, WAIT, "the old child's on_stop")
        assert ref_of(sup) == old and old.statistics().restarts == 0
        assert supervisors.count_children(sup)["specs"] == 1
    finally:
        gate.set()
    wait_until(lambda: isinstance(ref_of(sup), ActorRef) and ref_of(sup) != old, WAIT,
               "the new incarnation")
    assert ref_of(sup).statistics().restarts == 1


def test_messages_queued_behind_a_crash_reach_the_new_instance_through_the_handle(rt):
    """B11: ping, die, ping sent one-way through the handle: the first ping is handled, die
    crashes (it is not retried), the second ping is handled by the new instance."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, cls=Counter), intensity=5)
    handle = supervisors.child(sup, "c")
    for message in (("ping", 1), "die", ("ping", 2)):
        handle.tell(message)
    settle(rt)
    assert pings(journal) == [(1, 1), (2, 1)]  # the second instance counted from 1 again
    assert [e[0] for e in journal.items if e[0] in ("start", "stop")] == [
        "start", "stop", "start"]
    assert handle.dropped == 0 and handle.pending == 0


def test_the_child_is_restarted_exactly_intensity_times_then_stopped_not_restarted(rt):
    """B11: intensity 3: three failures restart it; on the fourth its on_stop runs and it is
    not restarted (the supervisor gives up)."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal), intensity=3, period=60.0)
    watch = Watch(rt, sup)
    for _ in range(4):
        crash(rt, ref_of(sup))
    assert watch.reason(sup) == "shutdown"
    assert [e[0] for e in journal.items].count("start") == 4
    assert [e[0] for e in journal.items].count("stop") == 4


class FlakyInit(Worker):
    """Its constructor raises on the constructions listed in ``failures`` (1-based)."""

    constructions = 0

    def __init__(self, label: str = "f", journal: Recorder | None = None,
                 failures: tuple[int, ...] = ()) -> None:
        type(self).constructions += 1
        if type(self).constructions in failures:
            raise Boom(f"constructor failure #{type(self).constructions}")
        super().__init__(label, journal)


class FlakyStop(Worker):
    """Its on_stop raises (Akka's failing preRestart)."""

    def on_stop(self, reason: Any) -> None:
        super().on_stop(reason)
        raise Boom("on_stop failed")


def test_failures_in_the_new_instances_constructor_are_retried_within_the_limits(rt):
    """B12: the restart's constructor raises twice; each failure is handled and retried
    (counted against the intensity), and the child ends up serving."""
    class Flaky(FlakyInit):
        constructions = 0

    sup = start_sup(rt, w("c", cls=Flaky, kwargs={"failures": (2, 3)}), intensity=3)
    crash(rt, ref_of(sup))
    ref = ref_of(sup)
    assert isinstance(ref, ActorRef) and ref.ask("ping", timeout=WAIT) == ("pong", "c")
    assert Flaky.constructions == 4 and sup.is_alive()


def test_an_exception_in_on_stop_does_not_lose_the_exit_signal(rt):
    """B12: the old instance's on_stop raises; the supervisor still hears of the exit and
    restarts the child."""
    sup = start_sup(rt, w("c", cls=FlakyStop), intensity=3)
    old = ref_of(sup)
    crash(rt, old)
    new = ref_of(sup)
    assert isinstance(new, ActorRef) and new != old and new.is_alive()


def test_a_backoff_group_restart_terminates_the_group_at_once_and_restarts_it_later(rt, clock):
    """B2 with OTP strategies: under one_for_all the siblings die with the failed child and
    come back with it after the delay."""
    journal = Recorder()
    sup = start_sup(rt, w("c", journal, backoff=Backoff(min=0.5, max=1.0, jitter=0.0)),
                    w("sib", journal), strategy=Strategy.ONE_FOR_ALL, intensity=5)
    crash(rt, ref_of(sup))
    assert ref_of(sup, "sib") is None and ("stop", "sib", "shutdown") in journal.items
    restarted_after(rt, clock, sup, 0.5)
    assert ref_of(sup, "sib").is_alive()


def test_a_restart_after_backoff_that_fails_to_start_backs_off_further(rt, clock):
    """B5/B12: a failed start during backoff is one more failure: the next delay doubles."""
    sup = backoff_sup(rt, Backoff(min=0.5, max=8.0, jitter=0.0), w("other", cls=Other))
    faults = Faults(rt)
    faults.crash_on_start(Worker, times=1)
    crash(rt, ref_of(sup))
    clock.advance(0.5)
    settle(rt)
    assert ref_of(sup) == "restarting"
    restarted_after(rt, clock, sup, 1.0)
    faults.clear()
