"""A bench module measuring in a fresh interpreter of itself: ``python -m <module> --one ARGS``
prints one ``MARKER``-prefixed JSON line (the result or ``{"error": ...}``). Shared by
``bench_stream`` and ``bench_window`` (each with its own marker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["child_main", "run_child"]

ROOT = Path(__file__).resolve().parents[2]


def run_child(module: str, marker: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m module --one *args`` from the repository root (logs at ``error``) and
    return its last ``marker`` line as JSON, or ``{"error": ...}`` naming a timeout or the exit
    status and last line of output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("STREAMVISOR_LOG_LEVEL", "error")
    try:
        done = subprocess.run([sys.executable, "-m", module, "--one", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [x for x in done.stdout.splitlines() if x.startswith(marker)]
    if not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()
        return {"error": f"exit {done.returncode}: {tail[-1] if tail else ''}"[:300]}
    return json.loads(lines[-1][len(marker):])


def child_main(argv: list[str], marker: str, one: Callable[[list[str]], dict[str, Any]],
               run: Callable[..., list[dict[str, Any]]]) -> int:
    """``--one ARGS``: print ``marker`` + ``one(ARGS)`` as JSON (an exception becomes
    ``{"error": ...}``) and exit at once; else print the table of ``run`` (``--quick``: one
    repeat)."""
    if argv and argv[0] == "--one":
        try:
            result: dict[str, Any] = one(argv[1:])
        except Exception as exc:  # the boundary where a failed measurement becomes a value
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(marker + json.dumps(result), flush=True)
        os._exit(0)
    quick = "--quick" in argv
    from ._table import render
    print(render(run(repeats=1 if quick else 3, quick=quick)))
    return 0


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's ``ratio``: its msg/s over the first row's (the group's reference)."""
    base = rows[0].get("msg_per_s") if rows else None
    for row in rows:
        if base and row.get("msg_per_s"):
            row["ratio"] = row["msg_per_s"] / base
    return rows
