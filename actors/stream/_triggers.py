"""Multi-input triggers: ``Trigger.BARRIER`` and ``Trigger.LATEST`` (rules in ``_enums``).

A value's age is measured on the runtime clock from when its batch arrived at the node; it has
expired once ``now >= arrival + max_age`` for its input.

BARRIER keeps a FIFO per input and fires with the oldest value of each as soon as every FIFO has
one; the values are consumed and their credit goes back then, so a fast input is slowed to the
pace of the slowest (zip semantics, bounded by the input's window). Values are paired in arrival
order: if an upstream edge dropped a value, the pairs shift until an expiry (``max_age`` with
WAIT) discards the unmatched value - give inputs a ``max_age`` when pairs must stay aligned.
With WAIT, a timer discards a value that expires while it waits, so its credit is not held.
Values left unmatched when every input ended are counted as ``discarded``.

LATEST keeps the newest value of each input and fires once per arriving value (after every input
had one; before that the arrival is counted as ``suppressed``). A value an upstream edge dropped
simply never replaces the previous one: its age grows, and ``max_age`` decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._enums import Expired
from ._messages import EXPIRE

if TYPE_CHECKING:
    from ._edges import In
    from ._wiring import Wiring

__all__ = ["Inputs", "barrier_take", "barrier_run", "latest_take", "on_expire",
           "discard_leftovers"]


class Inputs(dict):  # type: ignore[type-arg]  # port name -> items
    """What ``fire`` gets: ``inputs[port]`` is the value, ``inputs.age(port)`` its age in seconds,
    ``inputs.stale`` the ports whose value had expired (``Expired.STALE``), ``inputs.trigger``
    the port whose arrival fired it (LATEST; None for BARRIER)."""

    __slots__ = ("trigger", "stale", "_ages")

    def __init__(self, values: dict[str, Any], ages: dict[str, float], stale: frozenset[str],
                 trigger: str | None) -> None:
        super().__init__(values)
        self._ages = ages
        self.stale = stale
        self.trigger = trigger

    def age(self, port: str) -> float:
        return self._ages[port]

    def __repr__(self) -> str:
        extra = f" stale={sorted(self.stale)}" if self.stale else ""
        return f"Inputs({dict.__repr__(self)}{extra}, trigger={self.trigger!r})"


def _consumed(w: "Wiring", inp: "In") -> None:
    inp.held -= 1
    w.grant(inp, 1)


def barrier_take(w: "Wiring", inp: "In", items: Any, now: float) -> None:
    fifo = w.fifos[inp.port]
    for item in items:
        fifo.append((item, now, inp))
    inp.held += len(items)
    barrier_run(w, now)


def barrier_run(w: "Wiring", now: float) -> None:
    nd = w.definition
    ports = nd.inputs
    ages, rules = nd.max_age, nd.on_expired
    fifos = [w.fifos[p] for p in ports]
    c = w.counters
    while True:
        for port, fifo in zip(ports, fifos):  # WAIT: expired values leave, the barrier waits
            limit = ages.get(port)
            if limit is not None and rules.get(port, Expired.WAIT) is Expired.WAIT:
                while fifo and now >= fifo[0][1] + limit:
                    _, _, src = fifo.popleft()
                    c.expired += 1
                    c.custody -= 1
                    _consumed(w, src)
        if not all(fifos):
            break
        heads = [fifo.popleft() for fifo in fifos]
        stale = frozenset(p for p, h in zip(ports, heads)
                          if p in ages and now >= h[1] + ages[p])
        if stale and any(rules.get(p) is Expired.SKIP for p in stale):
            for p, h in zip(ports, heads):
                if p in stale:
                    c.expired += 1
                else:
                    c.discarded += 1
                c.custody -= 1
                _consumed(w, h[2])
            continue
        w.node.fire(Inputs({p: h[0] for p, h in zip(ports, heads)},
                         {p: now - h[1] for p, h in zip(ports, heads)}, stale, None))
        c.fired += 1
        c.custody -= len(ports)
        c.processed += len(ports)
        for h in heads:
            _consumed(w, h[2])
    _arm_expiry(w, now)


def _arm_expiry(w: "Wiring", now: float) -> None:
    nd = w.definition
    due = None
    for port, fifo in w.fifos.items():
        limit = nd.max_age.get(port)
        if fifo and limit is not None and nd.on_expired.get(port, Expired.WAIT) is Expired.WAIT:
            t = fifo[0][1] + limit
            due = t if due is None or t < due else due
    if due is not None:
        w.node.send_after(max(0.0, due - now), EXPIRE, key="sv-expire")


def on_expire(w: "Wiring") -> None:
    if w.paused:
        return
    barrier_run(w, w.clock.now())
    w.epilogue()


def latest_take(w: "Wiring", inp: "In", items: Any, now: float) -> None:
    nd = w.definition
    ports = nd.inputs
    ages, rules = nd.max_age, nd.on_expired
    slots = w.latest
    port = inp.port
    c = w.counters
    for item in items:
        slots[port] = (item, now)
        if len(slots) == len(ports):
            values: dict[str, Any] = {}
            waited: dict[str, float] = {}
            stale = []
            wait = False
            for p in ports:
                value, t = slots[p]
                limit = ages.get(p)
                if p != port and limit is not None and now >= t + limit:
                    rule = rules.get(p, Expired.WAIT)
                    if rule is Expired.WAIT:
                        wait = True
                        break
                    if rule is Expired.SKIP:
                        continue
                    stale.append(p)
                values[p] = value
                waited[p] = now - t
            if wait:
                c.suppressed += 1
            else:
                w.node.fire(Inputs(values, waited, frozenset(stale), port))
                c.fired += 1
        else:
            c.suppressed += 1
        c.custody -= 1
        c.processed += 1
    w.grant(inp, len(items))


def discard_leftovers(w: "Wiring") -> None:
    """End of every input: BARRIER values that never found their pairs are discarded."""
    c = w.counters
    for fifo in w.fifos.values():
        while fifo:
            _, _, src = fifo.popleft()
            c.discarded += 1
            c.custody -= 1
            src.held -= 1
