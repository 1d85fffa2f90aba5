"""The cell: one actor's process. It owns the mailbox (its base class), runs turns on whichever
worker the scheduler hands it to, and carries out exits, links and monitors with Erlang's rules.

Exit semantics (Erlang's):
- an abnormal exit of a linked actor kills this one, unless it traps exits: then it receives
  ``Exit(ref, reason)`` in arrival order; ``"normal"`` exits do not kill linked actors;
- a monitor delivers ``Down(ref, reason, monitor)`` once (``"noproc"`` if already dead);
- ``on_stop(reason)`` runs after a normal stop, ``stop()``, an exit signal and a crash; not after
  ``kill`` or any exit with reason ``"killed"``, nor when ``on_start`` raised.

The turn loop's ``except Exception`` is the one place where a handler's exception becomes an exit
reason; ``_guarded`` is its twin for ``on_stop`` (an exception there is logged, the reason stays).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._envelopes import SKIP, Ask, Deferred
from ._errors import ActorCrashed, ActorDead
from ._mailbox import DEAD, RUNNING, SIGNALLED, STARTING, Mailbox, Overflow, _Signalled
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


def current_cell() -> "Cell | None":
    """The cell whose turn runs on this thread, or None."""
    return getattr(_tls, "cell", None)


class Cell(Mailbox):
    __slots__ = ("id", "actor", "ref", "runtime", "name", "path", "tenant", "parent", "_receive",
                 "_processed", "_asking", "_links", "_monitors", "_watchers", "_timers",
                 "_reason", "_finished", "_exit_event", "_log", "_drop_report_at", "restarts")

    def __init__(self, runtime: "Runtime", capacity: int, overflow: Overflow, name: str | None,
                 parent: "Cell | None") -> None:
        cell_id = next(_ids)
        super().__init__(capacity, overflow, runtime._scheduler, runtime._stripes[cell_id & 1023])
        self.id = cell_id
        self.runtime = runtime
        self.name = name
        self.parent = parent
        self.tenant: str | None = parent.tenant if parent is not None else None
        self.path = ""
        self.actor: Actor = None  # type: ignore[assignment]  # set right after construction
        self.ref: ActorRef = None  # type: ignore[assignment]
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

    # -- a turn ----------------------------------------------------------------------------------
    def _run(self, budget: int, time_slice: float) -> bool:
        """Run one turn on the calling worker, which holds the token: at most ``budget`` messages
        (the actor's ``turn_budget`` if it sets one) or ``time_slice`` seconds. True when the
        actor keeps the token and still has work (the caller queues it again); False when it
        went idle (token released) or exited."""
        outer = getattr(_tls, "cell", None)  # an inline nested run returns to this cell
        _tls.cell = self
        n = 0  # messages of earlier chunks processed in this turn
        i = 0  # index in the current chunk of the message in hand (0 outside the chunk loop)
        try:
            if self._state != RUNNING:
                if self._state == DEAD:
                    return False
                self.actor.on_start()
                self._started()
            q = self._queue
            if q.__class__ is not tuple:
                receive, envelopes, signalled = self._receive, _ENVELOPES, SIGNALLED
                deadline = perf_counter() + time_slice
                left = self.actor.turn_budget or budget
                while left:  # chunks of at most _CHUNK messages between looks at the clock
                    size = len(q)  # and at the queue: the peak (see the mailbox docstring)
                    if size > self._peak:
                        self._peak = size
                    chunk = full = _CHUNK if left > _CHUNK else left
                    if not self._envelopes:  # read after len(q): see Mailbox._tell_ask
                        # None of the first `size` messages is an envelope, and only this
                        # worker pops (the queue is not lossy): no per-message type check. (A
                        # kill's drain from another thread can empty the queue: popleft then
                        # raises IndexError into the crash path, a no-op for a dead actor.)
                        if size < chunk:
                            if not size:
                                break
                            chunk = size
                        for i in range(chunk):
                            msg = q.popleft()  # type: ignore[union-attr]
                            if msg is signalled:  # a signal pushed its marker to the front
                                if self._take_signals():
                                    n += i
                                    i = 0
                                    return False
                                n -= 1  # the marker is not a message
                                continue
                            receive(msg)
                    else:
                        for i in range(chunk):
                            try:
                                msg = q.popleft()  # type: ignore[union-attr]
                            except IndexError:
                                break
                            cls = type(msg)
                            if cls not in envelopes:
                                receive(msg)
                            elif cls is Ask:
                                self._envelopes.pop()  # type: ignore[union-attr]
                                self._asking = msg
                                result = receive(msg.message)
                                self._asking = None
                                msg.reply.set(result)
                            elif cls is Deferred:
                                self._envelopes.pop()  # type: ignore[union-attr]
                                msg = msg.open()
                                if msg is not SKIP:
                                    receive(msg)
                            else:  # _Signalled: a signal is pending, it goes before any message
                                if self._take_signals():
                                    n += i
                                    i = 0
                                    return False
                                n -= 1  # the marker is not a message
                        else:
                            i = chunk
                        if i < chunk:  # the queue ran dry
                            n += i
                            i = 0
                            break
                    n += chunk
                    i = 0
                    left -= chunk
                    if chunk < full:  # the queue held less than a chunk: look at it again
                        continue
                    if perf_counter() > deadline:
                        break
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
        except Exception as exc:  # the turn boundary: a crash becomes the exit reason
            n += i  # the message in hand crashed: it was not processed
            self._crashed(exc)
            return False
        finally:
            self._processed += n
            _tls.cell = outer

    def _started(self) -> None:
        with self._lock:
            if self._state == STARTING:
                self._state = RUNNING
        self.runtime._actor_started(self)

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
            self._signals = _DEAD_SIGNALS  # type: ignore[assignment]
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
                taken.append(popleft(q))  # type: ignore[arg-type]
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
