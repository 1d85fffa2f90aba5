"""The IoT cloud keeps per-device minute averages in ``minute_averages(tenant, device, start,
end, mean_temp, n)`` through a ``Window`` node: exact means of the readings of each closed
minute, per tenant, a redelivered reading counted once, and the same rows (not doubled) when the
same readings come through again after a restart."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from actors import Runtime
from actors.testing import wait_until
from supervisors.apps import load_app

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "examples" / "iot_cloud.py")
T0 = 1_700_000_040.0  # a whole minute
DEVICES = ("office-{}.0001", "server-{}.0002", "cold-room-{}.0003")


def readings(tenant: str) -> list[dict[str, Any]]:
    """Every 5 s for 150 s per device: minutes [T0, T0+60) and [T0+60, T0+120) close (the
    watermark, 149 - 15 s of lateness, passes their ends); [T0+120, T0+180) stays open."""
    out = []
    for d, pattern in enumerate(DEVICES):
        device = pattern.format(tenant)
        low = {0: 20.0, 1: 30.0, 2: -5.0}[d]
        for i in range(30):
            out.append({"device": device, "ts": T0 + i * 5.0, "temp": low + (i % 4) * 0.5,
                        "hum": 40.0})
    out.insert(10, dict(out[3]))  # the same reading twice (a redelivery): counted once
    return out


def expected(tenant: str) -> set[tuple[Any, ...]]:
    rows = set()
    for pattern in DEVICES:
        device = pattern.format(tenant)
        for m in (0, 1):
            start = T0 + m * 60
            temps = {r["ts"]: r["temp"] for r in readings(tenant)
                     if r["device"] == device and start <= r["ts"] < start + 60}
            rows.add((tenant, device, start, start + 60, round(sum(temps.values()) / 12, 9), 12))
    return rows


def table(db: Path) -> set[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        try:
            got = conn.execute("SELECT tenant, device, start, \"end\", mean_temp, n "
                               "FROM minute_averages").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return set()
    return {(t, d, s, e, round(m, 9), n) for t, d, s, e, m, n in got}


def run_once(tmp_path: Path) -> None:
    app = load_app(APP)
    options = SimpleNamespace(tenant_names="acme,globex", devices=0, period=1.0, chaos=0.0,
                              db=str(tmp_path / "readings.db"), data_dir=str(tmp_path),
                              mqtt=None)
    with Runtime(workers=2) as rt:
        app.start(rt, options)
        wait_until(lambda: len(app._app.tenants) == 2, timeout=30,  # (started a few per turn)
                   message="both tenants started")
        for tenant in ("acme", "globex"):
            queue = app._app.tenants[tenant].queue
            queue.put_many(readings(tenant))
        def done() -> bool:
            for tenant in ("acme", "globex"):
                s = app._app.tenants[tenant].instance.statistics()
                if s.node("minute").processed < 91 or s.node("minutes").processed < 6:
                    return False
            return True

        wait_until(done, timeout=30, message="the minute averages of both tenants")
        stats = app._app.tenants["acme"].instance.statistics().node("minute")
        assert stats.open_windows == 3 and stats.late == 0 and stats.errors == 0
        app.stop(rt)


def test_minute_averages_are_exact_per_tenant_and_idempotent_across_restarts(
        tmp_path: Path) -> None:
    run_once(tmp_path)
    want = expected("acme") | expected("globex")
    assert len(want) == 12 and table(tmp_path / "readings.db") == want
    run_once(tmp_path)           # the same readings again, into the same table: same rows
    assert table(tmp_path / "readings.db") == want
