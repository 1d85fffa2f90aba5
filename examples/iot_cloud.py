r"""The main job: an IoT cloud for several tenants, on embedded defaults.

    streamvisor run examples/iot_cloud.py --duration 20
    streamvisor run examples/iot_cloud.py --duration 20 --tenants acme,globex --devices 200 --db readings.db

Every tenant gets the same supervised graph (REST_FOR_ONE along the pipeline):

    devices -> DurableQueue -> queue -> categorise -> validate -> sanity -> store (SQLite)
                                                        |            |
                                     bad readings: dead letters   alerts -> pub/sub "alerts/<device>"
                                     with the reason (validate, sanity)      -> a wildcard subscriber

    sanity -> minute (a Window: per-device minute means) -> minutes (table minute_averages)

- a ``Fleet`` actor per tenant simulates its devices and puts their readings into the tenant's
  durable queue (acknowledged = on disk); some devices send malformed or impossible readings;
- ``minute`` (a ``Window``) keeps per-device minute averages in event time (the readings'
  ``ts``, 15 s of lateness, silent devices closed after 90 s) and ``minutes`` upserts them into
  ``minute_averages(tenant, device, start, end, mean_temp, n)``, keyed (tenant, device, start);
  a reading redelivered after a crash is counted once (the window keeps temperatures by ts);
- the ``queue`` source leases readings only when the graph has credit; ``store`` inserts them
  into the ``readings`` table (tenant, device, ts, temp, hum), idempotently, then acknowledges
  them: a reading lost in a crash comes back from the queue and is stored exactly once;
- a clock actor publishes the time on the event bus every second; each tenant's ``LocalTime``
  shows it in the tenant's timezone, always the newest tick, never a backlog;
- a ``Chaos`` actor crashes a random tenant's ``sanity`` node every few seconds: its supervisor
  restarts it and the nodes after it; the other tenants never notice.

The progress line shows readings in, stored, dead-lettered, alerts, restarts and the clock.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import tempfile
import time
from contextlib import closing
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from actors import Actor, Runtime
from actors.pubsub import Publish
from actors.queue import DurableQueue, QueueSink, QueueSource
from actors.connectors import MqttIngest, MqttOptions, PostgresStore, SqliteStore
from actors.stream import Graph, Node, Sink, Tumbling, Window
from actors.testing import Faults
from supervisors import GraphSupervision
from supervisors.cluster import fenced_commit

TENANTS = ["acme", "globex", "initech"]  # also the default tenant list of a cluster
TIMEZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC"]
CATEGORIES = {  # device kind -> plausible temperature range (C) and the alert threshold
    "cold-room": (-30.0, 10.0, 5.0),
    "office": (5.0, 40.0, 28.0),
    "server": (10.0, 60.0, 45.0),
}


# -- the processing graph ------------------------------------------------------------------------
class Categorise(Node):
    """Tags each reading with its device kind (from the device id)."""

    def process(self, item: Any, port: str) -> None:
        reading = item.payload
        if isinstance(reading, (list, tuple)) and len(reading) == 5:  # a row from MqttIngest
            _, device, ts, temp, hum = reading
            reading = {"device": device, "ts": ts, "temp": temp, "hum": hum}
            item = item.derive(reading)
        device = str(reading.get("device", "")) if isinstance(reading, dict) else ""
        kind = device.rsplit("-", 1)[0]
        kind = kind if kind in CATEGORIES else "office"
        self.emit(item.derive({**reading, "kind": kind}) if isinstance(reading, dict) else item)


class Validate(Node):
    """Well-formed readings only: a dict with a device id, a timestamp and numeric temp/hum."""

    def process(self, item: Any, port: str) -> None:
        reading = item.payload
        problem = _malformed(reading)
        if problem:
            item.reject(problem)  # a dead letter with the reason, at once
        else:
            self.emit(item)


def _malformed(reading: Any) -> str | None:
    if not isinstance(reading, dict):
        return f"reading is a {type(reading).__name__}, not an object"
    for field in ("device", "ts", "temp", "hum"):
        if field not in reading:
            return f"missing field {field!r}"
    for field in ("temp", "hum", "ts"):
        value = reading[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{field} is not a number: {value!r}"
        if not math.isfinite(value):
            return f"{field} is not finite: {value!r}"
    return None


class Sanity(Node):
    """Physically plausible readings only; hot ones raise an alert on the tenant's pub/sub."""

    def process(self, item: Any, port: str) -> None:
        r = item.payload
        low, high, alert = CATEGORIES[r["kind"]]
        if not low <= r["temp"] <= high:
            item.reject(f"temp {r['temp']} C outside {low}..{high} C for a {r['kind']}")
            return
        if not 0.0 <= r["hum"] <= 100.0:
            item.reject(f"humidity {r['hum']} % outside 0..100 %")
            return
        if r["temp"] >= alert:
            # The tenant's namespace comes from this node's identity, not from the topic.
            self.runtime.pubsub.publish(f"alerts/{r['device']}", {"temp": r["temp"], "ts": r["ts"]})
        self.emit(item)


