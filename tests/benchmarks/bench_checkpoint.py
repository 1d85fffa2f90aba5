"""The cost of checkpoints: the windowed IoT pipeline with checkpoints every 1 s and every 10 s
against none, in the same run. Rows for the harness table (``run(repeats, quick)``), or alone:

    .venv/bin/python -m tests.benchmarks.bench_checkpoint            # prints the rows as a table
    .venv/bin/python -m tests.benchmarks.bench_checkpoint --quick

The pipeline (iot_cloud's shape): a ``DurableQueue`` (SQLite, in a temporary directory) ->
``QueueSource`` -> ``payload`` -> ``Window`` (``Tumbling(60)`` per device, 500 devices, a
``(sum, count)`` fold) -> a counting sink, and beside it ``QueueSink`` (the readings' store,
``store`` doing nothing): without checkpoints it acknowledges each batch; with checkpoints the
source acknowledges at each commit (``SqliteCheckpoints`` in the same directory). The readings
are put into the queue by a thread that keeps 30k-60k of them ready (the same load for every
configuration). A run lasts 10.5 s (quick: 2.5 s, where 10 s takes no checkpoint); items/s = the
readings the window took / the time; ``Runtime(workers=2)``; each run in a fresh process,
configurations interleaved, median of two rounds (the module must fit the harness's 90 s). The
rows say how many checkpoints each run committed, the time each cost the nodes (encoding the
snapshots + the commit) and the size of the last one. Without checkpoints ``QueueSink`` commits
one ack transaction per batch; with them the source acks once per checkpoint: that batching can
make the checkpointed pipeline *faster* than the plain one, so the per-checkpoint cost is shown
separately.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._child import child_main, with_ratios

GROUP = "checkpoint cost, windowed IoT pipeline"
MARKER = "@@bench-checkpoint "
ROOT = Path(__file__).resolve().parents[2]
DEVICES = 500

__all__ = ["run"]


def _measure(seconds: float, every: float) -> dict[str, Any]:
    from actors import Runtime
    from actors.queue import DurableQueue, QueueSink, QueueSource
    from actors.stream import Checkpoints, Graph, Node, Sink, SqliteCheckpoints, Tumbling, Window

    class Payload(Node):
        def process_batch(self, items: Any, port: str) -> None:
            self.emit_many([item.payload for item in items])

    class Count(Sink):
        def process_batch(self, results: Any, port: str) -> None:
            pass

    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        q = DurableQueue(os.path.join(tmp, "q.db"), "readings", visibility_timeout=60.0)
        names = [f"dev{i}" for i in range(DEVICES)]
        made = [0]

        def top_up(count: int) -> None:
            i0 = made[0]
            q.put_many([{"device": names[i % DEVICES], "ts": i * 0.01, "temp": 20.0 + i % 13}
                        for i in range(i0, i0 + count)])
            made[0] += count

        top_up(60_000)
        stop = threading.Event()

        def feeder() -> None:  # keeps 30k-60k readings ready, the same for every configuration
            while not stop.is_set():
                if q.stats()["ready"] < 30_000:
                    top_up(10_000)
                else:
                    stop.wait(0.01)

        store = SqliteCheckpoints(os.path.join(tmp, "ckpt.db"))
        g = Graph("bench", checkpoint=Checkpoints(store, every=every) if every else None)
        g.add("queue", QueueSource, q)
        g.add("payload", Payload)
        g.add("minute", Window, key=lambda r: r["device"], time=lambda r: r["ts"],
              windows=Tumbling(60.0), lateness=5.0, init=lambda: (0.0, 0),
              fold=lambda a, r: (a[0] + r["temp"], a[1] + 1), result=lambda a: a)
        g.add("count", Count)
        g.add("store", QueueSink, q)
        g.pipe("queue", "payload", "minute", "count")
        g.connect("queue", "store")
        rt = Runtime(workers=2)
        feed = threading.Thread(target=feeder, daemon=True)
        feed.start()
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            inst = g.instantiate(rt, "bench")
            while time.perf_counter() - t0 < seconds:
                time.sleep(0.01)
                inst.wake("queue")
            n = inst.statistics().node("minute").processed
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            status = inst.checkpoints()
            stop.set()
            inst.stop()
        finally:
            stop.set()
            feed.join(10)
            rt.shutdown()
            q.close()
            store.close()
    return {"n": n, "items_per_s": n / elapsed, "cpu_items_per_s": n / cpu,
            "checkpoints": status["commits"] if status else 0,
            "bytes": status["bytes"] if status else 0, "elapsed": elapsed,
            "ckpt_seconds": status["seconds"] if status else 0.0}


def _python(args: list[str], timeout: float = 85.0) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("STREAMVISOR_LOG_LEVEL", "error")
    try:
        done = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_checkpoint",
                               "--one", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [x for x in done.stdout.splitlines() if x.startswith(MARKER)]
    if not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()
        return {"error": f"exit {done.returncode}: {tail[-1] if tail else ''}"[:300]}
    return json.loads(lines[-1][len(MARKER):])


def run(repeats: int = 3, quick: bool = False) -> list[dict[str, Any]]:
    """Measure and return table rows (``quick``: one short round)."""
    seconds = 2.5 if quick else 10.5  # the 10 s configuration commits one checkpoint
    plan = [("none", 0.0, "no checkpoints"), ("1s", 1.0, "checkpoints every 1 s"),
            ("10s", 10.0, "checkpoints every 10 s")]
    rounds = 1 if quick else min(repeats, 2)  # the module must fit the harness's 90 s
    results: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in plan}
    for _ in range(rounds):
        for key, every, _ in plan:
            results[key].append(_python([str(seconds), str(every)]))
    rows = []
    for key, _, label in plan:
        runs = results[key]
        good = [r for r in runs if "error" not in r]
        row: dict[str, Any] = {"group": GROUP, "peer": label, "reference": key == "none"}
        if not good:
            row["note"] = runs[0]["error"] if runs else "no runs"
            rows.append(row)
            continue
        rates = [r["items_per_s"] for r in good]
        row["n"] = int(statistics.median(r["n"] for r in good))
        row["msg_per_s"] = statistics.median(rates)
        if len(rates) > 1:
            row["spread"] = (max(rates) - min(rates)) / row["msg_per_s"]
        row["items_per_cpu_s"] = statistics.median(r["cpu_items_per_s"] for r in good)
        ck = [r["checkpoints"] for r in good]
        spent = statistics.median(r["ckpt_seconds"] / max(1, r["checkpoints"]) for r in good)
        row["note"] = (f"readings/s through queue + window; {min(ck)}-{max(ck)} checkpoints "
                       f"per run of {statistics.median(r['elapsed'] for r in good):.1f} s, "
                       f"{spent * 1000:.0f} ms each (encode + commit), last "
                       f"{max(r['bytes'] for r in good):,} bytes" if max(ck) else
                       "readings/s through queue + window; QueueSink acks each batch")
        rows.append(row)
    return with_ratios(rows)


def main(argv: list[str]) -> int:
    return child_main(argv, MARKER, lambda args: _measure(float(args[0]), float(args[1])), run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
