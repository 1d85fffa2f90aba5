"""Stream graphs: a batched pipeline through 3 nodes, beside its peers, and what batching costs
in latency. Rows for the harness table (``run(repeats, quick)``), or on its own:

    .venv/bin/python -m tests.benchmarks.bench_stream            # prints the rows as a table
    .venv/bin/python -m tests.benchmarks.bench_stream --quick

Group "pipeline, batched" (items/s end to end, median of ``repeats`` runs, each in a fresh
process, peers interleaved): a source feeds N items in batches of B into stage 1, stage 1
forwards to stage 2, stage 2 to stage 3, which counts items and signals done at N.

- streamvisor: ``actors.stream`` on ``Runtime(workers=2)`` - a ``Source`` (produce(demand) of
  B items, credit-based backpressure, window 1024), two ``Node``s forwarding each batch with
  ``process_batch``/``emit_many``, a ``Sink`` counting; and the same with per-item
  ``process``/``emit`` in the two middle nodes;
- threads: three threads joined by ``queue.SimpleQueue``, carrying the same lists of B items
  (unbounded queues: no flow control; a list is passed by reference);
- Erlang/OTP: three processes, the source sends a list of B integers N/B times (unbounded
  mailboxes; each hop copies the list), default schedulers; skipped when ``erl`` is absent.

Group "stream batching latency": a source emits 5,000 items/s, each stamped with
``perf_counter`` when produced; a middle node batches with ``max_items=64`` and the given
``max_delay``; the sink records each item's age. p50/p99 per item in microseconds, and the mean
batch size the middle node handled.
"""

from __future__ import annotations

import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._child import child_main, run_child

GROUP = "pipeline, batched"
LATENCY = "stream batching latency"
MARKER = "@@bench-stream "

__all__ = ["run"]


# -- what runs inside one measurement process ------------------------------------------------------
def _streamvisor(n: int, batch: int, per_item: bool, inline: bool = False) -> dict[str, Any]:
    """``inline``: on ``Runtime(inline=True)`` (one thread; the instruction counts of
    ``instructions.py`` use it), else on ``Runtime(workers=2)``."""
    from actors import Runtime
    from actors.stream import Graph, Node, Sink, Source

    from ._measure import Window

    class Gen(Source):
        def __init__(self) -> None:
            self.left = n
            self.chunk = list(range(batch))

        def produce(self, demand: int) -> list[int]:
            k = min(demand, self.left)
            self.left -= k
            if not self.left:
                self.finish()
            return self.chunk if k == batch else self.chunk[:k]

    class Forward(Node):
        def process_batch(self, items: Any, port: str) -> None:
            self.emit_many(items)

    class ForwardEach(Node):
        def process(self, item: Any, port: str) -> None:
            self.emit(item)

    class Count(Sink):
        def __init__(self) -> None:
            self.seen = 0

        def process_batch(self, items: Any, port: str) -> None:
            self.seen += len(items)
            if self.seen >= n:
                done.set()

    done = threading.Event()
    stage = ForwardEach if per_item else Forward
    g = Graph("bench")
    g.add("source", Gen, max_items=batch)
    g.add("s1", stage)
    g.add("s2", stage)
    g.add("count", Count)
    g.pipe("source", "s1", "s2", "count")
    with (Runtime(inline=True) if inline else Runtime(workers=2)) as rt:
        with Window() as window:
            inst = g.instantiate(rt, "bench")
            finished = done.wait(60)
        stats = inst.statistics()
    if not finished:
        raise RuntimeError(f"counted {stats.node('count').processed}/{n} in 60 s")
    return window.result(n, lost=stats.lost, dropped=stats.dropped)


