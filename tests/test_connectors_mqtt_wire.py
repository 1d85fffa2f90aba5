"""The MQTT 5 wire format of ``MqttLink`` (byte-exact against the specification and paho), its
strict reader under attack (malformed, oversized, out-of-protocol packets; a seeded fuzz), and
the link's behaviour against a scripted server for the faults Mosquitto will not produce."""

from __future__ import annotations

import random
import struct
import threading
from typing import Any

import pytest

from actors.connectors import MqttOptions, MqttSource
from actors.connectors import _wire as wire
from actors.connectors._link import MqttLink, _Lost
from actors.testing import wait_until
from tests._fakebroker import FakeBroker, connack, publish, server_keep_alive, suback_for

TOPIC = "tenants/acme/devices/d1/readings"
BODY = b'{"ts": 1.0, "temp": 20.0, "hum": 40.0}'


# -- encoding -------------------------------------------------------------------------------------
def test_connect_is_byte_exact_with_the_specification():
    got = wire.connect("c", keepalive=30, clean_start=False, session_expiry=60,
                       receive_maximum=5, maximum_packet_size=1024)
    props = b"\x11\x00\x00\x00\x3c" + b"\x21\x00\x05" + b"\x27\x00\x00\x04\x00"
    body = b"\x00\x04MQTT\x05\x00\x00\x1e" + bytes((len(props),)) + props + b"\x00\x01c"
    assert got == b"\x10" + bytes((len(body),)) + body
    with_login = wire.connect("c", keepalive=30, clean_start=True, session_expiry=0,
                              username="u", password="p\u00e9")
    assert with_login[9] == 0x80 | 0x40 | 0x02  # user name, password, clean start
    assert with_login.endswith(b"\x00\x01c\x00\x01u\x00\x03p\xc3\xa9")


def test_subscribe_unsubscribe_and_disconnect_bytes():
    assert wire.subscribe(7, ["a/+", "b"]) == (b"\x82\x0d\x00\x07\x00" + b"\x00\x03a/+\x11"
                                               + b"\x00\x01b\x11")
    assert wire.unsubscribe(8, ["a/+"]) == b"\xa2\x08\x00\x08\x00\x00\x03a/+"
    assert wire.disconnect() == b"\xe0\x00"
    assert wire.disconnect(0, session_expiry=0) == b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"
    with pytest.raises(ValueError, match="at least one"):
        wire.subscribe(1, [])
    with pytest.raises(ValueError, match="NUL"):
        wire.subscribe(1, ["a\0b"])


def test_pubacks_are_the_bytes_of_one_paho_ack_each():
    pytest.importorskip("paho.mqtt")
    from actors.connectors._client import build_client
    paho, _ = build_client(MqttOptions(), "sv-bytes", manual_ack=True)
    mids = [1, 2, 255, 256, 65535]
    for mid in mids:
        paho.ack(mid, 1)
    assert wire.pubacks(mids) == b"".join(p["packet"] for p in paho._out_packet)


