"""From the durable queue into a SQL store, at least once: ``QueueWriter`` (the logic, no actor)
and ``SqlWriter`` (the actor that runs it).

One ``drain`` step: lease up to ``batch_size`` records, insert them in one transaction, and ack
the queue only after the commit. A crash anywhere before the ack leaves the records leased;
they are delivered again after the queue's visibility timeout and the idempotent insert
(``ON CONFLICT DO NOTHING``) turns the redelivery into a no-op, so the table ends up with each
reading exactly once.

While the database is unavailable the writer keeps its leased batch and retries the same
insert with exponential backoff instead of nacking: an outage consumes no delivery attempts, so
records are not dead-lettered for ``max_deliveries`` because the database was down; new
records wait in the queue (on disk, bounded by its ``max_bytes``). A lease that ran out
meanwhile makes the late ack stale (counted); the record comes again and is a duplicate-free
no-op. Rows the database itself refuses (or that are not readings) are isolated one by one and
dead-lettered with the reason ``"error: <why>"``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from .._actor import Actor
from .._checks import check_number
from ._readings import Reading
from ._sql import ReadingStore, RowRejected, StoreUnavailable

__all__ = ["DrainResult", "QueueWriter", "SqlWriter"]


@dataclass(frozen=True, slots=True)
class DrainResult:
    """One drain step: ``taken`` deliveries, ``inserted`` new rows, ``duplicates`` (already in
    the table), ``rejected`` (dead-lettered), ``stale`` (acks that came after a redelivery)."""

    taken: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    stale: int = 0


class QueueWriter:
    """Drains ``queue`` (a ``DurableQueue`` of reading rows) into ``store``. Not thread-safe:
    one caller (one actor) at a time. ``drain`` blocks for the queue's and the store's I/O."""

    def __init__(self, queue: Any, store: ReadingStore, *, batch_size: int = 500) -> None:
        check_number(batch_size, "batch_size", integer=True, low=1, high=10_000)
        self.queue = queue
        self.store = store
        self.batch_size = batch_size
        self._held: list[Any] = []   # leased deliveries whose insert has not committed yet
        self.totals = {"taken": 0, "inserted": 0, "duplicates": 0, "rejected": 0, "stale": 0,
                       "unavailable": 0}

    @property
    def holding(self) -> int:
        """Deliveries kept for a retry after ``StoreUnavailable``."""
        return len(self._held)

    def drain(self, timeout: float = 0.0) -> DrainResult:
        """Insert one batch (the held one first, else up to ``batch_size`` fresh records,
        waiting up to ``timeout`` s for the first) and ack it after the commit. Raises
        ``StoreUnavailable`` (the batch is held for the next call) and the queue's errors."""
        held = self._held = [d for d in self._held if not d.settled]
        if not held:
            held = self._held = self.queue.get(self.batch_size, timeout)
            if not held:
                return DrainResult()
            self.totals["taken"] += len(held)
        good, rows, rejected = [], [], 0
        for d in held:
            try:
                rows.append(Reading.from_row(d.payload).as_row())
                good.append(d)
            except ValueError as exc:
                d.reject(f"not a reading row: {exc}")
                rejected += 1
        try:
            inserted = self.store.insert(rows)
        except RowRejected:
            inserted, bad = self._one_by_one(good, rows)
            rejected += bad
            good = [d for d in good if not d.settled]
        except StoreUnavailable:
            self.totals["unavailable"] += 1
            raise
        self._held = []
        stale = sum(not ok for ok in self.queue.ack_many(good)) if good else 0
        result = DrainResult(len(held), inserted, len(rows) - inserted - rejected, rejected, stale)
        for key in ("inserted", "duplicates", "rejected", "stale"):
            self.totals[key] += getattr(result, key)
        return result

    def _one_by_one(self, deliveries: list[Any], rows: list[Any]) -> tuple[int, int]:
        inserted = rejected = 0
        for d, row in zip(deliveries, rows):
            try:
                inserted += self.store.insert([row])
            except RowRejected as exc:
                d.reject(f"database refused the row: {exc}"[:500])
                rejected += 1
        return inserted, rejected


_DRAIN = "sv-sql-drain"


class SqlWriter(Actor):
    """An actor draining a durable queue into a store (see the module docstring).

    ``SqlWriter(queue, store_factory, batch_size=500, poll_interval=0.05, retry_min=0.1,
    retry_max=10.0)``: ``store_factory()`` opens the store in ``on_start`` (so a restarted
    writer reconnects; ``StoreUnavailable`` there is retried with backoff too). Each turn
    drains one batch then yields (a stop or a statistics ask gets through between batches);
    an empty queue is polled every ``poll_interval`` seconds. ``ask("statistics")`` answers the
    writer's totals. Each turn blocks its worker for one queue claim and one transaction.
    """

    def __init__(self, queue: Any, store_factory: Callable[[], ReadingStore], *,
                 batch_size: int = 500, poll_interval: float = 0.05, retry_min: float = 0.1,
                 retry_max: float = 10.0) -> None:
        if not 0 < retry_min <= retry_max:
            raise ValueError(f"need 0 < retry_min <= retry_max, got {retry_min!r}, {retry_max!r}")
        self._queue = queue
        self._factory = store_factory
        self._batch = batch_size
        self._poll = poll_interval
        self._retry = (retry_min, retry_max)
        self._delay = retry_min
        self._writer: QueueWriter | None = None

    def on_start(self) -> None:
        self.ref.tell(_DRAIN)

    def receive(self, message: Any) -> Any:
        if message == _DRAIN:
            self._step()
        elif message == "statistics":
            w = self._writer
            return {**(w.totals if w else {}), "holding": w.holding if w else 0}
        return None

    def _step(self) -> None:
        try:
            if self._writer is None:
                self._writer = QueueWriter(self._queue, self._factory(), batch_size=self._batch)
            result = self._writer.drain()
        except StoreUnavailable as exc:
            self.log.warning("sql store unavailable; retrying", error=str(exc)[:300],
                             retry_in=round(self._delay, 3))
            self.send_after(self._delay * random.uniform(0.8, 1.2), _DRAIN, key=_DRAIN)
            self._delay = min(self._delay * 2, self._retry[1])
            return
        self._delay = self._retry[0]
        if result.taken:
            self.ref.tell(_DRAIN)  # more may be waiting: next batch in the next turn
        else:
            self.send_after(self._poll, _DRAIN, key=_DRAIN)

    def on_stop(self, reason: Any) -> None:
        if self._writer is not None:
            self._writer.store.close()
