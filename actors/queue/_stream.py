"""The durable queue in a stream graph: end-to-end at-least-once.

``QueueSource`` leases records from a ``DurableQueue`` (or, given a function of the tenant, the
tenant's own queue) when its consumers have credit (so a
slow graph pauses the queue instead of buffering) and emits each as a ``QueueItem``. Nodes pass
an item on with ``item.derive(new_payload)``, which keeps its lease. The graph settles each item
where its processing ends:

- ``QueueSink`` acknowledges what reaches it, in one commit per batch, after ``store(items)``
  returned (override ``store`` with the real write: a database insert, a publish);
- a node that finds an item invalid calls ``item.reject(reason)``: a dead letter with reason
  ``"error: <reason>"`` at once;
- ``item.nack(delay)`` retries it later.

An item that is never settled - lost with a crashed node, or dropped by a lossy edge - comes back
after the queue's visibility timeout and runs through the graph again: every record is processed
at least once, or dead-lettered with its reason (after ``max_deliveries``, its TTL, or a reject).
``QueueSink``'s batch ack blocks on the queue's group commit (milliseconds), inside the node's
turn like any I/O; ``item.reject``/``nack``/``ack`` are buffered for the next commit and return
at once (a settlement lost to a crash only means the record comes through again).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

from ..stream import Sink, Source
from ._queue import DurableQueue
from ._types import Delivery

__all__ = ["QueueItem", "QueueSource", "QueueSink"]


class QueueItem:
    """One leased record on its way through a graph: ``payload`` (what nodes work on), ``id``,
    ``attempt`` and the lease (``delivery``)."""

    __slots__ = ("delivery", "payload")

    def __init__(self, delivery: Delivery, payload: Any) -> None:
        self.delivery = delivery
        self.payload = payload

    @property
    def id(self) -> int:
        return self.delivery.id

    @property
    def attempt(self) -> int:
        return self.delivery.attempt

    def derive(self, payload: Any) -> "QueueItem":
        """The same record (and lease) carrying a new payload."""
        return QueueItem(self.delivery, payload)

    def reject(self, reason: str, wait: bool = False) -> bool:
        """Dead-letter it with reason ``"error: <reason>"`` (buffered; see ``Delivery.reject``).
        False if already settled, or with ``wait=True`` if the lease was stale."""
        return self.delivery.reject(reason, wait=wait)

    def nack(self, delay: float = 0.0, error: str | None = None, wait: bool = False) -> bool:
        """Deliver it again after ``delay`` seconds (counts as an attempt; buffered)."""
        return self.delivery.nack(delay, error, wait=wait)

    def ack(self, wait: bool = False) -> bool:
        """Processed (buffered; ``wait=True`` blocks until on disk, see ``Delivery.ack``)."""
        return self.delivery.ack(wait=wait)

    def __repr__(self) -> str:
        return f"<QueueItem id={self.id} attempt={self.attempt} {self.payload!r}>"


QueueOrFactory = Union[DurableQueue, Callable[[Optional[str]], DurableQueue]]


class _UsesQueue:
    """``queue`` is a ``DurableQueue``, or a function of the node's tenant returning the tenant's
    queue: the graph is defined once, each tenant's instance finds its own queue."""

    _queue_spec: QueueOrFactory
    _queue: DurableQueue | None

    def _init_queue(self, queue: QueueOrFactory) -> None:
        if not isinstance(queue, DurableQueue) and not callable(queue):
            raise TypeError(f"{type(self).__name__} needs a DurableQueue or a function "
                            f"tenant -> DurableQueue, got {type(queue).__name__}")
        self._queue_spec = queue
        self._queue = queue if isinstance(queue, DurableQueue) else None

    @property
    def queue(self) -> DurableQueue:
        if self._queue is None:
            found = self._queue_spec(self.ref.tenant)  # type: ignore[operator, attr-defined]  # the spec is a function when it is not a queue
            if not isinstance(found, DurableQueue):
                raise TypeError(f"the queue function of {type(self).__name__} returned "
                                f"{type(found).__name__}, not a DurableQueue")
            self._queue = found
        return self._queue


