"""One cluster node with tenant leases, for tests/test_partition_netns.py (run in a namespace).

    python -m tests._fencing_node --id a --bind 10.213.0.1 --port P --hb-port H \
        --seed 10.213.0.2:P2 --dsn postgresql://... --tenants t1,t2 --events FILE --prefix X

A real ``ClusterNode`` (heartbeats, handshake, placement) with ``lease_dsn``; its app runs one
``Counter`` actor per tenant, fed by the tenant's ``DurableQueue`` on PostgreSQL (tables
``X_q_*``): every 50 ms it takes one record, writes its ``rid`` with ``value + 1`` (its
in-memory state, restored from the database when the tenant starts) into ``X_log`` and
``X_state`` in one transaction fenced by the tenant's epoch (a record already in the log -
redelivered after a lost ack - is skipped), then acks it. Without fencing, two nodes running
the tenant would both write the same values (a fork); with it, the stale one is refused and
does not ack. Every cluster event and every
write outcome is appended to ``--events`` as a JSON line with ``mono`` (``time.monotonic()``,
the same clock for every process on the host). SIGUSR1: write once more with every epoch this
node has lost (a zombie's write; the outcome goes to the events). SIGTERM: stop.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from typing import Any

import psycopg

from actors import Actor
from actors.queue import DurableQueue, QueueError
from supervisors.cluster import ClusterNode, StaleEpoch, fenced_commit

_lock = threading.Lock()
_events_path = ""


def record(kind: str, **fields: Any) -> None:
    line = json.dumps({"event": kind, "mono": time.monotonic(), **fields}, default=str)
    with _lock, open(_events_path, "a") as f:
        f.write(line + "\n")


def connect(dsn: str) -> Any:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=1, tcp_user_timeout=500,
                           keepalives=1, keepalives_idle=1, keepalives_interval=1,
                           keepalives_count=1, options="-c statement_timeout=500")


def write(conn: Any, prefix: str, lease_table: str, node: str, tenant: str, epoch: int,
          value: int, rid: int) -> bool:
    """False: ``rid`` was processed before (nothing written)."""
    with conn.transaction():
        fenced_commit(conn, tenant, epoch, table=lease_table, idle_timeout=1.0)
        row = conn.execute(f"INSERT INTO {prefix}_log (tenant, node, epoch, value, rid) "
                           "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, rid) DO NOTHING "
                           "RETURNING id", (tenant, node, epoch, value, rid)).fetchone()
        if row is None:
            return False
        conn.execute(f"INSERT INTO {prefix}_state (tenant, value, epoch) VALUES (%s, %s, %s) "
                     "ON CONFLICT (tenant) DO UPDATE SET value = excluded.value, "
                     "epoch = excluded.epoch", (tenant, value, epoch))
        return True


class Counter(Actor):
    def __init__(self, app: "App", tenant: str, epoch: int, queue: DurableQueue) -> None:
        self.app, self.tenant, self.epoch, self.queue = app, tenant, epoch, queue
        self.conn: Any = None
        self.value: int | None = None

    def on_start(self) -> None:
        self.send_after(0.0, "tick")

    def receive(self, message: Any) -> None:
        if message != "tick":
            return
        a = self.app
        try:
            if self.conn is None:
                self.conn = connect(a.dsn)
            if self.value is None:  # restore the state once per start
                row = self.conn.execute(f"SELECT value FROM {a.prefix}_state WHERE tenant = %s",
                                        (self.tenant,)).fetchone()
                self.value = 0 if row is None else int(row[0])
            for d in self.queue.get(max_items=1, timeout=0):
                if write(self.conn, a.prefix, a.lease_table, a.node, self.tenant, self.epoch,
                         self.value + 1, d.payload["rid"]):
                    self.value += 1
                    a.written += 1
                else:
                    record("duplicate_skipped", node=a.node, tenant=self.tenant,
                           rid=d.payload["rid"])
                self.queue.ack_many([d])
        except StaleEpoch as exc:
            record("write_rejected", node=a.node, tenant=self.tenant, epoch=self.epoch,
                   current=exc.current)
        except QueueError as exc:
            record("queue_failed", node=a.node, tenant=self.tenant, error=type(exc).__name__)
        except psycopg.Error as exc:
            record("write_failed", node=a.node, tenant=self.tenant, error=type(exc).__name__)
            self._drop()
        self.send_after(0.05, "tick")

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # a broken connection: nothing more to do
                pass
            self.conn = None

    def on_stop(self, reason: Any) -> None:
        self._drop()
        record("counter_stopped", node=self.app.node, tenant=self.tenant, epoch=self.epoch,
               value=self.value)


class App:
    def __init__(self, node: str, dsn: str, prefix: str, lease_table: str) -> None:
        self.node, self.dsn, self.prefix, self.lease_table = node, dsn, prefix, lease_table
        self.written = 0
        self.lost: dict[str, int] = {}
        self.queues: dict[str, DurableQueue] = {}

    def start(self, rt: Any, options: Any) -> None:
        self.cluster = options.cluster

    def start_tenant(self, rt: Any, tenant: str, options: Any) -> None:
        epoch = options.cluster.lease(tenant)
        if epoch is None:
            raise RuntimeError(f"tenant {tenant} started without its lease")
        queue = self.queues[tenant] = work_queue(self.dsn, self.prefix, tenant)
        rt.tenant(tenant).spawn(Counter, self, tenant, epoch, queue, name="counter")

    def stop_tenant(self, rt: Any, tenant: str) -> None:
        ref = rt.tenant(tenant).whereis("counter")
        if ref is not None:
            rt.stop(ref, "shutdown", timeout=2.0)
        queue = self.queues.pop(tenant, None)
        if queue is not None:
            try:
                queue.close()     # unacked records are redelivered after their visibility
            except QueueError as exc:
                record("queue_close_failed", node=self.node, tenant=tenant, error=str(exc))

    def zombie_writes(self) -> None:
        for tenant, epoch in sorted(self.lost.items()):
            try:
                with connect(self.dsn) as conn:
                    write(conn, self.prefix, self.lease_table, self.node, tenant, epoch, -1,
                          -1)
                record("zombie_write", node=self.node, tenant=tenant, epoch=epoch,
                       outcome="accepted")
            except StaleEpoch as exc:
                record("zombie_write", node=self.node, tenant=tenant, epoch=epoch,
                       outcome="rejected", current=exc.current)
            except psycopg.Error as exc:
                record("zombie_write", node=self.node, tenant=tenant, epoch=epoch,
                       outcome="failed", error=str(exc))


def work_queue(dsn: str, prefix: str, tenant: str) -> DurableQueue:
    """The tenant's work queue (the test fills it from the root namespace)."""
    return DurableQueue.postgres(dsn, "work", tenant=tenant, prefix=f"{prefix}_q",
                                 visibility_timeout=2.0, max_deliveries=20,
                                 connect_timeout=1.0, lock_timeout=1.0, io_timeout=1.0,
                                 poll_interval=0.2)


