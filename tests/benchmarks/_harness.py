"""Orchestration: every peer, every run in a fresh process, medians, one list of rows.

Runs are interleaved (run 1 of every peer, then run 2, ...) so that a burst of load on the machine
spreads over all peers instead of sinking one. A peer whose run fails is not run again for that
measurement (a timeout would repeat, and ``make bench`` must stay bounded); its row shows the
error. Extra row providers are the modules ``tests/benchmarks/bench_*.py`` exposing
``run(repeats, quick) -> list[dict]``; each runs in its own process and its rows keep their own
``group``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import _erlang
from ._peers import PEERS, Kind, Peer
from ._runner import run_erlang, run_python
from ._table import add_ratios

__all__ = ["GROUP", "Options", "measure", "providers"]

GROUP = "pipeline, 1 msg/hop"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    repeats: int = 5
    quick: bool = False
    only: frozenset[str] | None = None  # peer keys and/or provider module names
    timeout: float = 30.0               # per measurement process
    provider_timeout: float = 90.0      # per bench_*.py module

    @property
    def idle_repeats(self) -> int:
        return 1 if self.quick else min(3, self.repeats)

    def selects(self, name: str) -> bool:
        return self.only is None or name in self.only


@dataclass
class _PeerRuns:
    """What one peer produced; ``stopped`` holds the measurements not to run again."""

    peer: Peer
    n: int
    idle: int
    results: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"pipeline": [], "idle": [], "heap": []})
    errors: list[str] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)
    extra_notes: list[str] = field(default_factory=list)

    def record(self, kind: str, result: dict[str, Any]) -> None:
        error = result.get("error")
        if error is None:
            self.results[kind].append(result)
            if result.get("lingering_threads"):
                self.extra_notes.append(f"{kind}: threads left running "
                                        f"{result['lingering_threads']}")
            return
        if error not in self.errors:
            self.errors.append(error)
        self.stopped.add(kind)
        if result.get("timeout") or str(error).startswith(("unavailable", "skipped")):
            self.stopped.update(self.results)

    def label(self) -> str:
        runs = [r for rs in self.results.values() for r in rs if "otp" in r]
        if self.peer.kind is not Kind.ERLANG or not runs:
            return self.peer.label
        otp, schedulers = runs[0]["otp"], runs[0]["schedulers"]
        if self.peer.options.get("schedulers"):
            return f"Erlang/OTP {otp} (erl +S {schedulers})"
        return f"Erlang/OTP {otp} (default: +S {schedulers})"

    def row(self, repeats: int) -> dict[str, Any]:
        row: dict[str, Any] = {"group": GROUP, "peer": self.label(), "key": self.peer.key,
                               "reference": self.peer.reference}
        notes = list(self.errors)
        runs = self.results["pipeline"]
        if runs:
            row["n"] = self.n
            rates = [r["msg_per_s"] for r in runs]
            row["msg_per_s"] = statistics.median(rates)
            if len(rates) > 1:
                row["spread"] = (max(rates) - min(rates)) / row["msg_per_s"]
            row["ctx_per_1k"] = statistics.median(r["ctx_switches"] * 1000 / r["n"] for r in runs)
            if len(runs) < repeats:
                notes.append(f"{len(runs)}/{repeats} runs")
        idle = self.results["idle"]
        if idle:
            row["idle_count"] = idle[0]["count"]
            row["rss_per_actor"] = statistics.median(r["rss_per_actor"] for r in idle)
            row["spawn_per_s"] = statistics.median(r["spawn_per_s"] for r in idle)
        heap = self.results["heap"] or [r for r in idle if "heap_per_actor" in r]
        if heap:
            row["heap_per_actor"] = statistics.median(r["heap_per_actor"] for r in heap)
        if idle and self.peer.idle_note:
            notes.append(self.peer.idle_note)
        row["note"] = "; ".join(notes + self.extra_notes)
        row["runs"] = self.results
        return row


def _run_one(runs: _PeerRuns, kind: str, erl_dir: Path | None, timeout: float) -> None:
    peer = runs.peer
    if peer.kind is Kind.ERLANG:
        assert erl_dir is not None
        schedulers = peer.options.get("schedulers")
        command = (_erlang.pipeline_command(erl_dir, runs.n, schedulers) if kind == "pipeline"
                   else _erlang.idle_command(erl_dir, runs.idle, schedulers))
        runs.record(kind, run_erlang(command, timeout))
        return
    size = runs.n if kind == "pipeline" else runs.idle
    args = ["idle" if kind == "heap" else kind, peer.key, str(size)]
    runs.record(kind, run_python(args + (["--tracemalloc"] if kind == "heap" else []), timeout))


def _describe(kind: str, runs: _PeerRuns) -> str:
    if runs.errors and kind in runs.stopped:
        return f"failed: {runs.errors[-1]}"
    last = runs.results[kind][-1]
    if kind == "pipeline":
        return f"{last['msg_per_s']:,.0f} msg/s, {last['ctx_switches']:,} ctx switches"
    if kind == "idle":
        return f"{last['rss_per_actor']:,.0f} B/actor RSS, {last['spawn_per_s']:,.0f} spawn/s"
    return f"{last['heap_per_actor']:,.0f} B/actor heap"


def _prepare_erlang(directory: Path, peers: list[_PeerRuns]) -> Path | None:
    erlang = [p for p in peers if p.peer.kind is Kind.ERLANG]
    if not erlang:
        return None
    try:
        if not _erlang.available():
            raise RuntimeError("skipped: erl/erlc not on PATH")
        _erlang.compile_module(directory)
        return directory
    except (RuntimeError, OSError) as exc:
        for runs in erlang:
            runs.record("pipeline", {"error": str(exc) if str(exc).startswith("skipped")
                                     else f"skipped: {exc}"})
        return None


def _peer_rows(options: Options, log: Log) -> list[dict[str, Any]]:
    peers = [_PeerRuns(p, *p.sizes(options.quick)) for p in PEERS if options.selects(p.key)]
    plan = [("pipeline", options.repeats), ("idle", options.idle_repeats), ("heap", 1)]
    with tempfile.TemporaryDirectory(prefix="svbench-erl-") as tmp:
        erl_dir = _prepare_erlang(Path(tmp), peers)
        for kind, repeats in plan:
            for index in range(repeats):
                for runs in peers:
                    if kind in runs.stopped or (kind == "heap" and runs.peer.kind is Kind.ERLANG):
                        continue
                    _run_one(runs, kind, erl_dir, options.timeout)
                    log(f"[{kind} {index + 1}/{repeats}] {runs.peer.key}: {_describe(kind, runs)}")
    return [runs.row(options.repeats) for runs in peers]


def providers() -> list[str]:
    """Names of the ``bench_*`` modules next to this file, sorted."""
    here = str(Path(__file__).parent)
    return sorted(m.name for m in pkgutil.iter_modules([here]) if m.name.startswith("bench_"))


def _provider_rows(name: str, options: Options) -> list[dict[str, Any]]:
    args = ["provider", name, str(options.repeats)] + (["--quick"] if options.quick else [])
    # a module may ask for more time than the default (TIMEOUT = seconds, a module attribute)
    timeout = getattr(importlib.import_module(f"{__package__}.{name}"), "TIMEOUT",
                      options.provider_timeout)
    result = run_python(args, max(float(timeout), options.provider_timeout))
    group = name.removeprefix("bench_").replace("_", " ")
    if "error" in result:
        return [{"group": group, "peer": name, "note": f"failed: {result['error']}"}]
    rows = result.get("rows") or [{"group": group, "peer": name, "note": "returned no rows"}]
    return [{"peer": name, **row} for row in rows]


def measure(options: Options, log: Log) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run everything selected; returns (meta, rows). Blocks for up to a few minutes."""
    started = time.time()
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": f"{platform.system()} {platform.machine()}",
        "nproc": len(os.sched_getaffinity(0)),
        "n": PEERS[0].sizes(options.quick)[0],
        "repeats": options.repeats, "quick": options.quick,
        "loadavg_start": os.getloadavg()[0],
    }
    rows = _peer_rows(options, log)
    for name in providers():
        if options.selects(name):
            log(f"[provider] {name} ...")
            rows += _provider_rows(name, options)
    add_ratios(rows)
    meta["loadavg_end"] = os.getloadavg()[0]
    meta["seconds"] = round(time.time() - started, 1)
    return meta, rows