class Store(QueueSink):
    """Inserts readings (one transaction per batch, idempotent on tenant, device and ts) into
    SQLite or PostgreSQL, then acknowledges them. ``shared``: the node's one store (one
    connection for every tenant, thread-safe); otherwise the node opens its own ``db``. The
    tenant column always comes from this node's identity, never from the reading."""

    def __init__(self, queue: Any, db: str, shared: Any = None) -> None:
        super().__init__(queue)
        self.db = db
        self.shared = shared

    def on_start(self) -> None:
        self.rows = self.shared if self.shared is not None else open_store(self.db)

    def store(self, items: list[Any]) -> None:
        tenant = self.ref.tenant
        self.rows.insert([(tenant, i.payload["device"], float(i.payload["ts"]),
                           float(i.payload["temp"]), float(i.payload["hum"])) for i in items])

    def on_stop(self, reason: Any) -> None:
        if self.rows is not self.shared:
            self.rows.close()


# -- per-device minute averages: a Window node, an idempotent upsert -------------------------------
def _device(item: Any) -> str:
    return item.payload["device"]


def _ts(item: Any) -> float:
    return item.payload["ts"]


def _keep(acc: dict[str, float], item: Any) -> dict[str, float]:
    # by ts: a redelivered reading counts once (repr: an exact str key, so that the window's
    # snapshot stays encodable by actors.codec, whose maps take str/bytes/int keys)
    acc[repr(item.payload["ts"])] = item.payload["temp"]
    return acc


def _mean(acc: dict[str, float]) -> tuple[float, int]:
    return sum(acc.values()) / len(acc), len(acc)


class MinuteStore(Sink):
    """Upserts ``WindowResult``s into ``minute_averages(tenant, device, start, end, mean_temp,
    n)``, keyed (tenant, device, start): a minute emitted again after a restart overwrites its
    row, never doubles it. ``fence_of(tenant)``: in a cluster with tenant leases (``--state``),
    the (epoch, lease table) this instance's tenant was started with; each batch then commits
    only while that epoch is the tenant's current one (``fenced_commit``), so a node that lost
    the tenant's lease cannot overwrite the new owner's minutes."""

    def __init__(self, db: str, fence_of: Any = None) -> None:
        self.db = db
        self.fence_of = fence_of

    def on_start(self) -> None:
        self.table = MinuteTable(self.db)

    def process_batch(self, results: Any, port: str) -> None:
        tenant = self.ref.tenant
        fence = self.fence_of(tenant) if self.fence_of is not None else None
        self.table.upsert([(tenant, r.key, r.start, r.end, r.value[0], r.value[1])
                           for r in results],
                          fence=None if fence is None else (tenant, *fence))

    def on_stop(self, reason: Any) -> None:
        self.table.close()


