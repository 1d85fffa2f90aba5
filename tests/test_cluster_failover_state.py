"""A tenant's state survives the death of the node hosting it (issue 16, RELIABILITY F28).

A 2-node cluster started by the CLI runs ``examples/iot_cloud.py`` with ``--state
postgresql://...``: the tenant leases, the graphs' checkpoints and the tenants' queues all live
in the shared PostgreSQL. Once a tenant hosted on one node has committed checkpoints, that node
is killed (``kill -9``); the other node acquires its leases (one epoch later), restores each
tenant's last committed checkpoint (its own commits continue from it) and consumes the tenant's
queue from where the dead node left it: every record left unacknowledged in PostgreSQL at the
kill is settled by the survivor (acknowledged, or dead-lettered by the graph as a bad reading),
none expires nor runs out of deliveries: none is lost. The restored checkpoint id is read from
the survivor's ``checkpoint restored`` log line (the nodes log JSON at info level here).

Each run uses its own tenant names and lease table, and removes its rows at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from actors.testing import wait_until
from supervisors.cluster._state import is_running
from tests.conftest import require_service
from tests.test_cluster_launcher import ROOT, by_id, recorded_processes, stop_and_check

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
IOT = str(ROOT / "examples" / "iot_cloud.py")
QUEUE_TABLE = "streamvisor_queue_messages"  # DurableQueue.postgres's default prefix


def start(*args: str) -> subprocess.CompletedProcess[str]:
    """``streamvisor cluster start`` with the nodes logging JSON at info level into
    ``<state-dir>/cluster.log`` (where a restored checkpoint is logged)."""
    env = {**os.environ, "STREAMVISOR_LOG": "json", "STREAMVISOR_LOG_LEVEL": "info"}
    return subprocess.run([sys.executable, "-m", "supervisors.cluster.cli", "start", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def restored_checkpoints(state: Path, node: str) -> dict[str, int]:
    """tenant -> the checkpoint id restored when ``node`` started the tenant after acquiring
    its lease (the log lines that follow that node's ``lease_acquired`` of the tenant)."""
    acquired: set[str] = set()
    found: dict[str, int] = {}
    for line in (state / "cluster.log").read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue  # the app's prints
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written
        tenant = event.get("tenant")
        if event.get("event") == "lease_acquired" and event.get("node") == node:
            acquired.add(tenant)
        elif (event.get("event") == "checkpoint restored" and event.get("graph") == "ingest"
              and tenant in acquired):
            found[tenant] = int(event["checkpoint"])
    return found


@pytest.mark.slow
def test_a_killed_nodes_tenants_resume_on_the_other_node_from_their_state(tmp_path: Path) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    psycopg = pytest.importorskip("psycopg")
    run = uuid.uuid4().hex[:8]
    tenants = [f"fo{run}a", f"fo{run}b", f"fo{run}c"]
    table = f"lease_fo_{run}"
    state = tmp_path / "state"
    conn = psycopg.connect(PG_URL, autocommit=True)
    seen: set[int] = set()
    pgid = None

    def checkpoints() -> dict[str, int]:
        return dict(conn.execute(
            "SELECT tenant, max(id) FROM stream_checkpoints WHERE graph = 'ingest' "
            "AND tenant = ANY(%s) GROUP BY tenant", (tenants,)).fetchall())

    def unacked(tenant: str) -> set[int]:
        """The records of the tenant's queue not acknowledged yet (ready or leased)."""
        return {r[0] for r in conn.execute(
            f"SELECT id FROM {QUEUE_TABLE} WHERE tenant = %s AND queue = 'readings' "
            "AND state IN (0, 1)", (tenant,)).fetchall()}

    def acked(tenant: str) -> int:
        row = conn.execute("SELECT acked FROM streamvisor_queue_counters WHERE tenant = %s "
                           "AND queue = 'readings'", (tenant,)).fetchone()
        return 0 if row is None else int(row[0])

    try:
        proc = start(IOT, "--state-dir", str(state), "--json", "--nodes", "2",
                   "--restart", "never", "--tenants", ",".join(tenants), "--state", PG_URL,
                   "--lease-ttl", "2", "--lease-grace", "0.5", "--lease-table", table,
                   "--data-dir", str(tmp_path / "data"), "--db", str(tmp_path / "readings.db"),
                   "--devices", "5", "--period", "0.05", "--chaos", "0",
                   "--checkpoint-every", "0.3")
        pids, pgid = recorded_processes(state)
        seen.update(pids)
        assert proc.returncode == 0, proc.stderr[-3000:]
        wait_until(lambda: sum(len(n["tenants"]) for n in by_id(state).values())
                   == len(tenants), timeout=30)
        nodes = by_id(state)
        victim = max(nodes.values(), key=lambda n: len(n["tenants"]))
        survivor = next(n for n in nodes.values() if n["id"] != victim["id"])
        moved = set(victim["tenants"])
        assert moved
        # the victim's tenants commit checkpoints (each acknowledging queued records) first
        wait_until(lambda: all(checkpoints().get(t, 0) >= 2 and acked(t) > 0 for t in moved),
                   timeout=30)
        epochs = dict(victim["leases"])
        left: dict[str, set[int]] = {}

        def in_flight() -> bool:  # every moved tenant has records not acknowledged yet
            left.update({t: unacked(t) for t in moved})
            return all(left.values())
        wait_until(in_flight, timeout=15)
        os.kill(victim["pid"], signal.SIGKILL)  # (what was unacked just before is in `left`)
        wait_until(lambda: not is_running(victim["pid"]), timeout=5)
        # what the dead node left: its last committed checkpoint, its acknowledged count
        last = {t: checkpoints()[t] for t in moved}
        acked_at_kill = {t: acked(t) for t in moved}
        assert any(left[t] & unacked(t) for t in moved)  # some were still in flight: at stake

        wait_until(lambda: set(by_id(state)[survivor["id"]]["tenants"]) == set(tenants),
                   timeout=30)
        after = by_id(state)[survivor["id"]]
        for t in moved:  # the survivor holds the dead node's leases, one epoch later
            assert after["leases"][t] == epochs[t] + 1
        owners = dict(conn.execute(f"SELECT tenant, owner FROM {table}").fetchall())
        assert all(owners[t] == survivor["id"] for t in moved)
        # each moved tenant restored exactly the last checkpoint the dead node committed ...
        wait_until(lambda: moved <= set(restored_checkpoints(state, survivor["id"])), timeout=15)
        restored = restored_checkpoints(state, survivor["id"])
        assert {t: restored[t] for t in moved} == last
        # ... and commits on from it; every record it left unacknowledged is acknowledged
        # now (consumed by the survivor: after its visibility timeout for those in flight)
        wait_until(lambda: all(checkpoints()[t] > last[t] for t in moved), timeout=15)
        wait_until(lambda: all(not (left[t] & unacked(t)) for t in moved), timeout=40)
        for t in moved:  # settled: acknowledged, or rejected by the graph with its reason
            # (a bad reading), never expired nor out of deliveries through the failover
            reasons = {r[0] for r in conn.execute(
                f"SELECT reason FROM {QUEUE_TABLE} WHERE tenant = %s AND state = 2 "
                "AND id = ANY(%s)", (t, sorted(left[t]))).fetchall()}
            assert not reasons & {"expired", "max_deliveries"}, reasons
            assert acked(t) > acked_at_kill[t]
    finally:
        pids, group = recorded_processes(state) if state.exists() else ([], None)
        seen.update(pids)
        if state.exists():
            stop_and_check(state, seen, pgid or group)
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        for name in ("stream_checkpoints", QUEUE_TABLE, "streamvisor_queue_counters"):
            if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None:
                conn.execute(f"DELETE FROM {name} WHERE tenant = ANY(%s)", (tenants,))
        conn.close()
