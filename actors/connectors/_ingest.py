"""``MqttIngest``: MQTT readings into a durable queue, at least once - the broker gets its PUBACK
only after the readings are on disk in the queue.

The actor owns an ``MqttSource`` (whose paho thread is the I/O boundary). The source wakes the
actor when readings arrive (one message per empty -> non-empty transition, so the mailbox never
fills with wake-ups); each turn takes up to ``batch_size`` readings, ``put_many``s them as rows
``(tenant, device, ts, temp, hum)`` (one group commit) and acks them. A full queue
(``QueueFull``) keeps the batch in the actor and retries after ``retry_delay``: meanwhile nothing
is acked, the source's hand-off fills to ``capacity`` and the broker stops sending - backpressure
all the way to the broker. A crash between the put and the ack makes the broker redeliver: the
reading is queued twice and the idempotent SQL sink stores it once.
"""

from __future__ import annotations

from typing import Any, Sequence

from .._actor import Actor
from .._errors import MailboxFull
from ._client import MqttOptions
from ._mqtt_source import Inbound, MqttSource

__all__ = ["MqttIngest"]

_READY = "sv-mqtt-ready"
_TICK = "sv-mqtt-tick"


class MqttIngest(Actor):
    """``MqttIngest(options, queue, filters=None, tenant=None, capacity=1000, batch_size=500,
    dead_letters=None, max_payload_bytes=4096, retry_delay=0.5, tick=1.0)``; see the module
    docstring. ``ask("statistics")`` answers the source's ``MqttSourceStatistics``. ``tick`` is
    a safety poll (a wake-up is never lost, but costs nothing to double-check)."""

    def __init__(self, options: MqttOptions, queue: Any, *, filters: Sequence[str] | None = None,
                 tenant: str | None = None, capacity: int = 1000, batch_size: int = 500,
                 dead_letters: Any = None, max_payload_bytes: int = 4096,
                 retry_delay: float = 0.5, tick: float = 1.0) -> None:
        self._args = dict(filters=filters, tenant=tenant, capacity=capacity,
                          dead_letters=dead_letters, max_payload_bytes=max_payload_bytes)
        self._options = options
        self._queue = queue
        self._batch = batch_size
        self._retry = retry_delay
        self._tick = tick
        self._held: list[Inbound] = []
        self.source: MqttSource | None = None

    def on_start(self) -> None:
        ref = self.ref

        def ready() -> None:  # the paho thread
            try:
                ref.tell(_READY)
            except MailboxFull:
                pass  # it has plenty to do already
        self.source = MqttSource(self._options, on_ready=ready, **self._args).start()
        self.send_after(self._tick, _TICK, key=_TICK)

    def receive(self, message: Any) -> Any:
        if message == _READY or message == _TICK:
            self._pump()
            if message == _TICK:
                self.send_after(self._tick, _TICK, key=_TICK)
        elif message == "statistics":
            return self.source.statistics() if self.source else None
        return None

    def _pump(self) -> None:
        src = self.source
        assert src is not None
        if not self._held:
            self._held = src.take(self._batch)
            if not self._held:
                return
        rows = [i.reading.as_row() for i in self._held]
        try:
            self._queue.put_many(rows)
        except OSError as exc:  # QueueFull (ENOSPC) or the disk: keep the batch, ack nothing
            self.log.warning("ingest queue refused a batch; retrying", error=str(exc)[:200],
                             held=len(rows), retry_in=self._retry)
            self.send_after(self._retry, _READY, key="sv-mqtt-retry")
            return
        src.ack(self._held)
        self._held = []
        if src.pending():
            self.ref.tell(_READY)  # the next batch in the next turn

    def on_stop(self, reason: Any) -> None:
        if self.source is not None:
            self.source.stop()  # unacked readings stay in the broker's session