def _threads(n: int, batch: int) -> dict[str, Any]:
    from ._measure import Window

    stop = object()
    q1: queue.SimpleQueue[Any] = queue.SimpleQueue()
    q2: queue.SimpleQueue[Any] = queue.SimpleQueue()
    q3: queue.SimpleQueue[Any] = queue.SimpleQueue()
    done = threading.Event()

    def forward(inbox: Any, outbox: Any) -> None:
        get, put = inbox.get, outbox.put
        while (m := get()) is not stop:
            put(m)
        put(stop)

    def count() -> None:
        seen = 0
        while (m := q3.get()) is not stop:
            seen += len(m)
            if seen >= n:
                done.set()

    threads = [threading.Thread(target=forward, args=(q1, q2), daemon=True),
               threading.Thread(target=forward, args=(q2, q3), daemon=True),
               threading.Thread(target=count, daemon=True)]
    for t in threads:
        t.start()
    chunk = list(range(batch))
    put = q1.put
    with Window() as window:
        for _ in range(n // batch):
            put(chunk)
        finished = done.wait(60)
    put(stop)
    for t in threads:
        t.join(10)
    if not finished:
        raise RuntimeError("threads pipeline did not finish in 60 s")
    return window.result(n)


def _latency(max_delay: float | None, seconds: float, rate: float = 5000.0) -> dict[str, Any]:
    from actors import Runtime
    from actors.stream import Graph, Node, Sink, Source

    clock = time.perf_counter

    class Timed(Source):
        poll_interval = 0.0005

        def on_start(self) -> None:
            self.t0 = clock()
            self.sent = 0

        def produce(self, demand: int) -> list[float]:
            now = clock()
            due = min(demand, int((now - self.t0) * rate) - self.sent)
            if due <= 0:
                return []
            self.sent += due
            return [now] * due

    class Batcher(Node):
        def on_start(self) -> None:
            self.batches = 0

        def process_batch(self, items: Any, port: str) -> None:
            self.batches += 1
            sizes.append(len(items))
            self.emit_many(items)

    class Ages(Sink):
        def process_batch(self, items: Any, port: str) -> None:
            now = clock()
            ages.extend(now - t for t in items)

    ages: list[float] = []
    sizes: list[int] = []
    options = {} if max_delay is None else {"max_items": 64, "max_delay": max_delay}
    g = Graph("latency")
    g.add("source", Timed)
    g.add("batcher", Batcher, **options)
    g.add("sink", Ages)
    g.pipe("source", "batcher", "sink")
    with Runtime(workers=2) as rt:
        g.instantiate(rt, "bench")
        threading.Event().wait(seconds)
    warm = ages[len(ages) // 10:]  # skip the start-up
    if len(warm) < 100:
        raise RuntimeError(f"only {len(ages)} items measured")
    warm.sort()
    return {"n": len(warm), "p50_us": warm[len(warm) // 2] * 1e6,
            "p99_us": warm[int(len(warm) * 0.99)] * 1e6,
            "batch_mean": statistics.mean(sizes) if sizes else 0.0}


def _one(argv: list[str]) -> dict[str, Any]:
    kind, *args = argv
    if kind == "streamvisor":
        return _streamvisor(int(args[0]), int(args[1]), args[2] == "each")
    if kind == "threads":
        return _threads(int(args[0]), int(args[1]))
    if kind == "latency":
        delay = None if args[0] == "none" else float(args[0])
        return _latency(delay, float(args[1]))
    raise ValueError(f"unknown measurement {kind!r}")


# -- Erlang ----------------------------------------------------------------------------------------
ERLANG = r"""
-module(sv_stream_bench).
-export([pipeline/1]).

pipeline([NArg, BArg]) ->
    N = list_to_integer(NArg), B = list_to_integer(BArg),
    Self = self(),
    S3 = spawn(fun() -> count(N, Self) end),
    S2 = spawn(fun() -> forward(S3) end),
    S1 = spawn(fun() -> forward(S2) end),
    Batch = lists:seq(1, B),
    T0 = erlang:monotonic_time(nanosecond),
    feed(S1, Batch, N div B),
    receive done -> ok end,
    T1 = erlang:monotonic_time(nanosecond),
    io:format("SVBENCH n=~p elapsed_ns=~p otp=~s schedulers=~p~n",
              [N, T1 - T0, erlang:system_info(otp_release),
               erlang:system_info(schedulers_online)]),
    erlang:halt(0).

forward(Next) -> receive M -> Next ! M, forward(Next) end.

count(K, Parent) when K =< 0 -> Parent ! done;
count(K, Parent) -> receive L -> count(K - length(L), Parent) end.

feed(_, _, 0) -> ok;
feed(S, Batch, K) -> S ! Batch, feed(S, Batch, K - 1).
"""


def _erlang(directory: Path, n: int, batch: int) -> dict[str, Any]:
    try:
        done = subprocess.run(["erl", "-noshell", "-pa", str(directory), "-run",
                               "sv_stream_bench", "pipeline", str(n), str(batch)],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": "erl timed out after 60 s"}
    line = next((x for x in done.stdout.splitlines() if x.startswith("SVBENCH ")), None)
    if line is None:
        return {"error": f"erl: {(done.stderr or done.stdout).strip()[-200:]}"}
    fields = dict(pair.split("=", 1) for pair in line.split()[1:])
    elapsed = int(fields["elapsed_ns"]) / 1e9
    return {"n": n, "msg_per_s": n / elapsed, "otp": fields["otp"],
            "schedulers": int(fields["schedulers"])}


def _compile_erlang(directory: Path) -> str | None:
    if shutil.which("erl") is None or shutil.which("erlc") is None:
        return "skipped: erl/erlc not on PATH"
    source = directory / "sv_stream_bench.erl"
    source.write_text(ERLANG, encoding="utf-8")
    done = subprocess.run(["erlc", "-o", str(directory), str(source)], capture_output=True,
                          text=True, timeout=60)
    return None if done.returncode == 0 else f"erlc failed: {done.stderr.strip()[-200:]}"


# -- orchestration ---------------------------------------------------------------------------------
def _python(args: list[str], timeout: float = 80.0) -> dict[str, Any]:
    return run_child("tests.benchmarks.bench_stream", MARKER, args, timeout)


def _median_row(label: str, runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {"group": GROUP, "peer": label, **extra}
    if not good:
        row["note"] = runs[0]["error"] if runs else "no runs"
        return row
    rates = [r["msg_per_s"] for r in good]
    row["n"] = good[0]["n"]
    row["msg_per_s"] = statistics.median(rates)
    if len(rates) > 1:
        row["spread"] = (max(rates) - min(rates)) / row["msg_per_s"]
    if "ctx_switches" in good[0]:
        row["ctx_per_1k"] = statistics.median(r["ctx_switches"] * 1000 / r["n"] for r in good)
    if len(good) < len(runs):
        row["note"] = f"{len(good)}/{len(runs)} runs; {runs[0].get('error', '')}"
    return row


def run(repeats: int = 3, quick: bool = False) -> list[dict[str, Any]]:
    """Measure everything (a minute or so; ``quick``: a few seconds) and return table rows."""
    n = 200_000 if quick else 2_000_000
    n_each = n // 4
    batches = (64, 256)
    plan: list[tuple[str, Any]] = []
    for b in batches:
        nb = n // b * b  # whole batches for every peer
        plan += [(f"sv-{b}", ["streamvisor", str(nb), str(b), "batch"]),
                 (f"threads-{b}", ["threads", str(nb), str(b)]),
                 (f"erlang-{b}", (nb, b))]
    plan.append(("sv-each-64", ["streamvisor", str(n_each), "64", "each"]))
    results: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in plan}
    with tempfile.TemporaryDirectory(prefix="svbench-stream-") as tmp:
        erl_error = _compile_erlang(Path(tmp))
        for _ in range(repeats):
            for key, args in plan:
                if key.startswith("erlang"):
                    results[key].append({"error": erl_error} if erl_error else
                                        _erlang(Path(tmp), *args))
                else:
                    results[key].append(_python(args))
    otp = next((r for rs in results.values() for r in rs if "otp" in r), None)
    erl_label = (f"Erlang/OTP {otp['otp']} (3 processes, default +S {otp['schedulers']})"
                 if otp else "Erlang/OTP (3 processes)")
    rows = []
    for b in batches:
        sv = _median_row("streamvisor stream (process_batch)", results[f"sv-{b}"], batch=b,
                         reference=(b == 64))
        sv["note"] = "; ".join(filter(None, [sv.get("note"), "credit-based backpressure"]))
        rows.append(sv)
        rows.append(_median_row("threads + queue.SimpleQueue", results[f"threads-{b}"],
                                batch=b, note="one list reference per hop, no per-item work; "
                                "unbounded queues, no flow control"))
        rows.append(_median_row(erl_label, results[f"erlang-{b}"], batch=b,
                                note="unbounded mailboxes; each hop copies the list"))
    each = _median_row("streamvisor stream (process per item)", results["sv-each-64"], batch=64)
    each["note"] = "; ".join(filter(None, [each.get("note"), "emit() per item in 2 stages"]))
    rows.append(each)
    for row in rows:  # ratio to the streamvisor row of the same batch size
        base = next((r.get("msg_per_s") for r in rows if r.get("batch") == row.get("batch")
                     and r["peer"].startswith("streamvisor stream (process_batch")), None)
        if base and row.get("msg_per_s"):
            row["ratio"] = row["msg_per_s"] / base
    seconds = "0.4" if quick else "1.0"
    for delay in ("none", "0", "0.001", "0.005", "0.02"):
        runs = [_python(["latency", delay, seconds]) for _ in range(min(repeats, 2))]
        good = [r for r in runs if "error" not in r]
        label = ("no node batching" if delay == "none" else
                 f"max_items=64, max_delay={float(delay) * 1000:g} ms")
        row: dict[str, Any] = {"group": LATENCY, "peer": f"streamvisor, {label}"}
        if good:
            row.update(n=good[0]["n"],
                       p50_us=statistics.median(r["p50_us"] for r in good),
                       p99_us=statistics.median(r["p99_us"] for r in good),
                       batch_mean=statistics.median(r["batch_mean"] for r in good),
                       note="5,000 items/s; age from produce() to the sink")
        else:
            row["note"] = runs[0]["error"]
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    return child_main(argv, MARKER, _one, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
