"""M:N scheduling: any number of actors on a small fixed pool of worker threads.

A ready actor sits once in the run queue (its mailbox's "scheduled" token guarantees it is never
run by two workers at once). A worker runs it for one turn - at most ``budget`` messages or
``time_slice`` seconds - then takes the next. A worker that finds no work yields the GIL once
(so that a producing thread can queue a batch), then parks on a condition (no spinning).

Waking policy, for few context switches under the GIL: ``submit`` wakes a parked worker only when
no worker is awake. The service thread (the pool's only other thread; it also fires timers)
wakes one more when the run queue backs up while the awake workers are blocked - a stalled
handler, or CPU time lagging far behind wall time (I/O) - or always when the interpreter runs
without the GIL, and only while the machine has an idle CPU for it. A worker blocked in
``ask``/``stop`` counts as blocked at once; if every worker is blocked while work waits (a chain
of blocking stops), a temporary spare worker runs the queue and then ends (at most
``4 * workers`` spares).
A turn that runs ten time slices (at least 50 ms) is a stall: reported while it runs
(``HandlerOverrun`` and a warning), and another worker is woken.

While workers are busy the service thread looks every ``stall_after / 2`` seconds (it takes the
GIL each time, so it looks no more often than stall detection needs).

Directed helping (``wait_for``): a turn that waits for another actor - a supervisor waiting for
a child's ``on_start`` or exit - runs that actor's turn on its own worker when the actor is
queued, instead of holding a worker idle while another one runs it. A tree then starts and
stops on any pool size: with plain blocking, every level holds one worker and a two-level tree
starves a two-worker pool. When the actor runs on another worker, the waiting one parks as
*blocked* (the pool wakes a parked worker or a spare) and looks again after a short pause
(doubling from 0.2 ms to at most 5 ms; an exit wakes it at once).

``InlineScheduler`` runs everything on the calling thread, deterministically (FIFO run queue):
work submitted from outside a turn is run before the call returns. For tests.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ._errors import AskTimeout

if TYPE_CHECKING:
    from ._cell import Cell
    from ._envelopes import Reply
    from ._timers import Timers

__all__ = ["ThreadScheduler", "InlineScheduler"]

_tls = threading.local()
_FIRST_PAUSE = 0.0002  # wait_for's first look again, doubling up to _MAX_PAUSE
SPARE_LINGER = 0.5     # seconds a spare that ran out of work waits to be needed again
_MAX_PAUSE = 0.005


def _gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


class _MachineCPU:
    """Is there an idle CPU for one more worker? Our process's CPU time lagging wall time means
    "a worker is blocked in I/O" only if the machine has idle CPU; when other processes take it,
    a second worker would only fight for the GIL. Reads /proc/stat (Linux); elsewhere it never
    objects (the old rule)."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", "rb") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields)

    def saturation_floor(self) -> float:
        """A lower bound for the pool's "busy" figure: high (no wake) when the machine has less
        than half a CPU idle since the last call, else 0."""
        now, last = self._read(), self._last
        self._last = now
        if now is None or last is None or now[1] <= last[1]:
            return 0.0
        idle_cpus = (now[0] - last[0]) / (now[1] - last[1]) * (os.cpu_count() or 1)
        return float("inf") if idle_cpus < 0.5 else 0.0