class MinuteTable:
    """The ``minute_averages`` table in SQLite (a path) or PostgreSQL (a ``postgresql://`` URL)."""

    COLUMNS = "(tenant, device, start, \"end\", mean_temp, n)"
    UPSERT = (" ON CONFLICT (tenant, device, start) DO UPDATE SET \"end\" = excluded.\"end\", "
              "mean_temp = excluded.mean_temp, n = excluded.n")

    def __init__(self, db: str) -> None:
        self.pg = db.startswith(("postgresql://", "postgres://"))
        if self.pg:
            import psycopg
            self.conn: Any = psycopg.connect(db, autocommit=True)
            mark = "%s"
        else:
            # an actor runs on any worker thread, one handler at a time
            self.conn = sqlite3.connect(db, timeout=30, isolation_level=None,
                                        check_same_thread=False)
            mark = "?"
        self.conn.execute("CREATE TABLE IF NOT EXISTS minute_averages (tenant TEXT NOT NULL, "
                          "device TEXT NOT NULL, start DOUBLE PRECISION NOT NULL, \"end\" "
                          "DOUBLE PRECISION NOT NULL, mean_temp DOUBLE PRECISION NOT NULL, "
                          "n INTEGER NOT NULL, PRIMARY KEY (tenant, device, start))")
        self.sql = (f"INSERT INTO minute_averages {self.COLUMNS} VALUES "
                    f"({', '.join([mark] * 6)})" + self.UPSERT)

    def upsert(self, rows: list[tuple[Any, ...]],
               fence: tuple[str, int, str] | None = None) -> None:
        """One transaction. ``fence`` = (tenant, epoch, lease table): PostgreSQL only; the
        rows commit only if ``epoch`` is still the tenant's lease epoch, else ``StaleEpoch``
        (and nothing is written)."""
        if fence is not None and not self.pg:
            raise ValueError("fenced minute writes need the table in PostgreSQL (--db "
                             "postgresql://...), like the leases")
        if self.pg:
            with self.conn.transaction(), self.conn.cursor() as cur:
                if fence is not None:
                    fenced_commit(self.conn, fence[0], fence[1], table=fence[2])
                cur.executemany(self.sql, rows)
        else:
            with closing(self.conn.cursor()) as cur:
                cur.execute("BEGIN")
                cur.executemany(self.sql, rows)
                cur.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def open_store(db: str) -> Any:
    """``postgresql://...`` -> PostgreSQL, anything else is an SQLite file."""
    if db.startswith(("postgresql://", "postgres://")):
        return PostgresStore(db)
    return SqliteStore(db)


def count_rows(db: str) -> list[tuple[str, int]]:
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg
        with psycopg.connect(db) as conn:
            return list(conn.execute("SELECT tenant, COUNT(*) FROM readings GROUP BY tenant "
                                     "ORDER BY tenant").fetchall())
    with closing(sqlite3.connect(db)) as conn:  # (sqlite3's own "with" commits, never closes)
        return list(conn.execute("SELECT tenant, COUNT(*) FROM readings GROUP BY tenant "
                                 "ORDER BY tenant").fetchall())


def build_graph(queue_of: Any, db: str, store: Any = None, fence_of: Any = None) -> Graph:
    """The one graph every tenant gets; ``queue_of(tenant)`` is that tenant's durable queue,
    ``store`` the node's shared readings store (``None``: each instance opens ``db``),
    ``fence_of(tenant)`` the (epoch, lease table) fencing its minute writes (see
    ``MinuteStore``)."""
    g = Graph("ingest", supervision=GraphSupervision(intensity=10, period=10.0))
    g.add("queue", QueueSource, queue_of)
    g.add("categorise", Categorise)
    g.add("validate", Validate)
    g.add("sanity", Sanity)
    g.add("store", Store, queue_of, db, store)
    g.pipe("queue", "categorise", "validate", "sanity", "store")
    # per-device minute averages in event time; lateness above the queue's visibility timeout,
    # so that a reading redelivered after a crash still finds its minute open
    g.add("minute", Window, key=_device, time=_ts, windows=Tumbling(60.0), lateness=15.0,
          idle=90.0, init=dict, fold=_keep, result=_mean)
    g.add("minutes", MinuteStore, db, fence_of)
    g.connect("sanity", "minute")
    g.connect("minute.out", "minutes")
    return g


def graph() -> Graph:
    """The graph for ``streamvisor graph examples/iot_cloud.py`` (queues and database are
    placeholders: only the shape matters there)."""
    return build_graph(lambda tenant: None, "readings.db")


# -- actors around the graph ------------------------------------------------------------------------
class Fleet(Actor):
    """A tenant's devices: every ``period`` each sends a reading into the durable queue."""

    def __init__(self, queue: DurableQueue, devices: int, period: float, seed: int) -> None:
        self.queue, self.devices, self.period = queue, devices, period
        self.random = random.Random(seed)
        self.seed = seed

    def on_start(self) -> None:
        kinds = list(CATEGORIES)
        tag = self.ref.tenant or "dev"  # each customer has its own devices
        self.ids = [f"{kinds[i % len(kinds)]}-{tag}.{i:04d}" for i in range(self.devices)]
        self.temps = {d: _base(d) for d in self.ids}
        self.sent = 0
        self.send_after(self.period, "tick")

    def receive(self, message: Any) -> Any:
        if message == "sent":
            return self.sent
        now = time.time()
        batch = []
        for device in self.ids:
            t = self.temps[device] = self.temps[device] + 0.3 * (_base(device) - self.temps[device]) \
                + self.random.gauss(0, 1.5)
            reading: Any = {"device": device, "ts": now, "temp": round(t, 2),
                            "hum": round(self.random.uniform(20, 70), 1)}
            roll = self.random.random()
            if roll < 0.01:
                reading["temp"] = float("nan")  # a broken sensor
            elif roll < 0.015:
                reading["temp"] = 999.0  # impossible
            elif roll < 0.02:
                del reading["hum"]  # malformed firmware
            batch.append(reading)
        self.queue.put_many(batch)
        self.sent += len(batch)
        self.send_after(self.period, "tick")


