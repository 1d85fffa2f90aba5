"""``examples/minute_averages.py``: every minute of every device is averaged exactly once from
the readings that came in time; the stragglers are late, the broken reading an error; and the
script runs as it is."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from actors.stream import BadItem, WindowResult
from actors.testing import inline_runtime
from tests.conftest import settle

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "minute_averages.py"


def load() -> Any:
    spec = importlib.util.spec_from_file_location("minute_averages", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_minute_averages_are_exact_and_late_and_bad_readings_are_counted() -> None:
    app = load()
    seen: list[Any] = []
    with inline_runtime() as rt:
        inst = app.build(seen).instantiate(rt, "demo")
        settle(rt)
        assert inst.completed
        s = inst.statistics().node("minute")
    late = [item for port, item in seen if port == "late"]
    errors = [item for port, item in seen if port == "errors"]
    results = [item for port, item in seen if port == "in"]
    assert (s.late, s.errors, s.open_windows) == (2, 1, 0) == (len(late), len(errors), 0)
    assert isinstance(errors[0], BadItem) and "not a finite number" in errors[0].reason
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in app.readings():
        if isinstance(r["ts"], float) and r not in late:
            groups[(r["device"], r["ts"] // 60 * 60)].append(r["temp"])
    assert len(results) == len(groups) == 15
    for r in results:
        assert isinstance(r, WindowResult) and r.end == r.start + 60
        temps = groups[(r.key, r.start)]
        assert r.count == len(temps) and abs(r.value - sum(temps) / len(temps)) < 1e-9


def test_the_example_script_runs() -> None:
    done = subprocess.run([sys.executable, str(APP)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "windows emitted: 15, late: 2, errors: 1, still open: 0" in done.stdout
