"""``ChildHandle``: a stable address for a supervised child, whatever its current incarnation.

``supervisors.child(sup, "store")`` returns one. ``handle.tell(message)`` never goes through the
supervisor: the message waits in the handle's queue and the current incarnation takes it from
there (one ``Deferred`` envelope per message in its mailbox, opened when the actor gets to it).
So the queue outlives an incarnation (Akka's "the mailbox survives a restart", vectors B11):

- running: the child takes the messages in order; at most its mailbox capacity wait (beyond that
  the oldest is dropped for DROP_OLDEST/LATEST children, else the new one);
- restarting or backing off: messages are stashed - up to ``stash_size`` more than were waiting
  when it died (``Backoff.stash_size``, 1000 without a backoff) - and delivered in order to the
  new incarnation once its ``on_start`` returned; the excess is dropped (B7);
- stopped (not coming back by itself: a transient child that ended, ``terminate_child``) or gone
  (deleted, temporary, supervisor exited): every message is dropped (B8).

Every drop is counted in ``handle.dropped`` and logged (a warning, at most once a second, and at
the end of each restart). The message the child crashed on is consumed, never retried.

Why it is race-free: a message stays in the queue until an incarnation takes it. A tell that
meets a dead incarnation leaves its message queued for the next one; a new incarnation gets one
envelope per queued message; envelopes of an older incarnation open to nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from functools import partial
from typing import Any

from actors import ActorRef, Overflow
from actors import lowlevel

__all__ = ["ChildHandle", "Slot"]

RUNNING, SWITCHING, STOPPED, GONE = "running", "restarting", "stopped", "gone"
DEFAULT_STASH = 1000


class Slot:
    """The shared state behind the handles of one child; the supervisor moves it between states.

    Lock rule (``_lock``): guards every field. Deliveries (``lowlevel.deliver``) and logging happen
    after it is released; ``_open`` runs in the child's turn and only pops under it.
    """

    def __init__(self, child_id: str, log: Any, stash_size: int) -> None:
        self.child_id = child_id
        self._log = log
        self._lock = threading.Lock()
        self._queue: deque[Any] = deque()
        self._state = STOPPED
        self._ref: ActorRef | None = None
        self._gen = 0
        self._envelope: Any = None
        self._limit = 0
        self._drop_oldest = False
        self._stash_size = stash_size
        self.dropped = 0
        self._reported = 0
        self._reported_at = -1e9

    # -- the supervisor's side (called in its turn) -----------------------------------------
    def attach(self, ref: ActorRef) -> None:
        """A new incarnation is running: hand it every queued message, in order."""
        stats = ref.statistics()
        with self._lock:
            if self._state == GONE:
                return
            self._gen += 1
            self._state, self._ref = RUNNING, ref
            self._envelope = lowlevel.Deferred(partial(self._open, self._gen))
            self._limit = stats.capacity
            self._drop_oldest = stats.overflow in (Overflow.DROP_OLDEST.name, Overflow.LATEST.name)
            envelope, n = self._envelope, len(self._queue)
        for _ in range(n):
            if not lowlevel.deliver(ref, envelope):
                break  # died already: the queue waits for the next incarnation
        self._report(force=True)

    def suspend(self) -> None:
        """The incarnation died or is being stopped, and a new one will come: stash."""
        with self._lock:
            if self._state in (GONE, SWITCHING):
                return
            self._gen += 1
            self._state, self._ref = SWITCHING, None
            self._limit = len(self._queue) + self._stash_size

    def stop(self, gone: bool = False) -> None:
        """The child is not coming back by itself (or at all, ``gone``): drop what waits."""
        with self._lock:
            if self._state == GONE:
                return
            self._gen += 1
            self._state, self._ref = (GONE if gone else STOPPED), None
            self.dropped += len(self._queue)
            self._queue.clear()
        self._report(force=True)

    # -- the child's side ---------------------------------------------------------------------
    def _open(self, gen: int) -> Any:
        with self._lock:
            if gen != self._gen or not self._queue:
                return lowlevel.SKIP
            return self._queue.popleft()

    # -- any thread ---------------------------------------------------------------------------
    def tell(self, message: Any) -> bool:
        ref = None
        with self._lock:
            if self._state in (STOPPED, GONE):
                self.dropped += 1
                accepted = False
            elif len(self._queue) >= self._limit:
                self.dropped += 1
                accepted = self._drop_oldest and self._state == RUNNING and bool(self._queue)
                if accepted:
                    self._queue.popleft()
                    self._queue.append(message)
            else:
                self._queue.append(message)
                accepted = True
                if self._state == RUNNING:
                    ref, envelope = self._ref, self._envelope
        if ref is not None:
            lowlevel.deliver(ref, envelope)  # False: it died; the message waits in the queue
        if self.dropped != self._reported:
            self._report()
        return accepted

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            since = self.dropped - self._reported
            if since <= 0 or (not force and now - self._reported_at < 1.0):
                return
            self._reported, self._reported_at = self.dropped, now
            state, total = self._state, self.dropped
        self._log.warning("child handle dropped messages", child=self.child_id, state=state,
                          since_last=since, total=total)

    @property
    def state(self) -> str:
        return self._state

    @property
    def ref(self) -> ActorRef | None:
        return self._ref

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)


class ChildHandle:
    """A stable handle on one supervised child (see the module docstring). Safe from any thread;
    ``tell`` never blocks and never raises for a full or dead child: it returns False when the
    message was dropped (counted in ``dropped`` and logged)."""

    __slots__ = ("_slot",)

    def __init__(self, slot: Slot) -> None:
        self._slot = slot

    def tell(self, message: Any) -> bool:
        """Send ``message`` to the current incarnation, or stash it while the child restarts."""
        return self._slot.tell(message)

    @property
    def id(self) -> str:
        return self._slot.child_id

    @property
    def ref(self) -> ActorRef | None:
        """The current incarnation, or None while the child is not running."""
        return self._slot.ref

    @property
    def state(self) -> str:
        """``"running"``, ``"restarting"``, ``"stopped"`` or ``"gone"``."""
        return self._slot.state

    @property
    def dropped(self) -> int:
        """Messages this child's handles dropped (overflow, stash full, child stopped or gone)."""
        return self._slot.dropped

    @property
    def pending(self) -> int:
        """Messages waiting for the child (not yet taken by an incarnation)."""
        return self._slot.pending()

    def __repr__(self) -> str:
        return (f"<ChildHandle {self.id} {self.state} pending={self.pending} "
                f"dropped={self.dropped}>")
