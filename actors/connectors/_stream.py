"""Stream adapters: the connectors as ``actors.stream`` nodes.

- ``SqlSink`` (a ``Sink``): puts each batch into a durable queue (on disk: from here on nothing
  is lost) and drains the queue into a SQL store with ``QueueWriter`` (ack after commit,
  idempotent rows). A database outage keeps the rows in the queue and retries with backoff; a
  full queue pauses the node (backpressure upstream) until the retry gets the batch in - those
  rows are held by the node, and a crash meanwhile loses them (the stream has counted them as
  processed: the one window before they are durable).
- ``MqttPublisher`` (a ``Sink``): publishes readings (or ``(topic, payload)`` pairs) at QoS 1 and
  waits for the broker's acks; a timeout crashes the node (its supervisor restarts it).

MQTT readings enter a graph through a durable queue, never directly: ``MqttIngest`` (one
client per node, every tenant) acks the broker only after a batch is committed to its tenant's
queue, and the tenant's graph reads that queue with ``actors.queue.QueueSource``. (An earlier
``MqttReadings`` source acked the broker when the graph had taken a batch - before anything was
durable - and was removed.) Handlers block their worker for their I/O (a queue commit, a
transaction, the acks); the paho thread of ``MqttPublisher`` is the only thread these nodes add.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from ..stream import Sink
from ._client import MqttOptions
from ._mqtt_sink import MqttSink, reading_message
from ._readings import Reading
from ._sql import ReadingStore, StoreUnavailable
from ._writer import QueueWriter

__all__ = ["MqttPublisher", "SqlSink"]

_RETRY = "sv-sql-retry"


class SqlSink(Sink):
    """``graph.add("store", SqlSink, queue, store_factory, batch_size=500, retry_min=0.1,
    retry_max=10.0)``: takes ``Reading`` values (or rows) into ``queue`` and from there into the
    store that ``store_factory()`` opens (in ``on_start``). One handler drains at most
    ``DRAIN_BATCHES`` batches; a backlog continues in the next turn."""

    DRAIN_BATCHES = 4

    def __init__(self, queue: Any, store_factory: Callable[[], ReadingStore], *,
                 batch_size: int = 500, retry_min: float = 0.1, retry_max: float = 10.0) -> None:
        self._queue = queue
        self._factory = store_factory
        self._batch = batch_size
        self._retry = (retry_min, retry_max)
        self._delay = retry_min
        self._waiting: list[Any] = []  # rows the queue refused (full): put again on retry
        self.writer: QueueWriter | None = None

    def on_start(self) -> None:
        self._waiting = []
        self.writer = None

    def process_batch(self, items: Any, port: str) -> None:
        rows = [i.as_row() if isinstance(i, Reading) else tuple(i) for i in items]
        self._waiting.extend(rows)
        self._flush()

    def on_message(self, message: Any) -> Any:
        if message == _RETRY:
            self._flush()
            return None
        if message == "statistics":
            w = self.writer
            return {**(w.totals if w else {}), "holding": w.holding if w else 0,
                    "waiting": len(self._waiting)}
        return super().on_message(message)

    def _flush(self) -> None:
        if self._waiting:
            try:
                self._queue.put_many(self._waiting)
            except OSError as exc:  # QueueFull: stop taking items until the retry
                self.log.warning("sql sink queue refused a batch; pausing", error=str(exc)[:200])
                self.pause()
                self._later()
                return
            self._waiting = []
            if self.paused:
                self.resume()
        try:
            if self.writer is None:
                self.writer = QueueWriter(self._queue, self._factory(), batch_size=self._batch)
            for _ in range(self.DRAIN_BATCHES):
                if not self.writer.drain().taken:
                    break
            else:
                self.ref.tell(_RETRY)  # a backlog: go on in the next turn, let others run
        except StoreUnavailable as exc:
            self.log.warning("sql store unavailable; rows wait in the queue",
                             error=str(exc)[:300], retry_in=round(self._delay, 3))
            self._later()
            return
        self._delay = self._retry[0]

    def _later(self) -> None:
        self.send_after(self._delay * random.uniform(0.8, 1.2), _RETRY, key=_RETRY)
        self._delay = min(self._delay * 2, self._retry[1])

    def on_stop(self, reason: Any) -> None:
        if self.writer is not None:
            self.writer.store.close()


class MqttPublisher(Sink):
    """``graph.add("out", MqttPublisher, options, timeout=10.0)``: publishes each item - a
    ``Reading`` (its device topic, JSON) or a ``(topic, payload)`` pair - at QoS 1 and waits
    for the broker's acks (``PublishTimeout`` crashes the node)."""

    def __init__(self, options: MqttOptions, *, timeout: float = 10.0) -> None:
        self._options = options
        self._timeout = timeout
        self.sink: MqttSink | None = None

    def on_start(self) -> None:
        self.sink = MqttSink(self._options).start()

    def process_batch(self, items: Any, port: str) -> None:
        assert self.sink is not None
        messages = [reading_message(i) if isinstance(i, Reading) else (i[0], i[1]) for i in items]
        self.sink.publish_many(messages, timeout=self._timeout)

    def on_stop(self, reason: Any) -> None:
        if self.sink is not None:
            self.sink.stop()
