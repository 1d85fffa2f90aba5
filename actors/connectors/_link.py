"""``MqttLink``: the MQTT 5 client under ``MqttSource``, one thread per link, written for a
subscriber that takes tens of thousands of QoS 1 messages a second.

Why not paho (which ``MqttSink`` still uses): paho reads every packet with several ``recv``
calls, builds a ``MQTTMessage`` and a ``Properties`` object for each, and routes each through its
topic matcher; on a 2-core machine that was more than half of the GIL time of the whole ingest
path (measured with ``py-spy --gil``). The link reads up to 256 KiB per ``recv``, splits every
complete packet out of that buffer and hands the PUBLISHes to ``on_publishes`` as one list;
PUBACKs for a batch leave as one write.

The thread owns the socket: it connects (TCP, then TLS when ``options.tls``: the broker's
certificate and host name are verified), sends CONNECT and waits for CONNACK, then loops on
``select`` over the socket and a wake-up pipe. Other threads never touch the socket: ``puback``,
``subscribe`` and ``unsubscribe`` append bytes to an outgoing buffer and wake the thread.

Flow control: before it splits PUBLISHes out of its buffer the thread asks ``room()`` (how many
the consumer can take); with no room it stops reading the socket - TCP stops the broker - while
it still sends PINGREQs and the consumer's PUBACKs (``wake()`` resumes it). So a consumer that
falls behind never costs the connection, and nothing is dropped, QoS 0 included. What is buffered
is bounded: one ``recv`` (256 KiB) plus one packet of at most ``max_packet_bytes`` (announced as
Maximum Packet Size; a larger packet is a protocol error, 0x95).

Sessions: each connection has an ``epoch``; PUBLISHes carry the epoch they arrived on, and
``puback(mids, epoch)`` sends nothing unless that connection is still up - a packet id belongs to
its connection, so a late ack can never settle another connection's message. Reconnects back
off exponentially from ``reconnect_min`` to ``reconnect_max`` with jitter (each delay drawn from
[d/2, d]), back to ``reconnect_min`` after a CONNACK; ``stop()`` interrupts a backoff at once.

Protocol faults from the server (a malformed packet, QoS 2 on a QoS 1 subscription, a packet
larger than announced, AUTH) end the connection with a DISCONNECT naming the reason; the link
then reconnects. Keepalive: a PINGREQ after ``keepalive / 2`` seconds without sending (the
server's Server Keep Alive wins when it sends one); with a PINGREQ unanswered and nothing
received for 1.5 x keepalive while reading, the connection is declared dead.

Callbacks run on the link's thread, never with the link's lock held: ``on_connect(session_present)``,
``on_connect_failed(reason)``, ``on_disconnect(reason)``, ``on_publishes(batch, epoch)`` (a list
of ``(topic bytes, payload, qos, packet id, dup)``), ``on_suback(mid, reason codes)``,
``on_unsuback(mid)``. An exception in a callback is logged and counted; the loop goes on.
"""

from __future__ import annotations

import errno
import random
import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, Sequence

from .._log import get_logger
from . import _wire
from ._client import MqttOptions, tls_context

__all__ = ["MqttLink", "Publish"]

Publish = tuple[bytes, bytes, int, int, bool]  # topic, payload, qos, packet id, dup
RECV_BYTES = 256 * 1024
CONNECT_TIMEOUT = 10.0


def _ignore(*_args: Any) -> None:
    return None


class _Lost(Exception):
    """The connection ended (reason in the message)."""


