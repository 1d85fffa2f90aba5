"""What node actors tell each other (never user payloads: those travel as ``(edge, items)``
tuples, the one plain-tuple message a node takes). Each control message knows which method of
the node's ``Wiring`` handles it, so a node's ``receive`` is one class check and one call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._wiring import Wiring

__all__ = ["Credit", "Attach", "Hello", "End", "Pump", "Poll", "Wake", "Every", "Watch",
           "FlushBatch", "Expire", "PUMP", "POLL", "WAKE", "EXPIRE"]


class Credit:
    """Receiver -> sender: ``n`` more items may be sent on edge ``eid`` (to incarnation
    ``epoch`` of the receiver; credit from an older incarnation is ignored)."""

    __slots__ = ("eid", "n", "epoch")

    def __init__(self, eid: int, n: int, epoch: int) -> None:
        self.eid, self.n, self.epoch = eid, n, epoch

    def handle(self, w: "Wiring") -> None:
        w.on_credit(self)

    def __repr__(self) -> str:
        return f"<Credit edge={self.eid} n={self.n} epoch={self.epoch}>"


class Attach:
    """Receiver -> sender: edge ``eid`` now delivers to ``ref`` (incarnation ``epoch``), with
    ``grant`` items of credit. Resets the edge: what was in flight to an earlier incarnation
    and never taken is counted as lost."""

    __slots__ = ("eid", "ref", "grant", "epoch")

    def __init__(self, eid: int, ref: Any, grant: int, epoch: int) -> None:
        self.eid, self.ref, self.grant, self.epoch = eid, ref, grant, epoch

    def handle(self, w: "Wiring") -> None:
        w.on_attach(self)

    def __repr__(self) -> str:
        return f"<Attach edge={self.eid} grant={self.grant} epoch={self.epoch}>"


class Hello:
    """A (re)started sender -> receiver: please attach edge ``eid`` to ``ref``."""

    __slots__ = ("eid", "ref")

    def __init__(self, eid: int, ref: Any) -> None:
        self.eid, self.ref = eid, ref

    def handle(self, w: "Wiring") -> None:
        w.on_hello(self)


class End:
    """Sender -> receiver: no more items on edge ``eid`` (after every item sent before)."""

    __slots__ = ("eid",)

    def __init__(self, eid: int) -> None:
        self.eid = eid

    def handle(self, w: "Wiring") -> None:
        w.on_end(self.eid)


class _Signal:
    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        self.method = method

    def handle(self, w: "Wiring") -> None:
        getattr(w, self.method)()

    def __repr__(self) -> str:
        return f"<{self.method.removeprefix('on_')}>"


class Pump(_Signal):
    """A source to itself: call ``produce`` while there is demand."""


class Poll(_Signal):
    """A source's poll timer: ``produce`` returned nothing, try again."""


class Wake(_Signal):
    """From outside (``StreamInstance.wake``): a source has new data, produce now."""


class Expire(_Signal):
    """A BARRIER's timer: a waiting value reached its ``max_age``."""


PUMP = Pump("on_pump")
POLL = Poll("on_poll")
WAKE = Wake("on_wake")
EXPIRE = Expire("on_expire")


class Every:
    """The timer of an ``@every(period)`` method."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, w: "Wiring") -> None:
        w.on_every(self.name)


class Watch:
    """The timer of a ``@timeout(seconds, port)`` watchdog."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, w: "Wiring") -> None:
        w.on_watch(self.name)


class FlushBatch:
    """A batching node's ``max_delay`` timer for ``port``."""

    __slots__ = ("port",)

    def __init__(self, port: str) -> None:
        self.port = port

    def handle(self, w: "Wiring") -> None:
        w.on_flush_batch(self.port)
