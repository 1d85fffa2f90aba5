"""The main job: an IoT cloud for several tenants, on embedded defaults.

    streamvisor run examples/iot_cloud.py --duration 20
    streamvisor run examples/iot_cloud.py --duration 20 --tenants acme,globex --devices 200 --db readings.db

Every tenant gets the same supervised graph (REST_FOR_ONE along the pipeline):

    devices -> DurableQueue -> queue -> categorise -> validate -> sanity -> store (SQLite)
                                                        |            |
                                     bad readings: dead letters   alerts -> pub/sub "alerts/<device>"
                                     with the reason (validate, sanity)      -> a wildcard subscriber

- a ``Fleet`` actor per tenant simulates its devices and puts their readings into the tenant's
  durable queue (acknowledged = on disk); some devices send malformed or impossible readings;
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
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from actors import Actor, Runtime
from actors.pubsub import Publish
from actors.queue import DurableQueue, QueueSink, QueueSource
from actors.connectors import MqttIngest, MqttOptions, PostgresStore, SqliteStore
from actors.stream import Graph, Node
from actors.testing import Faults
from supervisors import GraphSupervision

TENANTS = ["acme", "globex", "initech"]  # also the default tenant list of a cluster
TIMEZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC"]
CATEGORIES = {  # device kind -> plausible temperature range (C) and the alert threshold
    "cold-room": (-30.0, 10.0, 5.0),
    "office": (5.0, 40.0, 28.0),
    "server": (10.0, 60.0, 45.0),
}


def device_kind(device: str) -> str:
    """The kind a device id starts with (``"cold-room-acme.0001"`` -> ``"cold-room"``; tenant
    names may contain dashes too); unknown -> ``"office"``."""
    for kind in CATEGORIES:
        if device.startswith(kind + "-"):
            return kind
    return "office"


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
        kind = device_kind(device)
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
    SQLite or PostgreSQL, then acknowledges them. ``rows_of(tenant)`` is the store to write to:
    one per node, shared by every tenant (one connection, not one per tenant)."""

    def __init__(self, queue: Any, rows_of: Any) -> None:
        super().__init__(queue)
        self.rows_of = rows_of

    def on_start(self) -> None:
        self.rows = self.rows_of(self.ref.tenant)

    def store(self, items: list[Any]) -> None:
        tenant = self.ref.tenant
        self.rows.insert([(tenant, i.payload["device"], float(i.payload["ts"]),
                           float(i.payload["temp"]), float(i.payload["hum"])) for i in items])


class TenantQueueSource(QueueSource):
    """The tenant's queue as the graph's source. The fleet (or the MQTT ingest) wakes it when
    it put readings, so it needs no fast poll: a thousand idle tenants polling every 50 ms would
    keep the workers busy with empty reads. The slow poll finds redeliveries (a lease that timed
    out) and readings put by anyone that does not wake it."""

    poll_interval = 1.0


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


def build_graph(queue_of: Any, rows_of: Any) -> Graph:
    """The one graph every tenant gets; ``queue_of(tenant)`` is that tenant's durable queue,
    ``rows_of(tenant)`` the store its readings go to."""
    g = Graph("ingest", supervision=GraphSupervision(intensity=10, period=10.0))
    g.add("queue", TenantQueueSource, queue_of)
    g.add("categorise", Categorise)
    g.add("validate", Validate)
    g.add("sanity", Sanity)
    g.add("store", Store, queue_of, rows_of)
    g.pipe("queue", "categorise", "validate", "sanity", "store")
    return g


def graph() -> Graph:
    """The graph for ``streamvisor graph examples/iot_cloud.py`` (queues and store are
    placeholders: only the shape matters there)."""
    return build_graph(lambda tenant: None, lambda tenant: None)


# -- actors around the graph ------------------------------------------------------------------------
class Ledger:
    """What one tenant's producers put into its queue, read by the progress line without a
    message. One writer (the fleet's turn), any number of readers; each field is a single int
    store (atomic under the GIL). ``seq`` is a sequence lock: odd while a put is under way.
    ``putting`` is set before ``seq`` turns odd, so a reader that sees an odd ``seq`` also
    sees the size of that put."""

    __slots__ = ("seq", "sent", "putting", "refused")

    def __init__(self) -> None:
        self.seq = 0        # even: no put under way
        self.sent = 0       # readings the queue accepted (on disk)
        self.putting = 0    # readings of the put under way
        self.refused = 0    # readings the queue refused (full, unavailable): counted, not in

    def put(self, queue: DurableQueue, batch: list[Any]) -> bool:
        """``queue.put_many(batch)``, counted. False (and counted in ``refused``) if the queue
        refused it."""
        self.putting = len(batch)
        self.seq += 1
        try:
            queue.put_many(batch)
        except Exception:
            self.refused += len(batch)
            ok = False
        else:
            self.sent += len(batch)
            ok = True
        self.seq += 1
        self.putting = 0
        return ok