class ThreadScheduler:
    """Lock rule (``_lock``, shared by the conditions ``_work`` and ``_idle``): guards
    ``_parked``, ``_blocked`` and ``_closing``; ``submit`` appends under it so that a parking
    worker never misses work. The run queue itself is a deque (atomic append/popleft).

    Claims: ``_ready`` holds every cell whose turn waits in the run queue. Whoever pops a cell
    from ``_ready`` (an atomic ``dict.pop``) owns that turn: a worker that takes a cell from the
    deque runs it only if it wins that claim, and directed helping (``_help``) claims a waiting
    cell in O(1) without searching the deque (which would cost O(run queue) per wait: quadratic
    when thousands of supervisors stop or start their children at once). A helped cell leaves
    its entry in the deque behind, stale; the worker that pops it finds no claim and skips it.
    So every claim has at least one deque entry, and the deque is empty only when nothing is
    ready."""

    inline = False

    def __init__(self, workers: int, budget: int, time_slice: float, timers: "Timers",
                 manual_clock: bool, on_overrun: Callable[["Cell", float], None],
                 name: str = "streamvisor") -> None:
        self.workers = workers
        self.budget = budget
        self.time_slice = time_slice
        self._timers = timers
        self._manual = manual_clock
        self._on_overrun = on_overrun
        self._runq: deque[Cell] = deque()
        self._ready: dict[Cell, bool] = {}  # the claims: see the class docstring
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._service_wake = threading.Condition(threading.Lock())
        self._kicked = False
        self._service_idle = False  # the service thread waits for a kick or a timer only
        self._parked = 0
        self._blocked = 0
        self._spares = 0
        self.max_spares = 4 * workers  # bounds the threads a chain of blocking calls can add
        # Spares that ran out of work linger (``SPARE_LINGER``; at most ``workers`` of them) so
        # that the next need reuses the thread instead of starting one (a commit wait on every
        # worker can need a spare many times a second). ``_lingering``: such threads;
        # ``_revivals``: needs handed to them (each already counted in ``_spares``). Both under
        # ``_lock``.
        self._lingering = 0
        self._revivals = 0
        self._revive = threading.Condition(self._lock)
        self._name = name
        self._closing = False
        # A turn longer than this is a stall: a blocked handler, not GIL waits (which stretch a
        # turn by a few switch intervals of 5 ms each). Reported, and another worker is woken.
        self.stall_after = max(10 * time_slice, 0.05)
        self._turn_cell: list[Cell | None] = [None] * workers
        self._turn_start = [0.0] * workers
        self._reported = [0.0] * workers
        self._threads = [threading.Thread(target=self._worker, args=(i,), daemon=True,
                                          name=f"{name}-worker-{i}") for i in range(workers)]
        self._threads.append(threading.Thread(target=self._service, daemon=True,
                                              name=f"{name}-service"))
        self._gil = _gil_enabled()
        self._machine = _MachineCPU()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    # -- work in -----------------------------------------------------------------------------------
    def submit(self, cell: "Cell") -> None:
        """Queue a cell that just became ready (its token is held). Any thread."""
        with self._lock:
            self._ready[cell] = True
            self._runq.append(cell)
            wake = self._parked and self._parked + self._blocked == self.workers + self._spares
            if wake:
                self._work.notify()
            spare = self._blocked and self._need_spare_locked()  # spares: only when blocked
        if spare:
            self._start_spare()
        if wake and self._service_idle:
            self.kick()  # the service thread sleeps while the pool is idle: resume the watch

    def can_block(self) -> bool:
        return not getattr(_tls, "worker", False)

    def run_queue(self) -> int:
        return len(self._ready)

    # -- workers -----------------------------------------------------------------------------------
    def _worker(self, idx: int) -> None:
        _tls.worker = True
        runq, ready = self._runq, self._ready
        budget, time_slice = self.budget, self.time_slice
        turn_cell, turn_start = self._turn_cell, self._turn_start
        clock = time.perf_counter
        while True:
            try:
                cell = runq.popleft()
            except IndexError:
                # Yield the GIL once before parking: a thread producing work (spawning, telling)
                # queues a batch meanwhile instead of waking us for every item.
                time.sleep(0)
                if runq or self._park():
                    continue
                return
            if not ready.pop(cell, False):
                continue  # a stale entry: a helper ran this turn already
            turn_cell[idx] = cell
            turn_start[idx] = clock()
            again = cell._run(budget, time_slice)
            turn_cell[idx] = None
            if again:
                ready[cell] = True
                runq.append(cell)

    # -- spares: only while every worker is blocked ---------------------------------------------
    def _need_spare_locked(self) -> bool:
        """Every thread of the pool is blocked (in ask/stop) and work is waiting: without a spare
        nothing would run it - a chain of blocking stops could starve the pool. Under ``_lock``."""
        if (self._runq and not self._parked and not self._closing
                and self._blocked == self.workers + self._spares
                and self._spares < self.max_spares):
            self._spares += 1
            return True
        return False

    def _start_spare(self) -> None:
        with self._lock:
            if self._lingering > self._revivals:  # a spare waits to be needed: it takes this
                self._revivals += 1
                self._revive.notify()
                return
        threading.Thread(target=self._spare_thread, daemon=True,
                         name=f"{self._name}-spare").start()

    def _spare_thread(self) -> None:
        """Work as a spare; then linger, and work again each time a need is handed over."""
        while True:
            self._spare()
            with self._lock:
                if self._lingering >= self.workers:
                    return  # enough threads wait already: no more idle threads than workers
                self._lingering += 1
                deadline = time.monotonic() + SPARE_LINGER
                while not self._revivals and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._revive.wait(left)
                self._lingering -= 1
                if not self._revivals:
                    return
                self._revivals -= 1  # (closing: _spare() then returns at once, uncounting it)

    def _spare(self) -> None:
        """A temporary worker: runs the queue until it is empty (or a worker is free), then
        stops (counted in ``_spares`` until then)."""
        _tls.worker = True
        runq, ready = self._runq, self._ready
        try:
            while not self._closing:
                with self._lock:
                    if self._blocked < self.workers + self._spares - 1 and self._parked == 0:
                        return  # a regular worker is running again
                try:
                    cell = runq.popleft()
                except IndexError:
                    return
                if not ready.pop(cell, False):
                    continue  # a stale entry: a helper ran this turn already
                if cell._run(self.budget, self.time_slice):
                    ready[cell] = True
                    runq.append(cell)
        finally:
            with self._lock:
                self._spares -= 1
                if self._runq and self._parked:
                    self._work.notify()
                if not self._runq and self._parked == self.workers and not self._spares:
                    self._idle.notify_all()

    def _park(self) -> bool:
        with self._lock:
            self._parked += 1
            if self._parked == self.workers and not self._runq:
                self._idle.notify_all()
            while not self._runq and not self._closing:
                self._work.wait()
            self._parked -= 1
            return not self._closing

    def _blocking(self, wait: Callable[[], Any]) -> Any:
        """Run ``wait`` (a blocking call) on a worker thread without starving the run queue."""
        if not getattr(_tls, "worker", False):
            return wait()
        with self._lock:
            self._blocked += 1
            if self._runq and self._parked:
                self._work.notify()
            spare = self._need_spare_locked()
        if spare:
            self._start_spare()
        try:
            return wait()
        finally:
            with self._lock:
                self._blocked -= 1

    def wait_reply(self, reply: "Reply", timeout: float, what: str) -> Any:
        return self._blocking(lambda: reply.wait(timeout, what))

    def wait_exit(self, cell: "Cell", timeout: float | None) -> bool:
        return bool(self._blocking(lambda: cell.wait_exit(timeout)))

    def wait_for(self, cell: "Cell", done: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``done()`` holds, helping ``cell`` (the actor it depends on) along: on a
        pool worker, a queued turn of ``cell`` runs right here (directed helping; see the module
        docstring). True once ``done()`` holds; after ``timeout`` seconds (None: no limit) the
        value of ``done()``. Any thread; only pool workers help."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _FIRST_PAUSE
        while not done():
            if self._help(cell):
                pause = _FIRST_PAUSE
                continue
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return done()
                pause = min(pause, left)
            self.wait_exit(cell, pause)  # parks this worker as blocked; returns early on the exit
            pause = min(pause * 2, _MAX_PAUSE)
        return True

    def _help(self, cell: "Cell") -> bool:
        """Run ``cell``'s turn on this worker if it waits in the run queue. True if it ran. O(1):
        the claim is a ``dict.pop`` (its deque entry stays behind, stale; see the class)."""
        if not getattr(_tls, "worker", False):
            return False
        if not self._ready.pop(cell, False):  # whoever claims it owns its turn (token held)
            return False
        if cell._run(self.budget, self.time_slice):  # (_run puts the current cell back)
            self.submit(cell)
        return True

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until the run queue is empty and every worker is parked."""
        with self._lock:
            return self._idle.wait_for(
                lambda: not self._runq and self._parked == self.workers and not self._spares,
                timeout)

    # -- the service thread: timers and the watch over stuck workers --------------------------------
    def kick(self) -> None:
        """Wake the service thread (an earlier timer was scheduled)."""
        with self._service_wake:
            self._kicked = True
            self._service_wake.notify()

    def _service(self) -> None:
        timers = self._timers
        tick = self.stall_after / 2  # fine enough for the watch; each tick costs the GIL
        last_cpu, last_wall = time.process_time(), time.monotonic()
        backlog = 0
        while not self._closing:
            deadline = None if self._manual else timers.next_deadline()
            with self._service_wake:
                # Announce "idle" before looking at the pool: a submit that wakes a worker
                # after our look sees the flag and kicks us (no missed resume of the watch).
                self._service_idle = True
                idle = self._parked == self.workers and not self._runq
                self._service_idle = idle
                timeout: float | None = None if idle else tick
                if deadline is not None:
                    wait = max(0.0, deadline - time.monotonic())
                    timeout = wait if timeout is None else min(timeout, wait)
                if not self._kicked and not self._closing:
                    self._service_wake.wait(timeout)
                self._kicked = False
                self._service_idle = False
            if self._closing:
                return
            if not self._manual:
                timers.fire_due()
            cpu, wall = time.process_time(), time.monotonic()
            busy = (cpu - last_cpu) / max(wall - last_wall, 1e-6)
            last_cpu, last_wall = cpu, wall
            backlog = backlog + 1 if self._runq else 0
            if backlog >= 2:
                busy = max(busy, self._machine.saturation_floor())
            self._watch(busy, backlog)

    def _watch(self, busy: float, backlog: int) -> None:
        now = time.perf_counter()
        stuck = 0
        for i in range(self.workers):
            cell, start = self._turn_cell[i], self._turn_start[i]
            if cell is None or now - start <= self.stall_after:
                continue
            stuck += 1
            if self._reported[i] != start:
                self._reported[i] = start
                self._on_overrun(cell, now - start)
        with self._lock:
            awake = self.workers + self._spares - self._parked - self._blocked
            if not (self._runq and self._parked):
                return
            if (awake > 0 and stuck >= awake) or (
                    backlog >= 2 and (not self._gil or busy < 0.5 * awake)):
                self._work.notify()

    def close(self, timeout: float) -> None:
        with self._lock:
            self._closing = True
            self._work.notify_all()
            self._idle.notify_all()
            self._revive.notify_all()
        self.kick()
        me = threading.current_thread()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not me and t.ident is not None:
                t.join(max(0.0, deadline - time.monotonic()))


class InlineScheduler:
    """Runs turns on the calling thread, deterministically. Use a runtime built on it from one
    thread only (the test's). ``ask`` and ``stop`` run the queue until their answer is there."""

    inline = True
    workers = 0

    def __init__(self, budget: int, timers: "Timers", manual_clock: bool) -> None:
        self.budget = budget
        self.time_slice = float("inf")
        self._timers = timers
        self._manual = manual_clock
        self._runq: deque[Cell] = deque()
        self._depth = 0

    def start(self) -> None:
        pass

    def submit(self, cell: "Cell") -> None:
        self._runq.append(cell)
        if self._depth == 0:
            self.run()

    def can_block(self) -> bool:
        return False

    def run_queue(self) -> int:
        return len(self._runq)

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Run turns until the run queue is empty (or ``until()`` holds)."""
        self._depth += 1
        try:
            runq = self._runq
            while runq and not (until is not None and until()):
                cell = runq.popleft()
                if cell._run(self.budget, self.time_slice):
                    runq.append(cell)
        finally:
            self._depth -= 1

    def wait_reply(self, reply: "Reply", timeout: float, what: str) -> Any:
        self.run(until=lambda: reply.ready)
        if not reply.abandon():
            raise AskTimeout(f"no reply from {what}: the inline runtime ran out of work before "
                             "a reply came (time only moves when the test advances the clock)")
        return reply.outcome(what)

    def wait_exit(self, cell: "Cell", timeout: float | None) -> bool:
        self.run(until=lambda: cell._finished)
        return cell._finished

    def wait_for(self, cell: "Cell", done: Callable[[], bool], timeout: float | None) -> bool:
        """Run turns until ``done()`` holds or nothing is left to run; then ``done()``."""
        self.run(until=done)
        return done()

    def wait_idle(self, timeout: float | None) -> bool:
        if not self._manual:
            self._timers.fire_due()
        self.run()
        return True

    def kick(self) -> None:
        pass

    def close(self, timeout: float) -> None:
        self.run()
