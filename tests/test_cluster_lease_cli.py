"""``streamvisor cluster start --state postgresql://...``: lease-based placement (RELIABILITY F28).

A 2-node cluster started by the CLI with a shared PostgreSQL: every hosted tenant has its lease
in the table, owned by the node that hosts it; after ``kill -9`` of one node (no restart), the
other acquires the dead node's leases (a new epoch each) only after they expired, and hosts
every tenant.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from actors.testing import wait_until
from tests.conftest import require_service
from tests.test_cluster_launcher import APP, TENANTS, Cluster, by_id, cli, events

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def test_state_must_be_a_postgresql_url(tmp_path: Path) -> None:
    proc = cli("start", APP, "--nodes", "1", "--state-dir", str(tmp_path / "s"),
               "--state", "sqlite:///x.db", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode != 0 and "--state must be a postgresql:// URL" in proc.stderr
    proc = cli("start", APP, "--nodes", "1", "--state-dir", str(tmp_path / "s"),
               "--state", PG_URL, "--lease-table", "x;y", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode != 0 and "--lease-table must be an SQL identifier" in proc.stderr


@pytest.mark.slow
def test_cluster_with_state_hosts_tenants_by_lease_and_takes_a_dead_nodes_over(
        tmp_path: Path) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    import psycopg
    table = f"lease_cli_{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(PG_URL, autocommit=True)
    cluster = Cluster(tmp_path)
    try:
        proc = cluster.start("--nodes", "2", "--restart", "never", "--state", PG_URL,
                             "--lease-ttl", "2", "--lease-grace", "0.5", "--lease-table", table)
        assert proc.returncode == 0, proc.stderr
        wait_until(lambda: sum(len(n["tenants"]) for n in by_id(cluster.state).values())
                   == len(TENANTS), timeout=30)
        nodes = by_id(cluster.state)

        def leases() -> dict[str, tuple[str, int]]:
            return {t: (o, e) for t, o, e in conn.execute(
                f"SELECT tenant, owner, epoch FROM {table}").fetchall()}
        held = leases()
        for node_id, node in nodes.items():
            assert node["leases"] == {t: held[t][1] for t in node["tenants"]}
            for t in node["tenants"]:
                assert held[t][0] == node_id
        text = cli("status", "--state-dir", str(cluster.state)).stdout
        assert all(f"{t}@{held[t][1]}" in text for t in TENANTS), text
        victim = next(n for n in nodes.values() if n["tenants"])
        survivor = next(n for n in nodes.values() if n["id"] != victim["id"])
        moved = set(victim["tenants"])
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(lambda: set(by_id(cluster.state)[survivor["id"]]["tenants"]) == set(TENANTS),
                   timeout=30)
        after = leases()
        for t in moved:
            assert after[t] == (survivor["id"], held[t][1] + 1)
        starts = {e["tenant"]: e for e in events(cluster.state, "tenant_started")
                  if e["node"] == survivor["id"] and e["tenant"] in moved}
        assert set(starts) == moved and all(s["epoch"] == held[s["tenant"]][1] + 1
                                            for s in starts.values())
    finally:
        cluster.stop()
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()
