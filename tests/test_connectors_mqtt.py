"""MQTT connectors: strict parsing of device topics and payloads (always), and against the real
Mosquitto on 127.0.0.1:1883 (integration): QoS 1 ingestion, flow control by manual acks,
redelivery after a reconnect, bad payloads dead-lettered with reasons, the publishing sink, the
whole chain MQTT -> durable queue -> SQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actors import Runtime
from actors.connectors import (REASONS, BadReading, MqttIngest, MqttOptions, MqttSink,
                               MqttSource, Reading, SqliteStore, SqlWriter, parse_payload,
                               parse_reading, parse_topic, reading_message, readings_filter,
                               readings_topic)
from actors.queue import DurableQueue
from actors.testing import wait_until
from tests._tcp_proxy import TcpProxy
from tests.conftest import require_service

TOPIC = "tenants/acme/devices/d1/readings"


def payload(ts: float = 1_700_000_000, temp: Any = 21.5, hum: Any = 40.0, **extra: Any) -> bytes:
    return json.dumps({"ts": ts, "temp": temp, "hum": hum, **extra}).encode()


# -- parsing (no broker) -----------------------------------------------------------------------
def test_a_valid_topic_and_payload_parse_into_tenant_device_and_reading():
    assert parse_reading(TOPIC, payload()) == Reading("acme", "d1", 1_700_000_000.0, 21.5, 40.0)
    assert parse_topic("tenants/a-b_c.d/devices/X-1/readings") == ("a-b_c.d", "X-1")
    assert readings_topic("acme", "d1") == TOPIC
    assert readings_filter("acme") == "tenants/acme/devices/+/readings"
    assert readings_filter() == "tenants/+/devices/+/readings"


@pytest.mark.parametrize("topic", [
    "tenants/+/devices/d1/readings", "tenants/acme/devices/#/readings", "tenants/#",
    "tenants/$SYS/devices/d1/readings", "tenants//devices/d1/readings",
    "tenants/acme/devices/d1/readings/extra", "tenants/acme/devices/d1", "acme/devices/d1/readings",
    "tenants/.hidden/devices/d1/readings", "tenants/ac me/devices/d1/readings",
    "tenants/acme\x00/devices/d1/readings", "tenants/" + "a" * 65 + "/devices/d1/readings",
    "tenants/acme/devices/" + "d" * 65 + "/readings", "tenants/acmé/devices/d1/readings",
    "Tenants/acme/devices/d1/readings", "tenants/acme/devices/../readings",
])
def test_topics_with_wildcards_bad_levels_or_shape_are_rejected(topic):
    with pytest.raises(BadReading) as info:
        parse_topic(topic)
    assert info.value.kind == "bad_topic"


@pytest.mark.parametrize("body, kind", [
    (b'{"ts": NaN, "temp": 1, "hum": 1}', "non_finite"),
    (b'{"ts": 1, "temp": Infinity, "hum": 1}', "non_finite"),
    (b'{"ts": 1, "temp": -Infinity, "hum": 1}', "non_finite"),
    (b'{"ts": 1, "temp": 1e400, "hum": 1}', "non_finite"),
    (b"[" * 2000 + b"]" * 2000, "too_deep"),
    (b'{"ts": ' + b"[" * 20 + b"]" * 20 + b', "temp": 1, "hum": 1}', "too_deep"),
    (b'{"ts": "[{\\"[[[[[[[[[[[[[[[", "temp": 1, "hum": 1}', "wrong_type"),  # brackets in a string
    (b"x" * 4097, "oversize"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"{nope", "invalid_json"),
    (b'{"ts": 1, "temp": 1, "hum": 1} trailing', "invalid_json"),
    (b"", "invalid_json"),
    (b'{"ts": 1, "temp": 1, "hum": 1,}', "invalid_json"),
    (b'{"ts": 1, "ts": 2, "temp": 1, "hum": 1}', "duplicate_key"),
    (b"[1, 2, 3]", "wrong_type"),
    (b'"text"', "wrong_type"),
    (b'{"ts": 1, "temp": "21.5", "hum": 1}', "wrong_type"),
    (b'{"ts": 1, "temp": true, "hum": 1}', "wrong_type"),
    (b'{"ts": 1, "temp": null, "hum": 1}', "wrong_type"),
    (b'{"ts": 1, "temp": {"c": 1}, "hum": 1}', "wrong_type"),
    (b'{"ts": 1, "temp": 1}', "missing_field"),
    (b'{"ts": 1, "temp": 1, "hum": 1, "battery": 3}', "unexpected_field"),
    (b'{"ts": -1, "temp": 1, "hum": 1}', "out_of_range"),
    (b'{"ts": 1700000000000, "temp": 1, "hum": 1}', "out_of_range"),  # milliseconds
    (b'{"ts": 1, "temp": 900, "hum": 1}', "out_of_range"),
    (b'{"ts": 1, "temp": 1, "hum": 100.5}', "out_of_range"),
])
def test_bad_payloads_are_rejected_with_a_named_reason(body, kind):
    with pytest.raises(BadReading) as info:
        parse_payload(body)
    assert info.value.kind == kind and kind in REASONS
    assert str(info.value).startswith(kind + ": ")


def test_hostile_payloads_cost_one_linear_pass_and_raise_only_bad_reading():
    for body in (b"[" * 1_000_000, b'{"a":' * 200_000, b'"' * 100_000, b"\\" * 50_000,
                 b'{"ts": ' + b"1" * 5000 + b"}"):  # more digits than Python parses
        with pytest.raises(BadReading):
            parse_payload(body, max_bytes=2_000_000)


def test_options_name_the_bad_field():
    for kwargs, field in (({"port": 0}, "port"), ({"keepalive": 1}, "keepalive"),
                          ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect_max"),
                          ({"client_id": ""}, "client_id"), ({"host": ""}, "host")):
        with pytest.raises(ValueError, match=field):
            MqttOptions(**kwargs)


def test_reading_message_is_what_a_device_publishes():
    topic, body = reading_message(Reading("acme", "d1", 5.0, 21.5, 40.0))
    assert parse_reading(topic, body) == Reading("acme", "d1", 5.0, 21.5, 40.0)


# -- against Mosquitto (integration) -----------------------------------------------------------
@pytest.fixture
def broker() -> MqttOptions:
    require_service("127.0.0.1", 1883, "Mosquitto")
    return MqttOptions(client_id=f"sv-test-{uuid.uuid4().hex[:10]}", reconnect_min=0.05,
                       reconnect_max=0.5, session_expiry=60)


@pytest.fixture
def publisher() -> Iterator[MqttSink]:
    require_service("127.0.0.1", 1883, "Mosquitto")
    sink = MqttSink(MqttOptions(), max_inflight=200).start()
    try:
        assert sink.wait_connected(5.0)
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def stops() -> Iterator[list[Any]]:
    """Things to stop at the end of a test, in reverse order."""
    things: list[Any] = []
    try:
        yield things
    finally:
        for thing in reversed(things):
            thing.stop() if hasattr(thing, "stop") else thing.close()


def tenant_topic(tenant: str, device: str = "d1") -> str:
    return readings_topic(tenant, device)


def start_source(broker: MqttOptions, stops: list[Any], tenant: str, **kwargs: Any) -> MqttSource:
    src = MqttSource(broker, tenant=tenant, **kwargs).start()
    stops.append(src)
    assert src.wait_connected(5.0), "the source did not connect and subscribe"
    return src


def drain(src: MqttSource, n: int, timeout: float = 10.0) -> list[Any]:
    """Take and ack until ``n`` readings (probes aside) arrived."""
    got: list[Any] = []

    def more() -> bool:
        items = src.take(1000)
        src.ack(items)
        got.extend(i for i in items if i.reading.device != "probe")
        return len(got) >= n
    wait_until(more, timeout=timeout, message=f"{n} readings (got {len(got)})")
    return got


@pytest.mark.integration
def test_source_ingests_qos1_readings_exactly_as_published_with_plain_paho(broker, stops):
    import paho.mqtt.client as mqtt
    tenant = f"t{uuid.uuid4().hex[:8]}"
    src = start_source(broker, stops, tenant)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()
    try:
        infos = [pub.publish(tenant_topic(tenant, f"d{i % 3}"), payload(ts=1000 + i, temp=i % 50),
                             qos=1) for i in range(500)]
        for info in infos:
            info.wait_for_publish(10.0)
        got = drain(src, 500)
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert sorted(i.reading.ts for i in got) == [1000.0 + i for i in range(500)]
    assert {i.reading.device for i in got} == {"d0", "d1", "d2"}
    assert all(i.reading.tenant == tenant and i.qos == 1 for i in got)
    st = src.statistics()
    assert st.accepted == st.received == 500 and st.dead_lettered == 0 and st.acked == 500


@pytest.mark.integration
def test_the_sink_publishes_readings_that_the_source_receives(broker, publisher, stops):
    tenant = f"t{uuid.uuid4().hex[:8]}"
    src = start_source(broker, stops, tenant)
    readings = [Reading(tenant, "d1", 10.0 + i, 20.0, 40.0) for i in range(100)]
    assert publisher.publish_readings(readings) == 100
    assert {i.reading for i in drain(src, 100)} == set(readings)
    assert publisher.statistics().acknowledged >= 100
    with pytest.raises(ValueError, match="topic"):
        publisher.publish("tenants/+/devices/d/readings", b"x")


@pytest.mark.integration
def test_backpressure_stops_the_broker_at_capacity_until_acked(broker, publisher, stops):
    tenant = f"t{uuid.uuid4().hex[:8]}"
    src = start_source(broker, stops, tenant, capacity=5)
    publisher.publish_many([(tenant_topic(tenant), payload(ts=2000 + i)) for i in range(60)])
    wait_until(lambda: src.pending() == 5, timeout=5.0, message="a full hand-off")
    got: list[Any] = []
    while len(got) < 60:  # one at a time: every ack lets the broker send again
        wait_until(lambda: src.pending() > 0, timeout=5.0, message=f"reading {len(got) + 1}")
        item = src.take(1)
        src.ack(item)
        got += item
        assert src.pending() <= 5
    assert sorted(i.reading.ts for i in got) == [2000.0 + i for i in range(60)]
    st = src.statistics()
    assert st.peak <= 5 and st.accepted == 60, f"the hand-off exceeded its capacity: {st}"


@pytest.mark.integration
def test_unacked_readings_are_redelivered_after_the_connection_is_lost(broker, publisher, stops):
    tenant = f"t{uuid.uuid4().hex[:8]}"
    src = start_source(broker, stops, tenant)
    publisher.publish_many([(tenant_topic(tenant), payload(ts=3000 + i)) for i in range(5)])
    wait_until(lambda: src.pending() == 5, timeout=5.0, message="5 readings")
    unacked = src.take(5)
    kick(broker.client_id)  # another client takes the session over: the source is disconnected
    wait_until(lambda: src.statistics().connects >= 2 and src.connected, timeout=10.0,
               message="the reconnect")
    assert src.ack(unacked) == 0 and src.statistics().stale_acks == 5  # never on a new connection
    again = drain(src, 5)
    assert sorted(i.reading.ts for i in again) == [3000.0 + i for i in range(5)]
    assert all(i.dup for i in again)
    publisher.publish(tenant_topic(tenant), payload(ts=3100))
    assert [i.reading.ts for i in drain(src, 1)] == [3100.0]


@pytest.mark.integration
def test_a_batch_of_acks_settles_exactly_those_readings(tmp_path):
    """Acks of a batch leave as one write; after a clean stop and a resumed session the broker
    redelivers exactly the readings that were not acked. (A private broker: its log shows when
    it has read the DISCONNECT - and so every PUBACK before it - so that the resumed session
    cannot overtake them.)"""
    from tests._mosquitto import PrivateBroker
    from tests.conftest import require_program
    require_program("mosquitto")
    with PrivateBroker(tmp_path / "broker") as private:
        opts = MqttOptions(port=private.port, client_id=f"sv-acks-{uuid.uuid4().hex[:8]}",
                           reconnect_min=0.05, reconnect_max=0.5, session_expiry=60)
        publisher = MqttSink(MqttOptions(port=private.port)).start()
        src = MqttSource(opts, tenant="acme").start()
        try:
            assert src.wait_connected(5.0) and publisher.wait_connected(5.0)
            publisher.publish_many([(tenant_topic("acme"), payload(ts=5000 + i))
                                    for i in range(10)])
            wait_until(lambda: src.pending() == 10, timeout=5.0, message="10 readings")
            taken = src.take(10)
            acked = taken[:3] + taken[5:8]
            assert src.ack(x for x in acked) == 6  # any iterable, one write
            left = sorted({i.reading.ts for i in taken} - {i.reading.ts for i in acked})
        finally:
            src.stop()  # DISCONNECT goes after the queued PUBACKs, on the same connection
            publisher.stop()
        wait_until(lambda: f"Client {opts.client_id} disconnected." in private.log_text(),
                   timeout=10.0, message="the broker to read the DISCONNECT")
        again = MqttSource(opts, tenant="acme").start()
        try:
            got = drain(again, 4)
            assert sorted(i.reading.ts for i in got) == left and len(left) == 4
            assert again.statistics().accepted == 4
        finally:
            again.stop()


def kick(client_id: str) -> None:
    """Connect with ``client_id`` (taking the session over, acking nothing) and leave."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    manual_ack=True, reconnect_on_failure=False)
    c.on_connect = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    c.connect("127.0.0.1", 1883, clean_start=False, properties=props)
    c.loop_start()
    try:
        assert done.wait(5.0), "the kicker did not connect"
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.integration
def test_source_connects_late_and_reconnects_after_the_network_drops(broker, publisher, stops):
    tenant = f"t{uuid.uuid4().hex[:8]}"
    proxy = TcpProxy("127.0.0.1", 1883, listen=False)
    stops.append(proxy)
    src = MqttSource(MqttOptions(port=proxy.port, client_id=broker.client_id, reconnect_min=0.05,
                                 reconnect_max=0.2, session_expiry=60), tenant=tenant).start()
    stops.append(src)
    assert not src.wait_connected(0.3)  # nothing listens yet: backing off, not crashing
    proxy.open()
    assert src.wait_connected(5.0)
    proxy.cut()
    wait_until(lambda: src.statistics().disconnects >= 1, timeout=5.0, message="the drop")
    publisher.publish_many([(tenant_topic(tenant), payload(ts=4000 + i)) for i in range(20)])
    wait_until(lambda: src.connected, timeout=10.0, message="the reconnect")
    got = drain(src, 20)  # published while we were away: kept in the session
    assert sorted(i.reading.ts for i in got) == [4000.0 + i for i in range(20)]


