"""``Actor`` (subclass it) and ``ActorRef`` (the only handle other code gets).

An actor's state is its own: only its handler touches it, one message at a time, on whichever
worker thread runs its turn. Messages should be immutable values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable

from ._cell import Cell, current_cell
from ._checks import check_number
from ._envelopes import Ask, Reply
from ._errors import ActorDead, ActorError
from ._mailbox import Overflow
from ._messages import Monitor
from ._stats import ActorStatistics

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["Actor", "ActorRef"]


class ActorRef:
    """A handle to one incarnation of an actor. Hashable and comparable by identity; a restarted
    actor gets a new ref. All methods are safe from any thread.

    ``ref.tell(message) -> bool`` sends ``message`` and returns at once (it never blocks a pool
    worker); True if it was queued. False if the overflow policy dropped it (counted) or the
    actor is dead (a counted dead letter). Raises
    ``MailboxFull`` if the target's policy is FAIL (or BLOCK, after ``block_timeout`` on a thread
    that is not a pool worker) and its mailbox is full.
    """

    __slots__ = ("_cell", "__weakref__")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    def tell(self, message: Any) -> bool:
        # Cell._tell's fast path, repeated here on purpose: a call per message fewer, and no
        # bound method kept per ref (memory per idle actor).
        cell = self._cell
        q = cell._queue
        if len(q) < cell._limit:
            q.append(message)  # type: ignore[union-attr]  # len(q) < _limit: q is the deque
            if not cell._scheduled:
                cell._schedule()
            return True
        return cell._tell_slow(message)

    def ask(self, message: Any, timeout: float = 5.0) -> Any:
        """Send ``message`` and block until the handler's return value arrives.

        Raises ``ActorCrashed`` if the handler raised (the actor exits with that error),
        ``ActorDead`` if the actor is or becomes dead first, ``AskTimeout`` after ``timeout``
        seconds (a later reply is dropped), ``ActorError`` when an actor asks itself, and
        ``ValueError`` for a timeout that is not a positive number. Called from inside an actor it
        blocks that actor's worker; the scheduler wakes another worker meanwhile.
        """
        check_number(timeout, "ask timeout", positive=True, unit="seconds")
        cell = self._cell
        if current_cell() is cell:
            raise ActorError(f"{cell.path} asked itself {message!r}: that would deadlock; "
                             "call the method directly instead")
        reply = Reply()
        if not cell._tell_ask(Ask(message, reply)):
            raise ActorDead(f"{cell.path} is not alive")
        return cell.runtime._scheduler.wait_reply(reply, timeout, cell.path)

    def is_alive(self) -> bool:
        return self._cell._state != 2

    @property
    def name(self) -> str | None:
        """The registered name, or None."""
        return self._cell.name

    @property
    def path(self) -> str:
        """Where the actor sits: its parents' names and its own, e.g. ``/tenant-acme/store``."""
        return self._cell.path

    @property
    def tenant(self) -> str | None:
        return self._cell.tenant

    def statistics(self) -> ActorStatistics:
        """A frozen snapshot of this actor's mailbox and counters."""
        c = self._cell
        queued = c.queued()
        return ActorStatistics(name=c.name, path=c.path, alive=c._state != 2, queued=queued,
                               peak=max(c._peak, queued), processed=c._processed,
                               dropped=c._dropped,
                               capacity=c._capacity, overflow=c._overflow.name,
                               restarts=c.restarts)

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.path}{'' if self.is_alive() else ' dead'}>"


