"""Instructions per message, counted by valgrind (``--tool=callgrind``): a figure that does not
move with the load on the machine, unlike msg/s on a shared VM.

``python -m tests.benchmarks.instructions [--n N] [--peers raw,inline,w1,w2,stream,stream-each]``

For each peer it runs the harness's 3-stage pipeline (``_peer_raw`` / ``_peer_streamvisor``;
``stream`` and ``stream-each``: ``bench_stream``'s batched pipeline of stream nodes, batches of
64, forwarded with ``process_batch``/``emit_many`` or item by item with ``process``/``emit``,
on the inline runtime) twice under callgrind, with 2N messages and with N, and prints
``(instructions(2N) - instructions(N)) / N``: start-up, imports and the runtime's own start cost
cancel out. ``PYTHONHASHSEED`` is fixed, so a
rerun of the same code gives the same count to within a fraction of a percent. With threads
(``w1``, ``w2``) valgrind runs one thread at a time: the count includes the scheduler's and the
workers' code but not what GIL contention costs in wall time. Needs ``valgrind`` on the PATH;
says so and exits 2 without it. (Slow: about 20 s per peer with N=50,000.)
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "count"]

PEERS = ("raw", "inline", "w1", "w2", "stream", "stream-each")


def _pipeline(which: str, n: int) -> None:
    """The measured program (run inside valgrind by ``count``): the harness's own pipeline."""
    if which.startswith("stream"):
        from .bench_stream import _streamvisor
        _streamvisor(n, 64, which == "stream-each", inline=True)
    elif which == "raw":
        from ._peer_raw import pipeline
        pipeline(n)
    else:
        from ._peer_streamvisor import pipeline as sv_pipeline
        sv_pipeline(n, 0 if which == "inline" else int(which[1:]))


def count(which: str, n: int) -> int:
    """Instructions that valgrind counted for one run of ``_pipeline(which, n)``."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(root))
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, "-m", "tests.benchmarks.instructions", "--run", which, str(n)],
            cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"{which} N={n}: valgrind failed ({out.returncode}): "
                           f"{out.stderr.strip()[-400:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.instructions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000,
                        help="the runs take N and 2N messages (N: 50,000)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated, from {', '.join(PEERS)}")
    parser.add_argument("--run", nargs=2, metavar=("PEER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        _pipeline(args.run[0], int(args.run[1]))
        return 0
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if args.n <= 0:
        parser.error(f"--n must be a positive number of messages, got {args.n}")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts (apt install valgrind)",
              file=sys.stderr)
        return 2
    # Byte-compile first: a module compiled inside the larger run only would count as per-message.
    root = Path(__file__).resolve().parents[2]
    for package in ("actors", "supervisors", "tests/benchmarks"):
        compileall.compile_dir(root / package, quiet=2)
    per_msg = {}
    for peer in peers:
        per_msg[peer] = (count(peer, 2 * args.n) - count(peer, args.n)) / args.n
        print(f"  {peer}: {per_msg[peer]:,.0f} instructions/msg", file=sys.stderr)
    base = per_msg.get("raw")
    print(f"| pipeline, 1 msg/hop, +{args.n:,} msgs | instructions / msg | raw loop / peer |")
    print("|---|--:|--:|")
    for peer, value in per_msg.items():
        ratio = f"{base / value:.2f}x" if base else ""
        print(f"| {peer} | {value:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