def main() -> None:
    global _events_path
    p = argparse.ArgumentParser()
    for opt in ("--id", "--bind", "--seed", "--dsn", "--tenants", "--events", "--prefix",
                "--cookie"):
        p.add_argument(opt, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hb-port", type=int, required=True)
    p.add_argument("--ttl", type=float, default=3.0)
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--grace", type=float, default=1.0)
    args = p.parse_args()
    _events_path = args.events
    lease_table = f"{args.prefix}_leases"
    app = App(args.id, args.dsn, args.prefix, lease_table)

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "lease_lost":
            app.lost[event["tenant"]] = event["epoch"]
        record(event["event"], **{k: v for k, v in event.items() if k != "event"})

    host, port = args.seed.rsplit(":", 1)
    node = ClusterNode(args.id, cookie=args.cookie, bind=args.bind, port=args.port,
                       heartbeat_port=args.hb_port, heartbeat_interval=0.2,
                       heartbeat_timeout=1.5, tenants=args.tenants.split(","), app=app,
                       on_event=on_event, lease_dsn=args.dsn, lease_ttl=args.ttl,
                       lease_margin=args.margin, lease_grace=args.grace,
                       lease_table=lease_table)
    stop, zombie = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: zombie.set())
    node.start(seeds=[(host, int(port))], start_app=False)
    deadline = time.monotonic() + 10.0   # meet the other node first (else it hosts everything)
    while len(node.alive_nodes()) < 2 and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.05)
    record("ready", node=args.id, alive=node.alive_nodes())
    node.start_app()
    while not stop.wait(0.05):
        if zombie.is_set():
            zombie.clear()
            app.zombie_writes()
    node.stop(5.0)
    record("exited", node=args.id, written=app.written)


if __name__ == "__main__":
    main()
