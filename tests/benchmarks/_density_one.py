"""One tenant-density measurement in this (fresh) process; prints one JSON object.

    python -m tests.benchmarks._density_one streamvisor 1000
    python -m tests.benchmarks._density_one pykka 1000

A tenant is the IoT cloud's tenant subtree, idle: its supervised ``ingest`` graph (7 nodes under
one supervisor), its fleet (2 devices, no reading due during the measurement), its alert
subscriber and its local clock, and its durable queue (in the node's one queue file) -
``examples/iot_cloud.py``'s own ``start_tenant``, driven by its ``TenantStarter`` as in the
job. The pykka peer builds the same shape the
way pykka does it: one ``ThreadingActor`` per node and per helper (10 per tenant, each its own
thread), the graph nodes chained by refs; no supervisor and no queue, which favours it.

Measured: OS threads (``/proc/self/status``), RSS growth per tenant (``/proc/self/statm``, after
a ``gc.collect``), the time to start every tenant (streamvisor: until the runtime is idle, every
supervisor's children started), and the time to stop them all.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE = os.sysconf("SC_PAGE_SIZE")
PER_TENANT_PYKKA = 10  # 7 graph nodes + fleet + alerts + local time


def _threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def _rss() -> int:
    gc.collect()
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def streamvisor(n: int) -> dict[str, Any]:
    from actors import Runtime
    from streamvisor.cli import load_app
    app = load_app(str(ROOT / "examples" / "iot_cloud.py"))
    data = tempfile.mkdtemp(prefix="bench-density-")
    options = SimpleNamespace(tenant_names="1", devices=2, period=3600.0, db=None, mqtt=None,
                              data_dir=data, chaos=0.0)
    try:
        with Runtime(workers=2) as rt:
            app._app = app._App(options)
            app._app.start_tenant(rt, "warm-up")  # imports, the queue file, the store
            app._app.stop_tenants(rt, ["warm-up"])
            rt.wait_idle(30)
            threads0, rss0 = _threads(), _rss()
            started = time.perf_counter()
            rt.spawn(app.TenantStarter, app._app, [f"tenant-{i:05d}" for i in range(n)])
            deadline = started + 600
            while (app._app.starting or len(app._app.tenants) < n) and time.perf_counter() < deadline:
                time.sleep(0.01)
            assert rt.wait_idle(600) and len(app._app.tenants) == n, "the tenants did not start"
            start_s = time.perf_counter() - started
            threads, rss = _threads(), _rss()
            actors = rt.statistics().actors
            stopping = time.perf_counter()
            app._app.stop_tenants(rt, list(app._app.tenants))
            stop_s = time.perf_counter() - stopping
            app._app.stop(rt)
        return {"threads": threads, "threads_before": threads0, "actors": actors,
                "rss_per_tenant": (rss - rss0) / n, "rss_mb": rss / 2**20,
                "start_s": start_s, "stop_s": stop_s}
    finally:
        shutil.rmtree(data, ignore_errors=True)


def pykka(n: int) -> dict[str, Any]:
    import pykka as pk

    class Node(pk.ThreadingActor):
        def __init__(self, nxt: Any = None) -> None:
            super().__init__()
            self.nxt = nxt

        def on_receive(self, message: Any) -> None:
            if self.nxt is not None:
                self.nxt.tell(message)

    threads0, rss0 = _threads(), _rss()
    refs: list[Any] = []
    started = time.perf_counter()
    for _ in range(n):
        nxt = None
        for _ in range(7):  # the graph, sink first
            nxt = Node.start(nxt)
            refs.append(nxt)
        refs += [Node.start() for _ in range(PER_TENANT_PYKKA - 7)]  # fleet, alerts, clock
    start_s = time.perf_counter() - started
    threads, rss = _threads(), _rss()
    stopping = time.perf_counter()
    pk.ActorRegistry.stop_all(block=True)
    stop_s = time.perf_counter() - stopping
    return {"threads": threads, "threads_before": threads0, "actors": len(refs),
            "rss_per_tenant": (rss - rss0) / n, "rss_mb": rss / 2**20,
            "start_s": start_s, "stop_s": stop_s}


def main() -> int:
    system, n = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("STREAMVISOR_LOG_LEVEL", "error")
    result = {"streamvisor": streamvisor, "pykka": pykka}[system](n)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
