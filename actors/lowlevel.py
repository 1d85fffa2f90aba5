"""The low-level API, for code that builds behaviours on the core (as OTP's ``proc_lib`` and
``sys`` are for ``supervisor``): ``supervisors`` and its cluster use it; applications should not
need it. Everything here works on ``ActorRef``s (and on ``Process``, the opaque process behind
a ref, where a link observer hands one out); nothing else reaches into the core's internals.

Waiting from a turn. A supervisor starts and stops its children synchronously, inside its own
turn, as OTP does: a child's ``on_start`` has returned (or failed) before the next child starts,
and a victim has exited before the next one is stopped. ``wait_started``, ``stop`` and
``wait_exited`` wait with the scheduler's directed helping: a waiting pool worker runs the very
actor it waits for when that actor is queued, so trees of any depth start and stop on any pool
size (see ``actors._scheduler``). On the inline runtime they run the queue until it is done.

Groups:

- lifecycle: ``wait_started``, ``stop``, ``request_stop``, ``wait_exited``, ``exit_quietly``,
  ``is_dead``, ``exit_reason``, ``parent``, ``actor_class``, ``set_restarts``;
- the caller: ``caller_tenant``, ``blocking_allowed``;
- deferred delivery: ``Deferred``, ``SKIP``, ``deliver`` (a message decided when the actor
  takes it: a supervisor's child handle, the bus's latest-value slots);
- asks answered elsewhere: ``Reply``, ``ReplyTo``, ``ask_async``, ``wait_reply``;
- processes and links (the cluster's proxies): ``Process``, ``process_of``, ``ref_of``,
  ``actor_of``, ``set_ref``, ``link``, ``unlink``, ``install_link_observer``;
- arguments: ``check_number``, the one checker of numeric arguments (the same clear
  ``ValueError`` naming the argument everywhere).

Threads: every function is safe from any thread unless it says otherwise; the waiting ones
(``wait_started``, ``stop``, ``wait_exited``, ``wait_reply``) block the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, cast

from ._actor import ActorRef
from ._cell import Cell, current_cell
from ._checks import check_number
from ._envelopes import SKIP, Ask, Deferred, Reply, ReplyTo
from ._mailbox import DEAD

if TYPE_CHECKING:
    from ._actor import Actor
    from ._runtime import Runtime

__all__ = ["Deferred", "Process", "Reply", "ReplyTo", "SKIP", "actor_class", "actor_of",
           "ask_async", "blocking_allowed", "caller_tenant", "check_number", "deliver",
           "exit_quietly",
           "exit_reason", "install_link_observer", "is_dead", "link", "parent", "process_of",
           "ref_of", "request_stop", "set_ref", "set_restarts", "stop", "unlink", "wait_exited",
           "wait_reply", "wait_started"]

Process = Cell
"""The process behind an ``ActorRef`` (opaque: compare it, hash it, pass it back here)."""


# -- lifecycle ------------------------------------------------------------------------------------
def wait_started(ref: ActorRef) -> bool:
    """Block until ``ref``'s ``on_start`` returned (True) or the actor exited before that (False;
    ``exit_reason`` then says why). Call it right after spawning, from a turn or any thread."""
    cell = ref._cell
    started: list[bool] = []
    # Signals jump ahead of messages, and a turn takes them right after on_start returned.
    if not cell._signal(("call", lambda: started.append(True))):
        return False
    _wait(cell, lambda: bool(started) or cell._finished, None)
    return bool(started)


def stop(ref: ActorRef, reason: Any, timeout: float | None) -> bool:
    """``Runtime.stop`` for a turn: ask ``ref`` to exit with ``reason`` and wait (helping) up to
    ``timeout`` seconds (None: as long as it takes); then kill it. True if it exited in time."""
    cell = ref._cell
    if cell._finished:
        return True
    cell._signal(("stop", reason))
    if _wait(cell, lambda: cell._finished, timeout):
        return True
    cell.runtime.kill(ref)
    return False


def request_stop(ref: ActorRef, reason: Any) -> bool:
    """Ask ``ref`` to exit with ``reason``, ahead of its queued messages; does not wait. False if
    it was dead already."""
    return ref._cell._signal(("stop", reason))


def wait_exited(ref: ActorRef, timeout: float | None) -> bool:
    """Wait (helping) until ``ref`` has fully exited (links, monitors and ``on_stop`` done); True
    if it did within ``timeout`` seconds (None: no limit)."""
    cell = ref._cell
    return _wait(cell, lambda: cell._finished, timeout)


def exit_quietly(ref: ActorRef, reason: Any) -> bool:
    """Make ``ref`` exit now with ``reason`` from this thread, without the runtime's crash log (a
    proxy echoing a remote exit: the remote node logged it). Links and monitors fire as for any
    exit; ``on_stop`` runs here. False if it was already dead."""
    return ref._cell._exit(reason, on_stop=True, quiet=True)


def is_dead(ref: ActorRef) -> bool:
    """True once ``ref``'s actor has exited (its ``is_alive`` may be overridden, this is not)."""
    return ref._cell._state == DEAD


def exit_reason(ref: ActorRef) -> Any:
    """The reason ``ref`` exited with, or None while it is alive."""
    cell = ref._cell
    return cell._reason if cell._state == DEAD else None


