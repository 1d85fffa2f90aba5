"""``streamvisor run examples/iot_cloud.py --state postgresql://...``: the checkpoints (and the
tenants' queues) live in PostgreSQL; a second run resumes from the first run's checkpoints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432/test"
TENANTS = ("cpstatea", "cpstateb")


def run(tmp_path: Path) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-m", "streamvisor.cli", "run", str(ROOT / "examples" / "iot_cloud.py"),
         "--duration", "3", "--chaos", "0", "--devices", "10", "--tenants", ",".join(TENANTS),
         "--data-dir", str(tmp_path), "--db", str(tmp_path / "readings.db"),
         "--state", PG, "--checkpoint-every", "0.5"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = next(line for line in proc.stdout.splitlines() if line.startswith("summary:"))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", summary)}


def checkpoint_ids(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT tenant, max(id) FROM stream_checkpoints WHERE graph = "
                             "'ingest' AND tenant LIKE 'cpstate%' GROUP BY tenant").fetchall())


def test_state_in_postgresql_checkpoints_and_queues_resume_on_the_next_run(tmp_path):
    require_service("127.0.0.1", 5432, "PostgreSQL")
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS stream_checkpoints (tenant TEXT NOT NULL, "
                     "graph TEXT NOT NULL, id BIGINT NOT NULL, data BYTEA NOT NULL, "
                     "PRIMARY KEY (tenant, graph, id))")
        conn.execute("DELETE FROM stream_checkpoints WHERE tenant LIKE 'cpstate%'")
        first = run(tmp_path)
        assert first["stored"] > 0  # acknowledged: a checkpoint containing them committed
        after_first = checkpoint_ids(conn)
        assert set(after_first) == set(TENANTS) and min(after_first.values()) >= 1
        run(tmp_path)
        after_second = checkpoint_ids(conn)
        # numbering continues from the restored checkpoint: the second run started from it
        for tenant in TENANTS:
            assert after_second[tenant] > after_first[tenant]
    assert not list(tmp_path.glob("*.queue")) and not (tmp_path / "checkpoints.db").exists()
