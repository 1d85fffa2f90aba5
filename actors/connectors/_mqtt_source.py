"""``MqttSource``: device readings from a real MQTT broker, with flow control and dead letters.

The I/O boundary. The source's ``MqttLink`` (``_link.py``) runs one thread that owns the socket:
it reads whole buffers of packets, and this module validates each PUBLISH of a batch
(``_readings``), dead-letters bad ones and appends good ones to a bounded hand-off. Actors take
from the hand-off with ``take`` (never blocks) and settle what they took with ``ack`` once it is
safe (on disk, in the stream) - that is what sends the PUBACK. Nothing else runs on the link's
thread; the scheduler's workers never touch the socket.

Backpressure: manual acks under MQTT 5 Receive Maximum, and a hand-off the link never
overfills. The client subscribes with QoS 1 and Receive Maximum = ``capacity``: the broker may
have at most ``capacity`` unacknowledged QoS 1 messages out to us, and the actor side acks only
what it has taken and secured, so while it does not ack the broker stops sending and keeps the
rest in the session (Mosquitto: ``max_queued_messages``, 1000 by default, beyond which *it*
drops - the broker is the buffer, with its own bound). Mosquitto 2.0.11 (Debian 12, our CI) does
not keep to Receive Maximum (measured: capacity 5, ack 1 -> 5 more arrive), so the hand-off
enforces its bound itself: the link splits PUBLISHes out of its buffer only while the hand-off
has room, and otherwise stops reading the socket (counted ``paused``) until ``take`` makes room
- TCP flow control stops the broker. The link keeps sending PINGREQs and PUBACKs meanwhile, so a
stalled consumer does not lose its connection, and nothing is refused or dropped: QoS 0 waits
like QoS 1 (``qos0_dropped`` stays 0; it is kept for the statistics' shape).

At least once: a message is acked only after the consumer says so. Unacked messages are
redelivered by the broker when the session reconnects. Packet ids belong to the connection, so
an ack is sent only on the connection that received the message: a disconnect voids older acks
(counted ``stale_acks``) - a late ack can never settle someone else's message. When the broker
kept the session (``session present``), waiting messages of the old connection are discarded
(``superseded``): the broker sends them again.

Bad input never stops the loop: a topic or payload that fails validation is dead-lettered with
its reason (``BadMessage`` to a callback, or a record ``{"topic", "reason", "kind", "payload",
"size"}`` put into a ``DurableQueue``; ``payload`` is truncated to 1 KiB) and then acked. Payloads
larger than ``max_packet_bytes`` never reach us: the broker discards them (MQTT 5 Maximum Packet
Size; visible in the broker's log, not in our counters), so no hostile message is buffered
whole; a broker that sends one anyway is disconnected (a protocol error). If dead-lettering
fails, the message is not acked (``dead_letter_failures``).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from .._checks import check_number
from .._log import get_logger
from ..topics import is_valid_filter
from ._client import MqttOptions
from ._link import MqttLink, Publish
from ._readings import (DEFAULT_MAX_BYTES, BadReading, Reading, parse_payload, parse_topic,
                        readings_filter)

__all__ = ["BadMessage", "Inbound", "MqttSource", "MqttSourceStatistics"]

KEEP_BAD_BYTES = 1024
TOPIC_CACHE = 65_536  # valid topics remembered (tenant, device) so that a repeat skips parsing


class Inbound(NamedTuple):
    """A validated reading waiting to be acked (``MqttSource.ack``)."""

    reading: Reading
    mid: int
    qos: int
    gen: int
    dup: bool


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A rejected message: ``reason`` is ``"<kind>: <detail>"`` (``kind`` in ``REASONS``)."""

    topic: str
    payload: bytes        # at most KEEP_BAD_BYTES of it
    size: int
    kind: str
    reason: str
    qos: int


@dataclass(frozen=True)
class MqttSourceStatistics:
    connected: bool
    connects: int
    disconnects: int
    received: int
    accepted: int
    taken: int
    acked: int
    stale_acks: int
    dead_lettered: int
    dead_letter_failures: int
    qos0_dropped: int
    paused: int           # times the link stopped reading for want of room
    superseded: int
    errors: int
    pending: int
    peak: int             # the most readings ever waiting in the hand-off
    capacity: int
    rejected: dict[str, int] = field(default_factory=dict)  # kind -> count
    subscribed: bool = False   # connected and the broker granted the subscriptions
    changes_pending: int = 0   # SUBSCRIBE/UNSUBSCRIBE sent, not yet answered by the broker