def parent(ref: ActorRef) -> ActorRef | None:
    """The actor that spawned ``ref`` (None for a top-level actor)."""
    cell = ref._cell.parent
    return None if cell is None else cell.ref


def actor_class(ref: ActorRef) -> type[Actor]:
    """The class of the actor behind ``ref`` (``streamvisor top`` finds supervisors by it)."""
    return type(ref._cell.actor)


def set_restarts(ref: ActorRef, restarts: int) -> None:
    """Show ``restarts`` in ``ref.statistics().restarts`` (its supervisor's count)."""
    ref._cell.restarts = restarts


# -- the caller -----------------------------------------------------------------------------------
def caller_tenant() -> str | None:
    """The tenant of the actor whose turn runs on this thread (None outside actors)."""
    cell = current_cell()
    return cell.tenant if cell is not None else None


def blocking_allowed(runtime: Runtime) -> Callable[[], bool]:
    """A cheap callable: True on threads that may block (not one of ``runtime``'s workers)."""
    return runtime._scheduler.can_block


# -- deferred delivery ----------------------------------------------------------------------------
def deliver(ref: ActorRef, envelope: Deferred) -> bool:
    """Queue ``envelope`` in ``ref``'s mailbox: never dropped nor refused (whoever sends these
    bounds them); the actor receives ``envelope.open()`` when it gets to it, or nothing if that
    is ``SKIP``. False if the actor is dead."""
    return ref._cell._tell_system(envelope, envelope=True)


# -- asks answered elsewhere ----------------------------------------------------------------------
def ask_async(ref: ActorRef, message: Any, reply: ReplyTo) -> bool:
    """Queue ``message`` as an ask whose outcome goes to ``reply.set(value)`` /
    ``reply.fail(error)`` (called on the actor's worker). Does not block. False if ``ref`` is
    dead; raises ``MailboxFull`` like ``tell`` (``reply`` has then already been failed)."""
    return ref._cell._tell_ask(Ask(message, reply))


def wait_reply(runtime: Runtime, reply: Reply, timeout: float, what: str) -> Any:
    """Block for ``reply`` as ``ActorRef.ask`` does (a pool worker counts as blocked meanwhile,
    so another one is woken): the value, or raise the error or ``AskTimeout`` naming ``what``."""
    return runtime._scheduler.wait_reply(reply, timeout, what)


# -- processes and links --------------------------------------------------------------------------
def process_of(ref: ActorRef) -> Process:
    """The process behind ``ref`` (``ActorRef(process_of(ref))`` is another ref to it)."""
    return ref._cell


def ref_of(process: Process) -> ActorRef:
    """The ref ``process`` answers with (in links, monitors, ``Down`` and ``Exit``)."""
    return process.ref


def actor_of(process: Process) -> Actor:
    """The ``Actor`` object living in ``process`` (the cluster recognises its proxies by it).
    Touch its state only from its own turn."""
    return process.actor


def set_ref(proxy: ActorRef, ref: ActorRef) -> None:
    """Make ``proxy``'s process answer with ``ref`` (a subclass instance built around the same
    process): links, monitors and ``Down``/``Exit`` then carry the very ref the user holds. Call
    it before the ref is handed out."""
    proxy._cell.ref = ref


def link(a: ActorRef, b: ActorRef) -> None:
    """Link ``a`` and ``b`` both ways (Erlang's rules: ``a`` gets ``"noproc"`` if ``b`` is dead).
    Call it from ``a``'s turn, as ``Actor.link`` is."""
    a._cell.link(b._cell)


def unlink(a: ActorRef, b: ActorRef) -> None:
    """Remove the link between ``a`` and ``b`` (both ways; nothing if there is none)."""
    a._cell.unlink(b._cell)


class _ObservedLinks(set[Cell]):
    """A process's link set that reports additions and removals. Called under the process's
    stripe lock: the callbacks must only queue work (no other process's lock, no user code)."""

    __slots__ = ("on_add", "on_discard")

    on_add: Callable[[Process], None]
    on_discard: Callable[[Process], None]

    def add(self, cell: Cell) -> None:
        new = cell not in self
        set.add(self, cell)
        if new:
            self.on_add(cell)

    def discard(self, cell: object) -> None:
        had = cell in self
        set.discard(self, cell)
        if had:
            self.on_discard(cast(Cell, cell))


def install_link_observer(ref: ActorRef, on_add: Callable[[Process], None],
                          on_discard: Callable[[Process], None]) -> None:
    """Observe links to ``ref``: ``on_add(process)`` when one is made, ``on_discard(process)``
    when one goes (an ``unlink``, or the other side's exit: ``is_dead(ref_of(process))`` tells
    which). Call it before ``ref`` is handed out (links made earlier are forgotten). The
    callbacks run under a lock: they must only queue work."""
    links = _ObservedLinks()
    links.on_add = on_add
    links.on_discard = on_discard
    ref._cell._links = links


# -- waiting --------------------------------------------------------------------------------------
def _wait(cell: Cell, done: Callable[[], bool], timeout: float | None) -> bool:
    return cell.runtime._scheduler.wait_for(cell, done, timeout)