class QueueSource(_UsesQueue, Source):
    """Leases up to ``demand`` records per call from its queue (never more than the graph has
    credit for) and emits them as ``QueueItem``s. With no records ready it polls again after
    ``poll_interval`` seconds (or at once on ``StreamInstance.wake``).

    In a graph with checkpoints (``actors.stream.Checkpoints``) it acknowledges the records it
    emitted before a checkpoint's barrier once that checkpoint is committed, and no sooner; its
    checkpoint holds the ids not yet acknowledged, so that a record redelivered after a crash
    between the commit and the acks - already in the restored state - is acknowledged and
    dropped, not emitted again (``duplicates``). Restored ids that do not come back within two
    visibility timeouts were acknowledged before the crash and are forgotten."""

    poll_interval = 0.05

    def __init__(self, queue: QueueOrFactory) -> None:
        self._init_queue(queue)
        self.leased = 0
        self.acked = 0          # acknowledged at checkpoint commits
        self.stale = 0          # ... whose lease had run out (acknowledged by a later delivery)
        self.duplicates = 0     # redelivered records already in the state: acked, not emitted
        self._open: set[int] = set()                    # emitted, not yet acked on disk
        self._since: list[Delivery] = []                # emitted since the last barrier
        self._tagged: list[tuple[int, list[Delivery]]] = []  # per checkpoint, until committed
        self._restored: set[int] = set()                # ids in the restored state
        self._restored_until = 0.0

    def produce(self, demand: int) -> list[QueueItem]:
        deliveries = self.queue.get(max_items=demand, timeout=0.0)
        self.leased += len(deliveries)
        if self._wiring.shared.checkpoint is None:
            return [QueueItem(d, d.payload) for d in deliveries]
        out = []
        is_open, restored, since = self._open, self._restored, self._since
        for d in deliveries:
            i = d.id
            if i in is_open or i in restored:  # its effects are in the state already
                self.duplicates += 1
                restored.discard(i)
                is_open.add(i)
                since.append(d)  # acknowledged with the next checkpoint
                continue
            is_open.add(i)
            since.append(d)
            out.append(QueueItem(d, d.payload))
        return out

    # -- checkpoints (see actors.stream._checkpoint) ----------------------------------------------
    def on_checkpoint(self, cid: int) -> None:
        if self._since:
            self._tagged.append((cid, self._since))
            self._since = []

    def checkpoint_state(self) -> dict[str, Any]:
        from ..stream._checkpoint import id_ranges
        return {"open": id_ranges(self._open | self._restored)}

    def restore_checkpoint(self, state: Any) -> None:
        from ..stream._checkpoint import expand_ranges
        if not isinstance(state, dict) or "open" not in state:
            raise ValueError(f"QueueSource: not a checkpoint of a QueueSource: {state!r:.80}")
        self._restored = expand_ranges(state["open"])
        q = self.queue
        self._restored_until = q._clock.time() + 2 * q.visibility_timeout

    def on_checkpoint_committed(self, cid: int) -> None:
        ready: list[Delivery] = []
        tagged = self._tagged
        while tagged and tagged[0][0] <= cid:
            ready.extend(tagged.pop(0)[1])
        if ready:
            is_open = self._open
            todo = []
            for d in ready:
                if d.settled:  # rejected or nacked by a node: not ours to acknowledge
                    is_open.discard(d.id)
                else:
                    todo.append(d)
            results = self.queue.ack_many(todo) if todo else []  # on disk when it returns
            for d, ok in zip(todo, results):
                if ok:
                    is_open.discard(d.id)
                    self.acked += 1
                else:  # its lease ran out: the redelivery (a duplicate) is acknowledged later
                    self.stale += 1
        if self._restored and self.queue._clock.time() > self._restored_until:
            self._restored = set()


class QueueSink(_UsesQueue, Sink):
    """Acknowledges every ``QueueItem`` that reaches it, one commit per batch, after
    ``store(items)`` returned (in a graph with checkpoints, the ``QueueSource`` acknowledges
    them when a checkpoint commits instead: ``store`` must then be idempotent). If ``store`` raises, nothing of the batch is acknowledged: the
    node crashes (its supervisor restarts it) and the queue delivers the records again."""

    max_items = 256      # one commit per batch of up to 256 items ...
    max_delay = 0.01     # ... or per 10 ms: a lease must be settled well within its timeout

    def __init__(self, queue: QueueOrFactory) -> None:
        self._init_queue(queue)
        self.acked = 0
        self.stale = 0

    def store(self, items: list[QueueItem]) -> None:
        """Write ``items`` somewhere durable (override). The default stores nothing."""

    def process_batch(self, items: Iterable[Any], port: str) -> None:
        batch = list(items)
        for item in batch:
            if not isinstance(item, QueueItem):
                raise TypeError(f"QueueSink got {type(item).__name__}, expected QueueItem: "
                                "nodes must pass queue records on with item.derive(payload)")
        self.store(batch)
        if self._wiring.shared.checkpoint is not None:  # the source acknowledges them when a checkpoint commits
            self.acked += len(batch)
            return
        results = self.queue.ack_many([item.delivery for item in batch])
        done = sum(1 for ok in results if ok)
        self.acked += done
        self.stale += len(results) - done

    def process(self, item: Any, port: str) -> None:
        self.process_batch([item], port)
