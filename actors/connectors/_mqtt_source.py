"""``MqttSource``: device readings from a real MQTT broker, with flow control and dead letters.

The I/O boundary. paho's network loop runs in its own thread (``loop_start``): it reads the
socket, validates each message (``_readings``), dead-letters bad ones and appends good ones to a
bounded hand-off. Actors take from the hand-off with ``take`` (never blocks) and settle what
they took with ``ack`` once it is safe (on disk, in the stream) - that is what sends the PUBACK.
Nothing else runs on the paho thread; the scheduler's workers never touch the socket.

Backpressure: manual acks under MQTT 5 Receive Maximum, and a blocking hand-off behind them.
The client subscribes with QoS 1, ``manual_ack=True`` and Receive Maximum = ``capacity``: the
broker may have at most ``capacity`` unacknowledged QoS 1 messages out to us, and the actor side
acks only what it has taken and secured, so while it does not ack the broker stops sending and
keeps the rest in the session (Mosquitto: ``max_queued_messages``, 1000 by default, beyond which
*it* drops - the broker is the buffer, with its own bound). That is the whole story with a
correct broker. Mosquitto 2.0.11 (Debian 12, our CI) is not one: every PUBACK opens a whole new
window (measured: capacity 5, ack 1 -> 5 more arrive), so Receive Maximum only bounds the first
window. The hand-off therefore enforces its bound itself: when it holds ``capacity`` readings
the paho thread waits (in ``on_message``) until the actor side takes some - it stops reading the
socket, TCP flow control stops the broker (counted ``paused``). Refusing the message instead
would strand it (unacked, not redelivered before a reconnect); acking it with an error code
would lose it. The price of waiting: while the loop waits it sends no keepalive, so a consumer
stalled for more than 1.5 x keepalive loses the connection and the broker redelivers everything
unacked after the reconnect (at least once, memory still bounded). Pausing the network loop as
the *only* mechanism was rejected for that reason; with a correct broker the wait never happens.
QoS 0 messages are not flow controlled by MQTT: when the hand-off is full they are dropped,
counted (``qos0_dropped``).

At least once: a message is acked only after the consumer says so. Unacked messages are
redelivered by the broker when the session reconnects. Packet ids belong to the session, so an
ack is sent only on the connection that received the message: a disconnect voids older acks
(counted ``stale_acks``) - a late ack can never settle someone else's message. When the broker
kept the session (``session present``), waiting messages of the old connection are discarded
(``superseded``): the broker sends them again.

Bad input never stops the loop: a topic or payload that fails validation is dead-lettered with
its reason (``BadMessage`` to a callback, or a record ``{"topic", "reason", "kind", "payload",
"size"}`` put into a ``DurableQueue``; ``payload`` is truncated to 1 KiB) and then acked. Payloads
larger than ``max_packet_bytes`` never reach us: the broker discards them (MQTT 5 Maximum Packet
Size; visible in the broker's log, not in our counters), so no hostile message is buffered
whole. If dead-lettering fails, the message is not acked (``dead_letter_failures``).
"""

from __future__ import annotations

import collections
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from .._checks import check_number
from .._log import get_logger
from ..topics import is_valid_filter
from ._client import MqttOptions, PahoConnection, build_client
from ._readings import DEFAULT_MAX_BYTES, BadReading, Reading, parse_reading, readings_filter

__all__ = ["BadMessage", "Inbound", "MqttSource", "MqttSourceStatistics"]

KEEP_BAD_BYTES = 1024


def _coalesced_pubacks() -> Callable[[Any, list[int]], None] | None:
    """PUBACKs for many message ids as one buffer in paho's outgoing queue: the bytes on the
    wire are exactly those of one ``Client.ack(mid, 1)`` per id (fixed header 0x40, remaining
    length 2, the id; MQTT 5 allows omitting the reason code when it is success). Uses paho's
    ``_packet_queue`` (paho-mqtt 2.x); None if that is missing - then ``ack`` sends one by one."""
    try:
        from paho.mqtt.client import PUBACK, Client
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    queue = getattr(Client, "_packet_queue", None)
    if queue is None:  # pragma: no cover - another paho
        return None
    one = struct.Struct("!BBH")

    def send(client: Any, mids: list[int]) -> None:
        packet = b"".join([one.pack(PUBACK, 2, mid) for mid in mids])
        queue(client, PUBACK, packet, 0, 1)
    return send


