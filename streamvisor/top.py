"""``streamvisor top``: a live view of a running node, and the loopback HTTP server that feeds it.

A node serves ``/metrics`` (Prometheus, ``streamvisor.metrics``) and ``/status.json`` from one
HTTP server bound to loopback: ``start_http(rt, "127.0.0.1", 9108)`` (``streamvisor run APP
--http 127.0.0.1:9108``). ``streamvisor top --http 127.0.0.1:9108`` polls ``/status.json`` every
``--interval`` seconds and shows the supervision tree (each supervisor's children from
``supervisors.peek_children``, in start order, restarting ones included), per-actor mailbox
depth, message and drop rates (from two consecutive samples), restarts, durable queues and
connectors. ``--once`` prints one view; ``--once --json`` prints the status with rates (two
samples ``--interval`` apart; ``--interval 0``: one sample, rates null) for scripts.

``/status.json``: ``{"node", "time", "runtime": {...}, "tree": [node], "truncated", "top":
[deepest mailboxes], "queues": [...], "sources": [...]}``; a tree node is ``{"path", "label",
"id", "tenant", "kind": "supervisor"|"worker"|"actor", "state": "running"|"restarting"|
"stopped", "restart", "queued", "capacity", "processed", "dropped", "restarts",
"children"}``. Roots are actors without a live parent. Supervisors are found from the roots
registered with ``metrics_for(rt).add_root`` and by class (``actors.lowlevel.actor_class``);
below them by ``ChildInfo.kind``.

Threads: the server (``streamvisor._http``: Host-header check, a cap on concurrent requests,
read timeouts and a per-connection deadline) runs ``serve_forever`` in one daemon thread and a
thread per request in progress - outside the scheduler's pool, like the connectors' paho threads.
Serving a status never waits on an actor: it walks the live actors' counters and reads each
supervisor's children from what the supervisor published at the end of its last turn
(``supervisors.peek_children``), so a supervisor or a tenant busy in a long turn delays nothing.
A supervisor in the middle of a turn shows its children as they were before that turn.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from typing import Any

from actors import ActorRef, Runtime
from actors import lowlevel
from streamvisor._http import HttpServer, Route
from streamvisor.metrics import ActorSample, metrics_for
from supervisors import Supervisor, peek_children

__all__ = ["DEFAULT_HTTP", "HttpServer", "add_top_command", "node_status", "parse_hostport",
           "run_top", "start_http", "with_rates"]

DEFAULT_HTTP = "127.0.0.1:9108"


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9108"`` -> ``("127.0.0.1", 9108)``; port 0 means ephemeral. ``ValueError``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. {DEFAULT_HTTP}), got {text!r}")
    return host.strip("[]"), int(port)


def start_http(rt: Runtime, host: str = "127.0.0.1", port: int = 0, *, top_n: int = 20,
               max_nodes: int = 2000, allow_remote: bool = False, **bounds: Any) -> HttpServer:
    """Serve ``/metrics`` and ``/status.json`` of ``rt`` on ``host:port`` (0: ephemeral; see
    ``.port`` / ``.url``). Returns at once; ``close()`` it before the runtime shuts down.
    ``bounds`` go to ``HttpServer`` (``allowed_hosts``, ``max_concurrent``,
    ``request_timeout``). Raises ``OSError`` if the port is taken, ``ValueError`` for a
    non-loopback host."""
    metrics = metrics_for(rt, top_n=top_n)

    def status() -> tuple[bytes, str]:
        return json.dumps(node_status(rt, max_nodes=max_nodes)).encode(), "application/json"

    def prometheus() -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST
        return metrics.exposition(), CONTENT_TYPE_LATEST

    routes: dict[str, Route] = {"/metrics": prometheus, "/status.json": status}
    return HttpServer(host, port, routes, allow_remote=allow_remote, **bounds)


# -- the status --------------------------------------------------------------------------------
def _is_supervisor(ref: ActorRef) -> bool:
    return issubclass(lowlevel.actor_class(ref), Supervisor)


def _entry(s: ActorSample | None, path: str, **extra: Any) -> dict[str, Any]:
    st = s.stats if s is not None else None
    label = extra.pop("label", None) or path.rsplit("/", 1)[-1]
    return {"path": path, "label": label, "id": None, "tenant": s.tenant if s else None,
            "kind": "actor", "state": "running", "restart": None,
            "queued": st.queued if st else 0, "capacity": st.capacity if st else 0,
            "processed": st.processed if st else 0, "dropped": st.dropped if st else 0,
            "restarts": st.restarts if st else 0, "children": [], **extra}


def node_status(rt: Runtime, *, max_nodes: int = 2000) -> dict[str, Any]:
    """The status document of ``rt`` (see the module docstring). No message to any actor: the
    walk reads counters and the supervisors' published children (registered queues and sources
    are read as registered: a source registered as an ``ask`` waits for its actor)."""
    m = metrics_for(rt)
    samples = m.actor_samples()
    by_ref = {s.ref: s for s in samples}
    kids: dict[ActorRef | None, list[ActorRef]] = defaultdict(list)
    for s in samples:
        parent = lowlevel.parent(s.ref)
        kids[parent if parent in by_ref else None].append(s.ref)
    known = set(m.roots())
    budget = [max_nodes]

    def build(ref: ActorRef, as_child: Any = None) -> dict[str, Any] | None:
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        node = _entry(by_ref[ref], ref.path)
        if as_child is not None:
            node.update(id=as_child.id, kind=as_child.kind, restart=as_child.restart.name.lower(),
                        label=str(as_child.id) if as_child.id is not None else node["label"])
        infos = None
        if node["kind"] == "supervisor" or ref in known or _is_supervisor(ref):
            try:
                infos = peek_children(ref)  # published at its last turn's end: never waits
                node["kind"] = "supervisor"
            except TypeError:  # registered as a root, but not a supervisor: a plain actor
                infos = None
        if infos is not None:
            taken: set[ActorRef] = set()
            for info in infos:
                if isinstance(info.ref, ActorRef) and info.ref in by_ref:
                    taken.add(info.ref)
                    child = build(info.ref, info)
                else:
                    state = "restarting" if info.ref == "restarting" else "stopped"
                    child = _entry(None, f"{ref.path}/{info.id}", label=str(info.id), id=info.id,
                                   kind=info.kind, state=state, tenant=node["tenant"],
                                   restart=info.restart.name.lower())
                if child is not None:
                    node["children"].append(child)
            rest = [k for k in kids.get(ref, []) if k not in taken]
        else:
            rest = kids.get(ref, [])
        for k in rest:
            child = build(k)
            if child is not None:
                node["children"].append(child)
        return node

    tree = [n for n in (build(r) for r in kids.get(None, [])) if n is not None]
    stats = rt.statistics()
    top = sorted(samples, key=lambda s: s.stats.queued, reverse=True)[:m.top_n]
    return {
        "node": rt.node, "time": time.time(),
        "runtime": {"actors": stats.actors, "workers": stats.workers,
                    "processed": stats.processed, "dropped": stats.dropped,
                    "dead_letters": stats.dead_letters, "run_queue": stats.run_queue,
                    "timers": stats.timers},
        "tree": tree, "truncated": max(0, len(samples) - max_nodes),
        "top": [{"path": s.stats.path, "tenant": s.tenant, "queued": s.stats.queued,
                 "capacity": s.stats.capacity} for s in top if s.stats.queued],
        "queues": m.queue_stats(), "sources": m.source_stats(),
    }


def _walk(tree: list[dict[str, Any]], depth: int = 0) -> Any:
    for i, node in enumerate(tree):
        yield node, depth, i == len(tree) - 1
        yield from _walk(node["children"], depth + 1)


def with_rates(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """``after`` with ``rate``/``drop_rate`` (per second since ``before``; None without it) on
    the runtime and on every tree node (matched by path; a restarted actor counts from 0)."""
    dt = after["time"] - before["time"] if before else 0.0
    old = {n["path"]: n for n, _, _ in _walk(before["tree"])} if before and dt > 0 else {}

    def rate(new: int, prev: int | None) -> float | None:
        if prev is None or dt <= 0:
            return None
        return round(max(0, new - prev if new >= prev else new) / dt, 1)

    rt_before = before["runtime"] if before and dt > 0 else {}
    after["runtime"]["rate"] = rate(after["runtime"]["processed"], rt_before.get("processed"))
    after["runtime"]["drop_rate"] = rate(after["runtime"]["dropped"], rt_before.get("dropped"))
    for node, _, _ in _walk(after["tree"]):
        prev = old.get(node["path"])
        node["rate"] = rate(node["processed"], prev["processed"] if prev else None)
        node["drop_rate"] = rate(node["dropped"], prev["dropped"] if prev else None)
    return after


# -- the command -------------------------------------------------------------------------------
def add_top_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``top`` to a ``streamvisor`` subparsers object; the parsed namespace's ``run_top``
    runs it (``return args.run_top(args)``)."""
    top: argparse.ArgumentParser = subparsers.add_parser(
        "top", help="live view of a running node (supervision tree, mailboxes, rates, drops, "
                    "restarts)")
    top.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                     help=f"the node's status server (default {DEFAULT_HTTP})")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    top.add_argument("--once", action="store_true", help="print one view and exit")
    top.add_argument("--json", action="store_true", help="with --once: print JSON")
    top.add_argument("--depth", type=int, default=6, help="tree levels to show (default 6)")
    top.set_defaults(run_top=run_top)
    return top


