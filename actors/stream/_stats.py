"""Counters of one graph instance, and the frozen statistics built from them.

The counters live in the instance, not in the node actors, so they survive restarts: that is
how items lost by a crash are counted exactly (see ``_wiring``). Each field has one writer at a
time - the sending node for ``accepted``/``sent``/``dropped``/``buffered`` and the in-flight
part of ``lost``, the receiving node for ``delivered`` - and is read from any thread (single
int stores under the GIL).

The ledger of an edge, at any moment::

    accepted = sent + dropped + buffered + lost_buffered
    sent     = delivered + in_flight + lost_in_flight

and of a node: ``delivered into it + carried = processed + expired + discarded + custody +
lost``, where ``carried`` counts the values a checkpoint's restore put back into the node's
hands (a ``BARRIER`` round waiting for its partner: see ``_checkpoint``; 0 without
checkpoints). Once a finite stream has completed (and in any quiet moment) ``in_flight``,
``buffered`` and ``custody`` are 0, so what a source produced (plus what was carried) equals what
the sinks processed plus every counted drop, expiry, discard and loss on the way (for nodes that
emit one item per item).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EdgeCounters", "NodeCounters", "EdgeStatistics", "NodeStatistics",
           "StreamStatistics"]


class EdgeCounters:
    __slots__ = ("accepted", "sent", "delivered", "dropped", "buffered", "lost_in_flight",
                 "lost_buffered", "credit")

    def __init__(self) -> None:
        self.accepted = 0        # items the sender put on the edge
        self.sent = 0            # items told to a receiver incarnation
        self.delivered = 0       # items a receiver took from its mailbox
        self.dropped = 0         # items the edge's policy dropped
        self.buffered = 0        # items waiting in the sender's buffer (mirror of its length)
        self.lost_in_flight = 0  # sent, never taken: the receiver crashed or was dead
        self.lost_buffered = 0   # waiting in the sender's buffer when the sender crashed
        self.credit = 0          # the sender's credit (mirror, for statistics)


class NodeCounters:
    __slots__ = ("processed", "emitted", "custody", "lost", "expired", "discarded", "unrouted",
                 "fired", "suppressed", "demand", "produce_calls", "restored", "late", "errors",
                 "evicted", "open_windows", "carried")

    def __init__(self) -> None:
        self.processed = 0      # input items handled (processed, or taken by a firing)
        self.emitted = 0        # items emitted on any output port
        self.custody = 0        # taken from the mailbox, not yet handled (a crash loses them)
        self.lost = 0           # custody of crashed incarnations
        self.expired = 0        # values discarded by the max_age rule
        self.discarded = 0      # values discarded with a skipped round, or unmatched at the end
        self.unrouted = 0       # items emitted on a port with no edge and no log
        self.fired = 0          # fire() calls of BARRIER / LATEST nodes
        self.suppressed = 0     # LATEST firings withheld (an input missing or expired, WAIT)
        self.demand = 0         # a source's demand at its last pump
        self.produce_calls = 0  # a source's produce() calls
        self.restored = 0       # restore() calls
        self.late = 0           # items a Window node sent to "late" (their windows had closed)
        self.errors = 0         # items a Window node sent to "errors" (bad key or time)
        self.evicted = 0        # windows closed early because max_open was reached
        self.open_windows = 0   # windows open now in a Window node (a gauge)
        self.carried = 0        # BARRIER values a checkpoint's restore put back into custody


@dataclass(frozen=True, slots=True)
class EdgeStatistics:
    """One edge: ``name`` is ``"sender.port -> receiver.port"``. ``lost`` is the sum of
    ``lost_in_flight`` and ``lost_buffered``; ``in_flight`` is sent and not yet taken."""

    name: str
    policy: str
    window: int
    capacity: int
    accepted: int
    sent: int
    delivered: int
    dropped: int
    buffered: int
    in_flight: int
    lost: int
    lost_in_flight: int
    lost_buffered: int
    credit: int


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """One node: counters that survive restarts, plus its current actor's mailbox."""

    name: str
    kind: str
    alive: bool
    restarts: int
    queued: int
    processed: int
    emitted: int
    custody: int
    lost: int
    expired: int
    discarded: int
    unrouted: int
    fired: int
    suppressed: int
    demand: int
    restored: int
    late: int = 0          # Window nodes: items whose windows had all closed (port "late")
    errors: int = 0        # Window nodes: items with a bad key or time (port "errors")
    evicted: int = 0       # Window nodes: windows closed early at max_open
    open_windows: int = 0  # Window nodes: windows open now
    carried: int = 0       # BARRIER values restored from a checkpoint into custody


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    """One graph instance (one tenant's): every node and edge, and the tenant's totals."""

    graph: str
    tenant: str | None
    nodes: tuple[NodeStatistics, ...]
    edges: tuple[EdgeStatistics, ...]
    dropped: int      # sum over edges
    lost: int         # edges' lost + nodes' lost
    expired: int
    discarded: int
    completed: bool
    carried: int = 0  # sum over nodes: values restored from a checkpoint into custody

    def node(self, name: str) -> NodeStatistics:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in graph {self.graph!r}")

    def edge(self, name: str) -> EdgeStatistics:
        """By full name (``"a.out -> b.in"``) or a unique prefix such as ``"a.out"``/``"a ->"``."""
        found = [e for e in self.edges if e.name == name]
        if not found:
            found = [e for e in self.edges if e.name.startswith(name)]
        if len(found) != 1:
            raise KeyError(f"{'no' if not found else 'more than one'} edge {name!r} in graph "
                           f"{self.graph!r}: {[e.name for e in self.edges]}")
        return found[0]
