"""One measurement in a fresh interpreter, so that no peer's threads, heap or singletons leak
into another's numbers. The harness runs, from the repository root:

    python -m tests.benchmarks._one pipeline <peer-key> <n>
    python -m tests.benchmarks._one idle <peer-key> <count> [--tracemalloc]
    python -m tests.benchmarks._one provider <bench_module> <repeats> [--quick]

and reads the last stdout line that starts with ``MARKER``: a JSON object, the result, or
``{"error": ...}`` (``"unavailable: ..."`` when the peer cannot even be imported).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import threading
import traceback
from typing import Any

from ._measure import Probe
from ._peers import by_key

__all__ = ["MARKER", "main", "call_provider"]

MARKER = "@@svbench-result "


def _pipeline(key: str, n: int) -> dict[str, object]:
    peer = by_key(key)
    module = importlib.import_module(f"tests.benchmarks.{peer.module}")
    return module.pipeline(n, **peer.options)


def _idle(key: str, count: int, trace: bool) -> dict[str, object]:
    peer = by_key(key)
    module = importlib.import_module(f"tests.benchmarks.{peer.module}")
    probe = Probe(count, tracemalloc=trace)
    module.idle(probe, **peer.options)
    return probe.result()


def call_provider(name: str, repeats: int, quick: bool) -> list[dict[str, Any]]:
    """Run ``tests.benchmarks.<name>.run`` with whichever of ``repeats``/``quick`` it accepts."""
    run = importlib.import_module(f"tests.benchmarks.{name}").run
    parameters = inspect.signature(run).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    offered = {"repeats": repeats, "quick": quick}
    rows = run(**{k: v for k, v in offered.items() if takes_any or k in parameters})
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise TypeError(f"{name}.run() returned {type(rows).__name__}, not a list of dicts")
    default_group = name.removeprefix("bench_").replace("_", " ")
    return [{"group": default_group, **row} for row in rows]


def main(argv: list[str]) -> int:
    command, target, size, *flags = argv
    try:
        if command == "pipeline":
            result: object = _pipeline(target, int(size))
        elif command == "idle":
            result = _idle(target, int(size), "--tracemalloc" in flags)
        elif command == "provider":
            result = {"rows": call_provider(target, int(size), "--quick" in flags)}
        else:
            raise ValueError(f"unknown command {command!r}")
    except ImportError as exc:
        result, status = {"error": f"unavailable: {exc}"}, 1
    except Exception as exc:  # the one boundary where a peer's failure becomes a table cell
        traceback.print_exc()
        result, status = {"error": f"{type(exc).__name__}: {exc}"}, 1
    else:
        status = 0
    lingering = [t.name for t in threading.enumerate()
                 if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if lingering and isinstance(result, dict):
        result["lingering_threads"] = lingering
    sys.stdout.flush()
    sys.stderr.flush()
    print(MARKER + json.dumps(result, default=str), flush=True)
    return status


if __name__ == "__main__":
    # os._exit: a peer that leaves a non-daemon thread behind must not hang the harness (the
    # result names such threads instead).
    os._exit(main(sys.argv[1:]))
