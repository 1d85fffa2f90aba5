"""``MqttSink``: publish to a real broker at QoS 1 and wait for the broker's PUBACKs.

paho's network loop runs in its own thread (``loop_start``); ``publish_many`` hands messages to
it and blocks the caller until every one is acknowledged by the broker (at least once: paho
resends unacknowledged QoS 1 messages after a reconnect, with the DUP flag). Bounds: at most
``max_inflight`` unacknowledged messages on the wire and ``max_queued`` waiting in paho (also
while disconnected); beyond that ``publish_many`` raises ``SinkFull`` instead of buffering.
Reconnects use the backoff of ``MqttOptions``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

from .._checks import check_number
from ..topics import is_valid_topic
from ._client import MqttOptions, PahoConnection, build_client
from ._readings import Reading, readings_topic

__all__ = ["MqttSink", "MqttSinkStatistics", "PublishTimeout", "SinkFull", "reading_message"]


class SinkFull(Exception):
    """paho's bounded outgoing queue is full (``max_queued``): nothing was queued."""


class PublishTimeout(TimeoutError):
    """Not every message was acknowledged by the broker in time (they stay queued in paho and
    are resent after a reconnect; publishing them again may duplicate them)."""


@dataclass(frozen=True)
class MqttSinkStatistics:
    connected: bool
    connects: int
    disconnects: int
    published: int
    acknowledged: int
    refused: int


def reading_message(reading: Reading) -> tuple[str, bytes]:
    """The topic and JSON payload a device would publish for ``reading``."""
    payload = json.dumps({"ts": reading.ts, "temp": reading.temp, "hum": reading.hum},
                         allow_nan=False, separators=(",", ":")).encode()
    return readings_topic(reading.tenant, reading.device), payload


class MqttSink(PahoConnection):
    """A publishing client (see the module docstring). ``start()`` then ``publish_many``."""

    def __init__(self, options: MqttOptions, *, max_inflight: int = 100,
                 max_queued: int = 10_000) -> None:
        for name, value in (("max_inflight", max_inflight), ("max_queued", max_queued)):
            check_number(value, f"MqttSink {name}", integer=True, low=1, high=1_000_000)
        self.options = options
        self.client_id = options.session_id()
        self._client, self._props = build_client(options, self.client_id, manual_ack=False)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(max_queued)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        # _cond guards the counters and the ack table below (paho thread and callers). It is
        # never held while calling into paho: paho runs on_publish under its own message lock.
        self._cond = threading.Condition()
        self._waiting: dict[int, bool | None] = {}  # mid -> acknowledged (None: abandoned)
        self._early: set[int] = set()               # acknowledged before they were registered
        self._connects = self._disconnects = self._published = self._acked = self._refused = 0
        self._connected = False
        self._up = threading.Event()
        self._started = self._stopped = False

    def stop(self) -> None:
        """Disconnect and join the paho thread (up to about a second in a backoff). Idempotent."""
        if self._started and not self._stopped:
            self._close()
        self._stopped = True

    @property
    def connected(self) -> bool:
        return self._connected

    def _queue(self, topic: str, payload: bytes | str, qos: int) -> int:
        if not is_valid_topic(topic) or "+" in topic or "#" in topic:
            raise ValueError(f"invalid MQTT topic for publishing: {topic!r:.200}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        from paho.mqtt.client import MQTT_ERR_QUEUE_SIZE
        info = self._client.publish(topic, payload, qos=qos)
        with self._cond:
            if info.rc == MQTT_ERR_QUEUE_SIZE:
                self._refused += 1
                raise SinkFull(f"paho's outgoing queue is full "
                               f"({self._client.max_queued_messages}): {topic!r} not queued")
            self._published += 1
            if info.mid in self._early:  # the PUBACK beat us here
                self._early.discard(info.mid)
                self._waiting[info.mid] = True
            else:
                self._waiting[info.mid] = False
        return int(info.mid)

    def publish_many(self, messages: Iterable[tuple[str, bytes | str]], *, qos: int = 1,
                     timeout: float = 10.0) -> int:
        """Publish ``(topic, payload)`` pairs and block until the broker acknowledged them all
        (QoS 1/2; QoS 0: until written). Returns how many. Messages are queued in paho even
        while disconnected and sent after the reconnect. Raises ``ValueError`` for an invalid
        topic or QoS, ``SinkFull`` when paho's queue is full, ``PublishTimeout`` after
        ``timeout`` seconds; what was queued before an error stays queued in paho."""
        mids: list[int] = []
        deadline = time.monotonic() + timeout
        try:
            for topic, payload in messages:
                mids.append(self._queue(topic, payload, qos))
            done = 0  # mids[:done] are acknowledged (acks only ever turn True)
            with self._cond:
                while True:
                    while done < len(mids) and self._waiting[mids[done]]:
                        done += 1
                    if done == len(mids):
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        missing = sum(not self._waiting[m] for m in mids)
                        raise PublishTimeout(f"{missing} of {len(mids)} messages not "
                                             f"acknowledged within {timeout} s")
                    self._cond.wait(left)
                self._acked += len(mids)
        finally:
            with self._cond:
                for m in mids:
                    if self._waiting.get(m):
                        del self._waiting[m]
                    else:
                        self._waiting[m] = None  # abandoned: its late PUBACK removes it
        return len(mids)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1,
                timeout: float = 10.0) -> None:
        """One message; blocks until acknowledged (see ``publish_many``)."""
        self.publish_many([(topic, payload)], qos=qos, timeout=timeout)

    def publish_readings(self, readings: Iterable[Reading], *, timeout: float = 10.0) -> int:
        """``publish_many`` of each reading's device topic and JSON payload (QoS 1)."""
        return self.publish_many((reading_message(r) for r in readings), timeout=timeout)

    def statistics(self) -> MqttSinkStatistics:
        with self._cond:
            return MqttSinkStatistics(self._connected, self._connects, self._disconnects,
                                      self._published, self._acked, self._refused)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        with self._cond:
            self._connected = True
            self._connects += 1
        self._up.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._cond:
            state = self._waiting.get(mid, "absent")
            if state == "absent":
                self._early.add(mid)
            elif state is None:
                del self._waiting[mid]
            else:
                self._waiting[mid] = True
                self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        self._up.clear()
        with self._cond:
            self._connected = False
            self._disconnects += 1

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"<MqttSink {self.options.host}:{self.options.port} {state} published={self._published}>"