class Fleet(Actor):
    """A tenant's devices: every ``period`` each sends a reading into the durable queue (the
    first tick at a random phase, so a thousand fleets do not all put at the same instant).
    After each put it calls ``wake`` (the graph's source reads at once)."""

    def __init__(self, queue: DurableQueue, devices: int, period: float, seed: int,
                 ledger: Ledger, wake: Any = None) -> None:
        self.queue, self.devices, self.period = queue, devices, period
        self.random = random.Random(seed)
        self.seed = seed
        self.ledger, self.wake = ledger, wake

    def on_start(self) -> None:
        kinds = list(CATEGORIES)
        tag = self.ref.tenant or "dev"  # each customer has its own devices
        self.ids = [f"{kinds[i % len(kinds)]}-{tag}.{i:04d}" for i in range(self.devices)]
        self.temps = {d: _base(d) for d in self.ids}
        self.send_after(self.period * self.random.random(), "tick")

    def receive(self, message: Any) -> Any:
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
        if self.ledger.put(self.queue, batch) and self.wake is not None:
            self.wake()
        self.send_after(self.period, "tick")


def _base(device: str) -> float:
    low, high, alert = CATEGORIES[device_kind(device)]
    return (low + alert) / 2 + (alert - low) * 0.45 * (int(device[-1]) == 7)


class Tally:
    """What a tenant's small actors show on the progress line, read there without a message
    (each field has one writer: ``alerts`` the Alerts actor, ``local_time`` LocalTime)."""

    __slots__ = ("alerts", "local_time")

    def __init__(self) -> None:
        self.alerts = 0
        self.local_time = "--:--:--"


class Alerts(Actor):
    """A tenant's wildcard subscriber to ``alerts/#``: counts alerts per device."""

    def __init__(self, tally: Tally | None = None) -> None:
        self.count = 0
        self.devices: set[str] = set()
        self.tally = tally if tally is not None else Tally()

    def receive(self, message: Any) -> Any:
        match message:
            case Publish(topic=topic):
                self.count += 1
                self.tally.alerts = self.count
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

    def __init__(self, zone: str, tally: Tally | None = None) -> None:
        self.zone = ZoneInfo(zone)
        self.shown = "--:--:--"
        self.tally = tally if tally is not None else Tally()

    def on_start(self) -> None:
        self.runtime.bus.subscribe("clock", self.ref, max_age=2.0)

    def receive(self, message: Any) -> Any:
        if message == "show":
            return self.shown
        if isinstance(message, datetime):
            self.shown = message.astimezone(self.zone).strftime("%H:%M:%S")
            self.tally.local_time = self.shown
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
                        metavar="N|NAMES",
                        help="how many tenants (a count: tenant-01, tenant-02, ...) or their "
                             "names, comma-separated (default: %(default)s; a cluster places "
                             "them on its nodes)")
    parser.add_argument("--devices", type=int, default=50, help="devices per tenant")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between readings")
    parser.add_argument("--db", default=None,
                        help="SQLite file or postgresql://... URL for the readings table")
    parser.add_argument("--mqtt", default=None, metavar="HOST:PORT",
                        help="also ingest tenants/<tenant>/devices/<device>/readings from a broker")
    parser.add_argument("--data-dir", default=None, help="where the durable queues live")
    parser.add_argument("--chaos", type=float, default=3.0, help="seconds between injected crashes (0: none)")


def tenant_names(value: str) -> list[str]:
    """``--tenants``: a count (``"1000"`` -> tenant-01 ... tenant-1000, the names ``streamvisor
    cluster start --tenants 1000`` uses) or comma-separated names. ``SystemExit`` naming the
    problem for no tenant or a name given twice (``start`` checks each name)."""
    value = value.strip()
    if value.isdigit():
        count = int(value)
        if not 1 <= count <= 100_000:
            raise SystemExit(f"iot_cloud: --tenants {value}: a count must be 1..100000")
        return [f"tenant-{i:02d}" for i in range(1, count + 1)]
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise SystemExit("iot_cloud: --tenants names no tenant")
    twice = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if twice:
        raise SystemExit(f"iot_cloud: --tenants names {twice[0]!r} more than once")
    return names


class Line(NamedTuple):
    """One tenant's ledger at one consistent moment: ``in`` = ``stored`` + ``dead`` +
    ``queued`` + ``unaccounted`` (which is 0 unless a reading went missing)."""

    readings_in: int
    stored: int
    dead: int
    queued: int
    unaccounted: int


_ZERO = Line(0, 0, 0, 0, 0)