@pytest.mark.parametrize("n, encoded", [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"),
                                        (16_383, b"\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
                                        (268_435_455, b"\xff\xff\xff\x7f")])
def test_variable_byte_integers_round_trip(n, encoded):
    assert wire.varint(n) == encoded
    assert wire.read_varint(encoded, 0, len(encoded)) == (n, len(encoded))
    assert wire.read_varint(encoded[:-1], 0, len(encoded) - 1) is None  # not complete yet


# -- decoding and its attacks ---------------------------------------------------------------------
def test_publish_is_split_with_its_properties_skipped():
    packet = publish(TOPIC, BODY, qos=1, mid=513, dup=True, props=b"\x01\x01\x02\x00\x00\x00\x05")
    length, start = wire.read_varint(packet, 1, len(packet))
    assert wire.split_publish(packet[0], packet, start, start + length) == (
        TOPIC.encode(), BODY, 1, 513, True)
    qos0 = publish(TOPIC, b"x", qos=0)
    length, start = wire.read_varint(qos0, 1, len(qos0))
    assert wire.split_publish(qos0[0], qos0, start, start + length) == (TOPIC.encode(), b"x", 0,
                                                                        0, False)


@pytest.mark.parametrize("packet, code, match", [
    (publish(TOPIC, BODY, qos=2), 0x9B, "QoS 2"),
    (bytes((0x36,)) + publish(TOPIC, BODY, qos=1)[1:], 0x81, "QoS 3"),
    (publish(TOPIC, BODY, qos=1, mid=0), 0x81, "packet id 0"),
    (b"\x32\x03\x00\x09a", 0x81, "truncated"),
    (b"\x32\x05\x00\x01a\x00\x01", 0x81, "truncated properties"),
    (b"\x30\x05\x00\x01a\x09\x01", 0x81, "properties run past"),
])
def test_malformed_publishes_are_protocol_errors_with_their_reason_code(packet, code, match):
    length, start = wire.read_varint(packet, 1, len(packet))
    with pytest.raises(wire.ProtocolError, match=match) as err:
        wire.split_publish(packet[0], packet, start, start + length)
    assert err.value.code == code


def test_control_packets_parse_strictly():
    props = server_keep_alive(7) + b"\x1f\x00\x02hi" + b"\x26\x00\x01k\x00\x01v"
    c = wire.parse_connack(bytes((1, 0)) + wire.varint(len(props)) + props)
    assert c.session_present and c.reason == 0
    assert c.properties[wire.SERVER_KEEP_ALIVE] == 7 and c.properties[0x26] == [("k", "v")]
    assert wire.parse_acks(b"\x00\x05\x00\x01\x80", "SUBACK") == (5, [1, 0x80])
    assert wire.parse_disconnect(b"\x8e\x05\x1f\x00\x02no") == (0x8E, "no")
    for bad, match in [(b"\x02\x00", "reserved"), (b"\x00", "shorter"),
                       (b"\x00\x00\x02\x99\x00", "unknown property"),
                       (b"\x00\x00\x05\x1f\x00\x09ab", "truncated"),
                       (b"\x00\x00\x04\x1f\x00\x01\xff", "not UTF-8"),
                       (b"\x00\x00\x00\x00", "bytes after")]:
        with pytest.raises(wire.ProtocolError, match=match):
            wire.parse_connack(bad)
    with pytest.raises(wire.ProtocolError, match="more than 4 bytes"):
        wire.read_varint(b"\xff\xff\xff\xff\x01", 0, 5)


def bare_link(room: int = 1000, max_packet: int = 4096) -> tuple[MqttLink, list[Any]]:
    got: list[Any] = []
    link = MqttLink(MqttOptions(), "sv-wire", receive_maximum=10, max_packet_bytes=max_packet,
                    room=lambda: room - sum(len(b) for b, _ in got),
                    on_publishes=lambda batch, epoch: got.append((batch, epoch)))
    return link, got


def test_the_reader_keeps_incomplete_packets_and_splits_complete_ones():
    link, got = bare_link()
    stream = publish(TOPIC, BODY, mid=1) + publish(TOPIC, BODY, mid=2)
    rest = link._dispatch(bytearray(stream[:-3]), 1)
    assert [p[3] for p in got[0][0]] == [1] and bytes(rest) == stream[len(stream) // 2:-3]
    rest += stream[-3:]
    assert link._dispatch(rest, 1) == b"" and got[1][0][0][3] == 2


def test_a_packet_larger_than_announced_is_refused_before_it_is_buffered():
    link, _ = bare_link(max_packet=100)
    header_only = b"\x32\xe8\x07"  # a PUBLISH announcing 1,000 bytes: nothing more has arrived
    with pytest.raises(wire.ProtocolError, match="larger than our Maximum Packet Size") as err:
        link._dispatch(bytearray(header_only), 1)
    assert err.value.code == 0x95


def test_without_room_publishes_wait_in_the_buffer_and_nothing_is_dropped():
    link, got = bare_link(room=2)
    stream = b"".join(publish(TOPIC, BODY, mid=i) for i in range(1, 6))
    rest = link._dispatch(bytearray(stream), 1)
    seen = [p[3] for batch, _ in got for p in batch]
    assert seen == [1, 2] and link.paused and link.pauses == 1
    while rest:
        got.clear()  # the consumer took what it had
        rest = link._dispatch(rest, 1)
        seen += [p[3] for batch, _ in got for p in batch]
    assert seen == [1, 2, 3, 4, 5] and not link.paused


def test_seeded_fuzz_only_ever_raises_protocol_errors():
    """Random mutations of valid traffic: the reader either splits packets or raises
    ``ProtocolError``/``_Lost`` (a server DISCONNECT) - never IndexError, struct.error, ..."""
    rng = random.Random(1303)
    valid = (publish(TOPIC, BODY, mid=3) + publish(TOPIC, b"", qos=0) + b"\xd0\x00"
             + suback_for(wire_packet(wire.subscribe(4, ["a", "b"]))) + b"\xb0\x04\x00\x05\x00\x00"
             + publish(TOPIC, BODY, mid=9, props=b"\x26\x00\x01k\x00\x01v"))
    outcomes = {"ok": 0, "protocol": 0, "lost": 0}
    for _ in range(3000):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.5:
                data[i] = rng.randrange(256)
            elif choice < 0.75:
                del data[i:i + rng.randint(1, 8)]
            else:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        link, _ = bare_link()
        try:
            link._dispatch(data, 1)
            outcomes["ok"] += 1
        except wire.ProtocolError:
            outcomes["protocol"] += 1
        except _Lost:
            outcomes["lost"] += 1
    assert outcomes["ok"] and outcomes["protocol"], outcomes


def wire_packet(data: bytes) -> Any:
    from tests._fakebroker import Packet
    length, start = wire.read_varint(data, 1, len(data))
    return Packet(data[0] >> 4, data[0] & 0x0F, data[start:start + length])


# -- the link against a scripted server -----------------------------------------------------------
def options(port: int, **kw: Any) -> MqttOptions:
    return MqttOptions(port=port, client_id="sv-fake", reconnect_min=0.05, reconnect_max=0.2,
                       **kw)


@pytest.fixture
def stops():
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.stop()


def test_redeliveries_in_the_same_segment_as_the_connack_are_not_lost(stops):
    burst = connack(session_present=True) + publish(TOPIC, BODY, mid=11, dup=True)
    with FakeBroker(on_connect=lambda conn: conn.send(burst)) as fb:
        src = MqttSource(options(fb.port), tenant="acme").start()
        stops.append(src)
        wait_until(lambda: src.pending() == 1, 5.0, "the redelivered reading")
        item = src.take(1)[0]
        assert item.dup and item.mid == 11 and src.ack([item]) == 1
        conn = fb.wait_connection(0)
        assert conn.wait_packet(wire.PUBACK)[0].body == b"\x00\x0b"


@pytest.mark.parametrize("bad, code", [(publish(TOPIC, BODY, qos=2), 0x9B),
                                       (b"\x32\x02\x00\x09", 0x81),
                                       (b"\x40\x02\x00\x01", 0x82),
                                       (b"\xf0\x00", 0x82)])
def test_a_protocol_fault_disconnects_with_its_reason_code_and_the_link_reconnects(bad, code,
                                                                                   stops):
    first = threading.Event()

    def on_connect(conn):
        conn.send(connack())
        if not first.is_set():
            first.set()
            conn.send(bad)
    with FakeBroker(on_connect=on_connect) as fb:
        src = MqttSource(options(fb.port), tenant="acme").start()
        stops.append(src)
        conn = fb.wait_connection(0)
        assert conn.wait_packet(wire.DISCONNECT)[0].body[:1] == bytes((code,))
        fb.wait_connection(1)
        wait_until(lambda: src.statistics().connects == 2 and src.connected, 5.0, "reconnect")
        assert src.statistics().errors == 1 and src.statistics().accepted == 0


def test_a_stalled_consumer_keeps_its_connection_with_pings_and_loses_nothing(stops):
    """Capacity 2, 12 readings, nobody takes for more than 1.5 x the keepalive: the link stops
    reading the socket but keeps pinging, so the broker keeps the connection; then all 12
    arrive, in order, on the one connection."""
    def on_connect(conn):
        conn.send(connack(props=server_keep_alive(1)))

    def on_packet(conn, packet):
        if packet.kind == wire.SUBSCRIBE:
            conn.send(suback_for(packet) + b"".join(
                publish(TOPIC, b'{"ts": %d, "temp": 1, "hum": 1}' % i, mid=i)
                for i in range(1, 13)))
        elif packet.kind == wire.PINGREQ:
            conn.send(b"\xd0\x00")
    with FakeBroker(on_connect=on_connect, on_packet=on_packet) as fb:
        src = MqttSource(options(fb.port), tenant="acme", capacity=2).start()
        stops.append(src)
        conn = fb.wait_connection(0)
        conn.wait_packet(wire.PINGREQ, count=3, timeout=10.0)  # >= 1.5 s stalled, still pinging
        assert src.pending() == 2 and src.statistics().paused >= 1
        got: list[Any] = []

        def more() -> bool:
            items = src.take(100)
            src.ack(items)
            got.extend(items)
            return len(got) >= 12
        wait_until(more, 5.0, "all 12 readings")
        assert [i.reading.ts for i in got] == [float(i) for i in range(1, 13)]
        assert len(fb.connections) == 1 and src.statistics().connects == 1
        assert [struct.unpack("!H", p.body)[0] for p in conn.wait_packet(wire.PUBACK, 12)] == \
            list(range(1, 13))


def test_a_silent_broker_is_detected_by_keepalive_and_left(stops):
    with FakeBroker(on_connect=lambda conn: conn.send(connack(props=server_keep_alive(1))),
                    on_packet=lambda conn, packet: None) as fb:  # no SUBACK, no PINGRESP
        link = MqttLink(options(fb.port), "sv-fake", receive_maximum=10, max_packet_bytes=4096,
                        room=lambda: 10, on_publishes=lambda b, e: None).start()
        stops.append(link)
        fb.wait_connection(1, timeout=10.0)  # it gave up on the first and connected again
        assert fb.connections[0].of(wire.PINGREQ)


def test_acks_of_an_old_connection_never_reach_the_new_one(stops):
    def on_connect(conn):
        conn.send(connack(session_present=True) + publish(TOPIC, BODY, mid=21))
    with FakeBroker(on_connect=on_connect) as fb:
        src = MqttSource(options(fb.port), tenant="acme").start()
        stops.append(src)
        wait_until(lambda: src.pending() == 1, 5.0, "a reading")
        old = src.take(1)
        fb.wait_connection(0).close()  # the connection drops before the ack
        wait_until(lambda: src.statistics().connects == 2 and src.pending() == 1, 5.0,
                   "the reconnect and the redelivery")
        assert src.ack(old) == 0 and src.statistics().stale_acks == 1
        new = src.take(1)
        assert src.ack(new) == 1
        second = fb.wait_connection(1)
        assert [p.body for p in second.wait_packet(wire.PUBACK)] == [b"\x00\x15"]
        assert not fb.connections[0].of(wire.PUBACK)


def test_stop_sends_the_queued_acks_before_disconnect(stops):
    with FakeBroker(on_connect=lambda c: c.send(connack() + publish(TOPIC, BODY, mid=5))) as fb:
        src = MqttSource(options(fb.port), tenant="acme").start()
        wait_until(lambda: src.pending() == 1, 5.0, "a reading")
        src.ack(src.take(1))
        src.stop()
        conn = fb.wait_connection(0)
        conn.wait_packet(wire.DISCONNECT)
        kinds = [p.kind for p in conn.packets]
        assert kinds.index(wire.PUBACK) < kinds.index(wire.DISCONNECT)


def test_a_refused_connack_is_retried_with_backoff_and_counted(stops):
    with FakeBroker(on_connect=lambda conn: conn.send(connack(reason=0x87))) as fb:
        src = MqttSource(options(fb.port), tenant="acme").start()
        stops.append(src)
        fb.wait_connection(2)
        assert not src.connected and src.statistics().connects == 0
        assert src._link.connect_failures >= 2


def test_the_topic_cache_is_bounded_and_never_admits_another_tenant(monkeypatch):
    from actors.connectors import _mqtt_source
    monkeypatch.setattr(_mqtt_source, "TOPIC_CACHE", 10)
    rejected: list[Any] = []
    src = MqttSource(MqttOptions(), tenant="acme", dead_letters=rejected.append)
    batch = [(f"tenants/acme/devices/d{i}/readings".encode(), BODY, 0, 0, False)
             for i in range(25)]
    batch += [(b"tenants/evil/devices/d1/readings", BODY, 0, 0, False)] * 2
    src._on_publishes(batch, 1)
    src._on_publishes(batch[:3], 1)  # cached now: the same readings again
    got = src.take(100)
    assert [i.reading.device for i in got] == [f"d{i}" for i in range(25)] + ["d0", "d1", "d2"]
    assert len(src._topics) <= 10 and b"tenants/evil/devices/d1/readings" not in src._topics
    assert [r.kind for r in rejected] == ["bad_topic", "bad_topic"]
