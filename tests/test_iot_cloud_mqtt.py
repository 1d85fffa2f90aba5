"""End to end with a real broker: 10,000 readings for 3 tenants published to a private Mosquitto
(free loopback port: the app reads every tenant's topic with one client, so nobody else's
readings may be on that broker), the IoT cloud app ingesting them while a chaos actor crashes
nodes. Every valid reading is stored
exactly once per (tenant, device, ts); every invalid one is a dead letter with a reason; every
stored row belongs to the tenant whose topic it came from."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from actors.queue import DurableQueue
from tests._mosquitto import PrivateBroker
from tests.conftest import require_program

ROOT = Path(__file__).resolve().parent.parent
TOTAL, DEVICES = 10_000, 20

pytestmark = pytest.mark.integration


def readings(tenants):
    """(tenant, device, ts, payload bytes, valid?) - about 3% invalid in four different ways."""
    out = []
    per_tenant = TOTAL // len(tenants)
    for t_index, tenant in enumerate(tenants):
        for n in range(per_tenant + (TOTAL - per_tenant * len(tenants) if t_index == 0 else 0)):
            device = f"office-{tenant}.{n % DEVICES:04d}"
            ts = 1_800_000_000.0 + n // DEVICES + (n % DEVICES) / 1000
            body = {"ts": ts, "temp": 21.0 + (n % 7) / 10, "hum": 40.0 + n % 20}
            valid = True
            if n % 97 == 5:
                body["temp"], valid = "warm", False           # wrong type
            elif n % 97 == 11:
                del body["hum"]                                # missing field
                valid = False
            elif n % 97 == 17:
                body["hum"], valid = 140.0, False              # out of range
            raw = json.dumps(body).encode()
            if n % 97 == 23:
                raw, valid = b"{not json", False               # malformed
            out.append((tenant, device, ts, raw, valid))
    return out


def publish_all(items, port):
    import paho.mqtt.client as mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"e2e-pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        pending = []
        for tenant, device, _, raw, _ in items:
            pending.append(client.publish(f"tenants/{tenant}/devices/{device}/readings", raw, qos=1))
            if len(pending) >= 200:
                for info in pending:
                    info.wait_for_publish(10)
                pending.clear()
                # Rate limit, not synchronisation: at most 4,000 readings/s, below what the app
                # ingests, so Mosquitto's per-client queue (1,000 by default) never overflows.
                time.sleep(0.05)
        for info in pending:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_ten_thousand_mqtt_readings_are_stored_exactly_once_or_dead_lettered(tmp_path):
    require_program("mosquitto")
    with PrivateBroker(tmp_path / "broker") as broker:
        check_ten_thousand(tmp_path, broker.port)


def check_ten_thousand(tmp_path, port):
    run = uuid.uuid4().hex[:6]
    tenants = [f"a{run}", f"b{run}", f"c{run}"]  # fresh MQTT sessions for every run
    db = tmp_path / "readings.db"
    app = subprocess.Popen(
        [sys.executable, "-u", "-m", "streamvisor.cli", "run", str(ROOT / "examples" / "iot_cloud.py"),
         "--duration", "25", "--devices", "0", "--mqtt", f"127.0.0.1:{port}", "--chaos", "0.7",
         "--tenants", ",".join(tenants), "--db", str(db), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env={**os.environ, "STREAMVISOR_LOG_LEVEL": "error"})
    try:
        first = app.stdout.readline()
        assert first.startswith("iot_cloud:"), first
        for _ in range(30):  # progress lines, one a second: until the broker took the subscription
            line = app.stdout.readline()
            if "mqtt_subscribed=1" in line:
                break
        else:
            raise AssertionError(f"the app did not subscribe within 30 progress lines: {line!r}")
        items = readings(tenants)
        publish_all(items, port)
        out, _ = app.communicate(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
    summary = next(line for line in out.splitlines() if line.startswith("summary:"))
    counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", summary)}
    valid = {(t, d, ts) for t, d, ts, _, ok in items if ok}
    invalid = [(t, d, ts) for t, d, ts, _, ok in items if not ok]
    assert len(items) == TOTAL and len(valid) > 9_000 and len(invalid) > 300
    with closing(sqlite3.connect(db)) as conn:  # sqlite3's own "with" does not close
        rows = conn.execute("SELECT tenant, device, ts FROM readings").fetchall()
    stored = {(t, d, ts) for t, d, ts in rows}
    assert len(rows) == len(stored)                    # exactly once per (tenant, device, ts)
    assert stored == valid                             # every valid reading, nothing else
    for tenant, device, _ in rows:                     # no tenant sees another's data
        assert f"-{tenant}." in device
    reasons = []
    with DurableQueue(tmp_path / "queues.db", "mqtt-dead") as dead:  # the node's, one client
        letters = [m.payload for m in dead.get(max_items=1000)]
    reasons += [letter["reason"] for letter in letters]
    assert {letter["topic"].split("/")[1] for letter in letters} <= set(tenants)
    for tenant in tenants:
        with DurableQueue(tmp_path / "queues.db", "readings", tenant=tenant) as queue:
            reasons += [letter.reason for letter in queue.dead_letters()]
    assert len(reasons) == len(invalid)                # every invalid one, once, with a reason
    assert all(reason for reason in reasons)
    assert counters["restarts"] >= 1                   # the supervisors really worked meanwhile
