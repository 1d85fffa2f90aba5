"""Firing without input: ``@every(period)`` and ``@timeout(seconds, port)`` node methods, on the
runtime clock (``ManualClock.advance`` in tests).

    class Heartbeat(Node):
        @every(5.0)                     # or @every("period"): the node attribute of that name
        def tick(self):
            self.emit(("alive", self.now))

        @timeout(30.0, port="in")       # the input has been silent for 30 s
        def silent(self, port, silent_for):
            self.emit(("silent", port, silent_for), port="alerts")

``every``: the first call ``period`` after the node (re)started, then every ``period`` on a fixed
grid (a late tick does not shift the next; ticks missed entirely are skipped, not bunched up).
``timeout``: called once when ``port`` has received nothing for ``seconds`` (counting from the
start), and again only after items arrived and it fell silent again - or, with
``repeat=True``, every ``seconds`` while the silence lasts. Arrivals are noted per batch, at no
timer cost. Both kinds run like any handler: what they emit is sent when they return.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable

from .._checks import check_number
from ._messages import Every, Watch

if TYPE_CHECKING:
    from ._wiring import Wiring

__all__ = ["every", "timeout", "collect_specs", "specs", "watched_ports", "arm_timers",
           "on_every", "on_watch", "seen"]

Spec = tuple[Any, ...]  # ("every", period) or ("timeout", seconds, port, repeat)

# The mark that ``every``/``timeout`` put on a method (an attribute of the function, so that it
# survives other decorators that copy the function's attributes, as ``functools.wraps`` does).
_MARK = "_sv_timer"

# Each node class's timer methods, found once at class definition (``collect_specs``).
_SPECS: "weakref.WeakKeyDictionary[type, tuple[tuple[str, Spec], ...]]" = (
    weakref.WeakKeyDictionary())


def _check(what: str, value: Any) -> None:
    if isinstance(value, str):
        return
    try:
        check_number(value, what, positive=True, unit="seconds")
    except ValueError:
        raise ValueError(f"{what} must be a positive number of seconds or the name of a node "
                         f"attribute, got {value!r}") from None


def every(period: float | str) -> Callable[[Any], Any]:
    """Mark a node method to be called every ``period`` seconds (no arguments)."""
    _check("every(period)", period)

    def mark(fn: Any) -> Any:
        setattr(fn, _MARK, ("every", period))
        return fn

    return mark


def timeout(seconds: float | str, port: str = "in", *, repeat: bool = False
            ) -> Callable[[Any], Any]:
    """Mark a node method ``(self, port, silent_for)`` to be called when input ``port`` has been
    silent for ``seconds``."""
    _check("timeout(seconds)", seconds)
    if not isinstance(port, str) or not port:
        raise ValueError(f"timeout(port=) must name an input port, got {port!r}")

    def mark(fn: Any) -> Any:
        setattr(fn, _MARK, ("timeout", seconds, port, bool(repeat)))
        return fn

    return mark


def collect_specs(cls: type) -> None:
    """Find ``cls``'s timer methods (called when a node class is defined): a method overridden
    without the decorator is no timer any more."""
    found: dict[str, Spec] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            mark = getattr(value, _MARK, None)
            if mark is not None:
                found[attr] = mark
            elif attr in found:
                del found[attr]  # overridden by a method without the decorator
    _SPECS[cls] = tuple(found.items())


def specs(cls: type) -> tuple[tuple[str, Spec], ...]:
    """``(method name, spec)`` of each timer method of node class ``cls``."""
    return _SPECS.get(cls, ())


def watched_ports(cls: type) -> list[Any]:
    """The input ports that ``cls``'s ``@timeout`` methods watch."""
    return [spec[2] for _, spec in specs(cls) if spec[0] == "timeout"]


def _seconds(w: "Wiring", value: Any, what: str) -> float:
    if isinstance(value, str):
        node = w.node
        value = getattr(node, value)
        _check(f"{type(node).__name__}.{what}", value)
        if isinstance(value, str):
            raise ValueError(f"{type(node).__name__}.{what} must be a number of seconds")
    return float(value)


def arm_timers(w: "Wiring") -> None:
    now = w.clock.now()
    node = w.node
    for name, spec in w.timer_specs:
        if spec[0] == "every":
            period = _seconds(w, spec[1], name)
            w.due[name] = (now + period, period)
            node.send_after(period, Every(name), key=("sv-every", name))
        else:
            seconds = _seconds(w, spec[1], name)
            w.due[name] = (seconds, spec[2], spec[3])
            w.last_seen.setdefault(spec[2], now)
            w.watch_idle[name] = False
            node.send_after(seconds, Watch(name), key=("sv-watch", name))


def on_every(w: "Wiring", name: str) -> None:
    due, period = w.due[name]
    now = w.clock.now()
    due += period
    if due <= now:  # missed whole periods: skip them
        due = now + period - ((now - due) % period)
    w.due[name] = (due, period)
    node = w.node
    node.send_after(due - now, Every(name), key=("sv-every", name))
    getattr(node, name)()
    w.epilogue()


def on_watch(w: "Wiring", name: str) -> None:
    seconds, port, repeat = w.due[name]
    now = w.clock.now()
    last = w.last_seen.get(port, now)
    node = w.node
    if now < last + seconds:  # items came meanwhile: look again when it could be silent
        node.send_after(last + seconds - now, Watch(name), key=("sv-watch", name))
        return
    if repeat:
        node.send_after(seconds, Watch(name), key=("sv-watch", name))
    else:
        w.watch_idle[name] = True  # re-armed by the next arrival
    getattr(node, name)(port, now - last)
    w.epilogue()


def seen(w: "Wiring", port: str, now: float) -> None:
    """Items arrived on ``port`` (called once per batch)."""
    w.last_seen[port] = now
    idle = w.watch_idle
    for name in w.watchers[port]:
        if idle.get(name):
            idle[name] = False
            w.node.send_after(w.due[name][0], Watch(name), key=("sv-watch", name))