_PUBACKS = _coalesced_pubacks()


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
    paused: int           # times the paho thread waited for room in the hand-off
    superseded: int
    errors: int
    pending: int
    peak: int             # the most readings ever waiting in the hand-off
    capacity: int
    rejected: dict[str, int] = field(default_factory=dict)  # kind -> count
    subscribed: bool = False   # connected and the broker granted the subscriptions
    changes_pending: int = 0   # SUBSCRIBE/UNSUBSCRIBE sent, not yet answered by the broker


class MqttSource(PahoConnection):
    """Subscribe to ``filters`` (default: every tenant's readings) at QoS 1 and hand validated
    readings over; see the module docstring. ``tenant`` restricts what is accepted (defence in
    depth; also narrows the default filter). ``on_ready()`` is called on the paho thread when
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
        self._client, self._props = build_client(options, self.client_id, manual_ack=True,
                                                 receive_maximum=capacity,
                                                 max_packet_bytes=max_packet_bytes)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._log = get_logger(connector="mqtt-source", client_id=self.client_id)
        self._warned_at = 0.0
        self._warned_count = 0
        # _lock guards every field below. It is held while an ack is queued in paho, so that
        # on_disconnect (which takes it) cannot slip between the generation check and the send.
        # Never held while calling on_ready or the dead-letter sink.
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when take() makes room
        self._buf: collections.deque[Inbound] = collections.deque()
        self._gen = 0
        self._peak = 0
        self._connected = False
        self._c: collections.Counter[str] = collections.Counter()
        self._rejected: collections.Counter[str] = collections.Counter()
        self._up = threading.Event()
        self._started = self._stopped = False

    # -- lifecycle (any thread; start and wait_connected are PahoConnection's) --------------------
    def stop(self) -> None:
        """Disconnect (the session stays on the broker for ``session_expiry`` seconds, with
        what was not acked) and join the paho thread: blocks up to about a second while a
        reconnect backoff is sleeping. Idempotent."""
        with self._lock:
            already, self._stopped = self._stopped, True
            self._room.notify_all()  # a paho thread waiting for room gives up
        if not self._started or already:
            return
        self._close()

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
            connected = self._connected
        if new and connected:
            self._send_subscribe(self._client, new)

    def unsubscribe(self, filters: Sequence[str]) -> None:
        """Drop subscriptions (readings already received stay in the hand-off). Never blocks."""
        with self._lock:
            gone = [f for f in dict.fromkeys(filters) if f in self._filters]
            for f in gone:
                self._filters.remove(f)
            connected = self._connected
        if gone and connected:
            with self._lock:  # registered before the UNSUBACK can be handled
                rc, mid = self._client.unsubscribe(gone)
                if mid is not None:
                    self._unsub_mids.add(mid)

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                        props: Any) -> None:
        with self._lock:
            self._unsub_mids.discard(mid)

    # -- the actor side (any thread, never blocks) ------------------------------------------------
    def take(self, max_items: int) -> list[Inbound]:
        """Up to ``max_items`` waiting readings, oldest first. Settle them with ``ack``."""
        with self._lock:
            n = min(max_items, len(self._buf))
            out = [self._buf.popleft() for _ in range(n)]
            self._c["taken"] += n
            if n:
                self._room.notify()
        return out

    def pending(self) -> int:
        return len(self._buf)

    def ack(self, items: Iterable[Inbound]) -> int:
        """Send the PUBACKs of ``items`` (processed); returns how many were sent. Items from an
        earlier connection are not acked (the broker redelivers them; counted ``stale_acks``).
        A batch goes out as one write: the PUBACK packets are queued in paho as one buffer
        (one wake-up of its network thread and one send instead of one per message)."""
        items = list(items)
        with self._lock:
            mids = [i.mid for i in items if i.qos == 1 and i.gen == self._gen]
            stale = sum(1 for i in items if i.qos > 0 and i.gen != self._gen)
            if not self._connected:
                stale, mids = stale + len(mids), []
            if len(mids) > 1 and _PUBACKS is not None:
                _PUBACKS(self._client, mids)
            else:
                for mid in mids:
                    self._client.ack(mid, 1)
            others = [i for i in items if i.qos == 2 and i.gen == self._gen and self._connected]
            for item in others:  # (QoS 2 is never subscribed to; kept for completeness)
                self._client.ack(item.mid, 2)
            sent = len(mids) + len(others)
            self._c["acked"] += sent
            self._c["stale_acks"] += stale
        return sent

    def _ack_locked(self, mid: int, qos: int, gen: int) -> bool:
        if self._connected and gen == self._gen:
            self._client.ack(mid, qos)
            return True
        return False

    def statistics(self) -> MqttSourceStatistics:
        with self._lock:
            c = self._c
            return MqttSourceStatistics(
                connected=self._connected, connects=c["connects"], disconnects=c["disconnects"],
                received=c["received"], accepted=c["accepted"], taken=c["taken"],
                acked=c["acked"], stale_acks=c["stale_acks"], dead_lettered=c["dead_lettered"],
                dead_letter_failures=c["dead_letter_failures"], qos0_dropped=c["qos0_dropped"],
                paused=c["paused"], superseded=c["superseded"], errors=c["errors"],
                pending=len(self._buf), peak=self._peak, capacity=self.capacity,
                rejected=dict(self._rejected), subscribed=self._up.is_set(),
                changes_pending=len(self._sub_mids) + len(self._unsub_mids))

    # -- paho callbacks (the paho thread) ---------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._log.warning("mqtt connect refused", reason=str(reason))
            with self._lock:
                self._c["connect_failures"] += 1
            return
        with self._lock:
            self._connected = True
            self._c["connects"] += 1
            if flags.session_present:  # the broker redelivers what the old connection had
                old = [m for m in self._buf if m.gen != self._gen and m.qos > 0]
                if old:
                    self._buf = collections.deque(m for m in self._buf
                                                  if m.gen == self._gen or m.qos == 0)
                    self._c["superseded"] += len(old)
            filters = list(self._filters)
        if filters:
            self._send_subscribe(client, filters)  # _up is set by the SUBACK
        else:
            self._up.set()  # nothing to subscribe to (yet)
        self._log.info("mqtt connected", session_present=bool(flags.session_present))

    def _send_subscribe(self, client: Any, filters: list[str]) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions
        opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        with self._lock:  # the SUBACK may come before subscribe() returns: register first
            rc, mid = client.subscribe([(f, opts) for f in filters])
            if mid is not None:
                self._sub_mids[mid] = filters

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      props: Any) -> None:
        with self._lock:
            filters = self._sub_mids.pop(mid, list(self._filters))
        failed = [(f, str(r)) for f, r in zip(filters, reasons) if r.is_failure]
        if failed:
            with self._lock:
                self._c["subscribe_failures"] += 1
            self._log.error("mqtt subscription refused", refused=failed)
            return
        self._up.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        self._up.clear()
        with self._lock:
            self._sub_mids.clear()  # unanswered (un)subscriptions: the reconnect sends the
            self._unsub_mids.clear()  # current filters again
            self._gen += 1  # acks of what the old connection delivered are void from now on
            self._connected = False
            self._c["disconnects"] += 1
        if not self._stopped:
            self._log.warning("mqtt disconnected; reconnecting with backoff", reason=str(reason))

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # the thread boundary: paho's loop must never die
            with self._lock:
                self._c["errors"] += 1
            self._log.error("mqtt message handling failed", error=repr(exc), exc_info=exc)

    def _handle(self, msg: Any) -> None:
        qos, payload = msg.qos, msg.payload
        try:
            topic = msg.topic
            reading = parse_reading(topic, payload, self.max_payload_bytes)
            if self.tenant is not None and reading.tenant != self.tenant:
                raise BadReading("bad_topic", f"tenant {reading.tenant!r} is not {self.tenant!r}")
        except UnicodeDecodeError:
            raw = repr(getattr(msg, "_topic", b""))[:200]
            self._reject(msg, raw, BadReading("bad_topic", "topic is not UTF-8"))
            return
        except BadReading as exc:
            self._reject(msg, topic, exc)
            return
        with self._lock:
            self._c["received"] += 1
            if len(self._buf) >= self.capacity:
                if qos == 0:
                    self._c["qos0_dropped"] += 1
                    return
                self._c["paused"] += 1  # the broker sent beyond Receive Maximum: stop reading
                while len(self._buf) >= self.capacity and not self._stopped:
                    self._room.wait(0.25)
                if self._stopped:
                    return  # not acked: the broker redelivers it to the next session
            was_empty = not self._buf
            self._buf.append(Inbound(reading, msg.mid, qos, self._gen, bool(msg.dup)))
            self._c["accepted"] += 1
            if len(self._buf) > self._peak:
                self._peak = len(self._buf)
        if was_empty and self._on_ready is not None:
            self._on_ready()

    def _reject(self, msg: Any, topic: str, exc: BadReading) -> None:
        payload = bytes(msg.payload)
        bad = BadMessage(topic, payload[:KEEP_BAD_BYTES], len(payload), exc.kind, str(exc), msg.qos)
        with self._lock:
            self._c["received"] += 1
            self._rejected[exc.kind] += 1
            gen = self._gen
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
        with self._lock:
            self._c["dead_lettered"] += 1
            if msg.qos > 0:
                self._c["acked" if self._ack_locked(msg.mid, msg.qos, gen) else "stale_acks"] += 1
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
