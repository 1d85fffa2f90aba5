"""The main job on embedded defaults: every reading is stored exactly once or dead-lettered with a
reason, tenants never see each other's rows, and supervisors restart what the chaos crashes."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from actors.queue import DurableQueue

ROOT = Path(__file__).resolve().parent.parent
TENANTS = ("acme", "globex", "initech")


def test_the_iot_cloud_stores_every_valid_reading_once_and_dead_letters_the_rest(tmp_path):
    db = tmp_path / "readings.db"
    proc = subprocess.run(
        [sys.executable, "-m", "streamvisor.cli", "run", str(ROOT / "examples" / "iot_cloud.py"),
         "--duration", "4", "--chaos", "1", "--devices", "30", "--db", str(db),
         "--data-dir", str(tmp_path), "--checkpoint-every", "0.5"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = next(line for line in proc.stdout.splitlines() if line.startswith("summary:"))
    counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", summary)}
    # accepted = stored + dead-lettered + still queued (nothing dropped, nothing lost)
    assert counters["in"] == counters["stored"] + counters["dead_lettered"] + counters["queued"]
    assert counters["stored"] > 0 and counters["dead_lettered"] > 0
    assert counters["restarts"] >= 1 and counters["alerts"] > 0
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT tenant, device FROM readings").fetchall()
    conn.close()
    assert len(rows) >= counters["stored"]  # acked means stored (the primary key forbids doubles)
    for tenant, device in rows:  # no customer ever sees another's data
        assert f"-{tenant}." in device, (tenant, device)
    assert {t for t, _ in rows} == set(TENANTS)
    for tenant in TENANTS:
        with DurableQueue(tmp_path / "queues.db", "readings", tenant=tenant) as queue:
            dead = queue.dead_letters()
        assert dead, f"{tenant} has no dead letters"
        for letter in dead:
            assert letter.reason.startswith("error: "), letter
            assert any(word in letter.reason for word in ("missing field", "not finite", "outside"))
