"""The ``streamvisor`` command.

``streamvisor run APP [--duration S] [--workers N] [--log json|console]`` loads APP (a Python file
or a module name) and calls its ``start(rt, options)`` with a fresh ``Runtime``. ``start`` spawns
the app's actors and may return a callable giving a dict of counters, which the progress line
shows once a second next to the runtime's own. The app stops after ``--duration`` seconds (or on
Ctrl-C): its ``stop(rt)`` runs if defined, then the runtime shuts down (reverse start order) and a
summary is printed. ``streamvisor bench`` runs the side-by-side benchmark table (from a checkout).
``streamvisor cluster start|status|stop`` runs an app on several node processes (see
``supervisors.cluster``). Apps are loaded by ``supervisors.apps.load_app``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from actors import Runtime, configure_logging
from streamvisor.graph import add_graph_command
from streamvisor.top import DEFAULT_HTTP, add_top_command, parse_hostport, start_http
from supervisors.apps import load_app
from supervisors.cluster.cli import add_cluster_commands, run_cluster_command

__all__ = ["main", "load_app", "run_app"]


def _line(stats: Any, extra: dict[str, Any], elapsed: float) -> str:
    parts = [f"{elapsed:6.1f}s", f"actors={stats.actors}", f"processed={stats.processed}",
             f"dropped={stats.dropped}", f"dead_letters={stats.dead_letters}"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return "  ".join(parts)


def run_app(module: ModuleType, options: argparse.Namespace,
            out: Callable[[str], None] = print) -> dict[str, Any]:
    """Run an app module to completion; returns the final counters."""
    stop = threading.Event()
    with Runtime(workers=options.workers, node=options.node) as rt, \
            contextlib.ExitStack() as extras:
        if getattr(options, "http", None):  # closed before the runtime shuts down
            http = extras.enter_context(start_http(rt, *parse_hostport(options.http)))
            out(f"status: {http.url}/status.json   metrics: {http.url}/metrics")
        progress = module.start(rt, options)
        started = time.monotonic()
        deadline = None if options.duration is None else started + options.duration
        try:
            while not stop.is_set():
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    break
                stop.wait(left)
                extra = progress() if callable(progress) else {}
                out(_line(rt.statistics(), extra, time.monotonic() - started))
        except KeyboardInterrupt:
            out("interrupted: stopping")
        final = progress() if callable(progress) else {}  # before the app's stop closes things
        stats = rt.statistics()
        if callable(getattr(module, "stop", None)):
            module.stop(rt)
    out("summary: " + _line(stats, final, time.monotonic() - started))
    return {**final, "processed": stats.processed, "dropped": stats.dropped}


def _bench(argv: list[str]) -> int:
    """Run the benchmark harness of the source checkout around the current directory in its own
    interpreter (what ``make bench`` runs); this process's ``sys.path`` is left alone."""
    for root in (Path.cwd(), *Path.cwd().parents):
        if (root / "tests" / "benchmarks" / "__main__.py").is_file():
            return subprocess.call([sys.executable, "-m", "tests.benchmarks", *argv], cwd=root)
    print("streamvisor bench: run it inside a source checkout (tests/benchmarks is not installed; "
          "`make bench` there does the same)", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="streamvisor", description="streamvisor: run apps, clusters, the live top view and "
        "the benchmark table")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an app on one node")
    run.add_argument("app", help="a .py file or module defining start(rt, options)")
    run.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    run.add_argument("--workers", type=int, default=2, help="worker threads (default 2)")
    run.add_argument("--node", default=None, help="node name for logs")
    run.add_argument("--log", choices=["console", "json"], default=None, help="log renderer")
    run.add_argument("--log-level", default=None, help="debug|info|warning|error")
    run.add_argument("--http", nargs="?", const=DEFAULT_HTTP, default=None, metavar="HOST:PORT",
                     help=f"serve /metrics and /status.json on loopback (default {DEFAULT_HTTP})")
    add_top_command(sub)
    add_graph_command(sub)
    bench = sub.add_parser("bench", help="print the side-by-side benchmark table")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    add_cluster_commands(sub)
    args, extra = parser.parse_known_args(argv)
    if args.command == "cluster":
        return run_cluster_command(args, extra)
    if args.command == "bench":
        return _bench(args.rest + extra)
    if args.command == "graph":
        return int(args.run_graph(args, load_app))
    if args.command == "top":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.run_top(args))
    if args.duration is not None and not args.duration > 0:
        parser.error("--duration must be a positive number of seconds")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    configure_logging(json=None if args.log is None else args.log == "json",
                      level=args.log_level, force=True)
    module = load_app(args.app)
    app_parser = getattr(module, "add_arguments", None)
    if extra:
        if not callable(app_parser):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        app_args = argparse.ArgumentParser(prog=f"streamvisor run {args.app}")
        app_parser(app_args)
        app_args.parse_args(extra, namespace=args)
    elif callable(app_parser):
        app_args = argparse.ArgumentParser(prog=f"streamvisor run {args.app}")
        app_parser(app_args)
        app_args.parse_args([], namespace=args)
    run_app(module, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