class MqttLink:
    """One MQTT 5 connection kept up by one thread; see the module docstring."""

    def __init__(self, options: MqttOptions, client_id: str, *, receive_maximum: int,
                 max_packet_bytes: int, room: Callable[[], int],
                 on_publishes: Callable[[list[Publish], int], None],
                 on_connect: Callable[[bool], None] = _ignore,
                 on_connect_failed: Callable[[str], None] = _ignore,
                 on_disconnect: Callable[[str], None] = _ignore,
                 on_suback: Callable[[int, list[int]], None] = _ignore,
                 on_unsuback: Callable[[int], None] = _ignore) -> None:
        self.options = options
        self.client_id = client_id
        self.receive_maximum = receive_maximum
        self.max_packet_bytes = max_packet_bytes
        self._room = room
        self._on_publishes = on_publishes
        self._on_connect = on_connect
        self._on_connect_failed = on_connect_failed
        self._on_disconnect = on_disconnect
        self._on_suback = on_suback
        self._on_unsuback = on_unsuback
        self._tls = tls_context(options) if options.tls else None
        self._log = get_logger(connector="mqtt-link", client_id=client_id)
        self._lock = threading.Lock()   # guards _out, _up, _epoch, _next_mid, _woken
        self._out = bytearray()
        self._up = False
        self._epoch = 0
        self._next_mid = 0
        self._woken = False
        self._stopping = threading.Event()
        self._wake_r: Any = None  # a socket pair, made by start()
        self._wake_w: Any = None
        self._thread: threading.Thread | None = None
        self.paused = False      # read by the consumer: wake() me when you make room
        self.pauses = 0          # times reading stopped for want of room
        self.callback_errors = 0
        self.protocol_errors = 0
        self.connect_failures = 0

    # -- any thread -----------------------------------------------------------------------------
    def start(self) -> "MqttLink":
        if self._thread is not None:
            raise RuntimeError("MqttLink already started")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"streamvisor-mqtt:{self.client_id[:40]}")
        self._thread.start()
        return self

    @property
    def epoch(self) -> int:
        return self._epoch

    def puback(self, mids: Sequence[int], epoch: int) -> bool:
        """Queue PUBACKs for ``mids`` received on connection ``epoch``; False (nothing sent) if
        that connection is gone."""
        with self._lock:
            if not self._up or epoch != self._epoch:
                return False
            if mids:
                self._out += _wire.pubacks(mids)
                self._wake_locked()
            return True

    def subscribe(self, filters: Sequence[str]) -> int | None:
        """Send SUBSCRIBE (QoS 1, retained messages only for a new subscription); its packet id,
        or None when not connected (the caller subscribes again in ``on_connect``)."""
        return self._control(lambda mid: _wire.subscribe(mid, filters))

    def unsubscribe(self, filters: Sequence[str]) -> int | None:
        return self._control(lambda mid: _wire.unsubscribe(mid, filters))

    def wake(self) -> None:
        """Make the thread look at its buffers again (after the consumer made room)."""
        with self._lock:
            self._wake_locked()

    def stop(self, timeout: float = 2.0) -> None:
        """Write what is queued (PUBACKs first), send DISCONNECT (session expiry 0 for a random
        client id, whose session nobody could resume), close, and join the thread (up to
        ``timeout`` seconds). Idempotent."""
        self._stopping.set()
        self.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- internals ------------------------------------------------------------------------------
    def _control(self, build: Callable[[int], bytes]) -> int | None:
        with self._lock:
            if not self._up:
                return None
            self._next_mid = self._next_mid % 65535 + 1
            mid = self._next_mid
            self._out += build(mid)
            self._wake_locked()
            return mid

    def _wake_locked(self) -> None:
        if not self._woken and self._wake_w is not None:
            self._woken = True
            try:
                self._wake_w.send(b"\0")
            except (BlockingIOError, OSError):
                pass  # the pipe is full (a wake-up is pending anyway) or closed (stopping)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # the thread boundary: the link never dies of a callback
            self.callback_errors += 1
            self._log.error("mqtt link callback failed", callback=getattr(fn, "__name__", "?"),
                            error=repr(exc), exc_info=exc)

    def _main(self) -> None:
        delay = self.options.reconnect_min
        first_failure = True
        while not self._stopping.is_set():
            sock = None
            try:
                sock, connack, rest = self._open()
            except Exception as exc:  # the thread boundary: refused, unreachable, TLS, protocol
                self.connect_failures += 1
                if sock is not None:
                    sock.close()
                reason = str(exc) or type(exc).__name__
                (self._log.warning if first_failure else self._log.debug)(
                    "mqtt connect failed; retrying with backoff", error=reason[:200],
                    retry_in=round(delay, 3))
                first_failure = False
                self._call(self._on_connect_failed, reason)
            else:
                delay, first_failure = self.options.reconnect_min, True
                reason = self._session(sock, connack, rest)
                if self._stopping.is_set():
                    break
                self._log.warning("mqtt disconnected; reconnecting with backoff", reason=reason)
            if self._stopping.wait(delay * random.uniform(0.5, 1.0)):
                break
            delay = min(delay * 2, self.options.reconnect_max)
        for s in (self._wake_r, self._wake_w):
            s.close()

    def _open(self) -> tuple[Any, _wire.Connack, bytearray]:
        """Connect, CONNECT, CONNACK (blocking, bounded by CONNECT_TIMEOUT) -> the socket, the
        CONNACK and the bytes read after it (the session's redeliveries may follow at once).
        Raises on failure."""
        o = self.options
        raw = socket.create_connection((o.host, o.port), timeout=CONNECT_TIMEOUT)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._tls.wrap_socket(raw, server_hostname=o.host) if self._tls else raw
        except BaseException:
            raw.close()
            raise
        try:
            sock.sendall(_wire.connect(
                self.client_id, keepalive=int(o.keepalive), clean_start=o.clean_start,
                session_expiry=int(o.session_expiry), receive_maximum=self.receive_maximum,
                maximum_packet_size=self.max_packet_bytes, username=o.username,
                password=o.password))
            first, body, rest = self._read_one(sock, time.monotonic() + CONNECT_TIMEOUT)
            if first >> 4 != _wire.CONNACK:
                raise _wire.ProtocolError(f"expected CONNACK, got packet type {first >> 4}",
                                          0x82)
            connack = _wire.parse_connack(body)
            if connack.reason >= 0x80:
                name = _wire.REASONS.get(connack.reason, "unknown")
                text = connack.properties.get(_wire.REASON_STRING)
                raise _Lost(f"CONNACK refused: 0x{connack.reason:02x} {name}"
                            + (f" ({text})" if text else ""))
            return sock, connack, rest
        except BaseException:
            sock.close()
            raise

    def _read_one(self, sock: Any, deadline: float) -> tuple[int, bytes, bytearray]:
        """One whole packet and what was read after it, blocking until ``deadline`` (only
        before CONNACK)."""
        buf = bytearray()
        while True:
            if len(buf) >= 2:
                got = _wire.read_varint(buf, 1, len(buf))
                if got is not None:
                    length, start = got
                    if start + length > self.max_packet_bytes:
                        raise _wire.ProtocolError("packet larger than our Maximum Packet Size",
                                                  0x95)
                    if len(buf) >= start + length:
                        return buf[0], bytes(buf[start:start + length]), buf[start + length:]
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Lost("no CONNACK in time")
            sock.settimeout(left)
            data = sock.recv(4096)
            if not data:
                raise _Lost("the broker closed the connection before CONNACK")
            buf += data

    def _session(self, sock: Any, connack: _wire.Connack, rx: bytearray) -> str:
        """Run one connection until it ends; returns why."""
        sock.setblocking(False)
        with self._lock:
            self._epoch += 1
            self._out.clear()
            self._up = True
            epoch = self._epoch
        self._call(self._on_connect, connack.session_present)
        try:
            reason = self._loop(sock, connack, epoch, rx)
        except _wire.ProtocolError as exc:
            self.protocol_errors += 1
            reason = f"protocol error from the broker: {exc}"
            self._log.error("mqtt protocol error; disconnecting", error=str(exc),
                            reason_code=f"0x{exc.code:02x}")
            try:
                sock.setblocking(True)
                sock.settimeout(1.0)
                sock.sendall(_wire.disconnect(exc.code))
            except OSError:
                pass
        except _Lost as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"connection lost: {exc}"
        finally:
            with self._lock:
                self._up = False
                self._out.clear()  # PUBACKs for this connection's packet ids die with it
            self.paused = False
            try:
                sock.close()
            except OSError:
                pass
        if not self._stopping.is_set():
            self._call(self._on_disconnect, reason)
        return reason

    def _loop(self, sock: Any, connack: _wire.Connack, epoch: int, rx: bytearray) -> str:
        keepalive = float(connack.properties.get(_wire.SERVER_KEEP_ALIVE, self.options.keepalive))
        tx = memoryview(b"")
        last_tx = last_rx = time.monotonic()
        ping_sent = 0.0
        tls = isinstance(sock, ssl.SSLSocket)
        readable: list[Any]
        writable: list[Any]
        while True:
            if self._stopping.is_set():
                self._goodbye(sock, tx)
                return "stopped"
            if not tx:
                with self._lock:
                    if self._out:
                        tx = memoryview(bytes(self._out))
                        self._out.clear()
            now = time.monotonic()
            if not tx and now - last_tx >= keepalive / 2:
                tx = memoryview(_wire.PINGREQ_PACKET)
                ping_sent = ping_sent or now
            if rx:  # hand over what is buffered before reading more
                rx = self._dispatch(rx, epoch)
            reading = not self.paused
            if ping_sent and reading and now - max(ping_sent, last_rx) > keepalive * 1.5:
                return "keepalive timeout: no answer from the broker"
            if reading and tls and sock.pending():
                readable, writable = [sock], []  # (data decrypted, not yet read)
            else:
                wait = max(0.0, min(keepalive / 2 - (now - last_tx), 1.0))
                readable, writable, _ = select.select(
                    [sock, self._wake_r] if reading else [self._wake_r], [sock] if tx else [],
                    [], wait)
            if self._wake_r in readable:
                self._drain_wake()
            if tx and sock in writable:
                try:
                    n = sock.send(tx)
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    n = 0
                if n:
                    tx = tx[n:]
                    last_tx = time.monotonic()
            if sock in readable:
                try:
                    data = sock.recv(RECV_BYTES)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                if not data:
                    return "the broker closed the connection"
                last_rx = time.monotonic()
                ping_sent = 0.0  # anything received proves the connection alive
                rx += data

    def _drain_wake(self) -> None:
        with self._lock:
            self._woken = False
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass

    def _dispatch(self, rx: bytearray, epoch: int) -> bytearray:
        """Split the complete packets out of ``rx``; PUBLISHes only as far as ``room()``
        allows. Returns what is left (an incomplete packet or PUBLISHes waiting for room)."""
        end_all = len(rx)
        pos = 0
        batch: list[Publish] = []
        room = self._room()
        limit = self.max_packet_bytes
        split = _wire.split_publish
        self.paused = False
        while end_all - pos >= 2:
            first = rx[pos]
            got = _wire.read_varint(rx, pos + 1, end_all)
            if got is None:
                break
            length, start = got
            end = start + length
            if end - pos > limit:
                raise _wire.ProtocolError(f"a {end - pos}-byte packet is larger than our Maximum "
                                          f"Packet Size {limit}", 0x95)
            if end > end_all:
                break
            kind = first >> 4
            if kind == _wire.PUBLISH:
                if len(batch) >= room:
                    if batch:  # hand these over, then look at the room again
                        self._call(self._on_publishes, batch, epoch)
                        batch = []
                        room = self._room()
                    if room <= 0:
                        self.paused = True
                        room = self._room()  # the consumer may have made room just now
                        if room <= 0:
                            self.pauses += 1
                            break
                        self.paused = False
                batch.append(split(first, rx, start, end))
            else:
                if batch:  # keep the order: what came before the control packet goes first
                    self._call(self._on_publishes, batch, epoch)
                    batch = []
                    room = self._room()
                self._control_packet(kind, first & 0x0F, bytes(rx[start:end]))
            pos = end
        if batch:
            self._call(self._on_publishes, batch, epoch)
        del rx[:pos]
        return rx

    def _control_packet(self, kind: int, flags: int, body: bytes) -> None:
        if kind == _wire.SUBACK:
            mid, codes = _wire.parse_acks(body, "SUBACK")
            self._call(self._on_suback, mid, codes)
        elif kind == _wire.UNSUBACK:
            mid, _codes = _wire.parse_acks(body, "UNSUBACK")
            self._call(self._on_unsuback, mid)
        elif kind == _wire.PINGRESP:
            pass
        elif kind == _wire.DISCONNECT:
            code, text = _wire.parse_disconnect(body)
            raise _Lost(f"the broker disconnected: 0x{code:02x} "
                        f"{_wire.REASONS.get(code, 'unknown')}" + (f" ({text})" if text else ""))
        elif kind == _wire.PUBACK:
            raise _wire.ProtocolError("PUBACK for a PUBLISH we never sent", 0x82)
        else:
            raise _wire.ProtocolError(f"packet type {kind} is not one a server sends to a "
                                      "subscriber", 0x82)

    def _goodbye(self, sock: Any, tx: memoryview) -> None:
        """On stop: write what is queued, then DISCONNECT, blocking for at most 2 seconds."""
        with self._lock:
            rest = bytes(tx) + bytes(self._out)
            self._out.clear()
        expiry = 0 if self.options.client_id is None else None
        try:
            sock.setblocking(True)
            sock.settimeout(2.0)
            sock.sendall(rest + _wire.disconnect(0, session_expiry=expiry))
            if not isinstance(sock, ssl.SSLSocket):
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, None):
                self._log.debug("mqtt disconnect not sent", error=str(exc))

    def __repr__(self) -> str:
        o = self.options
        return (f"<MqttLink {o.host}:{o.port} {'up' if self._up else 'down'} "
                f"epoch={self._epoch}>")