class _Tenant:
    """What one tenant runs on this node."""

    def __init__(self) -> None:
        self.queue: DurableQueue | None = None
        self.mqtt_dead: DurableQueue | None = None
        self.instance: Any = None
        self.actors: dict[str, Any] = {}  # fleet, mqtt, alerts, local-time
        self.ledger = Ledger()   # what the fleet put
        self.tally = Tally()     # alerts, local time
        self.base: dict[str, int] = {}  # the queue's counts when the tenant started
        self.line = _ZERO        # its last consistent ledger


def queue_lines(tenants: list[_Tenant], read: Any) -> list[Line]:
    """Each tenant's ledger, consistent per tenant, without a message to any actor.

    ``read(queues)`` returns each queue's ``stats()`` (None if it cannot be read). The producers'
    ledgers are read before and after it: a tenant whose ledger did not move meanwhile gets a
    new line (a put under way counts as in once the queue has it); one that moved keeps its
    last consistent line (the next read catches up), so every line's sums hold."""
    before = [(t.ledger.seq, t.ledger.sent, t.ledger.putting) for t in tenants]
    stats = read([t.queue for t in tenants])
    after = [t.ledger.seq for t in tenants]
    for t, (seq, sent, putting), s, seq_after in zip(tenants, before, stats, after):
        if s is None or seq != seq_after:
            continue
        base = t.base
        stored = s["acked"] - base.get("acked", 0)
        dead = s["dead"] - base.get("dead", 0)
        queued = s["ready"] + s["in_flight"] + s["delayed"]
        carried = base.get("ready", 0) + base.get("in_flight", 0) + base.get("delayed", 0)
        held = stored + dead + queued
        readings_in = carried + sent
        if seq % 2 and held == readings_in + putting:
            readings_in += putting  # the put under way is on disk already
        t.line = Line(readings_in, stored, dead, queued, held - readings_in)
    return [t.line for t in tenants]


def read_each(queues: list[DurableQueue | None]) -> list[dict[str, int] | None]:
    """Every queue's ``stats()`` (one read each; None for a closed or failing queue)."""
    out: list[dict[str, int] | None] = []
    for q in queues:
        try:
            out.append(q.stats() if q is not None else None)
        except Exception:  # a queue closing under us (a tenant stopping): no line this time
            out.append(None)
    return out


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
        self.rows = open_store(self.db)  # one per node; a bad URL or path fails here, clearly
        self.tenants: dict[str, _Tenant] = {}
        self.queues: dict[str, DurableQueue] = {}
        self.graph = build_graph(lambda tenant: self.queues[tenant], lambda tenant: self.rows)
        self.instances: dict[str, Any] = {}  # shared with the chaos actor
        self.starting = 0  # tenants the starter has yet to start
        self.starter: Any = None

    def start_tenant(self, rt: Runtime, tenant: str) -> None:
        options, scope, t = self.options, rt.tenant(tenant), _Tenant()
        seed = sum(map(ord, tenant))
        t.queue = DurableQueue(os.path.join(self.data_dir, f"{tenant}.queue"), tenant,
                               max_deliveries=5, visibility_timeout=10.0)
        t.base = t.queue.stats()  # a reused --data-dir: what was there before this run
        self.queues[tenant] = t.queue
        t.instance = self.graph.instantiate(rt, tenant)
        t.actors["alerts"] = scope.spawn(Alerts, t.tally, name="alerts")
        scope.pubsub.subscribe("alerts/#", t.actors["alerts"])
        t.actors["local-time"] = scope.spawn(LocalTime, TIMEZONES[seed % len(TIMEZONES)],
                                             t.tally, name="local-time")
        if options.devices:
            instance = t.instance
            t.actors["fleet"] = scope.spawn(Fleet, t.queue, options.devices, options.period,
                                            seed=seed, ledger=t.ledger,
                                            wake=lambda: instance.wake("queue"))
        if options.mqtt:
            host, _, port = options.mqtt.rpartition(":")
            t.mqtt_dead = DurableQueue(os.path.join(self.data_dir, f"{tenant}.mqtt-dead"),
                                       f"{tenant}-mqtt-dead")
            t.actors["mqtt"] = scope.spawn(
                MqttIngest, MqttOptions(host=host or "127.0.0.1", port=int(port or 1883),
                                        client_id=f"iot-cloud-{tenant}"),
                t.queue, tenant=tenant, dead_letters=t.mqtt_dead, name="mqtt")
        self.instances[tenant] = t.instance
        self.tenants[tenant] = t  # the progress line sees it once it is complete

    def stop_tenants(self, rt: Runtime, names: list[str]) -> None:
        """Stop tenants in phases across all of them: first every producer (no new readings
        anywhere, so the workers are free for the rest), then the graphs, the other actors, and
        last the queues (what is still queued stays on disk for the next start)."""
        tenants = [t for t in (self.tenants.pop(n, None) for n in names) if t is not None]
        for name in names:
            self.instances.pop(name, None)
            self.queues.pop(name, None)
        for t in tenants:
            for name in ("fleet", "mqtt"):
                if name in t.actors:
                    rt.stop(t.actors.pop(name), "shutdown")
        for t in tenants:
            t.instance.stop()
        for t in tenants:
            for ref in t.actors.values():
                rt.stop(ref, "shutdown")
        for t in tenants:
            for queue in (t.queue, t.mqtt_dead):
                if queue is not None:
                    queue.close()

    def stop_tenant(self, rt: Runtime, tenant: str) -> None:
        self.stop_tenants(rt, [tenant])

    def progress(self) -> dict[str, Any]:
        """The progress line: no message to any tenant's actor (counters and one stats read
        per queue), so a busy tenant delays nothing."""
        tenants = list(self.tenants.values())
        lines = queue_lines(tenants, read_each)
        readings_in = sum(x.readings_in for x in lines)
        extra: dict[str, Any] = {}
        if self.options.mqtt:  # a reading is acked to the broker once it is in the queue
            mqtt_stats = [s for t in tenants if "mqtt" in t.actors
                          if (s := t.actors["mqtt"].ask("statistics")) is not None]
            mqtt_in = sum(s.acked for s in mqtt_stats)
            readings_in += mqtt_in
            extra = {"mqtt_in": mqtt_in, "mqtt_rejected": sum(s.dead_lettered for s in mqtt_stats)}
        restarts = sum(n.restarts for t in tenants for n in t.instance.statistics().nodes)
        line = {"tenants": len(tenants), **({"starting": self.starting} if self.starting else {}),
                "in": readings_in,
                "stored": sum(x.stored for x in lines),
                "dead_lettered": sum(x.dead for x in lines),
                "queued": sum(x.queued for x in lines),
                "alerts": sum(t.tally.alerts for t in tenants),
                "restarts": restarts, **extra}
        unaccounted = sum(x.unaccounted for x in lines)
        if unaccounted:
            line["unaccounted"] = unaccounted
        refused = sum(t.ledger.refused for t in tenants)
        if refused:
            line["refused"] = refused
        if tenants:
            first = min(self.tenants)
            line[f"{first}_time"] = self.tenants[first].tally.local_time
        return line


