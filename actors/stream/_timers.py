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

from typing import TYPE_CHECKING, Any, Callable

from .._checks import check_number
from ._messages import Every, Watch

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["every", "timeout", "arm_timers", "on_every", "on_watch", "seen"]


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
        fn._sv_timer = ("every", period)
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
        fn._sv_timer = ("timeout", seconds, port, bool(repeat))
        return fn

    return mark


def _seconds(node: "Node", value: Any, what: str) -> float:
    if isinstance(value, str):
        value = getattr(node, value)
        _check(f"{type(node).__name__}.{what}", value)
        if isinstance(value, str):
            raise ValueError(f"{type(node).__name__}.{what} must be a number of seconds")
    return float(value)


def arm_timers(node: "Node") -> None:
    now = node._sv_clock.now()
    for name, spec in type(node)._sv_timer_specs:
        if spec[0] == "every":
            period = _seconds(node, spec[1], name)
            node._sv_due[name] = (now + period, period)
            node.send_after(period, Every(name), key=("sv-every", name))
        else:
            seconds = _seconds(node, spec[1], name)
            node._sv_due[name] = (seconds, spec[2], spec[3])
            node._sv_seen.setdefault(spec[2], now)
            node._sv_watch_idle[name] = False
            node.send_after(seconds, Watch(name), key=("sv-watch", name))


def on_every(node: "Node", name: str) -> None:
    due, period = node._sv_due[name]
    now = node._sv_clock.now()
    due += period
    if due <= now:  # missed whole periods: skip them
        due = now + period - ((now - due) % period)
    node._sv_due[name] = (due, period)
    node.send_after(due - now, Every(name), key=("sv-every", name))
    getattr(node, name)()
    node._sv_epilogue()


def on_watch(node: "Node", name: str) -> None:
    seconds, port, repeat = node._sv_due[name]
    now = node._sv_clock.now()
    last = node._sv_seen.get(port, now)
    if now < last + seconds:  # items came meanwhile: look again when it could be silent
        node.send_after(last + seconds - now, Watch(name), key=("sv-watch", name))
        return
    if repeat:
        node.send_after(seconds, Watch(name), key=("sv-watch", name))
    else:
        node._sv_watch_idle[name] = True  # re-armed by the next arrival
    getattr(node, name)(port, now - last)
    node._sv_epilogue()


def seen(node: "Node", port: str, now: float) -> None:
    """Items arrived on ``port`` (called once per batch)."""
    node._sv_seen[port] = now
    idle = node._sv_watch_idle
    for name in node._sv_watchers[port]:
        if idle.get(name):
            idle[name] = False
            node.send_after(node._sv_due[name][0], Watch(name), key=("sv-watch", name))
