"""``examples/stream_graph.py`` on the ManualClock (inline and threads): readings flow for every
tenant, the poisoned tenant's instance restarts and counts what it lost, the others never
notice; and the app runs under ``streamvisor run`` for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from actors import Runtime
from supervisors.apps import load_app
from tests.conftest import settle
from tests.test_stream_kit import advance

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "stream_graph.py"


def test_the_example_graph_serves_each_tenant_and_contains_the_poisoned_one(
        rt: Runtime) -> None:
    app = load_app(str(APP))
    progress = app.start(rt, SimpleNamespace(tenants=2, devices=20, period=0.05))
    settle(rt)
    advance(rt, 6.0, steps=600)
    line = progress()
    for tenant in ("tenant1", "tenant2"):
        assert line[f"{tenant}.readings"] > 2000
        assert line[f"{tenant}.alerts"] > 0 and line[f"{tenant}.dropped"] == 0
    assert line["tenant1.restarts"] == 0 and line["tenant1.lost"] == 0
    assert line["tenant2.restarts"] >= 2 and line["tenant2.lost"] > 0


def test_the_example_runs_under_the_streamvisor_command() -> None:
    done = subprocess.run([sys.executable, "-m", "streamvisor.cli", "run", str(APP),
                           "--duration", "1.5", "--tenants", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = [line for line in done.stdout.splitlines() if line.startswith("summary:")]
    assert summary and "tenant1.readings=" in summary[0] and "tenant2.lost=" in summary[0]