class MqttSource:
    """Subscribe to ``filters`` (default: every tenant's readings) at QoS 1 and hand validated
    readings over; see the module docstring. ``tenant`` restricts what is accepted (defence in
    depth; also narrows the default filter). ``on_ready()`` is called on the link's thread when
    the hand-off goes from empty to non-empty (wake a consumer; keep it short, never block).
    ``dead_letters``: a ``DurableQueue`` or a callable taking ``BadMessage`` (None: counted and
    logged only). Raises ``ValueError`` for bad limits."""

    def __init__(self, options: MqttOptions, filters: Sequence[str] | None = None, *,
                 tenant: str | None = None, capacity: int = 1000,
                 max_payload_bytes: int = DEFAULT_MAX_BYTES, max_packet_bytes: int = 256 * 1024,
                 dead_letters: Any = None, on_ready: Callable[[], None] | None = None) -> None:
        check_number(capacity, "MqttSource capacity", integer=True, low=1, high=65535)
        check_number(max_payload_bytes, "MqttSource max_payload_bytes", integer=True, low=16,
                     high=16 * 2**20)
        check_number(max_packet_bytes, "MqttSource max_packet_bytes (max_payload_bytes + 1024 "
                     "at least)", integer=True, low=max_payload_bytes + 1024)
        bad = [f for f in filters or () if not is_valid_filter(f)]
        if bad:
            raise ValueError(f"MqttSource filters: {bad[0]!r} is not a valid MQTT filter")
        if dead_letters is not None and not callable(dead_letters) and not hasattr(dead_letters, "put"):
            raise ValueError(f"dead_letters must be None, a DurableQueue or a callable, "
                             f"got {dead_letters!r}")
        self.options = options
        self.tenant = tenant
        self._filters = list(filters) if filters is not None else [readings_filter(tenant)]
        self._sub_mids: dict[int, list[str]] = {}
        self._unsub_mids: set[int] = set()
        self.capacity = capacity
        self.max_payload_bytes = max_payload_bytes
        self._dead = dead_letters
        self._on_ready = on_ready
        self.client_id = options.session_id()
        self._link = MqttLink(options, self.client_id, receive_maximum=capacity,
                              max_packet_bytes=max_packet_bytes, room=self._room,
                              on_publishes=self._on_publishes, on_connect=self._on_connect,
                              on_connect_failed=self._on_connect_failed,
                              on_disconnect=self._on_disconnect, on_suback=self._on_subscribe,
                              on_unsuback=self._on_unsubscribe)
        self._log = get_logger(connector="mqtt-source", client_id=self.client_id)
        self._warned_at = 0.0
        self._warned_count = 0
        # _lock guards every field below. Never held while calling on_ready or the dead-letter
        # sink. The link's own lock may be taken while holding it, never the other way round.
        self._lock = threading.Lock()
        self._buf: collections.deque[Inbound] = collections.deque()
        self._peak = 0
        self._connected = False
        self._c: collections.Counter[str] = collections.Counter()
        self._rejected: collections.Counter[str] = collections.Counter()
        self._up = threading.Event()
        self._started = self._stopped = False
        self._topics: dict[bytes, tuple[str, str]] = {}  # the link's thread only

    # -- lifecycle (any thread) -------------------------------------------------------------------
    def start(self) -> "MqttSource":
        """Start the link's thread, which connects (and reconnects) on its own. Never blocks on
        the network. Returns self. ``RuntimeError`` if started twice."""
        if self._started:
            raise RuntimeError("MqttSource already started")
        self._started = True
        self._link.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected and subscribed (True), or ``timeout`` seconds passed (False)."""
        return self._up.wait(timeout)

    def stop(self) -> None:
        """Send the PUBACKs already queued, then DISCONNECT (the session stays on the broker
        for ``session_expiry`` seconds, with what was not acked), and join the link's thread
        (at most about 2 seconds; a reconnect backoff is interrupted at once). Idempotent."""
        with self._lock:
            already, self._stopped = self._stopped, True
        if already:
            return
        self._link.stop()
        self._up.clear()
        with self._lock:
            self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(self._filters)

    def subscribe(self, filters: Sequence[str]) -> None:
        """Add subscriptions (kept across reconnects); sent now when connected. Never blocks.
        ``ValueError`` for an invalid filter."""
        bad = [f for f in filters if not is_valid_filter(f)]
        if bad:
            raise ValueError(f"MqttSource filters: {bad[0]!r} is not a valid MQTT filter")
        with self._lock:
            new = [f for f in dict.fromkeys(filters) if f not in self._filters]
            self._filters.extend(new)
            if new and self._connected:
                self._send_subscribe_locked(new)

    def unsubscribe(self, filters: Sequence[str]) -> None:
        """Drop subscriptions (readings already received stay in the hand-off). Never blocks."""
        with self._lock:
            gone = [f for f in dict.fromkeys(filters) if f in self._filters]
            for f in gone:
                self._filters.remove(f)
            if gone and self._connected:
                mid = self._link.unsubscribe(gone)  # registered before the UNSUBACK is handled
                if mid is not None:
                    self._unsub_mids.add(mid)

    # -- the actor side (any thread, never blocks) ------------------------------------------------
    def take(self, max_items: int) -> list[Inbound]:
        """Up to ``max_items`` waiting readings, oldest first. Settle them with ``ack``."""
        with self._lock:
            n = min(max_items, len(self._buf))
            pop = self._buf.popleft
            out = [pop() for _ in range(n)]
            self._c["taken"] += n
        if n and self._link.paused:
            self._link.wake()  # it stopped reading for want of room: there is room now
        return out

    def pending(self) -> int:
        return len(self._buf)

    def ack(self, items: Iterable[Inbound]) -> int:
        """Send the PUBACKs of ``items`` (processed); returns how many were sent. Items from an
        earlier connection are not acked (the broker redelivers them; counted ``stale_acks``).
        A batch goes out as one write."""
        by_gen: dict[int, list[int]] = {}
        for i in items:
            if i.qos:
                by_gen.setdefault(i.gen, []).append(i.mid)
        sent = stale = 0
        for gen, mids in by_gen.items():
            if self._link.puback(mids, gen):
                sent += len(mids)
            else:
                stale += len(mids)
        with self._lock:
            self._c["acked"] += sent
            self._c["stale_acks"] += stale
        return sent

    def statistics(self) -> MqttSourceStatistics:
        link = self._link
        with self._lock:
            c = self._c
            return MqttSourceStatistics(
                connected=self._connected, connects=c["connects"], disconnects=c["disconnects"],
                received=c["received"], accepted=c["accepted"], taken=c["taken"],
                acked=c["acked"], stale_acks=c["stale_acks"], dead_lettered=c["dead_lettered"],
                dead_letter_failures=c["dead_letter_failures"], qos0_dropped=0,
                paused=link.pauses, superseded=c["superseded"],
                errors=c["errors"] + link.callback_errors + link.protocol_errors,
                pending=len(self._buf), peak=self._peak, capacity=self.capacity,
                rejected=dict(self._rejected), subscribed=self._up.is_set(),
                changes_pending=len(self._sub_mids) + len(self._unsub_mids))

    # -- the link's callbacks (the link's thread) -------------------------------------------------
    def _room(self) -> int:
        return self.capacity - len(self._buf)

    def _on_connect_failed(self, reason: str) -> None:
        with self._lock:
            self._c["connect_failures"] += 1
        if reason.startswith("CONNACK refused"):
            self._log.warning("mqtt connect refused", reason=reason)

    def _on_connect(self, session_present: bool) -> None:
        gen = self._link.epoch
        with self._lock:
            self._connected = True
            self._c["connects"] += 1
            if session_present:  # the broker redelivers what the old connection had
                old = [m for m in self._buf if m.gen != gen and m.qos > 0]
                if old:
                    self._buf = collections.deque(m for m in self._buf
                                                  if m.gen == gen or m.qos == 0)
                    self._c["superseded"] += len(old)
            if self._filters:
                self._send_subscribe_locked(list(self._filters))  # _up is set by the SUBACK
            else:
                self._up.set()  # nothing to subscribe to (yet)
        self._log.info("mqtt connected", session_present=session_present)

    def _send_subscribe_locked(self, filters: list[str]) -> None:
        mid = self._link.subscribe(filters)
        if mid is not None:  # (None: the connection just dropped; on_connect subscribes again)
            self._sub_mids[mid] = filters

    def _on_subscribe(self, mid: int, reasons: list[int]) -> None:
        with self._lock:
            filters = self._sub_mids.pop(mid, list(self._filters))
        failed = [(f, f"0x{r:02x}") for f, r in zip(filters, reasons) if r >= 0x80]
        if failed:
            with self._lock:
                self._c["subscribe_failures"] += 1
            self._log.error("mqtt subscription refused", refused=failed)
            return
        self._up.set()

    def _on_unsubscribe(self, mid: int) -> None:
        with self._lock:
            self._unsub_mids.discard(mid)

    def _on_disconnect(self, reason: str) -> None:
        self._up.clear()
        with self._lock:
            self._sub_mids.clear()  # unanswered (un)subscriptions: the reconnect sends the
            self._unsub_mids.clear()  # current filters again
            self._connected = False
            self._c["disconnects"] += 1

    def _on_publishes(self, batch: list[Publish], gen: int) -> None:
        """Validate a batch; the good readings go into the hand-off under one lock (the link
        hands over no more than ``_room()``), the bad ones to the dead letters."""
        good: list[Inbound] = []
        limit = self.max_payload_bytes
        tenant = self.tenant
        topics = self._topics
        for topic_bytes, payload, qos, mid, dup in batch:
            where = topics.get(topic_bytes)  # (tenant, device) of a topic seen valid before
            if where is None:
                try:
                    topic = topic_bytes.decode("utf-8")
                except UnicodeDecodeError:
                    self._reject(topic_bytes, payload, qos, mid, gen, repr(topic_bytes)[:200],
                                 BadReading("bad_topic", "topic is not UTF-8"))
                    continue
                try:
                    where = parse_topic(topic)
                    if tenant is not None and where[0] != tenant:
                        raise BadReading("bad_topic", f"tenant {where[0]!r} is not {tenant!r}")
                except BadReading as exc:
                    self._reject(topic_bytes, payload, qos, mid, gen, topic, exc)
                    continue
                if len(topics) >= TOPIC_CACHE:
                    topics.clear()  # bounded, whatever a flood of distinct topics does
                topics[topic_bytes] = where
            try:
                ts, temp, hum = parse_payload(payload, limit)
            except BadReading as exc:
                self._reject(topic_bytes, payload, qos, mid, gen, topic_bytes.decode(), exc)
                continue
            good.append(Inbound(Reading(where[0], where[1], ts, temp, hum), mid, qos, gen, dup))
        with self._lock:
            self._c["received"] += len(good)
            if not good:
                return
            was_empty = not self._buf
            self._buf.extend(good)
            self._c["accepted"] += len(good)
            if len(self._buf) > self._peak:
                self._peak = len(self._buf)
        if was_empty and self._on_ready is not None:
            self._on_ready()

    def _reject(self, topic_bytes: bytes, payload: bytes, qos: int, mid: int, gen: int,
                topic: str, exc: BadReading) -> None:
        bad = BadMessage(topic, payload[:KEEP_BAD_BYTES], len(payload), exc.kind, str(exc), qos)
        with self._lock:
            self._c["received"] += 1
            self._rejected[exc.kind] += 1
        try:
            if self._dead is None:
                pass
            elif callable(self._dead):
                self._dead(bad)
            else:
                self._dead.put({"topic": bad.topic, "reason": bad.reason, "kind": bad.kind,
                                "payload": bad.payload, "size": bad.size})
        except Exception as error:  # a failing sink must not stop the loop: redelivered later
            with self._lock:
                self._c["dead_letter_failures"] += 1
            self._log.error("mqtt dead letter failed; message left unacked", error=repr(error),
                            reason=bad.reason)
            return
        acked = qos > 0 and self._link.puback([mid], gen)
        with self._lock:
            self._c["dead_lettered"] += 1
            if qos > 0:
                self._c["acked" if acked else "stale_acks"] += 1
        self._warn_rejected(topic, bad.reason)

    def _warn_rejected(self, topic: str, reason: str) -> None:
        # At most one log line a second however many bad messages arrive (the paho thread only).
        self._warned_count += 1
        now = time.monotonic()
        if now - self._warned_at >= 1.0:
            self._log.warning("mqtt messages dead-lettered", count=self._warned_count,
                              last_topic=topic[:200], last_reason=reason[:200])
            self._warned_at, self._warned_count = now, 0

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return (f"<MqttSource {self.options.host}:{self.options.port} {state} "
                f"pending={len(self._buf)}/{self.capacity}>")