class TenantStarter(Actor):
    """Starts the node's tenants a few per turn, so that while a thousand start the node
    already runs the first ones, prints its progress line and serves its status: a start is a
    queue file to open and a few actors to spawn, done between other actors' turns."""

    turn_budget = 1  # one "next" per turn: other actors run between two batches

    def __init__(self, app: "_App", names: list[str], per_turn: int = 4) -> None:
        self.app, self.pending, self.per_turn = app, list(reversed(names)), per_turn
        app.starting = len(self.pending)

    def on_start(self) -> None:
        self.ref.tell("next")

    def receive(self, message: Any) -> None:
        for _ in range(min(self.per_turn, len(self.pending))):
            self.app.start_tenant(self.runtime, self.pending.pop())
            self.app.starting = len(self.pending)
        if self.pending:
            self.ref.tell("next")  # behind whatever else arrived meanwhile

    def on_stop(self, reason: Any) -> None:
        self.app.starting = 0


_app: _App | None = None  # this process's app (one per node)


def start(rt: Runtime, options: Any) -> Any:
    """Once per node. A single node (``streamvisor run``) hosts every tenant of ``--tenants``; in
    a cluster the node calls ``start_tenant`` for the tenants placed on it."""
    global _app
    names: list[str] = []
    if getattr(options, "cluster", None) is None:
        names = tenant_names(options.tenant_names)
        for tenant in names:  # every name checked before anything starts
            try:
                rt.tenant(tenant)
            except ValueError as exc:
                raise SystemExit(f"iot_cloud: --tenants: {exc}") from None
    _app = _App(options)
    rt.spawn(Clock, name="clock")
    if options.chaos > 0:
        rt.spawn(Chaos, _app.instances, options.chaos, seed=7, name="chaos")
    if names:
        _app.starter = rt.spawn(TenantStarter, _app, names, name="tenant-starter")
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
    if _app.starter is not None:
        rt.stop(_app.starter, "shutdown")  # no tenant starts from now on
    _app.stop_tenants(rt, list(_app.tenants))
    _app.rows.close()
    rows = count_rows(_app.db)
    print("rows stored per tenant: " + ", ".join(f"{t}={n}" for t, n in rows))


if __name__ == "__main__":
    import sys

    from supervisors.cli import main
    sys.exit(main(["run", __file__, "--duration", "10", *sys.argv[1:]]))
