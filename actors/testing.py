"""Test support: a deterministic runtime, a manual clock, waiting without sleeps, fault injection.

    from actors.testing import inline_runtime, ManualClock, Faults, wait_until

    with inline_runtime() as rt:          # every turn runs on this thread, in FIFO order
        ref = rt.spawn(Counter)
        ref.tell("inc")                   # processed before tell returns
        rt.clock.advance(5.0)             # timers due by then fire, their work runs
        Faults(rt).crash(ref)             # the actor raises InjectedFault on its next turn
        Faults(rt).crash_on_start(Store, times=3)   # the next 3 spawns of Store fail to start

The same behaviour tests also run on real threads: ``Runtime(workers=2, clock=ManualClock())``
plus ``rt.wait_idle()`` / ``wait_until`` instead of assumptions about timing.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, NamedTuple

from ._actor import Actor, ActorRef, _cell_of
from ._cell import Cell
from ._checks import check_number
from ._clock import ManualClock
from ._runtime import Runtime

__all__ = ["ManualClock", "inline_runtime", "wait_until", "Faults", "InjectedFault", "Injection",
           "Recorder"]


def inline_runtime(clock: ManualClock | None = None, *, budget: int = 128,
                   node: str = "test") -> Runtime:
    """A deterministic runtime: no threads, FIFO turns on the caller's thread, a manual clock."""
    return Runtime(clock=clock if clock is not None else ManualClock(), inline=True,
                   budget=budget, node=node)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0,
               message: str = "condition") -> None:
    """Block until ``predicate()`` is true, polling with a short backoff (no fixed sleeps);
    raise ``TimeoutError`` naming ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    event = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {message}")
        event.wait(delay)
        delay = min(delay * 2, 0.02)


class InjectedFault(Exception):
    """The default error ``Faults`` injects."""


class _Held(NamedTuple):
    """A message ``Faults.delay`` held back, coming round again (it is not held twice)."""

    message: Any


def _unheld(message: Any) -> Any:
    return message.message if message.__class__ is _Held else message


class Injection:
    """One installed fault: ``fired`` counts how often it struck; ``cancel()`` removes it.

    ``times`` bounds how often it may strike (None: no bound); once spent it is inert, and a
    fault on future spawns removes its spawn hook.
    """

    def __init__(self, what: str, times: int | None, remove: Callable[[], None] | None = None
                 ) -> None:
        check_number(times, f"{what}: times", integer=True, positive=True, or_none=True)
        self.what = what
        self.times = times
        self.fired = 0
        self._remove = remove
        self._cancelled = False
        self._lock = threading.Lock()  # guards fired and _cancelled

    @property
    def active(self) -> bool:
        with self._lock:
            return not self._cancelled and (self.times is None or self.fired < self.times)

    def take(self) -> bool:
        """Claim one strike; False once cancelled or spent."""
        with self._lock:
            if self._cancelled or (self.times is not None and self.fired >= self.times):
                return False
            self.fired += 1
            spent = self.times is not None and self.fired >= self.times
        if spent:
            self._unhook()
        return True

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        self._unhook()

    def _unhook(self) -> None:
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()

    def __repr__(self) -> str:
        return f"<Injection {self.what} fired={self.fired} times={self.times}>"


class Faults:
    """Inject faults into a runtime's actors: crashes (now, on a message, at start), kills, and
    delayed messages. Targets are an ``ActorRef`` (that incarnation) or, for the faults that
    follow restarts, an Actor class (its instances and subclasses') or a registered name.

    Faults on future spawns go through ``runtime._spawn_hooks`` (applied after ``__init__``,
    before the actor starts, so there is no window). ``clear()`` removes every fault this
    ``Faults`` installed. Every method is safe from any thread.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._injections: list[Injection] = []

    def crash(self, ref: ActorRef, error: BaseException | None = None) -> bool:
        """Make ``ref`` raise ``error`` (default ``InjectedFault``) on its next turn, ahead of its
        queued messages, exactly as if a handler had raised. False if it is already dead."""
        err = error if error is not None else InjectedFault(f"injected crash in {ref.path}")
        return _cell_of(ref)._signal(("crash", err))

    def kill(self, ref: ActorRef) -> None:
        """``runtime.kill(ref)``: untrappable, reason ``"killed"``."""
        self.runtime.kill(ref)

    def crash_on(self, target: ActorRef | type | str, nth: int | None = None,
                 when: Callable[[Any], bool] | None = None, error: Any = None,
                 times: int | None = 1) -> Injection:
        """Raise inside the handler on the ``nth`` message (1-based, counted per incarnation from
        now) for which ``when(message)`` is true (every message when ``when`` is None; ``nth``
        defaults to 1). An ``ActorRef`` target is that incarnation (from its next turn); a class
        or registered name applies to every later spawn, ``times`` crashes in all. ``error``: an
        exception instance or class (default ``InjectedFault``). Asked messages count too (the
        asker gets ``ActorCrashed``)."""
        check_number(nth, "crash_on: nth", integer=True, positive=True, or_none=True)
        n = 1 if nth is None else nth

        def install(cell: Cell, injection: Injection) -> None:
            inner = cell._receive
            seen = 0

            def receive(message: Any) -> Any:
                nonlocal seen
                m = _unheld(message)
                if when is None or when(m):
                    seen += 1
                    if seen == n and injection.take():
                        raise _error(error, f"injected crash in {cell.path} on {m!r}")
                return inner(message)

            cell._receive = receive

        return self._install(f"crash_on({_name(target)})", target, times, install)

    def crash_on_start(self, target: type | str, times: int | None = 1,
                       error: Any = None) -> Injection:
        """Make the next ``times`` spawns of class ``target`` (or of the registered name) raise
        ``error`` (default ``InjectedFault``) from ``on_start``: a crash loop across restarts
        (None: every spawn, until ``cancel()``). Spawns already made are not affected."""
        if isinstance(target, ActorRef):
            raise TypeError("crash_on_start takes an Actor class or a registered name: a ref has "
                            "started already")

        def install(cell: Cell, injection: Injection) -> None:
            actor = cell.actor
            inner = actor.on_start

            def on_start() -> None:
                if injection.take():
                    raise _error(error, f"injected start failure in {cell.path}")
                inner()

            actor.on_start = on_start  # type: ignore[method-assign]  # the fault wraps this one instance

        return self._install(f"crash_on_start({_name(target)})", target, times, install)

    def delay(self, ref: ActorRef, message_predicate: Callable[[Any], bool], seconds: float,
              times: int | None = None) -> Injection:
        """Hold each message to ``ref`` for which ``message_predicate(message)`` is true and send
        it again ``seconds`` later on the runtime clock (``ManualClock.advance`` releases it); it
        then comes after what arrived meanwhile, and is not held again. At most ``times``
        messages (None: all). Asked messages are never held (their asker waits for the reply)."""
        check_number(seconds, "delay: seconds", low=0)
        timers = self.runtime._timers

        def install(cell: Cell, injection: Injection) -> None:
            inner = cell._receive

            def receive(message: Any) -> Any:
                if message.__class__ is _Held:
                    return inner(message.message)
                if (cell._asking is None and injection.active and message_predicate(message)
                        and injection.take()):
                    timers.schedule(cell, seconds, _Held(message), None)
                    return None
                return inner(message)

            cell._receive = receive

        return self._install(f"delay({ref.path})", ref, times, install)

    def clear(self) -> None:
        """Cancel every fault installed through this object."""
        for injection in self._injections:
            injection.cancel()
        self._injections.clear()

    # -- installing -------------------------------------------------------------------------------
    def _install(self, what: str, target: Any, times: int | None,
                 install: Callable[[Cell, Injection], None]) -> Injection:
        if isinstance(target, ActorRef):
            injection = Injection(what, times)
            install(_cell_of(target), injection)
        elif (isinstance(target, type) and issubclass(target, Actor)) or (
                isinstance(target, str) and target):
            hooks = self.runtime._spawn_hooks

            def hook(cell: Cell) -> None:
                if injection.active and _matches(cell, target):
                    install(cell, injection)

            def remove() -> None:
                if hook in hooks:
                    hooks.remove(hook)

            injection = Injection(what, times, remove)
            hooks.append(hook)
        else:
            raise TypeError(f"{what}: target must be an ActorRef, an Actor class or a registered "
                            f"name, got {target!r}")
        self._injections.append(injection)
        return injection


def _matches(cell: Cell, target: type | str) -> bool:
    if isinstance(target, str):
        name = cell.name
        return name is not None and (name == target or (cell.tenant is not None and
                                                        f"{cell.tenant}/{name}" == target))
    return isinstance(cell.actor, target)


def _name(target: Any) -> str:
    if isinstance(target, ActorRef):
        return target.path
    return target.__name__ if isinstance(target, type) else repr(target)


def _error(error: Any, text: str) -> BaseException:
    if error is None:
        return InjectedFault(text)
    if isinstance(error, type) and issubclass(error, BaseException):
        return error(text)
    if isinstance(error, BaseException):
        return error
    raise TypeError(f"error must be an exception instance or class, got {error!r}")


class Recorder:
    """A thread-safe list for tests: actors append what they saw, the test waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._changed = threading.Condition(self._lock)

    def append(self, item: Any) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Block until at least ``count`` items were recorded; ``TimeoutError`` otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, timeout):
                raise TimeoutError(f"recorded {len(self._items)} of {count} items in {timeout} s")
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
