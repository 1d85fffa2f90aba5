"""Both ends of an edge, as each node keeps them: ``Out`` (the sender's buffer and credit) and
``In`` (the receiver's credit to return). Credit-based flow control:

- the receiver grants ``window`` items when it attaches to the sender (on its start, or when
  a restarted sender says hello), then gives credit back as it handles items - in chunks of at
  least a quarter window - except while one of its own backpressure outputs has items waiting:
  then it withholds the credit, so a slow sink slows every node up to the source;
- the sender sends at most its credit (one message per batch) and keeps the rest in its buffer,
  where a drop policy bounds it (see ``_enums``). A source's demand is its free credit.

Messages never carry more than the credit, so a node's mailbox holds at most the windows of its
inputs (plus a few control messages): it is sized for that and never overflows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._errors import MailboxFull
from ._enums import Policy
from ._checkpoint import Barrier
from ._messages import Attach, Credit, End
from ._stats import EdgeCounters

if TYPE_CHECKING:
    from ._graph import EdgeDef
    from ._wiring import Wiring

__all__ = ["Out", "In", "Batch"]


class Batch:
    """Items on edge ``eid``: the one data message between nodes."""

    __slots__ = ("eid", "items")

    def __init__(self, eid: int, items: Any) -> None:
        self.eid = eid
        self.items = items

    def __repr__(self) -> str:
        return f"<Batch edge={self.eid} items={len(self.items)}>"


class Out:
    """The sending end of an edge, owned by the sending node's current incarnation."""

    __slots__ = ("eid", "name", "policy", "bp", "window", "capacity", "stats", "target",
                 "tell", "ref", "epoch", "credit", "buf", "ending", "end_sent", "owner",
                 "_report_at", "_reported", "marks")

    def __init__(self, edge: "EdgeDef", target: int, stats: EdgeCounters,
                 owner: "Wiring") -> None:
        self.eid = edge.index
        self.name = edge.name
        self.policy = edge.policy
        self.bp = edge.policy is Policy.BACKPRESSURE
        self.window = edge.window
        self.capacity = edge.capacity
        self.stats = stats
        self.target = target          # the receiving node's index
        self.tell: Any = None         # the receiver incarnation's tell, once attached
        self.ref: Any = None
        self.epoch = -1
        self.credit = 0
        self.buf: list[Any] = []
        self.ending = False
        self.end_sent = False
        self.owner = owner
        self._report_at = -1e9
        self._reported = stats.dropped
        self.marks: list[list[int]] = []  # checkpoint barriers: [items ahead in buf, id]

    def push(self, items: Any) -> bool:
        """Put ``items`` on the edge: send what the credit allows, buffer the rest (policy).
        True when items now wait in the buffer, or the receiver turned out to be dead."""
        n = len(items)
        st = self.stats
        st.accepted += n
        buf = self.buf
        if self.bp:
            if not buf and n <= self.credit:  # the common case: one message, nothing waits
                self.credit -= n
                st.sent += n
                st.credit = self.credit
                try:
                    if self.tell(Batch(self.eid, items)):
                        return False
                    self._dead(n)
                    return True
                except MailboxFull:
                    self._refused(items)
                    buf = self.buf
                    items = ()
            buf.extend(items)
            self.pump()
            excess = len(self.buf) - self.capacity
            if excess > 0:  # emitted without demand (a timer, a flat-map): the hard bound
                del self.buf[self.capacity:]
                for m in self.marks:
                    m[0] = min(m[0], len(self.buf))
                self._dropped(excess)
        else:
            buf.extend(items)
            if self.policy is Policy.LATEST and len(buf) > 1:
                lost = len(buf) - 1
                del buf[:-1]
                self._dropped_front(lost)
                self._dropped(lost)
            self.pump()
            buf = self.buf
            excess = len(buf) - self.capacity
            if excess > 0:
                if self.policy is Policy.DROP_NEWEST:
                    del buf[self.capacity:]
                    for m in self.marks:
                        m[0] = min(m[0], len(buf))
                else:
                    del buf[:excess]
                    self._dropped_front(excess)
                self._dropped(excess)
        st.buffered = len(self.buf)
        return True

    def pump(self) -> None:
        """Send as much of the buffer as the credit allows; then the end, once it is empty."""
        buf = self.buf
        st = self.stats
        if buf and self.credit > 0:
            k = self.credit if self.credit < len(buf) else len(buf)
            if k == len(buf):
                chunk, self.buf = buf, []
            else:
                chunk = buf[:k]
                del buf[:k]
            self.credit -= k
            st.sent += k
            try:
                if not self.tell(Batch(self.eid, chunk)):
                    self._dead(k)
                elif self.marks:
                    self._sent_marks(k)
            except MailboxFull:
                self._refused(chunk)
        if self.marks and self.tell is not None and self.marks[0][0] <= 0:
            self._sent_marks(0)
        if self.ending and not self.end_sent and not self.buf and self.tell is not None:
            self.end_sent = bool(self.tell(End(self.eid)))
        st.buffered = len(self.buf)
        st.credit = self.credit

    def attach(self, msg: Attach) -> None:
        """A receiver incarnation attached: what was sent to an earlier one and never taken is
        lost (counted); the credit starts again at its grant."""
        st = self.stats
        in_flight = st.sent - st.delivered - st.lost_in_flight
        if in_flight > 0:
            st.lost_in_flight += in_flight
            self.owner.report_loss("in_flight", in_flight, self.name)
        self.ref = msg.ref
        self.tell = msg.ref.tell
        self.epoch = msg.epoch
        self.credit = msg.grant
        self.end_sent = False
        self.pump()

    def barrier(self, cid: int) -> None:
        """Checkpoint ``cid``'s barrier, behind every item pushed before it."""
        if self.tell is None:
            return  # no receiver: this checkpoint cannot complete (a later one will)
        if not self.buf:
            if not self.tell(Barrier(self.eid, cid)):
                self.tell = self.ref = None
            return
        self.marks.append([len(self.buf), cid])

    def _sent_marks(self, k: int) -> None:
        marks = self.marks
        for m in marks:
            m[0] -= k
        while marks and marks[0][0] <= 0 and self.tell is not None:
            self.tell(Barrier(self.eid, marks.pop(0)[1]))

    def _dropped_front(self, n: int) -> None:
        """``n`` items left the front of the buffer unsent (a drop policy)."""
        for m in self.marks:
            m[0] = max(0, m[0] - n)

    def _dead(self, n: int) -> None:
        """The receiver was dead: the ``n`` items just sent are lost; wait for a new one."""
        self.stats.lost_in_flight += n
        self.tell = self.ref = None
        self.credit = 0
        self.stats.credit = 0
        self.owner.report_loss("in_flight", n, self.name)

    def _refused(self, items: Any) -> None:
        """The receiver's mailbox was full (someone else filled it: credit alone never does).
        Take the items back, in order, and wait for the next credit."""
        n = len(items)
        self.stats.sent -= n
        self.buf[:0] = items
        for m in self.marks:
            m[0] += n
        self.credit = 0
        self.stats.credit = 0
        self.owner.node.log.warning("stream receiver's mailbox is full; items wait in the sender",
                               edge=self.name, items=n)

    def _dropped(self, n: int) -> None:
        self.stats.dropped += n
        now = time.monotonic()
        if now - self._report_at >= 1.0:
            self._report_at = now
            total = self.stats.dropped
            self.owner.report_drops(self, total, total - self._reported)
            self._reported = total

    def __repr__(self) -> str:
        return (f"<Out {self.name} {self.policy.name} credit={self.credit} "
                f"buffered={len(self.buf)}>")