class Actor:
    """Subclass me: override ``receive`` (and optionally ``on_start`` / ``on_stop``).

    Class attributes ``mailbox_size``, ``overflow`` and ``trap_exits`` are defaults that
    ``spawn(..., mailbox_size=, overflow=)`` overrides. ``turn_budget`` caps the messages this
    actor handles per turn before its worker moves on (None: the runtime's ``budget``); a source
    that tells itself "more" after each batch sets it to 1, so that each batch is one turn and
    the stages downstream run in between. ``__init__`` runs in the spawner's thread with spawn's
    arguments; ``on_start`` runs in the actor before its first message.
    """

    mailbox_size: int = 10_000
    overflow: Overflow = Overflow.FAIL
    trap_exits: bool = False
    turn_budget: int | None = None

    _cell: Cell

    # -- callbacks ----------------------------------------------------------------------------
    def on_start(self) -> None:
        """Runs in the actor before its first message. Raising makes the actor exit with that
        error (``on_stop`` is then not called)."""

    def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers ``ask``. Raising crashes the actor."""
        raise NotImplementedError(f"{type(self).__name__} must define receive(self, message)")

    def on_stop(self, reason: Any) -> None:
        """Runs after a normal stop, ``stop()``, an exit signal or a crash (not after ``kill``)."""

    def _startup(self) -> None:
        """What the runtime calls in the actor's first turn: ``on_start``. A behaviour built on
        the core overrides it to run its own start-up around ``on_start`` (a stream node
        joins its graph after it); applications override ``on_start``, not this."""
        self.on_start()

    # -- what an actor can do -----------------------------------------------------------------
    @property
    def ref(self) -> ActorRef:
        return self._cell.ref

    @property
    def runtime(self) -> "Runtime":
        return self._cell.runtime

    @property
    def log(self) -> Any:
        """A structlog logger bound with this actor's node, path, name and tenant."""
        return self._cell.runtime._log_for(self._cell)

    def spawn(self, cls: type["Actor"], *args: Any, name: str | None = None,
              mailbox_size: int | None = None, overflow: Overflow | str | None = None,
              **kwargs: Any) -> ActorRef:
        """Spawn a child (its path is under this actor's; no link). Same rules as
        ``Runtime.spawn``."""
        return self._cell.runtime._spawn(cls, args, kwargs, name, mailbox_size, overflow,
                                         parent=self._cell, link=False)

    def spawn_link(self, cls: type["Actor"], *args: Any, name: str | None = None,
                   mailbox_size: int | None = None, overflow: Overflow | str | None = None,
                   **kwargs: Any) -> ActorRef:
        """Spawn a child linked to this actor before it starts (no window without the link)."""
        return self._cell.runtime._spawn(cls, args, kwargs, name, mailbox_size, overflow,
                                         parent=self._cell, link=True)

    def link(self, ref: ActorRef) -> None:
        """Link both ways. Linking a dead actor delivers an exit signal with reason ``"noproc"``."""
        self._cell.link(_cell_of(ref))

    def unlink(self, ref: ActorRef) -> None:
        self._cell.unlink(_cell_of(ref))

    def monitor(self, ref: ActorRef) -> Monitor:
        """Monitor ``ref``: one ``Down(ref, reason, monitor)`` when it exits (``"noproc"`` if it
        is already dead)."""
        return self._cell.monitor(_cell_of(ref))

    def demonitor(self, monitor: Monitor) -> bool:
        """Stop monitoring; a ``Down`` already queued is still delivered. True if it was active."""
        return self._cell.demonitor(monitor)

    def send_after(self, delay: float, message: Any, key: Hashable | None = None) -> Hashable:
        """Deliver ``message`` to this actor after ``delay`` seconds (runtime clock). Returns the
        key (generated when None); a timer with an existing key replaces it. Timers are
        cancelled when the actor stops."""
        return self._cell.runtime._timers.schedule(self._cell, delay, message, key)

    def cancel_timer(self, key: Hashable) -> bool:
        """Cancel the timer ``key``; True if it was pending."""
        return self._cell.runtime._timers.cancel(self._cell, key)

    def stop(self, reason: Any = "normal") -> None:
        """Exit after the current message (ahead of queued ones); ``on_stop(reason)`` runs."""
        self._cell._signal(("stop", reason))


def _cell_of(ref: ActorRef) -> Cell:
    if not isinstance(ref, ActorRef):
        raise TypeError(f"expected an ActorRef, got {type(ref).__name__}: {ref!r}")
    return ref._cell
