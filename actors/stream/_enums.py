"""The choices of the stream layer, as enums (never strings): edge policies, triggers of
multi-input nodes, and the rule for an expired input value.

| Policy       | when the receiver is slow                   | the sender's buffer (capacity)  |
|--------------|---------------------------------------------|---------------------------------|
| BACKPRESSURE | the sender waits for credit; a node         | bounded by withheld credit;     |
|              | withholds its inputs' credit while its      | items emitted without demand    |
|              | outputs are backed up, so the slowness      | (timers) beyond it are dropped, |
|              | reaches the source                          | counted                         |
| DROP_OLDEST  | the sender keeps going                      | full: the oldest waiting goes   |
| DROP_NEWEST  | the sender keeps going                      | full: the new item goes         |
| LATEST       | the sender keeps going                      | one item, the newest (window 1) |

| Trigger | fires                                            | a value is consumed           |
|---------|--------------------------------------------------|-------------------------------|
| EACH    | ``process(item, port)`` per item (or             | when processed                |
|         | ``process_batch(items, port)`` per batch)        |                               |
| BARRIER | ``fire(inputs)`` once every input has a value    | by the firing (one per input, |
|         |                                                  | in arrival order)             |
| LATEST  | ``fire(inputs)`` on every arriving value, with   | never: it stays the input's   |
|         | the latest value of each input                   | latest until a newer one      |

| Expired | BARRIER                                          | LATEST                        |
|---------|--------------------------------------------------|-------------------------------|
| WAIT    | the expired value is discarded (``expired``);    | no firing while that input's  |
|         | the barrier waits for a fresh one                | value is too old (suppressed) |
| SKIP    | the whole round is discarded: expired values     | fire without that input       |
|         | count as ``expired``, the others ``discarded``   | (``port in inputs`` is False) |
| STALE   | fire anyway; ``inputs.stale`` names the port,    | fire with it; ``inputs.stale``|
|         | ``inputs.age(port)`` says how old the value is   | and ``inputs.age(port)``      |
"""

from __future__ import annotations

from .._choice import Choice

__all__ = ["Policy", "Trigger", "Expired"]


class Policy(Choice):
    """What an edge does when its receiver is slower than its sender (see the module table)."""

    BACKPRESSURE = "backpressure"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    LATEST = "latest"


class Trigger(Choice):
    """When a node's handler runs (see the module table)."""

    EACH = "each"
    BARRIER = "barrier"
    LATEST = "latest"


class Expired(Choice):
    """What a multi-input node does with a value older than its input's ``max_age``."""

    WAIT = "wait"
    SKIP = "skip"
    STALE = "stale"