class In:
    """The receiving end of an edge, owned by the receiving node's current incarnation."""

    __slots__ = ("eid", "name", "port", "source", "window", "threshold", "stats", "owed", "held",
                 "upstream", "credit_tell", "ended", "epoch")

    def __init__(self, edge: "EdgeDef", source: int, stats: EdgeCounters) -> None:
        self.eid = edge.index
        self.name = edge.name
        self.port = edge.target_port
        self.source = source          # the sending node's index
        self.window = edge.window
        self.threshold = max(1, edge.window // 4)
        self.stats = stats
        self.owed = 0                 # handled, credit not yet given back
        self.held = 0                 # taken, credit to be given when they leave (BARRIER)
        self.upstream: Any = None     # the sender incarnation attached to
        self.credit_tell: Any = None
        self.ended = False
        self.epoch = 0

    def attach(self, w: "Wiring", ref: Any) -> None:
        """Attach to sender ``ref``: a fresh window (less what is still held from this edge)."""
        self.upstream = ref
        self.credit_tell = ref.tell
        self.ended = False
        grant = self.window - self.held
        grant = grant if grant > 0 else 0
        self.owed = 0
        if w.blocked:  # its own outputs are backed up (or not wired yet): withhold
            self.owed, grant = grant, 0
        if not ref.tell(Attach(self.eid, w.node.ref, grant, self.epoch)):
            self.upstream = self.credit_tell = None

    def give(self, n: int) -> None:
        tell = self.credit_tell
        if tell is None:
            return
        try:
            if not tell(Credit(self.eid, n, self.epoch)):
                self.upstream = self.credit_tell = None  # the sender died: its successor says hi
        except MailboxFull:
            self.owed += n  # given back with the next grant

    def __repr__(self) -> str:
        return f"<In {self.name} owed={self.owed} held={self.held} ended={self.ended}>"
