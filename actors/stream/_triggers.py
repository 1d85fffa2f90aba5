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

Checkpoints (``_checkpoint``) carry what waits here: ``state`` returns, at a barrier, BARRIER's
FIFOs (every waiting value per input, in arrival order) or LATEST's latest value of each input
(whether it has fired follows: it fires once every input has a value), each value with its age
at the snapshot; ``restore_state`` puts them back in the first incarnation of a restored
instance, before any input is taken. A restored value's arrival is set to ``now - age`` on the
new runtime clock, so its age goes on from where it stood at the checkpoint: the time between
the checkpoint and the restore (the crash, the downtime) does not age it - the replayed items
that came after the barrier get their arrival when they come again, too. Restored BARRIER values
are in the node's custody again, counted as ``carried`` (the node's ledger: delivered + carried
= processed + expired + discarded + custody + lost) and hold their input's credit as they did.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._enums import Expired, Trigger
from ._messages import EXPIRE

if TYPE_CHECKING:
    from ._edges import In
    from ._wiring import Wiring

__all__ = ["Inputs", "barrier_take", "barrier_run", "latest_take", "on_expire",
           "discard_leftovers", "state", "check_state", "restore_state"]


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


# -- checkpoints -----------------------------------------------------------------------------------
def state(w: "Wiring", now: float) -> dict[str, Any] | None:
    """What waits in the trigger at a checkpoint's barrier: ``{"trigger": "BARRIER"|"LATEST",
    "values": {port: [[value, age], ...]}}`` (ports with nothing waiting left out; BARRIER's in
    arrival order, LATEST's one value), or None when nothing waits."""
    trigger = w.definition.trigger
    values: dict[str, list[list[Any]]]
    if trigger is Trigger.BARRIER:
        values = {p: [[item, max(0.0, now - t)] for item, t, _ in fifo]
                  for p, fifo in w.fifos.items() if fifo}
    elif trigger is Trigger.LATEST:
        values = {p: [[item, max(0.0, now - t)]] for p, (item, t) in w.latest.items()}
    else:
        return None
    return {"trigger": trigger.name, "values": values} if values else None


def check_state(got: Any) -> None:
    """``ValueError`` unless ``got`` has the shape ``state`` returns (a checkpoint's trigger
    entry, read from the store)."""
    if (not isinstance(got, dict) or got.get("trigger") not in ("BARRIER", "LATEST")
            or not isinstance(got.get("values"), dict)):
        raise ValueError(f"not a trigger's values: {got!r:.80}")
    for port, values in got["values"].items():
        if not isinstance(port, str) or not isinstance(values, list) or not values or (
                got["trigger"] == "LATEST" and len(values) != 1):
            raise ValueError(f"trigger values of port {port!r}: {values!r:.80}")
        for v in values:
            if not (isinstance(v, list) and len(v) == 2 and v[1].__class__ in (int, float)
                    and math.isfinite(v[1]) and v[1] >= 0):
                raise ValueError(f"a trigger value of port {port!r} is not [value, age >= 0]: "
                                 f"{v!r:.80}")


def restore_state(w: "Wiring", got: dict[str, Any], now: float) -> None:
    """Put back what ``state`` saved (checked by ``check_state``), before any input is taken.
    Values the node can no longer take (its trigger or an input port changed since) are
    logged; BARRIER's are counted as carried and discarded, never dropped silently."""
    nd = w.definition
    trigger = nd.trigger
    c = w.counters
    kind = got["trigger"]
    for port, values in got["values"].items():
        if kind != trigger.name or port not in nd.inputs:
            w.node.log.warning("checkpointed trigger values do not fit the node any more: "
                               "discarded", graph=w.shared.plan.name, node=nd.name, port=port,
                               saved=kind, trigger=trigger.name, count=len(values))
            if kind == "BARRIER":
                c.carried += len(values)
                c.discarded += len(values)
            continue
        if trigger is Trigger.BARRIER:
            inp = next(i for i in w.ins if i.port == port)  # holds the credit, as it did
            fifo = w.fifos[port]
            for item, age in values:
                fifo.append((item, now - age, inp))
            inp.held += len(values)
            c.custody += len(values)
            c.carried += len(values)
        else:
            item, age = values[-1]
            w.latest[port] = (item, now - age)
    if trigger is Trigger.BARRIER:
        barrier_run(w, now)  # arms the expiry timer of restored values (max_age, WAIT)
