"""The mailbox: a bounded FIFO with an overflow policy, a lane for signals, and the "scheduled"
token (modelled on CPython's ``queue.py``; tuned because locks are the expensive part of a tell).

Fast path (no lock): ``len(queue) < _limit`` then ``queue.append``; if the actor is not scheduled,
try-acquire its ``_token`` lock and hand it to the scheduler. Only the worker holding the token
runs the actor, so an actor never runs on two workers at once. At the end of a turn the worker
releases the token and re-checks the queue (no lost wake-up: a sender appends before it looks at
the token, the worker releases before it looks at the queue; both steps are full barriers).
``_limit`` is 0 until the first message allocates the deque (idle actors stay small) and -1
once the actor is dead, so the one comparison also routes those cases to the slow path.
(``ActorRef.tell`` repeats this fast path, to save a call per message.)
The fast path keeps no statistics: ``peak`` (the highest queue length) is sampled by the worker
before every chunk of at most 16 messages it takes (and by the slow path and ``statistics()``).
Between two samples the length can exceed the later sample by at most the messages popped in
between, so the recorded peak is low by at most 16 (exact while no sender runs during the turn,
as inline).

Envelopes (``Ask``, ``Deferred``) are counted in ``_envelopes`` (a list, made on the first one,
with one item per envelope: ``list.append``/``pop`` are atomic, so senders need no lock) from
before they are appended until the worker has taken them out; while it is empty the turn loop
takes a chunk of the messages it saw queued without looking at each one's type (see
``_tell_ask``). A lossy queue holds one item there for good, so the loop always looks there.

Lock rule (``_lock``): taken only on slow paths - overflow, signals, system messages, the first
envelope, state changes, links and monitors. Nothing runs under it but those reads and writes:
no user code, no delivery, no logging, and never a second cell's lock (cells share striped
locks, so holding two could be holding one twice). For DROP_OLDEST and LATEST the worker also
pops under it (the queue is a ``_LockedQueue``), because senders then remove messages from the
queue too.

Overflow when ``queued >= capacity`` (system messages - ``Exit``, ``Down``, bus slots - always
get through; their number is bounded by links, monitors and subscriptions):

| policy      | the new message | what is dropped (counted in ``dropped``)                     |
|-------------|-----------------|---------------------------------------------------------------|
| DROP_OLDEST | queued          | the oldest waiting message that is not a system message       |
| DROP_NEWEST | dropped         | the new message                                               |
| LATEST      | queued          | the waiting message it replaces (the capacity is 1)           |
| FAIL        | refused         | the sender gets ``MailboxFull`` (counted as a drop)           |
| BLOCK       | waits           | a thread that is not a pool worker waits up to                |
|             |                 | ``block_timeout``, then ``MailboxFull``; a pool worker gets   |
|             |                 | ``MailboxFull`` at once (it must never block)                 |

Concurrent senders racing past the fast-path check can exceed the capacity by at most one
message each; every drop is still counted exactly. A dropped ``ask`` fails at once.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ._choice import Choice
from ._errors import ActorDead, MailboxFull
from ._messages import SYSTEM_MESSAGES

__all__ = ["Overflow", "Mailbox", "STARTING", "RUNNING", "DEAD", "SIGNALLED",
           "register_undroppable"]

STARTING, RUNNING, DEAD = 0, 1, 2


class _Signalled:
    """The queue marker of a pending signal (never dropped, never delivered)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SIGNALLED"


SIGNALLED = _Signalled()