@pytest.mark.integration
def test_bad_payloads_are_dead_lettered_with_reasons_and_never_stop_the_source(
        broker, publisher, stops, tmp_path):
    tenant = f"t{uuid.uuid4().hex[:8]}"
    dead = DurableQueue(tmp_path / "dead.db", "mqtt-dead-letters")
    stops.append(dead)
    src = start_source(broker, stops, tenant, dead_letters=dead, max_payload_bytes=1024)
    bad = {
        "invalid_json": b"{nope", "non_finite": b'{"ts": NaN, "temp": 1, "hum": 1}',
        "too_deep": b"[" * 500 + b"]" * 500, "oversize": b" " * 1025 + payload(),
        "wrong_type": payload(temp="hot"), "invalid_utf8": b"\xc3\x28",
        "missing_field": b'{"ts": 1, "temp": 2}', "out_of_range": payload(hum=120),
    }
    messages = [(tenant_topic(tenant), body) for body in bad.values()]
    messages.append((f"tenants/{tenant}/devices/d1/readings", payload(ts=5000)))
    publisher.publish_many(messages)
    [good] = drain(src, 1)
    assert good.reading.ts == 5000.0
    wait_until(lambda: src.statistics().dead_lettered == len(bad), timeout=5.0,
               message="every bad payload dead-lettered")
    st = src.statistics()
    assert st.rejected == {kind: 1 for kind in bad} and st.errors == 0 and src.connected
    reasons = {}
    for d in dead.get(max_items=100, timeout=1.0):
        reasons[d.payload["kind"]] = d.payload["reason"]
        assert d.payload["topic"] == tenant_topic(tenant) and len(d.payload["payload"]) <= 1024
    assert set(reasons) == set(bad)
    assert reasons["oversize"].startswith("oversize: 1")


