"""MQTT 5 on the wire: the packets a subscribing client sends, and a strict reader for the ones
it receives (OASIS MQTT Version 5.0, chapters 2 and 3).

Only what ``MqttLink`` needs: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBACK, PINGREQ and DISCONNECT
out; CONNACK, PUBLISH (QoS 0 and 1), SUBACK, UNSUBACK, PINGRESP and DISCONNECT in. Everything
received is bounds-checked: a packet that is malformed, larger than the Maximum Packet Size we
announced, or not one a server may send to this client raises ``ProtocolError`` carrying the
reason code of the DISCONNECT we answer with. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, Sequence

__all__ = ["ProtocolError", "Connack", "connect", "subscribe", "unsubscribe", "pubacks",
           "disconnect", "PINGREQ_PACKET", "read_varint", "parse_properties", "parse_connack",
           "parse_acks", "parse_disconnect", "split_publish", "REASONS"]

# packet types (the high nibble of the first byte)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)
MAX_REMAINING = 268_435_455  # the largest remaining length a 4-byte varint can carry
PINGREQ_PACKET = b"\xc0\x00"

# reason codes (MQTT 5, 2.4) that we send or name in logs
REASONS = {
    0x00: "success", 0x04: "disconnect with will message", 0x80: "unspecified error",
    0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down",
    0x8C: "bad authentication method", 0x8D: "keep alive timeout", 0x8E: "session taken over",
    0x8F: "topic filter invalid", 0x90: "topic name invalid", 0x93: "receive maximum exceeded",
    0x94: "topic alias invalid", 0x95: "packet too large", 0x97: "quota exceeded",
    0x99: "payload format invalid", 0x9A: "retain not supported", 0x9B: "QoS not supported",
    0x9C: "use another server", 0x9D: "server moved",
    0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded",
    0xA0: "maximum connect time", 0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PUBACK = struct.Struct("!BBH")

# property identifier -> its type (MQTT 5, 2.2.2.2)
_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STRING, 0x08: _STRING, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _STRING, 0x13: _TWO, 0x15: _STRING, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}
SESSION_EXPIRY, RECEIVE_MAXIMUM, MAXIMUM_PACKET_SIZE = 0x11, 0x21, 0x27
SERVER_KEEP_ALIVE, REASON_STRING, ASSIGNED_CLIENT_ID = 0x13, 0x1F, 0x12


class ProtocolError(Exception):
    """The server sent something that is not MQTT 5 a client may receive. ``code`` is the
    reason code of the DISCONNECT the client answers with (0x81 malformed, 0x82 protocol
    error, 0x95 packet too large, ...)."""

    def __init__(self, message: str, code: int = 0x81) -> None:
        super().__init__(message)
        self.code = code


class Connack(NamedTuple):
    session_present: bool
    reason: int
    properties: dict[int, Any]


# -- encoding -------------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    """The Variable Byte Integer encoding of ``0 <= n <= 268,435,455``."""
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"MQTT variable byte integer out of range: {n}")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str, what: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 65535 or "\0" in text:
        raise ValueError(f"MQTT {what} must be UTF-8 of at most 65,535 bytes without NUL, "
                         f"got {text[:80]!r}")
    return _U16.pack(len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def _properties(props: Sequence[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes((ident,)) + value for ident, value in props)
    return varint(len(body)) + body


def connect(client_id: str, *, keepalive: int, clean_start: bool, session_expiry: int,
            receive_maximum: int | None = None, maximum_packet_size: int | None = None,
            username: str | None = None, password: str | None = None) -> bytes:
    """CONNECT (protocol level 5, no will). The password is sent as Binary Data (UTF-8)."""
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None else 0)
    props = [(SESSION_EXPIRY, _U32.pack(session_expiry))]
    if receive_maximum is not None:
        props.append((RECEIVE_MAXIMUM, _U16.pack(receive_maximum)))
    if maximum_packet_size is not None:
        props.append((MAXIMUM_PACKET_SIZE, _U32.pack(maximum_packet_size)))
    body = b"".join([_string("MQTT", "protocol name"), b"\x05", bytes((flags,)),
                     _U16.pack(keepalive), _properties(props), _string(client_id, "client id")])
    if username is not None:
        body += _string(username, "user name")
    if password is not None:
        secret = password.encode("utf-8")
        if len(secret) > 65535:
            raise ValueError("MQTT password must be at most 65,535 bytes")
        body += _U16.pack(len(secret)) + secret
    return _packet(CONNECT << 4, body)


def subscribe(mid: int, filters: Sequence[str], *, qos: int = 1,
              retain_handling: int = 1) -> bytes:
    """SUBSCRIBE ``filters`` at ``qos`` (retain handling 1: retained messages only for a new
    subscription, as paho's ``RETAIN_SEND_IF_NEW_SUB``)."""
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    options = bytes((qos | retain_handling << 4,))
    body = _U16.pack(mid) + b"\x00" + b"".join(_string(f, "topic filter") + options
                                               for f in filters)
    return _packet(SUBSCRIBE << 4 | 0x02, body)


def unsubscribe(mid: int, filters: Sequence[str]) -> bytes:
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter")
    body = _U16.pack(mid) + b"\x00" + b"".join(_string(f, "topic filter") for f in filters)
    return _packet(UNSUBSCRIBE << 4 | 0x02, body)


def pubacks(mids: Sequence[int]) -> bytes:
    """One PUBACK (success, reason code omitted as MQTT 5 allows) per packet id, as one buffer."""
    pack = _PUBACK.pack
    return b"".join([pack(0x40, 2, mid) for mid in mids])


def disconnect(reason: int = 0, *, session_expiry: int | None = None) -> bytes:
    if reason == 0 and session_expiry is None:
        return b"\xe0\x00"
    props = [] if session_expiry is None else [(SESSION_EXPIRY, _U32.pack(session_expiry))]
    return _packet(DISCONNECT << 4, bytes((reason,)) + _properties(props))


# -- decoding -------------------------------------------------------------------------------------
def read_varint(data: Any, pos: int, end: int) -> tuple[int, int] | None:
    """``(value, next position)`` of the Variable Byte Integer at ``data[pos:end]``; None if it
    is not complete yet; ``ProtocolError`` if it is longer than four bytes."""
    value = shift = 0
    for i in range(pos, min(end, pos + 4)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    if end - pos >= 4:
        raise ProtocolError("malformed variable byte integer (more than 4 bytes)")
    return None


def _need(body: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(body):
        raise ProtocolError(f"malformed {what}: truncated")


def _read_string(body: bytes, pos: int, what: str) -> tuple[str, int]:
    _need(body, pos, 2, what)
    n = _U16.unpack_from(body, pos)[0]
    _need(body, pos + 2, n, what)
    try:
        return body[pos + 2:pos + 2 + n].decode("utf-8"), pos + 2 + n
    except UnicodeDecodeError:
        raise ProtocolError(f"malformed {what}: not UTF-8") from None


def parse_properties(body: bytes, pos: int, what: str) -> tuple[dict[int, Any], int]:
    """The property list at ``body[pos:]`` -> ({identifier: value}, position after it). User
    properties (0x26) collect into a list of pairs. Unknown identifiers are malformed."""
    got = read_varint(body, pos, len(body))
    if got is None:
        raise ProtocolError(f"malformed {what}: truncated property length")
    length, pos = got
    end = pos + length
    _need(body, pos, length, f"{what} properties")
    props: dict[int, Any] = {}
    while pos < end:
        ident = body[pos]
        kind = _PROPERTY_TYPES.get(ident)
        pos += 1
        value: Any
        if kind == _BYTE:
            _need(body, pos, 1, what)
            value, pos = body[pos], pos + 1
        elif kind == _TWO:
            _need(body, pos, 2, what)
            value, pos = _U16.unpack_from(body, pos)[0], pos + 2
        elif kind == _FOUR:
            _need(body, pos, 4, what)
            value, pos = _U32.unpack_from(body, pos)[0], pos + 4
        elif kind == _VARINT:
            got = read_varint(body, pos, end)
            if got is None:
                raise ProtocolError(f"malformed {what}: truncated property")
            value, pos = got
        elif kind == _STRING:
            value, pos = _read_string(body, pos, what)
        elif kind == _BINARY:
            _need(body, pos, 2, what)
            n = _U16.unpack_from(body, pos)[0]
            _need(body, pos + 2, n, what)
            value, pos = bytes(body[pos + 2:pos + 2 + n]), pos + 2 + n
        elif kind == _PAIR:
            key, pos = _read_string(body, pos, what)
            val, pos = _read_string(body, pos, what)
            props.setdefault(ident, []).append((key, val))
            continue
        else:
            raise ProtocolError(f"malformed {what}: unknown property 0x{ident:02x}")
        if pos > end:
            raise ProtocolError(f"malformed {what}: a property runs past the property list")
        props[ident] = value
    return props, end


def parse_connack(body: bytes) -> Connack:
    if len(body) < 2:
        raise ProtocolError("malformed CONNACK: shorter than 2 bytes")
    if body[0] & 0xFE:
        raise ProtocolError("malformed CONNACK: reserved acknowledge flags set")
    props: dict[int, Any] = {}
    if len(body) > 2:
        props, end = parse_properties(body, 2, "CONNACK")
        if end != len(body):
            raise ProtocolError("malformed CONNACK: bytes after the properties")
    return Connack(bool(body[0] & 1), body[1], props)


def parse_acks(body: bytes, what: str) -> tuple[int, list[int]]:
    """SUBACK or UNSUBACK -> (packet id, reason codes)."""
    _need(body, 0, 2, what)
    mid = _U16.unpack_from(body, 0)[0]
    _props, pos = parse_properties(body, 2, what)
    return mid, list(body[pos:])


def parse_disconnect(body: bytes) -> tuple[int, str | None]:
    """DISCONNECT from the server -> (reason code, reason string or None)."""
    if not body:
        return 0, None
    reason = body[0]
    text = None
    if len(body) > 1:
        props, _ = parse_properties(body, 1, "DISCONNECT")
        text = props.get(REASON_STRING)
    return reason, text


def split_publish(first: int, data: Any, pos: int, end: int) -> tuple[bytes, bytes, int, int, bool]:
    """The PUBLISH whose fixed header's first byte is ``first`` and whose variable header and
    payload are ``data[pos:end]`` -> (topic bytes, payload, qos, packet id, dup). Properties are
    skipped (we announce no Topic Alias Maximum, so none may carry an alias); the topic is
    returned undecoded for the caller's validation. QoS 2 is refused: we never subscribe at
    QoS 2, so a server must not send it (0x9B)."""
    qos = (first >> 1) & 3
    if qos == 2:
        raise ProtocolError("PUBLISH at QoS 2 on a QoS 1 subscription", 0x9B)
    if qos == 3:
        raise ProtocolError("malformed PUBLISH: QoS 3")
    if end - pos < 2:
        raise ProtocolError("malformed PUBLISH: truncated topic")
    n = data[pos] << 8 | data[pos + 1]
    t = pos + 2 + n
    if qos:
        if t + 2 > end:
            raise ProtocolError("malformed PUBLISH: truncated packet id")
        mid = data[t] << 8 | data[t + 1]
        if not mid:
            raise ProtocolError("malformed PUBLISH: packet id 0 at QoS 1")
        p = t + 2
    else:
        mid, p = 0, t
    got = read_varint(data, p, end)
    if got is None:
        raise ProtocolError("malformed PUBLISH: truncated properties")
    length, p = got
    p += length
    if p > end:
        raise ProtocolError("malformed PUBLISH: properties run past the packet")
    return bytes(data[pos + 2:t]), bytes(data[p:end]), qos, mid, bool(first & 0x08)