def _base(device: str) -> float:
    low, high, alert = CATEGORIES[device.rsplit("-", 1)[0]]
    return (low + alert) / 2 + (alert - low) * 0.45 * (int(device[-1]) == 7)


class Alerts(Actor):
    """A tenant's wildcard subscriber to ``alerts/#``: counts alerts per device."""

    def __init__(self) -> None:
        self.count = 0
        self.devices: set[str] = set()

    def receive(self, message: Any) -> Any:
        match message:
            case Publish(topic=topic):
                self.count += 1
                self.devices.add(topic.rsplit("/", 1)[-1])
            case "report":
                return self.count, len(self.devices)


class Clock(Actor):
    """Publishes the UTC time on the bus channel ``clock`` every second."""

    def on_start(self) -> None:
        self.receive("tick")

    def receive(self, message: Any) -> None:
        self.runtime.bus.publish(datetime.now(timezone.utc), channel="clock")
        self.send_after(1.0, "tick")


class LocalTime(Actor):
    """Shows the newest clock tick in the tenant's timezone (older ticks are replaced)."""

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.shown = "--:--:--"

    def on_start(self) -> None:
        self.runtime.bus.subscribe("clock", self.ref, max_age=2.0)

    def receive(self, message: Any) -> Any:
        if message == "show":
            return self.shown
        if isinstance(message, datetime):
            self.shown = message.astimezone(self.zone).strftime("%H:%M:%S")
        return None


class Chaos(Actor):
    """Crashes a random tenant's ``sanity`` node every ``every`` seconds."""

    def __init__(self, instances: dict[str, Any], every: float, seed: int) -> None:
        self.instances, self.every = instances, every
        self.random = random.Random(seed)
        self.injected = 0

    def on_start(self) -> None:
        self.send_after(self.every, "strike")

    def receive(self, message: Any) -> Any:
        if message == "injected":
            return self.injected
        hosted = sorted(self.instances)  # tenants come and go in a cluster
        instance = self.instances.get(self.random.choice(hosted)) if hosted else None
        ref = instance.ref("sanity") if instance is not None else None
        if ref is not None and Faults(self.runtime).crash(ref):
            self.injected += 1
        self.send_after(self.every, "strike")


# -- the app -----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants", dest="tenant_names", default=",".join(TENANTS),
                        help="comma-separated tenants (a cluster places TENANTS on its nodes)")
    parser.add_argument("--devices", type=int, default=50, help="devices per tenant")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between readings")
    parser.add_argument("--db", default=None,
                        help="SQLite file or postgresql://... URL for the readings table")
    parser.add_argument("--mqtt", default=None, metavar="URL",
                        help="also ingest tenants/<tenant>/devices/<device>/readings from a broker: "
                             "HOST:PORT, mqtt://[USER@]HOST[:PORT] or mqtts://[USER@]HOST[:PORT] "
                             "(TLS); the password comes from $STREAMVISOR_MQTT_PASSWORD")
    parser.add_argument("--mqtt-ca", default=None, metavar="FILE",
                        help="CA certificate that signed the broker's (default: the system's)")
    parser.add_argument("--mqtt-cert", default=None, metavar="FILE", help="client certificate")
    parser.add_argument("--mqtt-key", default=None, metavar="FILE", help="client certificate key")
    parser.add_argument("--mqtt-allow-insecure-password", action="store_true",
                        help="allow a password over plain TCP to a host that is not loopback")
    parser.add_argument("--mqtt-client-id", default=None, metavar="ID",
                        help="the node's MQTT session (default iot-cloud, in a cluster "
                             "iot-cloud-<node>): a restart resumes it, unacked readings included")
    parser.add_argument("--mqtt-group", default=None, metavar="NAME",
                        help="shared subscription $share/NAME/...: nodes with the same group "
                             "split the readings (each goes to one of them)")
    parser.add_argument("--data-dir", default=None, help="where the durable queues live")
    parser.add_argument("--chaos", type=float, default=3.0, help="seconds between injected crashes (0: none)")


