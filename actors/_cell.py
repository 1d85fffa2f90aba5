"""The cell: one actor's process. One class holds its mailbox, runs its turns on whichever worker
the scheduler hands it to, and carries out exits, links and monitors with Erlang's rules.

Exit semantics (Erlang's):
- an abnormal exit of a linked actor kills this one, unless it traps exits: then it receives
  ``Exit(ref, reason)`` in arrival order; ``"normal"`` exits do not kill linked actors;
- a monitor delivers ``Down(ref, reason, monitor)`` once (``"noproc"`` if already dead);
- ``on_stop(reason)`` runs after a normal stop, ``stop()``, an exit signal and a crash; not after
  ``kill`` or any exit with reason ``"killed"``, nor when ``on_start`` raised.

The turn loop's ``except Exception`` is the one place where a handler's exception becomes an exit
reason; ``_guarded`` is its twin for ``on_stop`` (an exception there is logged, the reason stays).

The mailbox: a bounded FIFO with an overflow policy, a lane for signals, and the "scheduled" token
(modelled on CPython's ``queue.py``; tuned because locks are the expensive part of a tell).

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

import itertools
import threading
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._envelopes import SKIP, Ask, Deferred
from ._errors import ActorCrashed, ActorDead, MailboxFull
from ._mailbox import (_LOSSY, _UNDROPPABLE, DEAD, RUNNING, SIGNALLED, STARTING, Overflow,
                       _LockedQueue, _Signalled)
from ._messages import Down, Exit, Monitor

if TYPE_CHECKING:
    from ._actor import Actor, ActorRef
    from ._runtime import Runtime

__all__ = ["Cell", "current_cell"]

_ids = itertools.count(1)
_monitor_ids = itertools.count(1)
_tls = threading.local()
_DEAD_SIGNALS = (("dead",),)  # truthy marker left in _signals so a running turn stops at once
_ENVELOPES = frozenset((Ask, Deferred, _Signalled))  # what the turn loop does not just receive
_CHUNK = 16  # messages between two looks at the clock in a turn
_EXITED = -1  # what the chunk loops return when a signal made the actor exit


def current_cell() -> "Cell | None":
    """The cell whose turn runs on this thread, or None."""
    return getattr(_tls, "cell", None)


class Cell:
    """One actor's process: its mailbox (safe to call from any thread), its turns (on the worker
    that holds its token) and its exits, links and monitors."""

    __slots__ = ("_lock", "_token", "_queue", "_limit", "_state", "_scheduled", "_signals",
                 "_capacity", "_overflow", "_peak", "_dropped", "_space", "_sched", "_envelopes",
                 "block_timeout", "_drops_reported", "__weakref__",
                 "id", "actor", "ref", "runtime", "name", "path", "tenant", "parent", "_receive",
                 "_processed", "_asking", "_links", "_monitors", "_watchers", "_timers",
                 "_reason", "_finished", "_exit_event", "_log", "_drop_report_at", "restarts")

    def __init__(self, runtime: "Runtime", capacity: int, overflow: Overflow, name: str | None,
                 parent: "Cell | None") -> None:
        cell_id = next(_ids)
        # the mailbox
        self._lock = runtime._stripes[cell_id & 1023]  # a stripe shared with other cells
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
        self._sched = runtime._scheduler
        self._envelopes: list[None] | None = None  # one item per queued Ask/Deferred (_tell_ask)
        self.block_timeout = 5.0
        # the process
        self.id = cell_id
        self.runtime = runtime
        self.name = name
        self.parent = parent
        self.tenant: str | None = parent.tenant if parent is not None else None
        self.path = ""
        self.actor: Actor = None  # type: ignore[assignment]  # set right after construction
        self.ref: ActorRef = None  # type: ignore[assignment]  # set right after construction
        self._receive: Any = None
        self._processed = 0
        self._asking: Ask | None = None
        self._links: set[Cell] | None = None
        self._monitors: dict[int, Cell] | None = None     # monitors this actor holds
        self._watchers: dict[int, tuple[Cell, Monitor]] | None = None  # monitors on this actor
        self._timers: dict[Any, Any] | None = None
        self._reason: Any = None
        self._finished = False
        self._exit_event: threading.Event | None = None
        self._log: Any = None
        self._drop_report_at = -1e9
        self.restarts = 0

    def __repr__(self) -> str:
        state = ("starting", "running", "dead")[self._state]
        queued = len(self._queue)
        return (f"<Actor {self.path} {state} {queued}/{self._capacity} peak={self._peak} "
                f"dropped={self._dropped}>")

    # -- the mailbox: sending (the hot copy of this fast path is ActorRef.tell) -----------------
    def _tell(self, message: Any, block: bool = True) -> bool:
        """Queue ``message``; schedule the actor if it was idle. Returns True if it was queued,
        False if it was dropped (DROP_NEWEST: counted) or the actor is dead (a counted dead
        letter). Raises ``MailboxFull`` under FAIL, and under BLOCK after waiting; with
        ``block=False`` BLOCK refuses at once like FAIL (the runtime's own deliveries, such as
        timers, never wait)."""
        q = self._queue
        if len(q) < self._limit:
            q.append(message)  # type: ignore[union-attr]  # len(q) < _limit: q is the deque
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
        return q  # type: ignore[return-value]  # made into a deque above

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
        self._queue.append(message)  # type: ignore[union-attr]  # a full mailbox has its deque
        return True

    def _made_space(self) -> None:
        """Called by the worker after a turn when BLOCK senders may be waiting."""
        with self._lock:
            if self._space is not None:
                self._space.notify_all()

    # -- a turn ----------------------------------------------------------------------------------
    def _run(self, budget: int, time_slice: float) -> bool:
        """Run one turn on the calling worker, which holds the token: at most ``budget`` messages
        (the actor's ``turn_budget`` if it sets one) or ``time_slice`` seconds. True when the
        actor keeps the token and still has work (the caller queues it again); False when it
        went idle (token released) or exited."""
        outer = getattr(_tls, "cell", None)  # an inline nested run returns to this cell
        _tls.cell = self
        try:
            if self._state != RUNNING and not self._start():
                return False
            if self._queue.__class__ is not tuple and self._take_messages(budget, time_slice):
                return False
            return self._end_turn()
        except Exception as exc:  # the turn boundary: a crash becomes the exit reason
            self._crashed(exc)
            return False
        finally:
            _tls.cell = outer

    def _start(self) -> bool:
        """The first turn runs ``on_start`` (through ``Actor._startup``, the start hook that a
        behaviour built on the core may extend); False if the actor died before it."""
        if self._state == DEAD:
            return False
        self.actor._startup()
        with self._lock:
            if self._state == STARTING:
                self._state = RUNNING
        self.runtime._actor_started(self)
        return True

    def _take_messages(self, budget: int, time_slice: float) -> bool:
        """Hand queued messages to the actor, in chunks of at most ``_CHUNK`` between looks at
        the clock and at the queue (its length: the peak, see the mailbox part of the module
        docstring). True if a signal made the actor exit.

        While ``_envelopes`` is empty (read after ``len(q)``: see ``_tell_ask``) none of the
        first ``len(q)`` messages is an envelope, and only this worker pops (the queue is not
        lossy): the chunk is received here without a look at each message's type. (A kill's
        drain from another thread can empty the queue: ``popleft`` then raises IndexError into
        the crash path, a no-op for a dead actor.) Otherwise ``_take_mixed`` takes the chunk."""
        q: deque[Any] = self._queue  # type: ignore[assignment]  # (the caller saw a deque)
        receive, signalled = self._receive, SIGNALLED
        deadline = perf_counter() + time_slice
        left = self.actor.turn_budget or budget
        done = 0  # messages of the plain chunks before the current one (markers not counted)
        i = 0  # index in the current plain chunk of the message in hand
        try:
            while left:
                size = len(q)
                if size > self._peak:
                    self._peak = size
                full = _CHUNK if left > _CHUNK else left
                if self._envelopes:
                    taken = self._take_mixed(q, full)
                    if taken == _EXITED:
                        return True
                    if taken < full:  # the queue ran dry
                        return False
                    left -= full
                else:
                    if not size:
                        return False
                    chunk = size if size < full else full
                    for i in range(chunk):  # noqa: B007  (the finally counts with i)
                        msg = q.popleft()
                        if msg is signalled:
                            if self._on_marker():
                                return True
                            done -= 1  # the marker is not a message
                            continue
                        receive(msg)
                    i = 0
                    done += chunk
                    left -= chunk
                    if chunk < full:  # the queue held less than a chunk: look at it again
                        continue
                if perf_counter() > deadline:
                    return False
            return False
        finally:
            self._processed += done + i  # the message in hand when it raised: not processed

    def _take_mixed(self, q: deque[Any], count: int) -> int:
        """Take up to ``count`` messages looking at each: an ``Ask`` answers its reply, a
        ``Deferred`` is opened (``SKIP``: nothing to receive), a marker takes the signals.
        Returns how many it took (fewer than ``count``: the queue ran dry), or ``_EXITED``."""
        receive, envelopes, pending = self._receive, _ENVELOPES, self._envelopes
        assert pending is not None
        i = markers = 0
        try:
            for i in range(count):
                try:
                    msg = q.popleft()
                except IndexError:
                    return i
                cls = type(msg)
                if cls not in envelopes:
                    receive(msg)
                elif cls is Ask:
                    pending.pop()
                    self._asking = msg
                    result = receive(msg.message)
                    self._asking = None
                    msg.reply.set(result)
                elif cls is Deferred:
                    pending.pop()
                    msg = msg.open()
                    if msg is not SKIP:
                        receive(msg)
                elif self._on_marker():
                    return _EXITED
                else:
                    markers += 1
            i = count
            return count
        finally:
            self._processed += i - markers  # the message in hand when it raised: not processed

    def _on_marker(self) -> bool:
        """A ``SIGNALLED`` marker came up: a signal is pending, and it goes before any message.
        Handle the signals; True if the actor exited (the marker itself is not a message)."""
        return self._take_signals()

    def _end_turn(self) -> bool:
        """After the messages: late signals, BLOCK senders, then keep the token (True: more
        work) or go idle."""
        if self._signals and self._take_signals():
            return False
        if self._space is not None:
            self._made_space()
        if self._queue:
            return True
        # Going idle: release the token, then look again (a sender that saw the token held
        # appended before we released it, so this second look cannot miss its message).
        self._scheduled = False
        self._token.release()
        if (self._queue or self._signals) and self._token.acquire(False):
            self._scheduled = True
            return True
        return False

    def _take_signals(self) -> bool:
        """Handle queued signals in order; True if the actor exited. A ``crash`` signal raises
        inside the turn, exactly like a handler that raised."""
        while True:
            with self._lock:
                if self._state == DEAD:
                    return True
                if not self._signals:
                    return False
                kind, *args = self._signals.popleft()
            if kind == "stop":
                self._exit(args[0], on_stop=True)
                return True
            if kind == "exit":
                self._exit(args[0], on_stop=not _is_killed(args[0]))
                return True
            if kind == "crash":
                raise args[0]
            if kind == "call":       # run a runtime-internal function inside the actor's turn
                args[0]()

    def _crashed(self, exc: Exception) -> None:
        ask, self._asking = self._asking, None
        if ask is not None:
            ask.reply.fail(ActorCrashed(f"{self.path} crashed handling {ask.message!r}: {exc!r}",
                                        exc))
        self._exit(exc, on_stop=self._state != STARTING)

    # -- exits -----------------------------------------------------------------------------------
    def _exit(self, reason: Any, on_stop: bool, quiet: bool = False) -> bool:
        """Exit with ``reason`` (once; later calls return False). Safe from any thread: ``kill``
        calls it from the killer's thread while a handler may still be running elsewhere."""
        with self._lock:
            if self._state == DEAD:
                return False
            self._state = DEAD
            self._limit = -1  # every later tell takes the slow path and becomes a dead letter
            self._reason = reason
            self._signals = _DEAD_SIGNALS  # type: ignore[assignment]  # a truthy marker, never appended to
            pending = self._drain_queue()
            links, self._links = self._links, None
            watchers, self._watchers = self._watchers, None
            monitors, self._monitors = self._monitors, None
            if self._space is not None:
                self._space.notify_all()
        if on_stop:
            self._guarded(self.actor.on_stop, reason)
        self.runtime._actor_exiting(self)
        lost = 0
        dead = ActorDead(f"{self.path} exited ({_describe(reason)}) before answering")
        for msg in pending:
            if msg.__class__ is Ask:
                msg.reply.fail(dead)
            elif msg.__class__ is not Deferred and msg.__class__ is not _Signalled:
                lost += 1
        for other in links or ():
            with other._lock:
                if other._links is not None:
                    other._links.discard(self)
            other._exit_signal(self.ref, reason)
        for target in (monitors or {}).values():
            with target._lock:
                if target._watchers:
                    for mid in [k for k, (w, _) in target._watchers.items() if w is self]:
                        del target._watchers[mid]
        for watcher, monitor in (watchers or {}).values():
            if watcher._monitors is not None:
                watcher._monitors.pop(monitor.id, None)
            watcher._tell_system(Down(self.ref, reason, monitor))
        late = self._drain_queue()  # sent while we were exiting: dead letters too
        lost += sum(1 for m in late if m.__class__ is not Deferred and m.__class__ is not _Signalled)
        for msg in late:
            if msg.__class__ is Ask:
                msg.reply.fail(dead)
        self.runtime._actor_exited(self, reason, lost, quiet)
        with self._lock:
            self._finished = True
            event = self._exit_event
        if event is not None:
            event.set()
        return True

    def _exit_signal(self, sender: "ActorRef", reason: Any) -> None:
        """An exit signal from a linked actor (Erlang's rules; see the module docstring)."""
        if getattr(self.actor, "trap_exits", False):
            self._tell_system(Exit(sender, reason))
        elif not (isinstance(reason, str) and reason == "normal"):
            self._signal(("exit", reason))

    def _guarded(self, callback: Any, *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:  # a crash in on_stop is reported; the exit reason stands
            self.runtime._log_for(self).error("on_stop raised", error=repr(exc), exc_info=exc)

    def wait_exit(self, timeout: float | None) -> bool:
        """Block until the exit (including links, monitors, on_stop) is complete."""
        with self._lock:
            if self._finished:
                return True
            if self._exit_event is None:
                self._exit_event = threading.Event()
            event = self._exit_event
        return event.wait(timeout)

    # -- links and monitors (called from this actor's own turn) ----------------------------------
    def link(self, other: "Cell") -> None:
        if other is self:
            return
        with other._lock:
            alive = other._state != DEAD
            if alive:
                if other._links is None:
                    other._links = set()
                other._links.add(self)
        if not alive:
            self._exit_signal(other.ref, "noproc")
            return
        with self._lock:
            if self._state != DEAD:
                if self._links is None:
                    self._links = set()
                self._links.add(other)
                return
            reason = self._reason
        with other._lock:  # we died meanwhile (killed): the other side still gets our signal
            if other._links is not None:
                other._links.discard(self)
        other._exit_signal(self.ref, reason)

    def unlink(self, other: "Cell") -> None:
        for a, b in ((self, other), (other, self)):
            with a._lock:
                if a._links is not None:
                    a._links.discard(b)

    def monitor(self, target: "Cell") -> Monitor:
        monitor = Monitor(next(_monitor_ids), target.ref)
        with target._lock:
            alive = target._state != DEAD
            if alive:
                if target._watchers is None:
                    target._watchers = {}
                target._watchers[monitor.id] = (self, monitor)
        if not alive:
            self._tell_system(Down(target.ref, "noproc", monitor))
            return monitor
        with self._lock:
            if self._monitors is None:
                self._monitors = {}
            self._monitors[monitor.id] = target
        return monitor

    def demonitor(self, monitor: Monitor) -> bool:
        with self._lock:
            target = self._monitors.pop(monitor.id, None) if self._monitors else None
        if target is None:
            return False
        with target._lock:
            if target._watchers:
                target._watchers.pop(monitor.id, None)
        return True

    # -- the mailbox's dead letters ----------------------------------------------------------------
    def _dead_letter(self, message: Any) -> None:
        if message.__class__ is Ask:
            message.reply.fail(ActorDead(f"{self.path} is not alive"))
        self.runtime._count_dead_letter()

    def _drain_queue(self) -> list[Any]:
        q = self._queue
        if q.__class__ is tuple:
            return []
        taken = []
        popleft = deque.popleft  # not a _LockedQueue's override: the caller may hold _lock
        while True:
            try:
                taken.append(popleft(q))  # type: ignore[arg-type]  # not a tuple: checked above
            except IndexError:
                return taken

    def _on_drops(self) -> None:
        self.runtime._report_drops(self)

    def queued(self) -> int:
        return len(self._queue)


def _is_killed(reason: Any) -> bool:
    return isinstance(reason, str) and reason == "killed"


def _describe(reason: Any) -> str:
    return reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