@pytest.mark.integration
def test_a_failing_dead_letter_sink_leaves_the_message_unacked_without_crashing(
        broker, publisher, stops):
    tenant = f"t{uuid.uuid4().hex[:8]}"

    def broken(message: Any) -> None:
        raise OSError("disk full")
    src = start_source(broker, stops, tenant, dead_letters=broken)
    publisher.publish_many([(tenant_topic(tenant), b"{bad"), (tenant_topic(tenant), payload(ts=7))])
    assert [i.reading.ts for i in drain(src, 1)] == [7.0]
    st = src.statistics()
    assert st.dead_letter_failures == 1 and st.dead_lettered == 0 and st.errors == 0


@pytest.mark.integration
def test_ingest_chain_stores_each_reading_once_in_sqlite(broker, publisher, tmp_path, capsys):
    """MQTT -> MqttIngest -> DurableQueue -> SqlWriter -> sqlite, and the rate it sustains."""
    tenant = f"t{uuid.uuid4().hex[:8]}"
    queue = DurableQueue(tmp_path / "ingest.db", "readings")
    db = tmp_path / "readings.db"
    n = 5000
    try:
        with Runtime(workers=2) as rt:
            ingest = rt.spawn(MqttIngest, broker, queue, tenant=tenant, capacity=1000)
            writer = rt.spawn(SqlWriter, queue, lambda: SqliteStore(db), batch_size=1000,
                              poll_interval=0.01)
            wait_until(lambda: ingest.ask("statistics").subscribed, timeout=5.0,
                       message="subscribed")  # (connected alone: a probe could beat the SUBACK)
            publisher.publish(tenant_topic(tenant, "probe"), payload(ts=1))
            wait_until(lambda: writer.ask("statistics").get("inserted", 0) >= 1, timeout=10.0,
                       message="the probe row")
            started = time.perf_counter()
            for chunk in range(0, n, 500):  # paced below the broker's 1000-message session queue
                publisher.publish_many([(tenant_topic(tenant, f"d{i % 10}"), payload(ts=10_000 + i))
                                        for i in range(chunk, chunk + 500)])
                wait_until(lambda c=chunk: writer.ask("statistics")["inserted"] >= c - 400,
                           timeout=30.0, message="the writer to keep up")
            wait_until(lambda: writer.ask("statistics")["inserted"] == n + 1, timeout=60.0,
                       message=f"{n} rows")
            elapsed = time.perf_counter() - started
            publisher.publish(tenant_topic(tenant, "d0"), payload(ts=10_000))  # a duplicate
            wait_until(lambda: writer.ask("statistics")["duplicates"] >= 1, timeout=10.0,
                       message="the duplicate")
        store = SqliteStore(db)
        try:
            assert store.count() == n + 1
        finally:
            store.close()
        with capsys.disabled():
            print(f"\n{n / elapsed:,.0f} MQTT readings/s ingested into sqlite "
                  f"(QoS 1 -> durable queue -> SQL, end to end)")
    finally:
        queue.close()


@pytest.mark.integration
def test_the_publisher_node_sends_a_stream_to_the_broker(broker, stops):
    from actors.connectors import MqttPublisher
    from actors.stream import Graph, IterableSource
    tenant = f"t{uuid.uuid4().hex[:8]}"
    src = start_source(broker, stops, tenant)
    readings = [Reading(tenant, f"d{i % 4}", 100.0 + i, 20.0, 50.0) for i in range(300)]
    with Runtime(workers=2) as rt:
        g = Graph("publish")
        g.add("readings", IterableSource, readings)
        g.add("out", MqttPublisher, MqttOptions())
        g.pipe("readings", "out")
        inst = g.instantiate(rt, tenant)
        got = drain(src, 300)
        assert inst.wait_complete(10.0)
    assert sorted(i.reading.ts for i in got) == [r.ts for r in readings]
    assert {i.reading for i in got} == set(readings)
