"""The peer of bench_mqtt: what a competent developer writes in 40 lines without a framework.
One paho client, QoS 1 with manual acks, json.loads, executemany into SQLite (WAL,
synchronous=FULL) and the broker's ack after the commit. No validation, no dead letters.

    python tests/benchmarks/_mqtt_plain.py PORT DB CLIENT_ID     (prints "ready" once subscribed)
"""
import json
import sqlite3
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

port, db, client_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE IF NOT EXISTS readings (tenant TEXT NOT NULL, device TEXT NOT NULL, "
             "ts REAL NOT NULL, temp REAL NOT NULL, hum REAL NOT NULL, "
             "PRIMARY KEY (tenant, device, ts)) WITHOUT ROWID")
pending: list = []
cond = threading.Condition()


def on_message(client, userdata, msg):
    with cond:
        pending.append(msg)
        cond.notify()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                     protocol=mqtt.MQTTv5, manual_ack=True)
client.on_message = on_message
client.on_connect = lambda c, u, f, r, p: c.subscribe("tenants/+/devices/+/readings", qos=1)
client.on_subscribe = lambda *args: print("ready", flush=True)
props = Properties(PacketTypes.CONNECT)
props.ReceiveMaximum = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
client.connect("127.0.0.1", port, properties=props)
client.loop_start()
while True:
    with cond:
        while not pending:
            cond.wait()
        batch = pending[:]
        del pending[:]
    rows = []
    for m in batch:
        _, tenant, _, device, _ = m.topic.split("/")
        r = json.loads(m.payload)
        rows.append((tenant, device, r["ts"], r["temp"], r["hum"]))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
    conn.execute("COMMIT")
    for m in batch:
        client.ack(m.mid, m.qos)
