"""The ``Supervisor`` actor: OTP's supervision semantics, with Akka's restart backoff.

    sup = rt.spawn(Supervisor, strategy=Strategy.REST_FOR_ONE, intensity=3, period=5.0,
                   children=[ChildSpec("reader", Reader), ChildSpec("store", Store)])

Strategies (a child died and is to be restarted):

| Strategy           | terminated (reverse start order)    | restarted (start order)           |
|--------------------|-------------------------------------|-----------------------------------|
| ONE_FOR_ONE        | nothing                             | the dead child                    |
| ONE_FOR_ALL        | every other child                   | every child (also stopped ones)   |
| REST_FOR_ONE       | the children started after it       | the dead child and those after it |
| SIMPLE_ONE_FOR_ONE | nothing (one spec, many instances)  | the dead instance                 |

Restart types (which exit reasons restart a child, and what is kept when it is not restarted):

| Restart   | "normal" | "shutdown", ("shutdown", term) | "killed", other, exception | not restarted -> |
|-----------|----------|--------------------------------|----------------------------|------------------|
| PERMANENT | restart  | restart                        | restart                    | (never happens)  |
| TRANSIENT | -        | -                              | restart                    | spec kept, no ref|
| TEMPORARY | -        | -                              | -                          | spec forgotten   |

How it acts (decisions are the pure functions of ``_plan`` and ``_backoff``):

- Start: children start one after another, each with ``spawn_link``; the next starts once the
  previous one's ``on_start`` returned (the supervisor waits for it, as OTP waits for ``init``;
  on threads its worker runs the child itself, so trees start on any pool size). If one fails,
  those already started are terminated in reverse order and the supervisor exits with
  ``SupervisorError("start_failed")`` (its parent sees that exit). A child raising ``Ignore``
  (from ``__init__`` or ``on_start``) is kept without a ref (temporary or dynamic: forgotten).
- Restart intensity: every restart decision - after an exit, and after each failed attempt - is
  added to a sliding window on the runtime clock; more than ``intensity`` within ``period``
  seconds and the supervisor terminates its children (reverse start order), publishes
  ``SupervisorGaveUp`` and exits ``"shutdown"``: escalation to its own supervisor.
- A failed restart attempt never blocks the supervisor: the child shows ``"restarting"`` and the
  next attempt comes through a message to itself (after ``retry_delay`` seconds when it is > 0),
  so management calls and stop requests are served in between.
- Backoff: a child with ``backoff=Backoff(...)`` is restarted after ``backoff_delay`` (drawn with
  this supervisor's ``random.Random(seed)``) through ``send_after``; its group is terminated at
  once and restarted with it. The count resets once the child ran ``reset_after`` seconds.
- Shutdown of a child: ``"brutal_kill"`` kills it; a number of seconds asks it to stop with reason
  ``"shutdown"`` and kills it when the time is up; ``"infinity"`` waits. The supervisor's own
  stop terminates every child in reverse start order (SIMPLE_ONE_FOR_ONE: all in parallel).
- Auto-shutdown: when a significant child exits on its own and is not restarted, ANY_SIGNIFICANT
  (or ALL_SIGNIFICANT, for the last one) terminates the others and exits ``"shutdown"``.
- Children spawned with spec ``kwargs`` ``name``, ``mailbox_size`` or ``overflow`` get them as
  spawn options (a registered name held outside the tree is reported as ``already_started``).
- When its parent (the actor that spawned it, linked) exits, it stops with the same reason;
  exits of other linked actors that are not its children are ignored (OTP).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Iterable
from typing import Any

from actors import Actor, ActorError, ActorRef, Exit, MailboxFull
from actors import lowlevel
from actors.lowlevel import check_number
from supervisors._api import (CountChildren, DeleteChild, GetHandle, Refusal, ResetBackoff,
                              RestartChild, StartChild, TerminateChild, WhichChildren)
from supervisors._backoff import next_backoff
from supervisors._board import Board, info_of
from supervisors._child import IGNORED, Child, Failed, TryAgain, describe
from supervisors._events import (ChildExited, ChildInfo, ChildRestarted, ChildStarted, Ignore,
                                 SupervisionEvent, SupervisorError, SupervisorGaveUp)
from supervisors._plan import (ExitAction, IntensityWindow, RestartPlan, exit_action,
                               is_normal_exit, plan_restart)
from supervisors._handle import DEFAULT_STASH, Slot
from supervisors._spec import (AutoShutdown, ChildKind, ChildSpec, Restart, Shutdown, Strategy,
                               SupervisorFlags, validate_child, validate_children)

__all__ = ["Supervisor"]


class Supervisor(Actor):
    """Keeps its children running (see the module docstring for the rules).

    ``Supervisor(strategy=ONE_FOR_ONE, intensity=1, period=5.0, children=(),
    auto_shutdown=NEVER, *, seed=None, retry_delay=0.0)``: ``seed`` seeds the backoff jitter
    (deterministic tests); ``retry_delay`` spaces out the attempts of a restart loop (0: at once,
    through a self-message, as OTP). The arguments are checked in the spawner's thread: a bad one
    makes ``spawn`` raise ``ValueError`` naming the child and the field.
    """

    trap_exits = True

    def __init__(self, strategy: Strategy = Strategy.ONE_FOR_ONE, intensity: int = 1,
                 period: float = 5.0, children: Iterable[ChildSpec] = (),
                 auto_shutdown: AutoShutdown = AutoShutdown.NEVER, *,
                 seed: int | str | bytes | None = None, retry_delay: float = 0.0) -> None:
        self._flags = SupervisorFlags(strategy, intensity, period, auto_shutdown)
        specs = validate_children(children, strategy, auto_shutdown)
        check_number(retry_delay, "supervisor: retry_delay", low=0, unit="seconds")
        self._strategy = strategy
        self._template = specs[0] if strategy is Strategy.SIMPLE_ONE_FOR_ONE else None
        self._children: dict[Any, Child] = {}  # in start order
        self._board = Board()  # what peek_children reads, published at the end of each turn
        if self._template is None:
            for spec in specs:
                c = self._children[spec.id] = Child(spec.id, spec, spec.args, self._board)
                self._board.mark(c)
        self._board.publish(self._children)
        self._by_ref: dict[ActorRef, Child] = {}
        self._window = IntensityWindow(intensity, float(period))
        self._random = random.Random(seed)
        self._retry_delay = float(retry_delay)
        self._dynamic_keys = itertools.count(1)
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------------
    def on_start(self) -> None:
        try:
            for c in list(self._children.values()):
                outcome = self._start(c)
                if isinstance(outcome, Failed):
                    self.log.error("child failed to start; supervisor start fails",
                                   child=c.label, error=describe(outcome.error))
                    self._terminate_all()
                    raise SupervisorError("start_failed", f"{self.ref.path}: child {c.label!r} "
                                          f"failed to start ({describe(outcome.error)})",
                                          error=outcome.error)
        finally:
            self._board.publish(self._children)

    def on_stop(self, reason: Any) -> None:
        try:
            self._terminate_all()
        finally:
            self._board.publish(self._children)

    def receive(self, message: Any) -> Any:
        try:
            return self._dispatch(message)
        finally:
            self._board.publish(self._children)  # what peek_children shows from now on

    def _dispatch(self, message: Any) -> Any:
        match message:
            case Exit(ref=ref, reason=reason):
                self._on_exit(ref, reason)
            case TryAgain():
                self._on_try_again(message)
            case WhichChildren():
                return self._which_children()
            case CountChildren():
                return self._count_children()
            case StartChild(args=args):
                return self._start_child(args)
            case TerminateChild(target=target):
                return self._terminate_child(target)
            case RestartChild(child_id=child_id):
                return self._restart_child(child_id)
            case DeleteChild(child_id=child_id):
                return self._delete_child(child_id)
            case GetHandle(child_id=child_id):
                return self._handle(child_id)
            case ResetBackoff(child_id=child_id):
                return self._reset_backoff(child_id)
            case _:
                self.log.warning("supervisor ignored a message", message=repr(message)[:200])
        return None

    # -- management requests: answers are values, refusals are Refusal values (the caller raises
    # them); nothing here raises in the supervisor itself -----------------------------------
    def _which_children(self) -> list[ChildInfo]:
        return [info_of(c) for c in self._children.values()]

    def _count_children(self) -> dict[str, int]:
        members = list(self._children.values())
        active = sum(1 for c in members if c.ref is not None and c.ref.is_alive())
        if self._template is not None:
            sups = len(members) if self._template.kind is ChildKind.SUPERVISOR else 0
            return {"specs": 1, "active": active, "supervisors": sups,
                    "workers": len(members) - sups}
        sups = sum(1 for c in members if c.spec.kind is ChildKind.SUPERVISOR)
        return {"specs": len(members), "active": active, "supervisors": sups,
                "workers": len(members) - sups}

    def _start_child(self, args: tuple[Any, ...]) -> Any:
        if self._stopping:
            return Refusal("start_failed", f"{self.ref.path} is shutting down")
        if self._template is not None:
            c = Child(next(self._dynamic_keys), self._template, self._template.args + args,
                      self._board)
        else:
            if len(args) != 1:
                return Refusal("value_error", "start_child(sup, spec) takes one ChildSpec; extra "
                               "arguments are for SIMPLE_ONE_FOR_ONE supervisors")
            try:
                spec = validate_child(args[0], self._flags.auto_shutdown)
            except ValueError as exc:
                return Refusal("value_error", str(exc))
            old = self._children.get(spec.id)
            if old is not None and old.ref is not None:
                return Refusal("already_started", f"child {spec.id!r} is running", ref=old.ref)
            if old is not None:
                return Refusal("already_present", f"child {spec.id!r} is known (not running); "
                               "use restart_child, or delete_child first")
            c = Child(spec.id, spec, spec.args, self._board)
        self._children[c.key] = c
        outcome = self._start(c)
        if isinstance(outcome, Failed):
            self._children.pop(c.key, None)
            return self._refuse_start(c, outcome)
        return None if outcome is IGNORED else outcome

    def _refuse_start(self, c: Child, failed: Failed) -> Refusal:
        if failed.holder is not None:
            return Refusal("already_started", f"child {c.label!r}: its name is held by "
                           f"{failed.holder.path}, outside this supervisor", ref=failed.holder)
        self.log.error("child failed to start", child=c.label, error=describe(failed.error))
        return Refusal("start_failed", f"child {c.label!r} failed to start "
                       f"({describe(failed.error)})", error=failed.error)

    def _find(self, child_id: Any) -> Child | Refusal:
        if self._template is not None:
            return Refusal("not_found", "SIMPLE_ONE_FOR_ONE children have no ids "
                           "(terminate_child takes an instance's ref)")
        c = self._children.get(child_id) if isinstance(child_id, str) else None
        if c is None:
            return Refusal("not_found", f"no child {child_id!r}")
        return c

    def _terminate_child(self, target: Any) -> Refusal | None:
        if self._template is not None and isinstance(target, ActorRef):
            instance = self._by_ref.get(target) or next(
                (m for m in self._children.values() if m.restarting and m.last_ref == target),
                None)
            if instance is None:
                if target.is_alive():
                    return Refusal("not_found", f"{target.path} is not a child of {self.ref.path}")
                return None  # an instance that is gone already
            self._terminate(instance)
            self._forget(instance)
            return None
        c = self._find(target)
        if isinstance(c, Refusal):
            return c
        self._terminate(c)
        if c.spec.restart is Restart.TEMPORARY:
            self._forget(c)
        return None

    def _find_stopped(self, child_id: Any) -> Any:
        """The child, if it is neither running nor restarting (what restart_child and
        delete_child need), else the ``Refusal`` in OTP's words."""
        c = self._find(child_id)
        if isinstance(c, Refusal):
            return c
        if c.ref is not None:
            return Refusal("running", f"child {c.label!r} is running")
        if c.restarting:
            return Refusal("restarting", f"child {c.label!r} is restarting")
        return c

    def _restart_child(self, child_id: Any) -> Any:
        c = self._find_stopped(child_id)
        if isinstance(c, Refusal):
            return c
        outcome = self._start(c)
        if isinstance(outcome, Failed):
            return self._refuse_start(c, outcome)
        if outcome is IGNORED:
            return None
        self._restarted(c, outcome)
        return outcome

    def _delete_child(self, child_id: Any) -> Refusal | None:
        c = self._find_stopped(child_id)
        if isinstance(c, Refusal):
            return c
        self._forget(c)
        return None

    def _handle(self, child_id: Any) -> Slot | Refusal:
        c = self._find(child_id)
        if isinstance(c, Refusal):
            return c
        if c.slot is None:
            backoff = c.spec.backoff
            c.slot = Slot(c.label, self.log, DEFAULT_STASH if backoff is None
                          else backoff.stash_size)
            if c.ref is not None:
                c.slot.attach(c.ref)
            elif c.restarting:
                c.slot.suspend()
        return c.slot

    def _reset_backoff(self, child_id: Any) -> int | Refusal:
        c = self._find(child_id)
        if isinstance(c, Refusal):
            return c
        count, c.backoff_count = c.backoff_count, 0
        return count

    # -- starting -----------------------------------------------------------------------------
    def _start(self, c: Child) -> Any:
        """Start ``c`` and wait for its ``on_start``: its ref, ``IGNORED`` or ``Failed``."""
        spec = c.spec
        kwargs = dict(spec.kwargs)
        name = kwargs.get("name")
        if isinstance(name, str):
            tenant = self.ref.tenant
            holder = self.runtime.whereis(name if tenant is None else f"{tenant}/{name}")
            if holder is not None:
                return Failed(ActorError(f"name {name!r} is held by {holder.path}"), holder)
        try:
            ref = self.spawn_link(spec.start, *c.args, **kwargs)
        except Ignore:
            return self._ignored(c)
        except Exception as exc:  # the one wrapper around a child's start: a crash becomes a value
            return Failed(exc)
        if not lowlevel.wait_started(ref):
            reason = lowlevel.exit_reason(ref)
            return self._ignored(c) if isinstance(reason, Ignore) else Failed(reason)
        if c.restarting:
            self.cancel_timer(("restart", c.key))
        c.ref, c.last_ref, c.restarting = ref, ref, False
        c.started_at = self.runtime.clock.now()
        c.gen += 1
        self._by_ref[ref] = c
        if spec.restart is Restart.TEMPORARY:  # keep nothing of a temporary child's arguments
            c.args = ()
            c.spec = dataclasses.replace(spec, args=(), kwargs={})
        lowlevel.set_restarts(ref, c.restarts)
        if c.slot is not None:
            c.slot.attach(ref)
        self.log.info("child started", child=c.label, child_path=ref.path)
        self._publish(ChildStarted(ref, ref.path, tenant=ref.tenant, supervisor=self.ref,
                                   child_id=c.id))
        return ref

    def _ignored(self, c: Child) -> str:
        self.log.info("child ignored its start", child=c.label)
        if c.spec.restart is Restart.TEMPORARY or self._template is not None:
            self._forget(c)
        else:
            c.restarting = False
            c.gen += 1
            if c.slot is not None:
                c.slot.stop()
        return IGNORED

    def _restarted(self, c: Child, ref: ActorRef) -> None:
        c.restarts += 1
        lowlevel.set_restarts(ref, c.restarts)
        self.log.info("child restarted", child=c.label, restarts=c.restarts)
        self._publish(ChildRestarted(ref, ref.path, tenant=ref.tenant, supervisor=self.ref,
                                     child_id=c.id, restarts=c.restarts))

    # -- exits and restarts -------------------------------------------------------------------
    def _on_exit(self, ref: ActorRef, reason: Any) -> None:
        c = self._by_ref.pop(ref, None)
        if c is None:
            if ref == lowlevel.parent(self.ref):  # OTP: a supervisor dies with its parent
                self.log.info("parent exited; stopping", parent=ref.path, reason=describe(reason))
                self.stop(reason)
            return  # any other linked actor's exit is none of a supervisor's business (OTP)
        c.ref = None
        c.gen += 1
        self._note_exit(c, ref, reason)
        if self._stopping:
            return
        if c.slot is not None:
            c.slot.suspend()
        action = exit_action(strategy=self._strategy, auto_shutdown=self._flags.auto_shutdown,
                             restart=c.spec.restart, significant=c.spec.significant,
                             reason=reason, remaining_significant=self._significant_left(c))
        match action:
            case ExitAction.RESTART:
                self._restart(c, reason)
            case ExitAction.KEEP:
                if c.slot is not None:
                    c.slot.stop()
            case ExitAction.REMOVE:
                self._forget(c)
            case ExitAction.AUTO_SHUTDOWN:
                self.log.info("significant child exited: auto-shutdown", child=c.label,
                              reason=describe(reason))
                self._terminate_all()
                self.stop("shutdown")

    def _significant_left(self, gone: Child) -> int:
        return sum(1 for c in self._children.values() if c is not gone and c.spec.significant
                   and (c.ref is not None or c.restarting))

    def _restart(self, c: Child, reason: Any) -> None:
        """Decide a restart of ``c``: count it, then restart now, later (backoff) or give up."""
        now = self.runtime.clock.now()
        allowed, self._window = self._window.add_restart(now)
        if not allowed:
            self._give_up(c, reason)
            return
        backoff = c.spec.backoff
        if backoff is None:
            self._attempt(c)
            return
        uptime = 0.0 if c.started_at is None else now - c.started_at
        step = next_backoff(backoff, c.backoff_count, uptime, self._random.random())
        c.backoff_count = step.restart_count
        plan = self._plan(c)
        self._terminate_group(plan)
        self.log.info("child backing off", child=c.label, delay=round(step.delay, 6))
        self._schedule(c, step.delay, counted=True)

    def _attempt(self, c: Child) -> None:
        """Terminate ``c``'s group, then start it in order; on a failed start, retry later."""
        plan = self._plan(c)
        self._terminate_group(plan)
        for key in plan.restart:
            m = self._children.get(key)
            if m is None or m.ref is not None:
                continue
            outcome = self._start(m)
            if isinstance(outcome, Failed):
                self._start_failed(m, outcome.error)
                return
            if outcome is not IGNORED:
                self._restarted(m, outcome)

    def _start_failed(self, c: Child, error: Any) -> None:
        self.log.error("child failed to restart", child=c.label, error=describe(error))
        c.started_at, c.last_error = None, error
        if c.slot is not None:
            c.slot.suspend()
        if c.spec.backoff is not None:
            c.restarting = True
            self._restart(c, error)
        else:
            self._schedule(c, self._retry_delay, counted=False)

    def _schedule(self, c: Child, delay: float, counted: bool) -> None:
        c.restarting = True
        c.gen += 1
        message = TryAgain(c.key, c.gen, counted)
        if delay > 0:
            self.send_after(delay, message, key=("restart", c.key))
            return
        try:
            self.ref.tell(message)  # OTP's try_again_restart: other requests come first
        except MailboxFull:
            self.send_after(0.01, message, key=("restart", c.key))

    def _on_try_again(self, message: TryAgain) -> None:
        c = self._children.get(message.key)
        if self._stopping or c is None or not c.restarting or c.gen != message.gen:
            return  # terminated, deleted or restarted meanwhile
        if message.counted:
            self._attempt(c)
        else:
            self._restart(c, c.last_error)

    def _plan(self, c: Child) -> RestartPlan:
        if self._template is not None:
            return RestartPlan(terminate=(), restart=(c.key,))
        temporary = {k for k, m in self._children.items() if m.spec.restart is Restart.TEMPORARY}
        return plan_restart(self._strategy, list(self._children), c.key, temporary=temporary)

    def _terminate_group(self, plan: RestartPlan) -> None:
        for key in plan.terminate:
            m = self._children.get(key)
            if m is not None:
                self._terminate(m, restart=key not in plan.remove)
        for key in plan.remove:
            m = self._children.get(key)
            if m is not None:
                self._forget(m)

    def _give_up(self, c: Child, reason: Any) -> None:
        flags = self._flags
        self.log.error("supervisor gave up: restart intensity reached", child=c.label,
                       reason=describe(reason), intensity=flags.intensity, period=flags.period)
        self._terminate_all()
        self._publish(SupervisorGaveUp(self.ref, self.ref.path, tenant=self.ref.tenant,
                                       supervisor=self.ref, child_id=c.id, reason=reason,
                                       intensity=flags.intensity, period=flags.period))
        self.stop("shutdown")

    # -- terminating --------------------------------------------------------------------------
    def _terminate(self, c: Child, restart: bool = False) -> None:
        """Stop ``c`` with its shutdown rule (ends a restart loop); its spec stays."""
        if c.restarting:
            c.restarting = False
            self.cancel_timer(("restart", c.key))
        c.gen += 1
        if c.slot is not None:
            if restart:
                c.slot.suspend()
            else:
                c.slot.stop()
        ref = self._detach(c)
        if ref is not None:
            self._note_exit(c, ref, self._shutdown(ref, c.spec.shutdown))

    def _detach(self, c: Child) -> ActorRef | None:
        ref, c.ref = c.ref, None
        if ref is not None:
            self._by_ref.pop(ref, None)
            self.unlink(ref)
        return ref

    def _shutdown(self, ref: ActorRef, how: Any) -> Any:
        if how is Shutdown.BRUTAL_KILL:
            self.runtime.kill(ref)
        else:
            lowlevel.stop(ref, "shutdown", None if how is Shutdown.INFINITY else how)
        return lowlevel.exit_reason(ref)

    def _terminate_all(self) -> None:
        """Terminate every child: reverse start order; SIMPLE_ONE_FOR_ONE instances in parallel."""
        self._stopping = True
        members = list(self._children.values())
        if self._template is None:
            for c in reversed(members):
                self._terminate(c)
        else:
            self._terminate_parallel(members)
        for c in members:
            if c.slot is not None:
                c.slot.stop(gone=True)

    def _terminate_parallel(self, members: list[Child]) -> None:
        how = self._template.shutdown if self._template is not None else Shutdown.BRUTAL_KILL
        running = []
        for c in members:
            c.restarting = False
            c.gen += 1
            ref = self._detach(c)
            if ref is not None:
                running.append((c, ref))
        if how is Shutdown.BRUTAL_KILL:
            for _, ref in running:
                self.runtime.kill(ref)
        else:
            for _, ref in running:
                lowlevel.request_stop(ref, "shutdown")
            deadline = None if how is Shutdown.INFINITY else time.monotonic() + float(how)
            for _, ref in running:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not lowlevel.wait_exited(ref, left):
                    self.runtime.kill(ref)
        for c, ref in running:
            self._note_exit(c, ref, lowlevel.exit_reason(ref))
            self._children.pop(c.key, None)

    def _forget(self, c: Child) -> None:
        if c.restarting:
            self.cancel_timer(("restart", c.key))
        c.restarting = False
        c.gen += 1
        self._detach(c)
        self._children.pop(c.key, None)
        if c.slot is not None:
            c.slot.stop(gone=True)

    # -- reporting ----------------------------------------------------------------------------
    def _note_exit(self, c: Child, ref: ActorRef, reason: Any) -> None:
        if is_normal_exit(reason):
            self.log.info("child exited", child=c.label, reason=describe(reason))
        else:
            self.log.warning("child exited", child=c.label, reason=describe(reason))
        self._publish(ChildExited(ref, ref.path, tenant=ref.tenant, supervisor=self.ref,
                                  child_id=c.id, reason=reason))

    def _publish(self, event: SupervisionEvent) -> None:
        bus = self.runtime.bus
        if bus.has_subscribers(type(event)):
            bus.publish(event)
