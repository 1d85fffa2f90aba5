"""The one adapter between ``supervisors`` and the internals of ``actors``.

Every other module of this package imports only names that ``actors`` exports (a test checks it).
This module is the documented exception, kept small; each function says what it touches.

Why it exists. A supervisor starts and stops its children synchronously, inside its own turn, as
OTP does: a child's ``on_start`` has returned (or failed) before the next child starts, and a
victim has exited before the next one is stopped. The public ``Runtime.stop`` does block the
caller's worker while another worker runs the child, but in a tree every level then holds one
worker, so a two-level tree on a two-worker pool starves (the grandchild never gets a worker).
Here the waiting worker runs the very actor it waits for, when that actor is queued ("directed
helping", what the inline scheduler does for every wait), so trees of any depth start and stop
on any pool. Waiting for an actor that runs on another worker parks this one as *blocked* (the
scheduler then wakes a parked worker) and polls with a short backoff (at most 5 ms).

What it touches, and nothing else:
- ``ref._cell``: ``_signal`` (a ``"call"`` that runs right after ``on_start`` returned, and
  ``"stop"``), reads of ``_finished``/``_state``/``_reason``/``parent``,
  ``_tell_system(..., envelope=True)`` (a child handle's deliveries: a counted ``Deferred``) and
  ``restarts`` (shown in ``ActorStatistics.restarts``);
- ``runtime._scheduler``: ``inline``, ``run(until=)`` (inline), ``can_block``, ``_runq``,
  ``submit``, ``budget``, ``time_slice`` and ``wait_exit`` (threads);
- ``actors._cell._tls`` (the current cell, put back after helping);
- ``actors._envelopes.Deferred``/``SKIP`` (a message decided when the actor takes it) and
  ``actors._mailbox.DEAD``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import actors._cell as _cellmod
from actors import ActorRef
from actors._envelopes import SKIP, Deferred
from actors._mailbox import DEAD

__all__ = ["SKIP", "Deferred", "deliver", "exit_reason", "parent", "request_stop",
           "set_restarts", "start_confirmed", "stop", "wait_exited", "actor_class", "actor_of"]

_FIRST_PAUSE = 0.0002
_MAX_PAUSE = 0.005


def start_confirmed(ref: ActorRef) -> bool:
    """Block the calling turn until ``ref``'s ``on_start`` returned (True) or the actor exited
    before that (False; ``exit_reason`` then tells why). Call it right after spawning."""
    cell = ref._cell
    started: list[bool] = []
    # Signals jump ahead of messages, and a turn takes them right after on_start returned.
    if not cell._signal(("call", lambda: started.append(True))):
        return False
    _wait(cell, lambda: bool(started) or cell._finished, None)
    return bool(started)


def stop(ref: ActorRef, reason: Any, timeout: float | None) -> bool:
    """``Runtime.stop`` for a supervisor's turn: ask ``ref`` to exit with ``reason`` and wait up to
    ``timeout`` seconds (None: as long as it takes); then kill it. True if it exited in time."""
    cell = ref._cell
    if cell._finished:
        return True
    cell._signal(("stop", reason))
    if _wait(cell, lambda: cell._finished, timeout):
        return True
    cell.runtime.kill(ref)
    return False


def request_stop(ref: ActorRef, reason: Any) -> None:
    """Ask ``ref`` to exit with ``reason`` without waiting (parallel shutdown)."""
    ref._cell._signal(("stop", reason))


def wait_exited(ref: ActorRef, timeout: float | None) -> bool:
    """Wait (helping) until ``ref`` has fully exited; True if it did within ``timeout``."""
    cell = ref._cell
    return _wait(cell, lambda: cell._finished, timeout)


def exit_reason(ref: ActorRef) -> Any:
    """The reason ``ref`` exited with, or None while it is alive."""
    cell = ref._cell
    return cell._reason if cell._state == DEAD else None


def parent(ref: ActorRef) -> ActorRef | None:
    """The actor that spawned ``ref`` (None for a top-level actor)."""
    cell = ref._cell.parent
    return None if cell is None else cell.ref


def set_restarts(ref: ActorRef, restarts: int) -> None:
    """Show ``restarts`` in ``ref.statistics().restarts``."""
    ref._cell.restarts = restarts


def deliver(ref: ActorRef, envelope: Deferred) -> bool:
    """Queue a ``Deferred`` in ``ref``'s mailbox (never refused; False if it is dead)."""
    return bool(ref._cell._tell_system(envelope, envelope=True))


# -- waiting ------------------------------------------------------------------------------------
def _wait(cell: Any, done: Callable[[], bool], timeout: float | None) -> bool:
    sched = cell.runtime._scheduler
    if sched.inline:
        sched.run(until=done)
        return done()
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while not done():
        if _help(sched, cell):
            pause = _FIRST_PAUSE
            continue
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return done()
            pause = min(pause, left)
        sched.wait_exit(cell, pause)  # parks this worker as blocked; returns early on the exit
        pause = min(pause * 2, _MAX_PAUSE)
    return True


def _help(sched: Any, cell: Any) -> bool:
    """Run ``cell``'s turn on this worker if it is waiting in the run queue. True if it ran."""
    runq = getattr(sched, "_runq", None)
    if runq is None or sched.can_block():  # only pool workers run actors
        return False
    try:
        runq.remove(cell)  # whoever removes it owns its turn (its token is held while queued)
    except ValueError:
        return False
    saved = getattr(_cellmod._tls, "cell", None)
    try:
        again = cell._run(sched.budget, sched.time_slice)
    finally:
        _cellmod._tls.cell = saved
    if again:
        sched.submit(cell)
    return True


def actor_of(ref: ActorRef) -> Any:
    """The actor object behind ``ref`` (its current or last incarnation; read-only use: the
    supervisors' published boards)."""
    return ref._cell.actor


def actor_class(ref: ActorRef) -> type:
    """The class of the actor behind ``ref`` (``streamvisor top`` finds supervisors by it)."""
    return type(ref._cell.actor)
