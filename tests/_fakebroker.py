"""A scripted MQTT 5 server on a free loopback port, for the faults a real broker will not
produce: malformed packets, QoS 2 on a QoS 1 subscription, oversized packets, silence after a
PINGREQ, redeliveries in the same segment as the CONNACK.

    with FakeBroker(on_connect=lambda conn: conn.send(CONNACK_OK + publish(...))) as fb:
        link = MqttLink(MqttOptions(port=fb.port), ...)
        conn = fb.wait_connection(0)        # the first accepted connection
        conn.wait_packet(lambda p: p.kind == wire.PUBACK)

Each accepted connection is read by its own thread, which splits what the client sends into
packets (``conn.packets``: (type, flags, body)). Everything stops with the context.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Callable, NamedTuple

from actors.connectors import _wire as wire
from actors.testing import wait_until

__all__ = ["FakeBroker", "Packet", "connack", "publish", "suback_for"]


class Packet(NamedTuple):
    kind: int
    flags: int
    body: bytes


def connack(session_present: bool = False, reason: int = 0, props: bytes = b"") -> bytes:
    body = bytes((1 if session_present else 0, reason)) + wire.varint(len(props)) + props
    return bytes((wire.CONNACK << 4,)) + wire.varint(len(body)) + body


def server_keep_alive(seconds: int) -> bytes:
    return bytes((wire.SERVER_KEEP_ALIVE,)) + struct.pack("!H", seconds)


def publish(topic: str, payload: bytes, *, qos: int = 1, mid: int = 1, dup: bool = False,
            props: bytes = b"") -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"")
    body += wire.varint(len(props)) + props + payload
    first = wire.PUBLISH << 4 | qos << 1 | (0x08 if dup else 0)
    return bytes((first,)) + wire.varint(len(body)) + body


def suback_for(packet: Packet, code: int = 1) -> bytes:
    """The SUBACK granting every filter of a SUBSCRIBE ``packet``."""
    mid = packet.body[:2]
    pos, n = 3, 0
    while pos < len(packet.body):
        length = struct.unpack_from("!H", packet.body, pos)[0]
        pos += 2 + length + 1
        n += 1
    body = mid + b"\x00" + bytes([code]) * n
    return bytes((wire.SUBACK << 4,)) + wire.varint(len(body)) + body


class Connection:
    def __init__(self, sock: socket.socket, broker: "FakeBroker") -> None:
        self.sock = sock
        self.packets: list[Packet] = []
        self.closed = threading.Event()
        self._broker = broker
        self._thread = threading.Thread(target=self._read, daemon=True, name="fake-broker-conn")
        self._thread.start()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def of(self, kind: int) -> list[Packet]:
        return [p for p in list(self.packets) if p.kind == kind]

    def wait_packet(self, kind: int, count: int = 1, timeout: float = 5.0) -> list[Packet]:
        wait_until(lambda: len(self.of(kind)) >= count, timeout,
                   f"{count} packet(s) of type {kind} (got {[p.kind for p in self.packets]})")
        return self.of(kind)

    def _read(self) -> None:
        buf = bytearray()
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 2:
                    got = wire.read_varint(buf, 1, len(buf))
                    if got is None:
                        break
                    length, start = got
                    if len(buf) < start + length:
                        break
                    packet = Packet(buf[0] >> 4, buf[0] & 0x0F, bytes(buf[start:start + length]))
                    del buf[:start + length]
                    self.packets.append(packet)
                    self._broker.on_packet(self, packet)
        except OSError:
            pass
        finally:
            self.closed.set()


class FakeBroker:
    """``on_connect(conn)`` runs when a CONNECT arrives (default: CONNACK success);
    ``on_packet(conn, packet)`` for every later packet (default: SUBACK every SUBSCRIBE)."""

    def __init__(self, on_connect: Callable[[Connection], None] | None = None,
                 on_packet: Callable[[Connection, Packet], None] | None = None) -> None:
        self._on_connect = on_connect or (lambda conn: conn.send(connack()))
        self._on_packet = on_packet
        self.connections: list[Connection] = []
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fake-broker")

    def __enter__(self) -> "FakeBroker":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.close()
        for conn in self.connections:
            conn.close()

    def on_packet(self, conn: Connection, packet: Packet) -> None:
        if packet.kind == wire.CONNECT:
            self._on_connect(conn)
        elif self._on_packet is not None:
            self._on_packet(conn, packet)
        elif packet.kind == wire.SUBSCRIBE:
            conn.send(suback_for(packet))

    def wait_connection(self, index: int, timeout: float = 5.0) -> Connection:
        wait_until(lambda: len(self.connections) > index, timeout, f"connection {index + 1}")
        return self.connections[index]

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            self.connections.append(Connection(sock, self))