class Overflow(Choice):
    """What a full mailbox does with one more message (see the module table)."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    LATEST = "latest"
    FAIL = "fail"
    BLOCK = "block"


class _LockedQueue(deque):  # type: ignore[type-arg]
    """The queue of a DROP_OLDEST / LATEST mailbox: the worker pops under the mailbox lock."""

    __slots__ = ("lock",)

    def popleft(self) -> Any:
        with self.lock:
            return deque.popleft(self)


_LOSSY = (Overflow.DROP_OLDEST, Overflow.LATEST)


class Mailbox:
    """Base of the cell: the enqueue side of an actor. Safe to call from any thread."""

    __slots__ = ("_lock", "_token", "_queue", "_limit", "_state", "_scheduled", "_signals",
                 "_capacity", "_overflow", "_peak", "_dropped", "_space", "_sched", "_envelopes",
                 "block_timeout", "_drops_reported", "__weakref__")

    def __init__(self, capacity: int, overflow: Overflow, scheduler: Any,
                 lock: threading.Lock) -> None:
        self._lock = lock                # a stripe shared with other cells (see the lock rule)
        self._token = threading.Lock()   # held while the actor is queued or running
        self._queue: deque[Any] | tuple[()] = ()  # a deque from the first message on
        self._limit = 0                  # capacity once the deque exists, -1 when dead
        self._state = STARTING
        self._scheduled = False          # a hint for the fast path; the token is the truth
        self._signals: deque[Any] | None = None
        self._capacity = capacity
        self._overflow = overflow
        self._peak = 0
        self._dropped = 0
        self._drops_reported = 0
        self._space: threading.Condition | None = None  # BLOCK senders wait here (lazily made)
        self._sched = scheduler
        self._envelopes: list[None] | None = None  # one item per queued Ask/Deferred (_tell_ask)
        self.block_timeout = 5.0

    # -- sending (the hot copy of this fast path is ActorRef.tell) ------------------------------
    def _tell(self, message: Any, block: bool = True) -> bool:
        """Queue ``message``; schedule the actor if it was idle. Returns True if it was queued,
        False if it was dropped (DROP_NEWEST: counted) or the actor is dead (a counted dead
        letter). Raises ``MailboxFull`` under FAIL, and under BLOCK after waiting; with
        ``block=False`` BLOCK refuses at once like FAIL (the runtime's own deliveries, such as
        timers, never wait)."""
        q = self._queue
        if len(q) < self._limit:
            q.append(message)  # type: ignore[union-attr]
            if not self._scheduled:
                self._schedule()
            return True
        return self._tell_slow(message, block)

    def _schedule(self) -> None:
        if self._token.acquire(False):
            self._scheduled = True
            self._sched.submit(self)

    def _ensure_queue(self) -> deque[Any]:
        """The deque, created on first use (under ``_lock``)."""
        q = self._queue
        if q.__class__ is tuple:
            if self._overflow in _LOSSY:
                q = _LockedQueue()
                q.lock = self._lock
                # for good: senders delete from this queue, so the turn loop must never take
                # the unchecked path (see _tell_ask)
                self._envelope_list().append(None)
            else:
                q = deque()
            self._queue = q
            if self._state != DEAD:
                self._limit = self._capacity
        return q  # type: ignore[return-value]

    def _tell_slow(self, message: Any, block: bool = True) -> bool:
        """First message, full mailbox or dead actor: apply the policy under the lock; then,
        outside it, fail dropped asks, report drops and raise. True if ``message`` was queued."""
        refused: MailboxFull | None = None
        lost: list[Any] = []
        with self._lock:
            if self._state == DEAD:
                queued = None
            else:
                q = self._ensure_queue()
                size = len(q)
                if size < self._capacity:
                    q.append(message)
                    queued = True
                    if size >= self._peak:
                        self._peak = size + 1
                else:
                    self._peak = max(self._peak, size)
                    try:
                        queued = self._overflow_locked(q, message, lost, block)
                    except MailboxFull as exc:
                        refused, queued = exc, False
        if queued is None:
            self._dead_letter(message)
            return False
        if queued and not self._scheduled:
            self._schedule()
        for dropped in lost:
            fail = getattr(dropped, "fail_dropped", None)
            if fail is not None:
                fail(MailboxFull(f"the ask was dropped by {self!r}'s overflow policy"))
        if lost or refused is not None:
            self._on_drops()
        if refused is not None:
            raise refused
        return queued

    def _tell_ask(self, ask: Any) -> bool:
        """``_tell`` for an ``Ask`` envelope.

        The turn loop delivers a chunk without looking at each message's type when
        ``_envelopes`` is empty (it reads ``len(queue)`` first, then ``_envelopes``). So an
        envelope is counted before it is appended and uncounted only once it left the queue:
        whatever the loop's ``len`` saw, it sees counted. (A ``SIGNALLED`` marker needs no count:
        the loop checks each message for it by identity.)"""
        pending = self._envelopes
        if pending is None:
            with self._lock:
                pending = self._envelope_list()
        pending.append(None)
        queued = False
        try:
            queued = self._tell(ask)
        finally:
            if not queued:
                pending.pop()
        return queued

    def _envelope_list(self) -> list[None]:
        """``_envelopes``, made on first use (under ``_lock``)."""
        pending = self._envelopes
        if pending is None:
            pending = self._envelopes = []
        return pending

    def _tell_system(self, message: Any, envelope: bool = False) -> bool:
        """Queue a system message (Exit, Down, a bus slot): never dropped, never refused.
        ``envelope``: it is a ``Deferred`` (counted; see ``_tell_ask``)."""
        with self._lock:
            if self._state == DEAD:
                return False
            if envelope:
                self._envelope_list().append(None)
            self._ensure_queue().append(message)
        if not self._scheduled:
            self._schedule()
        return True

    def _signal(self, signal: tuple[Any, ...]) -> bool:
        """Put ``signal`` in the lane that jumps ahead of queued messages (stop, exit, crash).

        A ``SIGNALLED`` marker goes to the front of the queue too: the turn loop meets it as its
        very next message, so it needs no per-message look at the signal lane."""
        with self._lock:
            if self._state == DEAD:
                return False
            if self._signals is None:
                self._signals = deque()
            self._signals.append(signal)
            self._ensure_queue().appendleft(SIGNALLED)
        if not self._scheduled:
            self._schedule()
        return True

    # -- overflow (rare path, called with the lock held) ----------------------------------------
    def _overflow_locked(self, q: deque[Any], message: Any, lost: list[Any],
                         block: bool) -> bool:
        """Apply the policy; True if ``message`` was queued. Dropped messages are counted and
        appended to ``lost`` (a refused one too: its ask fails). Runs under ``_lock``."""
        policy = self._overflow
        if policy is Overflow.LATEST:
            i = 0
            while i < len(q):  # by index: senders may append at the right meanwhile
                if q[i].__class__ in _UNDROPPABLE:
                    i += 1
                else:
                    lost.append(q[i])
                    del q[i]
            q.append(message)
            self._dropped += len(lost)
            return True
        if policy is Overflow.DROP_OLDEST:
            for i in range(len(q)):
                old = q[i]
                if old.__class__ not in _UNDROPPABLE:
                    del q[i]
                    q.append(message)
                    lost.append(old)
                    self._dropped += 1
                    return True
            q.append(message)  # only system messages wait: they are bounded, let it in
            return True
        if policy is Overflow.DROP_NEWEST:
            lost.append(message)
            self._dropped += 1
            return False
        if policy is Overflow.BLOCK and block and self._sched.can_block():
            return self._wait_for_space(message, lost)
        lost.append(message)
        self._dropped += 1
        raise MailboxFull(f"mailbox of {self!r} is full ({self._capacity} messages, "
                          f"overflow={policy.name})")

    def _wait_for_space(self, message: Any, lost: list[Any]) -> bool:
        """BLOCK: wait (lock released while waiting) until the worker makes room; under ``_lock``."""
        if self._space is None:
            self._space = threading.Condition(self._lock)
        ok = self._space.wait_for(
            lambda: self._state == DEAD or len(self._queue) < self._capacity,
            timeout=self.block_timeout)
        if self._state == DEAD:
            raise ActorDead(f"{self!r} exited while a sender was blocked on its full mailbox")
        if not ok:
            lost.append(message)
            self._dropped += 1
            raise MailboxFull(f"mailbox of {self!r} stayed full for {self.block_timeout} s "
                              f"(overflow=BLOCK)")
        self._queue.append(message)  # type: ignore[union-attr]
        return True

    def _made_space(self) -> None:
        """Called by the worker after a turn when BLOCK senders may be waiting."""
        with self._lock:
            if self._space is not None:
                self._space.notify_all()

    def _dead_letter(self, message: Any) -> None:  # overridden by the cell
        raise NotImplementedError

    def _on_drops(self) -> None:  # overridden by the cell: report drops (outside the lock)
        raise NotImplementedError


_UNDROPPABLE: frozenset[type] = frozenset((*SYSTEM_MESSAGES, _Signalled))


def register_undroppable(cls: type) -> None:
    """Mark an internal envelope type as a system message (never dropped by overflow)."""
    global _UNDROPPABLE
    _UNDROPPABLE = _UNDROPPABLE | {cls}
