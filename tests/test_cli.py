"""The ``streamvisor`` command: running an app, and clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamvisor.cli import main
from supervisors._moved import MOVED

ROOT = Path(__file__).resolve().parent.parent


def test_run_executes_an_app_for_its_duration_and_prints_a_summary():
    proc = subprocess.run([sys.executable, "-m", "streamvisor.cli", "run",
                           str(ROOT / "examples" / "sensors.py"), "--duration", "1.2"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    summary = [line for line in proc.stdout.splitlines() if line.startswith("summary:")]
    assert len(summary) == 1 and "devices=50" in summary[0]
    processed = int(summary[0].split("processed=")[1].split()[0])
    assert processed > 100


def test_run_names_a_missing_app_file(tmp_path):
    with pytest.raises(SystemExit, match="no such app file"):
        main(["run", str(tmp_path / "missing.py")])


def test_run_needs_a_start_function(tmp_path):
    app = tmp_path / "empty_app.py"
    app.write_text("x = 1\n")
    with pytest.raises(SystemExit, match=r"must define start\(rt, options\)"):
        main(["run", str(app), "--duration", "1"])


def test_run_rejects_a_non_positive_duration(capsys):
    with pytest.raises(SystemExit):
        main(["run", "examples/sensors.py", "--duration", "0"])
    assert "--duration must be a positive number" in capsys.readouterr().err


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_the_old_import_paths_of_moved_modules_warn_and_give_the_same_module(old: str,
                                                                           new: str) -> None:
    code = (f"import warnings, importlib\n"
            f"with warnings.catch_warnings(record=True) as caught:\n"
            f"    warnings.simplefilter('always')\n"
            f"    old = importlib.import_module({old!r})\n"
            f"assert old is importlib.import_module({new!r}), 'not the same module'\n"
            f"assert [str(w.message) for w in caught if w.category is DeprecationWarning] == "
            f"[{old!r} + ' moved to ' + {new!r} + '; the old path is removed in release 0.3'], caught\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
