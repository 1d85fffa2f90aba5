"""Running one measurement in its own OS process and turning any failure into a value.

``run_python(args, timeout)`` runs ``python -m tests.benchmarks._one <args>`` from the repository
root; ``run_erlang(command, timeout)`` runs an ``erl`` command line. Both return the result dict,
or ``{"error": ...}`` for a crash, a timeout or unparsable output: a failing peer is a table
cell, never a harness crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import _erlang
from ._one import MARKER

__all__ = ["ROOT", "run_python", "run_erlang"]

ROOT = Path(__file__).resolve().parents[2]


def _tail(text: str, limit: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[-limit:]


def _execute(command: list[str], timeout: float) -> subprocess.CompletedProcess[str] | str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g} s"
    except OSError as exc:
        return f"could not start {command[0]}: {exc}"


def run_python(args: list[str], timeout: float) -> dict[str, Any]:
    done = _execute([sys.executable, "-m", "tests.benchmarks._one", *args], timeout)
    if isinstance(done, str):
        return {"error": done, "timeout": done.startswith("timed out")}
    results = [line[len(MARKER):] for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not results:
        return {"error": f"exit code {done.returncode}: {_tail(done.stderr or done.stdout)}"}
    try:
        result = json.loads(results[-1])
    except ValueError as exc:
        return {"error": f"unreadable result ({exc})"}
    return result if isinstance(result, dict) else {"error": f"unexpected result {result!r}"}


def run_erlang(command: list[str], timeout: float) -> dict[str, Any]:
    done = _execute(command, timeout)
    if isinstance(done, str):
        return {"error": done, "timeout": done.startswith("timed out")}
    try:
        return _erlang.parse(done.stdout)
    except (RuntimeError, KeyError, ValueError) as exc:
        return {"error": f"exit code {done.returncode}: {exc} {_tail(done.stderr)}".strip()}