def fetch_status(host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``/status.json``; ``OSError`` (``URLError``) when the node cannot be reached."""
    with urllib.request.urlopen(f"http://{host}:{port}/status.json", timeout=timeout) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def run_top(args: argparse.Namespace, out: Any = None) -> int:
    """Run ``streamvisor top``: 0 on success (or Ctrl-C), 1 when the node cannot be reached
    with ``--once``, 2 for bad arguments."""
    out = out or sys.stdout
    try:
        host, port = parse_hostport(args.http)
    except ValueError as exc:
        print(f"streamvisor top: {exc}", file=sys.stderr)
        return 2
    if not args.interval >= 0 or (not args.once and args.interval <= 0):
        print("streamvisor top: --interval must be > 0 (>= 0 with --once)", file=sys.stderr)
        return 2
    stop = threading.Event()
    if args.once:
        try:
            first = fetch_status(host, port)
            if args.interval > 0:
                stop.wait(args.interval)
                status = with_rates(first, fetch_status(host, port))
            else:
                status = with_rates(None, first)
        except (OSError, ValueError) as exc:
            print(f"streamvisor top: cannot read {host}:{port}/status.json ({exc}); start the "
                  f"node with: streamvisor run APP --http {host}:{port}", file=sys.stderr)
            return 1
        if args.json:
            out.write(json.dumps(status, indent=1) + "\n")
        else:
            from rich.console import Console
            Console(file=out).print(render(status, args.depth))
        return 0
    return _live(host, port, args, stop)


def _live(host: str, port: int, args: argparse.Namespace, stop: threading.Event) -> int:
    from rich.live import Live
    from rich.text import Text
    previous: dict[str, Any] | None = None
    try:
        with Live(Text("connecting..."), refresh_per_second=4, screen=False) as live:
            while True:
                try:
                    current = with_rates(previous, fetch_status(host, port))
                    live.update(render(current, args.depth))
                    previous = current
                except (OSError, ValueError) as exc:
                    live.update(Text(f"cannot read {host}:{port}/status.json: {exc} "
                                     "(retrying)", style="red"))
                    previous = None
                stop.wait(args.interval)
    except KeyboardInterrupt:
        return 0


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def render(status: dict[str, Any], max_depth: int = 6) -> Any:
    """A rich renderable of a status (with rates) document."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    r = status["runtime"]
    head = Text.assemble(
        ("node ", "bold"), status["node"], f"   actors {r['actors']}   workers {r['workers']}"
        f"   processed {_num(r['processed'])} ({_num(r.get('rate'))}/s)   dropped "
        f"{_num(r['dropped'])}   dead letters {_num(r['dead_letters'])}   run queue "
        f"{r['run_queue']}")
    table = Table(expand=False, box=None, header_style="bold")
    for col in ("actor", "kind", "state", "queued", "msg/s", "dropped", "drop/s", "restarts"):
        table.add_column(col, justify="left" if col in ("actor", "kind", "state") else "right")
    for node, depth, _last in _walk(status["tree"]):
        if depth > max_depth:
            continue
        style = {"restarting": "yellow", "stopped": "dim"}.get(node["state"])
        name = "  " * depth + ("▸ " if node["kind"] == "supervisor" else "· ") + node["label"]
        if node.get("tenant") and depth == 0:
            name += f"  [{node['tenant']}]"
        table.add_row(name, node["kind"], node["state"], _num(node["queued"]),
                      _num(node.get("rate")), _num(node["dropped"]), _num(node.get("drop_rate")),
                      _num(node["restarts"]), style=style)
    parts: list[Any] = [head, table]
    if status.get("truncated"):
        parts.append(Text(f"... {status['truncated']} more actors not shown", style="dim"))
    for title, rows in (("queues", status.get("queues")), ("connectors", status.get("sources"))):
        if rows:
            t = Table(title=title, box=None, title_justify="left", header_style="bold")
            keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
            for k in keys:
                t.add_column(k)
            for row in rows:
                t.add_row(*(_num(row.get(k)) for k in keys))
            parts.append(t)
    return Group(*parts)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="streamvisor")
    add_top_command(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args(["top", *sys.argv[1:]])
    sys.exit(_args.run_top(_args))
