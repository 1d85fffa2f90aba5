"""Event-time windows: a tumbling 60 s mean per key over 1,000 keys, beside Bytewax on the same
data in the same run. Rows for the harness table (``run(repeats, quick)``), or on its own:

    .venv/bin/python -m tests.benchmarks.bench_window            # prints the rows as a table
    .venv/bin/python -m tests.benchmarks.bench_window --quick

The data (the same for every peer, built before the clock starts): ``(key, ts, temp)`` tuples,
keys ``"dev0"`` .. ``"dev999"`` round robin, event time advancing 1 ms per item (so every key
has 60 items per window and 1,000 windows close every 60,000 items), with a bounded disorder:
every 7th item is 2 s late. Each run takes the items in, folds ``(sum, count)`` per window and
counts the closed windows at the end; items/s = N / elapsed, elapsed from the start until every
window has been counted. Median over runs, each in a fresh process, peers interleaved. Column
``items_per_cpu_s`` = N / the process's CPU time over the same span (all its threads): less
sensitive to other load on the machine than wall-clock time.

- streamvisor: a ``Source`` producing batches of ``B`` items (credit-based backpressure,
  window 1024), a ``Window`` node (``Tumbling(60)``, ``lateness=5``, ``init``/``fold``/``result``),
  a ``Sink`` counting ``WindowResult``s - on ``Runtime(workers=2)`` and on the inline runtime
  (one thread: the cost of the windows themselves).
- Bytewax (when installed: the ``bench`` extra): ``TestingSource(batch_size=B)`` ->
  ``key_on`` -> ``windowing.fold_window`` with an ``EventClock`` (``wait_for_system_duration``
  5 s: the same lateness) and a ``TumblingWindower`` of 60 s -> a counting sink, run by
  ``bytewax.testing.run_main`` (one worker). Its clock wants aware ``datetime``s: they are built
  into the data beforehand, not timed. Bytewax is slower, so it runs on a smaller N (see N).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from ._child import child_main, run_child, with_ratios

GROUP = "tumbling 60 s mean, 1,000 keys"
MARKER = "@@bench-window "
KEYS = 1000

__all__ = ["run", "data"]


def data(n: int) -> list[tuple[str, float, float]]:
    """The items: ``(key, ts, temp)``; every 7th item 2 s late."""
    names = [f"dev{i}" for i in range(KEYS)]
    return [(names[i % KEYS], i * 0.001 - (2.0 if i % 7 == 3 else 0.0), 20.0 + (i % 11) * 0.5)
            for i in range(n)]


def _streamvisor(n: int, batch: int, inline: bool) -> dict[str, Any]:
    from actors import Runtime
    from actors.stream import Graph, Sink, Source, Tumbling, Window
    from actors.testing import inline_runtime

    items = data(n)
    done: list[int] = []

    class Feed(Source):
        def on_start(self) -> None:
            self.at = 0

        def produce(self, demand: int) -> list[Any]:
            k = min(demand, batch)
            out = items[self.at:self.at + k]
            self.at += len(out)
            if self.at >= n:
                self.finish()
            return out

    class Count(Sink):
        def on_start(self) -> None:
            self.windows = 0
            self.items = 0

        def process_batch(self, results: Any, port: str) -> None:
            self.windows += len(results)
            for r in results:
                self.items += r.count

        def on_end(self) -> None:
            done.append(self.windows)

    g = Graph("bench")
    g.add("source", Feed, max_items=batch)
    g.add("minute", Window, key=lambda r: r[0], time=lambda r: r[1], windows=Tumbling(60.0),
          lateness=5.0, init=lambda: (0.0, 0), fold=lambda a, r: (a[0] + r[2], a[1] + 1),
          result=lambda a: a[0] / a[1])
    g.add("count", Count)
    g.pipe("source", "minute", "count")
    rt = inline_runtime() if inline else Runtime(workers=2)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        inst = g.instantiate(rt, "bench")
        if inline:
            rt.wait_idle(120)  # runs every turn on this thread
        if not inst.wait_complete(120):
            raise RuntimeError("did not complete in 120 s")
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        s = inst.statistics().node("minute")
    finally:
        rt.shutdown()
    if s.late:
        raise RuntimeError(f"{s.late} items late: the data should have none")
    return {"n": n, "items_per_s": n / elapsed, "cpu_items_per_s": n / cpu,
            "windows": done[0] if done else None}


def _bytewax(n: int, batch: int) -> dict[str, Any]:
    from datetime import datetime, timedelta, timezone

    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import TestingSource, run_main

    epoch = datetime(2024, 1, 1, tzinfo=timezone.utc)
    items = [(k, epoch + timedelta(seconds=t), temp) for k, t, temp in data(n)]
    counted = [0, 0]

    class _Part(StatelessSinkPartition):  # type: ignore[misc]  # bytewax has no types
        def write_batch(self, values: list[Any]) -> None:
            counted[0] += len(values)

    class Count(DynamicSink):  # type: ignore[misc]  # bytewax has no types
        def build(self, *args: Any) -> _Part:
            return _Part()

    flow = Dataflow("bench")
    stream = op.input("in", flow, TestingSource(items, batch_size=batch))
    keyed = op.key_on("key", stream, lambda r: r[0])
    clock = win.EventClock(lambda r: r[1], wait_for_system_duration=timedelta(seconds=5))
    windower = win.TumblingWindower(length=timedelta(seconds=60), align_to=epoch)
    out = win.fold_window("mean", keyed, clock, windower, builder=lambda: (0.0, 0),
                          folder=lambda a, r: (a[0] + r[2], a[1] + 1),
                          merger=lambda a, b: (a[0] + b[0], a[1] + b[1]))
    means = op.map("divide", out.down, lambda kv: (kv[0], (kv[1][0], kv[1][1][0] / kv[1][1][1])))
    op.output("out", means, Count())
    t0, c0 = time.perf_counter(), time.process_time()
    run_main(flow)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"n": n, "items_per_s": n / elapsed, "cpu_items_per_s": n / cpu,
            "windows": counted[0]}


def _one(argv: list[str]) -> dict[str, Any]:
    kind, n, batch = argv[0], int(argv[1]), int(argv[2])
    if kind == "sv-threads":
        return _streamvisor(n, batch, inline=False)
    if kind == "sv-inline":
        return _streamvisor(n, batch, inline=True)
    if kind == "bytewax":
        try:
            import bytewax  # noqa: F401
        except ImportError as e:
            return {"error": f"unavailable: {e} (pip install -e '.[bench]')"}
        return _bytewax(n, batch)
    raise ValueError(f"unknown measurement {kind!r}")


def _python(args: list[str], timeout: float = 60.0) -> dict[str, Any]:
    return run_child("tests.benchmarks.bench_window", MARKER, args, timeout)


def run(repeats: int = 3, quick: bool = False) -> list[dict[str, Any]]:
    """Measure (about a minute at 5 repeats; ``quick``: seconds) and return table rows."""
    n = 100_000 if quick else 1_000_000
    n_peer = n // 10                      # Bytewax: ~40k items/s here, a smaller N
    batch = 1000
    plan = [("sv-threads", [str(n), str(batch)], "streamvisor Window, Runtime(workers=2)"),
            ("sv-inline", [str(n), str(batch)], "streamvisor Window, inline runtime"),
            ("bytewax", [str(n_peer), str(batch)], "Bytewax fold_window (run_main)")]
    results: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in plan}
    for _ in range(min(repeats, 3)):       # three interleaved rounds fit the provider's time
        for key, args, _ in plan:
            results[key].append(_python([key, *args]))
    rows = []
    for key, _, label in plan:
        runs = results[key]
        good = [r for r in runs if "error" not in r]
        row: dict[str, Any] = {"group": GROUP, "peer": label, "batch": batch,
                               "reference": key == "sv-threads"}
        if not good:
            row["note"] = runs[0]["error"] if runs else "no runs"
            rows.append(row)
            continue
        rates = [r["items_per_s"] for r in good]
        row["n"] = good[0]["n"]
        row["msg_per_s"] = statistics.median(rates)
        if len(rates) > 1:
            row["spread"] = (max(rates) - min(rates)) / row["msg_per_s"]
        row["items_per_cpu_s"] = statistics.median(r["cpu_items_per_s"] for r in good)
        row["windows"] = good[0]["windows"]
        notes = ["items/s; batches of 1,000, lateness 5 s, 1 in 7 items 2 s late"]
        if len(good) < len(runs):
            notes.append(f"{len(good)}/{len(runs)} runs; {runs[0].get('error', '')}")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return with_ratios(rows)


def main(argv: list[str]) -> int:
    return child_main(argv, MARKER, _one, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
