"""A small cluster app: every tenant has a durable work queue, consumed on whichever node hosts it.

    streamvisor cluster start --nodes 3 examples/cluster_app.py --data-dir /tmp/work
    streamvisor run examples/cluster_app.py --duration 5      # one node, every tenant
    .venv/bin/python -c "from actors.queue import DurableQueue; \
        DurableQueue('/tmp/work/acme.db', 'work').put({'id': 1})"
    streamvisor cluster status
    streamvisor cluster stop

Each tenant's graph is one supervised ``Consumer`` (under its own ``Supervisor`` in
``rt.tenant(name)``): it leases records from ``<data-dir>/<tenant>.db`` queue ``work``, writes
``{"id", "tenant", "node", "attempt"}`` to ``<data-dir>/<tenant>-done.db`` queue ``done``, then
acknowledges. (Two files, because two ``DurableQueue`` objects on one file in one process
currently lose sight of other processes' writes: see the cluster README's known limits.)
When a node is killed, the cluster places its tenants on the survivors, whose new consumers
get the unacknowledged records again once their lease runs out (``--visibility`` seconds):
nothing acknowledged is lost; a record may be done twice (at least once), and ``done`` says so.

The cluster calls ``start(rt, options)`` once per node and ``start_tenant(rt, tenant, options)``
for each tenant placed on it (again after a re-placement); ``options.node`` is the node id,
``options.cluster`` the ``ClusterNode`` (``whereis``, ``alive_nodes``, ``placement``, ...).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from actors import Actor, Runtime
from actors.queue import DurableQueue
from supervisors import ChildSpec, Strategy, Supervisor, which_children

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


def add_arguments(parser: Any) -> None:
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "streamvisor-cluster-app"),
                        help="directory of the tenants' queue files")
    parser.add_argument("--visibility", type=float, default=2.0,
                        help="seconds before an unacknowledged record is delivered again")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between polls")


def queue_path(data_dir: str, tenant: str, which: str = "work") -> str:
    return os.path.join(data_dir, f"{tenant}.db" if which == "work" else f"{tenant}-{which}.db")


class Consumer(Actor):
    """Moves a tenant's records from ``work`` to ``done``, acknowledging after ``done`` is on disk."""

    def __init__(self, path: str, tenant: str, node: str, visibility: float, poll: float) -> None:
        self.path, self.tenant, self.node = path, tenant, node
        self.visibility, self.poll = visibility, poll
        self.consumed = 0

    def on_start(self) -> None:
        self.work = DurableQueue(self.path, "work", visibility_timeout=self.visibility,
                                 max_deliveries=100)
        self.done = DurableQueue(self.path[:-3] + "-done.db", "done")
        self.send_after(self.poll, "poll")

    def receive(self, message: Any) -> Any:
        match message:
            case "poll":
                deliveries = self.work.get(max_items=200, timeout=0)
                if deliveries:
                    self.done.put_many([{"id": d.payload["id"], "tenant": self.tenant,
                                         "node": self.node, "attempt": d.attempt}
                                        for d in deliveries])
                    self.work.ack_many(deliveries)
                    self.consumed += len(deliveries)
                self.send_after(0 if len(deliveries) == 200 else self.poll, "poll")
            case "report":
                return self.consumed

    def on_stop(self, reason: Any) -> None:
        self.work.close()
        self.done.close()


def start(rt: Runtime, options: Any) -> Any:
    os.makedirs(options.data_dir, exist_ok=True)
    cluster = getattr(options, "cluster", None)
    if cluster is None:  # `streamvisor run`: this one node hosts every tenant
        options.node = rt.node
        for tenant in TENANTS:
            start_tenant(rt, tenant, options)

    def progress() -> dict[str, Any]:
        consumed = 0
        for tenant in cluster.hosted() if cluster is not None else TENANTS:
            sup = rt.whereis(f"{tenant}/sup")
            if sup is None:
                continue
            for info in which_children(sup):
                if hasattr(info.ref, "ask"):
                    consumed += info.ref.ask("report", timeout=2.0)
        return {"consumed": consumed}

    return progress


def start_tenant(rt: Runtime, tenant: str, options: Any) -> None:
    consumer = ChildSpec("consumer", Consumer, args=(
        queue_path(options.data_dir, tenant), tenant, options.node, options.visibility,
        options.poll))
    rt.tenant(tenant).spawn(Supervisor, strategy=Strategy.ONE_FOR_ONE, intensity=5, period=10.0,
                            children=[consumer], name="sup")
