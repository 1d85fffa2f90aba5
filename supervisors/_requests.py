"""The supervisor's answers to the management calls of ``supervisors._api``.

A mixin of ``Supervisor``: each ``_op_<name>`` runs in the supervisor's turn and returns the
answer, or a ``Refusal`` value (the caller raises it), never raising in the supervisor itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors import ActorRef
from supervisors._api import Refusal
from supervisors._board import Board, info_of
from supervisors._child import IGNORED, Child, Failed, describe
from supervisors._events import ChildInfo
from supervisors._handle import DEFAULT_STASH, Slot
from supervisors._spec import ChildKind, Restart, validate_child

if TYPE_CHECKING:
    from supervisors._spec import ChildSpec

__all__ = ["Requests"]


class Requests:
    """``_op_*`` handlers; the state and the acting methods are the Supervisor's."""

    if TYPE_CHECKING:  # provided by Supervisor
        _children: dict[Any, Child]
        _by_ref: dict[ActorRef, Child]
        _template: ChildSpec | None
        _board: Board
        _stopping: bool
        _flags: Any
        _dynamic_keys: Any
        ref: ActorRef
        log: Any

        def _start(self, c: Child) -> Any: ...
        def _terminate(self, c: Child, restart: bool = False) -> None: ...
        def _forget(self, c: Child) -> None: ...
        def _restarted(self, c: Child, ref: ActorRef) -> None: ...

    # -- management requests (answers are values; refusals are Refusal values) -----------------
    def _op_which_children(self) -> list[ChildInfo]:
        return [info_of(c) for c in self._children.values()]

    def _op_count_children(self) -> dict[str, int]:
        members = list(self._children.values())
        active = sum(1 for c in members if c.ref is not None and c.ref.is_alive())
        if self._template is not None:
            sups = len(members) if self._template.kind is ChildKind.SUPERVISOR else 0
            return {"specs": 1, "active": active, "supervisors": sups,
                    "workers": len(members) - sups}
        sups = sum(1 for c in members if c.spec.kind is ChildKind.SUPERVISOR)
        return {"specs": len(members), "active": active, "supervisors": sups,
                "workers": len(members) - sups}

    def _op_start_child(self, *args: Any) -> Any:
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

    def _op_terminate_child(self, target: Any) -> Refusal | None:
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

    def _op_restart_child(self, child_id: Any) -> Any:
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

    def _op_delete_child(self, child_id: Any) -> Refusal | None:
        c = self._find_stopped(child_id)
        if isinstance(c, Refusal):
            return c
        self._forget(c)
        return None

    def _op_handle(self, child_id: Any) -> Slot | Refusal:
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

    def _op_reset_backoff(self, child_id: Any) -> int | Refusal:
        c = self._find(child_id)
        if isinstance(c, Refusal):
            return c
        count, c.backoff_count = c.backoff_count, 0
        return count