def mqtt_options(options: Any, client_id: str) -> MqttOptions:
    """The broker settings of ``--mqtt*``; a bad URL, file or an insecure password stops the app
    with the reason."""
    try:
        return MqttOptions.from_url(
            options.mqtt, ca_file=options.mqtt_ca, cert_file=options.mqtt_cert,
            key_file=options.mqtt_key, client_id=client_id,
            allow_insecure_password=options.mqtt_allow_insecure_password)
    except ValueError as exc:
        raise SystemExit(f"iot_cloud: --mqtt: {exc}") from None


class _Tenant:
    """What one tenant runs on this node."""

    def __init__(self) -> None:
        self.queue: DurableQueue | None = None
        self.instance: Any = None
        self.actors: dict[str, Any] = {}  # fleet, alerts, local-time
        self.epoch = 0  # the tenant's lease epoch when it started here (cluster with --state)


class _App:
    """The node's share of the IoT cloud: shared settings and its tenants (a cluster may move
    tenants in and out; a single node hosts them all)."""

    def __init__(self, options: Any) -> None:
        if options.devices < 0 or not options.period > 0:
            raise SystemExit("iot_cloud: --devices must be >= 0 and --period > 0")
        self.options = options
        self.data_dir = options.data_dir or tempfile.mkdtemp(prefix="iot-cloud-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.db = options.db or os.path.join(self.data_dir, "readings.db")
        # One connection for every tenant's rows (creates the table; a bad URL or path fails
        # here, clearly). Each tenant's store node writes its own tenant column.
        self.store = open_store(self.db)
        self.tenants: dict[str, _Tenant] = {}
        self.in_cluster = getattr(options, "cluster", None) is not None
        # with tenant leases (cluster start --state postgresql://...), minute writes are fenced
        self.fenced = self.in_cluster and getattr(options.cluster, "leases", None) is not None
        self.graph = build_graph(lambda tenant: self.tenants[tenant].queue, self.db, self.store,
                                 self.fence_of if self.fenced else None)
        self.instances: dict[str, Any] = {}  # shared with the chaos actor
        self.mqtt: Any = None  # the node's one MQTT client (MqttIngest) for every tenant
        self.mqtt_dead: DurableQueue | None = None

    def start_mqtt(self, rt: Runtime) -> None:
        """One MQTT client for the whole node: readings are routed to their tenant's queue (the
        broker is acked after the commit); readings of a tenant this node does not host, and
        bad payloads, go to the node's dead letters (``mqtt.dead``), with their reason. A single
        node reads every tenant's topic; a cluster node subscribes to its own tenants only."""
        options = self.options
        node = getattr(options.cluster, "id", None) if self.in_cluster else None
        client_id = options.mqtt_client_id or ("iot-cloud" if node is None else f"iot-cloud-{node}")
        mqtt = mqtt_options(options, client_id)
        self.mqtt_dead = DurableQueue(os.path.join(self.data_dir, "mqtt.dead"), "mqtt-dead")

        def route(tenant: str) -> DurableQueue | None:
            t = self.tenants.get(tenant)
            return t.queue if t is not None else None
        self.mqtt = rt.spawn(MqttIngest, mqtt, route, dead_letters=self.mqtt_dead,
                             filters=[] if self.in_cluster else None, group=options.mqtt_group,
                             capacity=2000, batch_size=1000, name="mqtt")

    def fence_of(self, tenant: str) -> tuple[int, str]:
        """(epoch the tenant was started with, lease table); epoch 0 (never valid: epochs start
        at 1) once the tenant was stopped here, so a straggling write is refused."""
        t = self.tenants.get(tenant)
        leases = self.options.cluster.leases
        return (t.epoch if t is not None else 0), leases.store.table

    def start_tenant(self, rt: Runtime, tenant: str) -> None:
        options, scope, t = self.options, rt.tenant(tenant), _Tenant()
        if self.fenced:
            t.epoch = options.cluster.lease(tenant) or 0
        self.tenants[tenant] = t
        seed = sum(map(ord, tenant))
        t.queue = DurableQueue(os.path.join(self.data_dir, f"{tenant}.queue"), tenant,
                               max_deliveries=5, visibility_timeout=10.0)
        t.instance = self.instances[tenant] = self.graph.instantiate(rt, tenant)
        t.actors["alerts"] = scope.spawn(Alerts, name="alerts")
        scope.pubsub.subscribe("alerts/#", t.actors["alerts"])
        t.actors["local-time"] = scope.spawn(LocalTime, TIMEZONES[seed % len(TIMEZONES)],
                                             name="local-time")
        if options.devices:
            t.actors["fleet"] = scope.spawn(Fleet, t.queue, options.devices, options.period,
                                            seed=seed)
        if self.mqtt is not None and self.in_cluster:
            self.mqtt.tell(("subscribe", tenant))

    def stop_tenant(self, rt: Runtime, tenant: str) -> None:
        t = self.tenants.pop(tenant, None)
        if t is None:
            return
        self.instances.pop(tenant, None)
        if self.mqtt is not None and self.in_cluster:
            self.mqtt.tell(("unsubscribe", tenant))  # (unacked readings: redelivered elsewhere)
        if "fleet" in t.actors:  # no new readings first, then the graph and the rest
            rt.stop(t.actors.pop("fleet"), "shutdown")
        t.instance.stop()
        for ref in t.actors.values():
            rt.stop(ref, "shutdown")
        if t.queue is not None:
            t.queue.close()

    def stop(self, rt: Runtime) -> None:
        if self.mqtt is not None:  # no new readings first
            rt.stop(self.mqtt, "shutdown")
            self.mqtt = None
        for tenant in list(self.tenants):
            self.stop_tenant(rt, tenant)
        if self.mqtt_dead is not None:
            self.mqtt_dead.close()
        self.store.close()

    def progress(self) -> dict[str, Any]:
        tenants = list(self.tenants.values())
        readings_in = sum(t.actors["fleet"].ask("sent") for t in tenants if "fleet" in t.actors)
        extra: dict[str, Any] = {}
        if self.mqtt is not None:  # a reading is acked to the broker once it is in its queue
            s = self.mqtt.ask("statistics")  # one client per node: one ask, whatever the tenants
            readings_in += s.queued
            extra = {"mqtt_in": s.queued, "mqtt_rejected": s.dead_lettered,
                     "mqtt_subscribed": int(s.subscribed)}
        stats = [t.queue.stats() for t in tenants if t.queue is not None]
        restarts = sum(n.restarts for t in tenants for n in t.instance.statistics().nodes)
        line = {"tenants": len(tenants), "in": readings_in,
                "stored": sum(s["acked"] for s in stats),
                "dead_lettered": sum(s["dead"] for s in stats),
                "queued": sum(s["ready"] + s["in_flight"] for s in stats),
                "alerts": sum(t.actors["alerts"].ask("report")[0] for t in tenants),
                "restarts": restarts, **extra}
        if tenants:
            first = sorted(self.tenants)[0]
            line[f"{first}_time"] = self.tenants[first].actors["local-time"].ask("show")
        return line


_app: _App | None = None  # this process's app (one per node)


def start(rt: Runtime, options: Any) -> Any:
    """Once per node. A single node (``streamvisor run``) hosts every tenant of ``--tenants``; in
    a cluster the node calls ``start_tenant`` for the tenants placed on it."""
    global _app
    _app = _App(options)
    rt.spawn(Clock, name="clock")
    if options.chaos > 0:
        rt.spawn(Chaos, _app.instances, options.chaos, seed=7, name="chaos")
    if getattr(options, "cluster", None) is None:
        tenants = [t.strip() for t in options.tenant_names.split(",") if t.strip()]
        if not tenants:
            raise SystemExit("iot_cloud: --tenants names no tenant")
        for tenant in tenants:
            _app.start_tenant(rt, tenant)
    if options.mqtt:  # after the tenants: a reading never finds its tenant missing
        _app.start_mqtt(rt)
    print(f"iot_cloud: {options.devices} devices per tenant, readings -> {_app.db}")
    return _app.progress


def start_tenant(rt: Runtime, tenant: str, options: Any) -> None:
    assert _app is not None
    _app.start_tenant(rt, tenant)


def stop_tenant(rt: Runtime, tenant: str) -> None:
    assert _app is not None
    _app.stop_tenant(rt, tenant)


def stop(rt: Runtime) -> None:
    assert _app is not None
    _app.stop(rt)
    rows = count_rows(_app.db)
    print("rows stored per tenant: " + ", ".join(f"{t}={n}" for t, n in rows))


if __name__ == "__main__":
    import sys

    from streamvisor.cli import main
    sys.exit(main(["run", __file__, "--duration", "10", *sys.argv[1:]]))
