"""``python -m tests.benchmarks [--repeats N] [--quick] [--json PATH] [--only KEYS]``.

Progress goes to stderr, the table to stdout. Exit status 0 even when a peer failed: its row
says why.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from ._harness import GROUP, Options, measure, providers
from ._peers import PEERS
from ._table import render



def _parse(argv: list[str]) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks",
                                     description="streamvisor vs its peers, one table.")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per peer, the table shows medians (default 5, --quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: N and idle counts / 10, one run each")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument("--only", metavar="KEYS",
                        help="comma-separated peer keys / bench_* module names; known: "
                        + ", ".join([p.key for p in PEERS] + providers()))
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds allowed to one measurement process (default 30)")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    only = frozenset(k.strip() for k in args.only.split(",")) if args.only else None
    unknown = (only or frozenset()) - {p.key for p in PEERS} - set(providers())
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    return Options(repeats=repeats, quick=args.quick, only=only, timeout=args.timeout), args.json


def _header(meta: dict[str, Any]) -> str:
    runs = f"median of {meta['repeats']} run{'s' if meta['repeats'] > 1 else ''}"
    if meta["quick"]:
        runs += ", --quick"
    return (f"streamvisor benchmarks, {meta['date']} | {meta['python']} | {meta['machine']}, "
            f"nproc={meta['nproc']} | N={meta['n']:,} (slow peers scaled down: see N) | "
            f"{runs} | load avg {meta['loadavg_start']:.2f}")


def _footer(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    reference = next((r for r in rows if r.get("reference") and r.get("group") == GROUP), None)
    lines = [
        "msg/s: N messages entering and leaving the 3-stage pipeline per second, N / elapsed, "
        "elapsed from the source's first send until the last stage has counted N (each message "
        "makes 3 hops); median over runs, every run in a fresh process, peers interleaved.",
        "run spread: (max - min) / median of msg/s. vs streamvisor: msg/s / the streamvisor "
        "(workers=2) row.",
        "ctx sw / 1k msg: OS context switches (voluntary + involuntary) in the timed window "
        "per 1,000 messages; Python: getrusage(RUSAGE_SELF), which counts exited threads too; "
        "Erlang: sum over /proc/<pid>/task/*/status.",
        "idle actors: RSS B/actor = /proc/self/statm resident growth / count; heap B/actor = "
        "tracemalloc growth (Python) or erlang:memory(processes) growth (Erlang); spawn/s = "
        "count / time to spawn and start them.",
    ]
    if reference is None or reference.get("msg_per_s") is None:
        lines.append("vs streamvisor: n/a, the streamvisor (workers=2) row has no result.")
    lines.append(f"total {meta['seconds']} s; load avg at end {meta['loadavg_end']:.2f} "
                 f"(other work on this machine skews results).")
    return "\n".join(textwrap.fill(line, width=100, subsequent_indent="  ") for line in lines)


def main(argv: list[str] | None = None) -> int:
    options, json_path = _parse(sys.argv[1:] if argv is None else argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    meta, rows = measure(options, log)
    print(_header(meta))
    print()
    print(render(rows))
    print()
    print(_footer(meta, rows))
    if json_path is not None:
        json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str)
                             + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
