"""The Runtime: owns the scheduler, timers, name registry, event bus and pub/sub of one node.
No process-global state: several runtimes can run side by side (tests do).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from ._actor import Actor, ActorRef, _cell_of
from ._bus import EventBus
from ._cell import Cell, current_cell
from ._checks import check_number
from ._clock import Clock, ManualClock, MonotonicClock
from ._errors import ActorError
from ._events import ActorExited, ActorStarted, HandlerOverrun, MessageDropped
from ._log import get_logger
from ._mailbox import Overflow
from ._scheduler import InlineScheduler, ThreadScheduler
from ._stats import RuntimeStatistics
from ._tenant import Tenant
from ._timers import Timers
from .pubsub import PubSub

__all__ = ["Runtime"]


class Runtime:
    """One node's actor runtime.

    ``Runtime(workers=2, clock=None, *, inline=False, budget=128, time_slice=0.01, node=None)``:
    ``workers`` threads run every actor (100,000 actors add no thread); ``inline=True`` runs
    everything on the calling thread, deterministically (for tests; see ``actors.testing``).
    A context manager: leaving it calls ``shutdown()``.
    """

    def __init__(self, workers: int = 2, clock: Clock | None = None, *, inline: bool = False,
                 budget: int = 128, time_slice: float = 0.01, node: str | None = None) -> None:
        if not inline:
            check_number(workers, "Runtime workers", integer=True, positive=True)
        check_number(budget, "Runtime budget", integer=True, positive=True)
        check_number(time_slice, "Runtime time_slice", positive=True, unit="seconds")
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.node = node or f"{socket.gethostname()}:{os.getpid()}"
        self._log = get_logger(node=self.node)
        self._debug = self._log.is_enabled_for(logging.DEBUG) if hasattr(
            self._log, "is_enabled_for") else False
        manual = bool(getattr(self.clock, "manual", False))
        self._timers = Timers(self.clock, wake=lambda: self._scheduler.kick())
        self._scheduler: ThreadScheduler | InlineScheduler
        if inline:
            self._scheduler = InlineScheduler(budget, self._timers, manual)
        else:
            self._scheduler = ThreadScheduler(workers, budget, time_slice, self._timers, manual,
                                              self._overrun, name=f"streamvisor-{self.node}")
        # guards _tenants, _closed and the registrations in _names (spawn checks and adds under
        # it); an exit removes its own name without it: nothing can replace a registered name
        # before it is removed, so the exit never takes a lock that every exit shares
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(1024)]  # the cells' slow-path locks
        self._names: dict[str, Cell] = {}
        self._cells: dict[int, Cell] = {}
        self._closed = False
        self._done_lock = threading.Lock()  # guards the totals below
        self._spawned = 0
        self._exited = 0
        self._done_processed = 0  # of exited actors
        self._done_dropped = 0
        self._dead_letters = 0  # to dead actors, or left in a mailbox at exit
        self.bus = EventBus(self)
        self.pubsub: PubSub = PubSub(self)  # the pub/sub registry (MQTT semantics, per-tenant)
        self._spawn_hooks: list[Any] = []
        self._tenants: dict[str, Tenant] = {}
        if manual:
            assert isinstance(self.clock, ManualClock)
            self.clock.attach(self._clock_moved)
        self._scheduler.start()

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def inline(self) -> bool:
        """True for the deterministic inline runtime (``inline=True``): no worker threads, so
        code that would hand work to a thread of its own (a group commit) does it in the
        turn instead."""
        return bool(self._scheduler.inline)

    def __repr__(self) -> str:
        kind = "inline" if self._scheduler.inline else f"workers={self._scheduler.workers}"
        return f"<Runtime {self.node} {kind} actors={len(self._cells)}>"

    # -- spawning ----------------------------------------------------------------------------------
    def spawn(self, cls: type[Actor], *args: Any, name: str | None = None,
              mailbox_size: int | None = None, overflow: Overflow | str | None = None,
              **kwargs: Any) -> ActorRef:
        """Create an actor: ``cls(*args, **kwargs)`` runs here, ``on_start`` in the actor.
        Never blocks. Raises ``TypeError`` for a non-Actor class, ``ValueError`` for a bad
        mailbox size or overflow policy, ``ActorError`` for a taken name or a closed runtime."""
        return self._spawn(cls, args, kwargs, name, mailbox_size, overflow, None, False)

    def _spawn(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None,
               mailbox_size: int | None, overflow: Overflow | str | None, parent: Cell | None,
               link: bool, tenant: Tenant | None = None) -> ActorRef:
        if self._closed:
            raise ActorError(f"cannot spawn {getattr(cls, '__name__', cls)!r}: the runtime is shut down")
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"spawn needs a subclass of actors.Actor, got {cls!r}")
        size = cls.mailbox_size if mailbox_size is None else mailbox_size
        if size.__class__ is not int or size <= 0:  # (the message is built only when needed)
            check_number(size, f"mailbox_size of {cls.__name__}", integer=True, positive=True)
        policy = cls.overflow if overflow is None else overflow
        if policy.__class__ is not Overflow:
            policy = Overflow.parse(policy)
        if cls.turn_budget is not None:
            check_number(cls.turn_budget, f"turn_budget of {cls.__name__}", integer=True,
                         positive=True)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"actor name must be a non-empty string without '/', got {name!r}")
        cell = Cell(self, 1 if policy is Overflow.LATEST else size, policy, name, parent)
        if tenant is not None:
            cell.tenant = tenant.name
        base = parent.path if parent is not None else tenant.path if tenant is not None else ""
        cell.path = f"{base}/{name or f'{cls.__name__}-{cell.id}'}"
        key = None if name is None else name if cell.tenant is None else f"{cell.tenant}/{name}"
        actor = cls.__new__(cls)
        actor._cell = cell
        cell.actor = actor
        cell.ref = ActorRef(cell)
        cls.__init__(actor, *args, **kwargs)
        cell._receive = actor.receive
        if self._spawn_hooks:
            for hook in list(self._spawn_hooks):  # a snapshot: hooks may be removed meanwhile
                hook(cell)
        if key is not None:
            with self._lock:
                other = self._names.get(key)
                if other is not None:
                    raise ActorError(f"name {key!r} is already registered to {other.path}")
                self._names[key] = cell
                cell.name = key
        if link and parent is not None:
            parent.link(cell)
        self._cells[cell.id] = cell
        with self._done_lock:
            self._spawned += 1
        cell._token.acquire()  # nobody else has the ref yet: the first turn runs on_start
        cell._scheduled = True
        self._scheduler.submit(cell)
        return cell.ref

    def tenant(self, name: str, **limits: Any) -> Tenant:
        """The scope of tenant ``name`` (created on first use; ``limits`` given then are kept,
        later ones update them). Raises ``ValueError`` for a malformed name."""
        with self._lock:
            scope = self._tenants.get(name)
            if scope is None:
                scope = self._tenants[name] = Tenant(self, name, limits)
            else:
                scope.limits.update(limits)
            return scope

    def tenants(self) -> list[Tenant]:
        with self._lock:
            return list(self._tenants.values())

    def whereis(self, name: str) -> ActorRef | None:
        """The live actor registered as ``name`` (``"tenant/name"`` for a tenant's actor), or None."""
        cell = self._names.get(name)
        return cell.ref if cell is not None else None

    # -- stopping ----------------------------------------------------------------------------------
    def stop(self, ref: ActorRef, reason: Any = "normal", timeout: float | None = 5.0) -> bool:
        """Stop ``ref``: jumps ahead of its queued messages, lets the current handler finish, runs
        ``on_stop(reason)``; blocks until the exit is complete. True if it exited in time
        (or was already dead); otherwise it is killed and False is returned. ``timeout=None``
        waits as long as it takes (OTP's ``infinity``). From inside an actor it blocks that
        actor's worker (the scheduler wakes another one meanwhile)."""
        if timeout is not None:
            check_number(timeout, "stop timeout", positive=True, unit="seconds")
        cell = _cell_of(ref)
        if cell is current_cell():
            raise ActorError(f"{cell.path} cannot stop itself synchronously; call self.stop()")
        cell._signal(("stop", reason))
        if self._scheduler.wait_exit(cell, timeout):
            return True
        cell._exit("killed", on_stop=False)
        return False

    def kill(self, ref: ActorRef) -> None:
        """Kill ``ref`` at once with reason ``"killed"`` (untrappable; ``on_stop`` does not run).
        A handler running right now finishes in the background, but the actor is dead already."""
        _cell_of(ref)._exit("killed", on_stop=False)

    def wait_idle(self, timeout: float | None = 5.0) -> bool:
        """Block until no actor has work (timers may still be pending). True if idle in time."""
        if timeout is not None:
            check_number(timeout, "wait_idle timeout", positive=True, unit="seconds")
        return self._scheduler.wait_idle(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every actor - top-level ones one by one in reverse start order with reason
        ``"shutdown"`` - then the workers. Kills what does not stop in time. Idempotent."""
        check_number(timeout, "shutdown timeout", positive=True, unit="seconds")
        if current_cell() is not None:
            raise ActorError("shutdown() cannot be called from inside an actor")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        killed = 0
        for top_level_only in (True, False):
            cells = [c for c in reversed(list(self._cells.values()))
                     if not top_level_only or c.parent is None]
            for cell in cells:  # the run queue is FIFO: they stop in this order
                cell._signal(("stop", "shutdown"))
            for cell in cells:
                left = deadline - time.monotonic()
                if left <= 0 or not self._scheduler.wait_exit(cell, left):
                    killed += cell._exit("killed", on_stop=False, quiet=True)
        if killed:
            self._log.warning("actors killed at shutdown: they did not stop in time",
                              killed=killed, timeout=timeout)
        self._scheduler.close(max(0.1, deadline - time.monotonic()))
        if isinstance(self.clock, ManualClock):
            self.clock.detach(self._clock_moved)

    # -- numbers -----------------------------------------------------------------------------------
    def statistics(self) -> RuntimeStatistics:
        cells = list(self._cells.values())
        with self._done_lock:
            processed, dropped = self._done_processed, self._done_dropped
            dead_letters, spawned, exited = self._dead_letters, self._spawned, self._exited
        return RuntimeStatistics(
            node=self.node, actors=len(cells), workers=self._scheduler.workers,
            processed=processed + sum(c._processed for c in cells),
            dropped=dropped + sum(c._dropped for c in cells),
            dead_letters=dead_letters, run_queue=self._scheduler.run_queue(),
            spawned=spawned, exited=exited,
            timers=self._timers.pending())

    def actors(self) -> list[ActorRef]:
        """Live actors in start order (a snapshot)."""
        return [c.ref for c in list(self._cells.values())]

    # -- called by cells ---------------------------------------------------------------------------
    def _count_dead_letter(self, n: int = 1) -> None:
        with self._done_lock:
            self._dead_letters += n

    def _log_for(self, cell: Cell) -> Any:
        if cell._log is None:
            cell._log = self._log.bind(actor=cell.path, name=cell.name, tenant=cell.tenant)
        return cell._log

    def _actor_started(self, cell: Cell) -> None:
        if self._debug:
            self._log_for(cell).debug("actor started", cls=type(cell.actor).__name__)
        if self.bus.has_subscribers(ActorStarted):
            self.bus.publish(ActorStarted(cell.ref, cell.path, tenant=cell.tenant))

    def _actor_exiting(self, cell: Cell) -> None:
        """First step of an exit, before links and monitors hear of it."""
        if cell._timers:
            self._timers.cancel_all(cell)
        if cell.name is not None and self._names.get(cell.name) is cell:
            del self._names[cell.name]  # (without _lock: see __init__)
        self._cells.pop(cell.id, None)

    def _actor_exited(self, cell: Cell, reason: Any, lost: int, quiet: bool = False) -> None:
        with self._done_lock:
            self._exited += 1
            self._done_processed += cell._processed
            self._done_dropped += cell._dropped
            self._dead_letters += lost
        if cell._dropped != cell._drops_reported:
            self._report_drops(cell, force=True)
        normal = isinstance(reason, str) and reason in ("normal", "shutdown")
        if not normal and not quiet:
            log = self._log_for(cell)
            if isinstance(reason, BaseException):
                log.error("actor crashed", error=repr(reason), lost=lost, exc_info=reason)
            else:
                log.warning("actor exited", reason=reason, lost=lost)
        elif self._debug:
            self._log_for(cell).debug("actor exited", reason=reason, lost=lost)
        if self.bus.has_subscribers(ActorExited):
            self.bus.publish(ActorExited(cell.ref, cell.path, tenant=cell.tenant, reason=reason,
                                         lost=lost))

    def _report_drops(self, cell: Cell, force: bool = False) -> None:
        """Log and publish a cell's drops: at most once a second per actor, and at exit."""
        now = time.monotonic()
        if not force and now - cell._drop_report_at < 1.0:
            return
        cell._drop_report_at = now
        total = cell._dropped
        since = total - cell._drops_reported
        if since <= 0:
            return
        cell._drops_reported = total
        self._log_for(cell).warning("messages dropped", policy=cell._overflow.name,
                                    total=total, since_last=since)
        if self.bus.has_subscribers(MessageDropped):
            self.bus.publish(MessageDropped(cell.ref, cell.path, tenant=cell.tenant,
                                            policy=cell._overflow.name, total=total,
                                            since_last=since))

    def _overrun(self, cell: Cell, seconds: float) -> None:
        self._log_for(cell).warning("handler overran its time slice", seconds=round(seconds, 3),
                                    time_slice=self._scheduler.time_slice)
        if self.bus.has_subscribers(HandlerOverrun):
            self.bus.publish(HandlerOverrun(cell.ref, cell.path, tenant=cell.tenant,
                                            seconds=seconds,
                                            time_slice=self._scheduler.time_slice))

    def _clock_moved(self, now: float) -> None:
        self._timers.fire_due(now)

