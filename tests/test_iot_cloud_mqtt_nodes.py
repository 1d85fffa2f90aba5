"""The IoT cloud's one MQTT client per node when a cluster places tenants: the node subscribes
to the topics of the tenants placed on it, one client for all of them, and drops a tenant's
subscription when the tenant leaves (its next readings go to the node that hosts it). Runs the
example's own start/start_tenant/stop_tenant against a private Mosquitto; the cluster object is
a stand-in with the node id (the placement itself is tested with the cluster)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from actors import Runtime
from actors.connectors import MqttOptions, MqttSink, readings_topic
from actors.testing import wait_until
from tests._mosquitto import PrivateBroker
from tests.conftest import require_program

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    require_program("mosquitto")
    with PrivateBroker(tmp_path / "broker") as broker:
        yield broker.port


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location(f"iot_cloud_{uuid.uuid4().hex[:6]}",
                                                  ROOT / "examples" / "iot_cloud.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def rows(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT tenant, count(*) FROM readings GROUP BY tenant"))


def stored_ts(db: Path) -> set[float]:
    with closing(sqlite3.connect(db)) as conn:
        return {ts for (ts,) in conn.execute("SELECT ts FROM readings")}


def test_a_cluster_node_reads_only_the_tenants_placed_on_it_with_one_client(port, tmp_path):
    app = load_example()
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    options = parser.parse_args(["--devices", "0", "--chaos", "0", "--mqtt", f"127.0.0.1:{port}",
                                 "--mqtt-client-id", f"node-{uuid.uuid4().hex[:6]}",
                                 "--db", str(tmp_path / "r.db"), "--data-dir", str(tmp_path)])
    options.cluster = SimpleNamespace(id="n1")
    sink = MqttSink(MqttOptions(port=port)).start()
    assert sink.wait_connected(10.0)
    sent = [0]

    def publish(tenant: str, count: int) -> None:
        messages = []
        for _ in range(count):
            sent[0] += 1
            body = {"ts": 1_800_000_000.0 + sent[0], "temp": 21.0, "hum": 40.0}
            messages.append((readings_topic(tenant, f"office-{tenant}.0001"),
                             json.dumps(body).encode()))
        sink.publish_many(messages, timeout=10.0)

    try:
        with Runtime(workers=2) as rt:
            progress = app.start(rt, options)
            wait_until(lambda: progress().get("mqtt_subscribed") == 1, timeout=10.0,
                       message="the node's client connected")
            app.start_tenant(rt, "acme", options)
            app.start_tenant(rt, "globex", options)

            def stored(want: dict[str, int]) -> bool:
                publish("acme", 1)  # probes until both subscriptions are live
                publish("globex", 1)
                got = rows(tmp_path / "r.db")
                return all(got.get(t, 0) >= n for t, n in want.items())
            wait_until(lambda: stored({"acme": 1, "globex": 1}), timeout=15.0,
                       message="both tenants' subscriptions")
            publish("acme", 1)  # markers: every probe before them is stored or was never
            publish("globex", 1)  # delivered (one publisher, in order)
            markers = {1_800_000_000.0 + sent[0] - 1, 1_800_000_000.0 + sent[0]}
            wait_until(lambda: markers <= stored_ts(tmp_path / "r.db"), timeout=15.0,
                       message="both markers stored")
            app.stop_tenant(rt, "globex")  # moved to another node: unsubscribed
            ingest = app._app.mqtt.ref  # (the supervised client's current incarnation)
            wait_until(lambda: ingest.ask("statistics").source.changes_pending == 0,
                       timeout=10.0, message="the broker's UNSUBACK")
            rejected = progress()["mqtt_rejected"]
            before = rows(tmp_path / "r.db")
            publish("initech", 5)  # never placed here: never subscribed, never read
            publish("globex", 5)
            publish("acme", 5)
            wait_until(lambda: rows(tmp_path / "r.db")["acme"] == before["acme"] + 5,
                       timeout=15.0, message="acme's five readings")
            line = progress()
            app.stop(rt)
        after = rows(tmp_path / "r.db")
        assert "initech" not in after and after["globex"] == before["globex"]
        assert line["mqtt_rejected"] == rejected  # a foreign tenant's readings never came here
    finally:
        sink.stop()


def test_forty_tenants_on_one_node_share_one_broker_connection(tmp_path):
    require_program("mosquitto")
    tenants = [f"t{i:02d}" for i in range(40)]
    with PrivateBroker(tmp_path / "broker") as broker:
        app = load_example()
        parser = argparse.ArgumentParser()
        app.add_arguments(parser)
        client_id = f"node-{uuid.uuid4().hex[:6]}"
        options = parser.parse_args([
            "--devices", "0", "--chaos", "0", "--tenants", ",".join(tenants),
            "--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-client-id", client_id,
            "--db", str(tmp_path / "r.db"), "--data-dir", str(tmp_path / "data")])
        sink = MqttSink(MqttOptions(port=broker.port)).start()
        try:
            assert sink.wait_connected(10.0)
            with Runtime(workers=2) as rt:
                progress = app.start(rt, options)
                wait_until(lambda: progress().get("mqtt_subscribed") == 1, timeout=10.0,
                           message="the node's client subscribed")
                sink.publish_many([
                    (readings_topic(t, f"office-{t}.0001"),
                     json.dumps({"ts": 1_800_000_000.0 + n, "temp": 21.0, "hum": 40.0}).encode())
                    for t in tenants for n in range(3)], timeout=10.0)
                wait_until(lambda: progress()["stored"] == 120, timeout=30.0,
                           message="3 readings of each of the 40 tenants stored")
                app.stop(rt)
        finally:
            sink.stop()
        log = broker.log_text()
    assert rows(tmp_path / "r.db") == {t: 3 for t in tenants}
    assert log.count(f" as {client_id} ") == 1  # one connection for every tenant of the node
    assert log.count("New client connected") == 2  # ... and the test's publisher: nothing else
