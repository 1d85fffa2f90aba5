"""The shipped Mosquitto setup (deploy/mosquitto: config, ACL, mqtt_users.py), started on a free
loopback port with only its paths and port changed: a device of tenant A cannot publish into
tenant B's topics (the reading never reaches the ingest) while B's own device can; a per-device
user is held to its own device topic; anonymous clients and removed users are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from actors import Runtime
from actors.connectors import MqttIngest, MqttOptions, readings_topic
from actors.queue import DurableQueue
from actors.testing import wait_until
from tests._mosquitto import PrivateBroker, free_port
from tests.conftest import require_program

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
PASSWORDS = {"acme": "acme-password-1", "globex": "globex-password-2",
             "acme.s1": "device-password-3", "service.ingest": "ingest-password-4"}


def users(passwd: Path, acl: Path, *args: str, password: str = "") -> str:
    proc = subprocess.run([sys.executable, str(DEPLOY / "mqtt_users.py"), "--passwd", str(passwd),
                           "--acl", str(acl), *args], input=password + "\n", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def shipped_config(port: int, passwd: Path, acl: Path) -> list[str]:
    """deploy/mosquitto/mosquitto.conf with the port, the two file paths and persistence
    changed (nothing else)."""
    out = []
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        if line.startswith("password_file "):
            line = f"password_file {passwd}"
        elif line.startswith("acl_file "):
            line = f"acl_file {acl}"
        elif line == "listener 1883 127.0.0.1":
            line = f"listener {port} 127.0.0.1"
        elif line.startswith("persistence"):
            continue
        out.append(line)
    return out


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for program in ("mosquitto", "mosquitto_passwd"):
        require_program(program)
    d = tmp_path_factory.mktemp("deploy-mosquitto")
    passwd, acl = d / "passwd", d / "acl"
    acl.write_text((DEPLOY / "acl").read_text())
    users(passwd, acl, "add-tenant", "acme", password=PASSWORDS["acme"])
    users(passwd, acl, "add-tenant", "globex", password=PASSWORDS["globex"])
    users(passwd, acl, "add-device", "acme", "s1", password=PASSWORDS["acme.s1"])
    users(passwd, acl, "add-service", "ingest", password=PASSWORDS["service.ingest"])
    port = free_port()
    config = shipped_config(port, passwd, acl)
    assert "allow_anonymous false" in config and f"listener {port} 127.0.0.1" in config
    assert not [line for line in config if line.startswith("listener") and "127.0.0.1" not in line]
    with PrivateBroker(d / "run", config, listener="", port=port) as b:
        yield {"port": port, "passwd": passwd, "acl": acl, "broker": b}


def connect(port: int, user: str | None, password: str | None = None) -> tuple[Any, Any]:
    """A connected paho client (network loop started) and its CONNACK reason code."""
    import paho.mqtt.client as mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password if password is not None else PASSWORDS[user])
    got: list[Any] = []
    client.on_connect = lambda c, u, flags, reason, p: got.append(reason)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(lambda: bool(got) or not client.is_connected() and bool(got), timeout=10.0,
               message=f"a CONNACK for {user}")
    return client, got[0]


def publish(port: int, user: str, topic: str, ts: float) -> None:
    """Publish one reading at QoS 1 as ``user`` and wait for the broker's PUBACK (so the broker
    has decided about it before anything published later)."""
    client, reason = connect(port, user)
    try:
        assert not reason.is_failure, (user, str(reason))
        info = client.publish(topic, json.dumps({"ts": ts, "temp": 20.0, "hum": 50.0}), qos=1)
        info.wait_for_publish(10.0)
        assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_tenants_device_cannot_publish_into_another_tenants_topics(broker, tmp_path):
    port = broker["port"]
    queues = {t: DurableQueue(tmp_path / f"{t}.queue", t) for t in ("acme", "globex")}
    dead = DurableQueue(tmp_path / "dead.queue", "dead")
    opts = MqttOptions(port=port, username="service.ingest", password=PASSWORDS["service.ingest"],
                       client_id=f"ingest-{uuid.uuid4().hex[:6]}")
    try:
        with Runtime(workers=2) as rt:
            ingest = rt.spawn(MqttIngest, opts, queues.get, dead_letters=dead)
            wait_until(lambda: ingest.ask("statistics").subscribed, timeout=10.0,
                       message="the ingest service subscribed")
            # forbidden first, each acked by the broker before the next is sent
            publish(port, "acme", readings_topic("globex", "intruder"), 1.0)
            publish(port, "acme.s1", readings_topic("acme", "s2"), 2.0)
            publish(port, "acme.s1", readings_topic("globex", "s1"), 3.0)
            # then what is allowed
            publish(port, "globex", readings_topic("globex", "g1"), 4.0)
            publish(port, "acme", readings_topic("acme", "a1"), 5.0)
            publish(port, "acme.s1", readings_topic("acme", "s1"), 6.0)
            wait_until(lambda: ingest.ask("statistics").queued == 3, timeout=10.0,
                       message="the three allowed readings")
            s = ingest.ask("statistics")
            assert s.queued_by_tenant == {"globex": 1, "acme": 2} and s.dead_lettered == 0
        rows = {t: sorted((r.payload[1], r.payload[2]) for r in q.get(max_items=100))
                for t, q in queues.items()}
        assert rows == {"globex": [("g1", 4.0)], "acme": [("a1", 5.0), ("s1", 6.0)]}
    finally:
        for q in (*queues.values(), dead):
            q.close()


def test_anonymous_clients_wrong_passwords_and_removed_users_are_refused(broker):
    port = broker["port"]
    for user, password in ((None, None), ("acme", "not-the-password")):
        client, reason = connect(port, user, password)
        client.loop_stop()
        client.disconnect()
        assert reason.is_failure, (user, str(reason))
    users(broker["passwd"], broker["acl"], "add-device", "globex", "gone",
          password="temporary-password-5")
    broker["broker"].reload()
    client, reason = connect(port, "globex.gone", "temporary-password-5")
    client.loop_stop()
    client.disconnect()
    assert not reason.is_failure
    users(broker["passwd"], broker["acl"], "remove", "globex.gone")
    assert "globex.gone" not in broker["acl"].read_text()
    broker["broker"].reload()
    client, reason = connect(port, "globex.gone", "temporary-password-5")
    client.loop_stop()
    client.disconnect()
    assert reason.is_failure


def test_mqtt_users_refuses_names_that_could_cross_tenants(tmp_path):
    for args in (("add-tenant", "acme.evil"), ("add-tenant", "a/b"), ("add-tenant", "+"),
                 ("add-tenant", "service"), ("add-device", "acme", "#")):
        proc = subprocess.run([sys.executable, str(DEPLOY / "mqtt_users.py"), "--passwd",
                               str(tmp_path / "p"), "--acl", str(tmp_path / "a"), *args],
                              input="a-long-enough-password\n", capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode != 0 and args[-1] in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "p").exists()
