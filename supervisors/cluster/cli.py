"""``streamvisor cluster start|status|stop``: a cluster of node processes on this host.

    streamvisor cluster start --nodes 3 examples/cluster_app.py [--tenants 6] [app options]
    streamvisor cluster start --nodes 2 --join 10.0.0.5:20100 --cookie-file c APP   # more hosts
    streamvisor cluster status [--json]
    streamvisor cluster stop

``start`` returns once every node is up and sees the others. Sockets bind to 127.0.0.1 unless
``--bind`` says otherwise. Every process started is recorded under ``--state-dir`` (default
``./.streamvisor-cluster``); ``stop`` stops them all, and kills what does not stop.

Wiring (in ``streamvisor/cli.py``): ``add_cluster_commands(sub)`` next to the other
sub-commands, and ``if args.command == "cluster": return run_cluster_command(args, extra)``
before any ``run``-specific checks. ``python -m supervisors.cluster.cli ...`` runs it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ._launcher import ClusterError, cluster_status, start_cluster, stop_cluster
from ._state import DEFAULT_STATE_DIR
from supervisors.apps import load_app  # the same loader as `streamvisor run`

__all__ = ["add_cluster_commands", "run_cluster_command", "main"]


def add_cluster_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``cluster`` (with ``start``, ``status``, ``stop``) to a ``add_subparsers()`` object."""
    cluster: argparse.ArgumentParser = subparsers.add_parser(
        "cluster", help="run an app as a cluster of node processes",
        description=__doc__.split("\n\n")[0])
    commands = cluster.add_subparsers(dest="cluster_command", required=True)
    start = commands.add_parser("start", help="start a cluster (returns when all nodes are up)")
    start.add_argument("app", help="a .py file or module defining start(rt, options)")
    start.add_argument("--nodes", type=int, default=3, help="node processes (default 3)")
    start.add_argument("--join", metavar="HOST:PORT", default=None,
                       help="join the cluster one of whose nodes has its data address there")
    start.add_argument("--tenants", default=None,
                       help="comma-separated tenant names, or a count (default: the app's TENANTS)")
    start.add_argument("--bind", default="127.0.0.1",
                       help="address every socket binds to (default 127.0.0.1: loopback only)")
    start.add_argument("--admin-port", type=int, default=None,
                       help="thespian admin port (default: a free port)")
    start.add_argument("--workers", type=int, default=2, help="worker threads per node (default 2)")
    start.add_argument("--restart", choices=["always", "never"], default="always",
                       help="restart killed nodes (tenants are re-placed either way)")
    start.add_argument("--name", default="streamvisor", help="cluster name (must match to join)")
    start.add_argument("--cookie", default=None, help=argparse.SUPPRESS)   # refused: see _cookie
    start.add_argument("--cookie-file", default=None,
                       help="read the cluster's shared secret from this file (mode 0600; to "
                            "join, the first cluster's <state-dir>/cookie). Or set "
                            "STREAMVISOR_COOKIE. Default: a new random cookie")
    start.add_argument("--tls", action="store_true",
                       help="mutual TLS 1.3 on the data plane, with a CA and certificates "
                            "generated into <state-dir>/tls (kept across restarts)")
    start.add_argument("--tls-cert", default=None, help="this host's node certificate (PEM)")
    start.add_argument("--tls-key", default=None, help="its private key (PEM, mode 0600)")
    start.add_argument("--tls-ca", default=None, help="the cluster's CA certificate (PEM)")
    start.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --bind without TLS (data in clear)")
    start.add_argument("--log-max-bytes", type=int, default=10 << 20,
                       help="rotate <state-dir>/cluster.log at this size (default 10 MiB)")
    start.add_argument("--log-keep", type=int, default=3,
                       help="older parts of cluster.log to keep (default 3)")
    start.add_argument("--heartbeat-timeout", type=float, default=1.5,
                       help="seconds of silence before a node is declared dead (default 1.5)")
    start.add_argument("--state", default=None, metavar="postgresql://...",
                       help="a shared PostgreSQL database: a node hosts a tenant only while it "
                            "holds the tenant's lease there (fencing across partitions); an "
                            "app with its own --state option gets it too")
    start.add_argument("--lease-ttl", type=float, default=6.0,
                       help="tenant lease length in seconds with --state (default 6)")
    start.add_argument("--lease-grace", type=float, default=1.0,
                       help="seconds after a lease's expiry before another node may take it "
                            "(default 1; above the clock drift)")
    start.add_argument("--lease-table", default="streamvisor_leases",
                       help="the lease table in --state (default streamvisor_leases)")
    start.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for start-up")
    start.add_argument("--json", action="store_true", help="print the result as JSON")
    cert = commands.add_parser(
        "cert", help="issue a node certificate from a cluster's CA (for a host joining it)")
    cert.add_argument("--out", required=True, help="directory for node.pem, node.key, ca.pem")
    cert.add_argument("--host", action="append", default=[],
                      help="an address or name of the host that will use it (repeatable)")
    for sub in (start, commands.add_parser("status", help="show every node"),
                commands.add_parser("stop", help="stop every process the cluster started"),
                cert):
        sub.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                         help=f"run directory (default ./{DEFAULT_STATE_DIR})")
        if sub not in (start, cert):
            sub.add_argument("--json", action="store_true", help="print the result as JSON")
            sub.add_argument("--timeout", type=float, default=None, help="seconds to wait")
    return cluster


def _tenants(value: str | None, module: Any) -> list[str]:
    if value is None:
        return [str(t) for t in getattr(module, "TENANTS", ())]
    if value.isdigit():
        return [f"tenant-{i:02d}" for i in range(1, int(value) + 1)]
    return [t.strip() for t in value.split(",") if t.strip()]


def _cookie(args: argparse.Namespace) -> str | None:
    """The cookie from ``--cookie-file`` (0600) or ``STREAMVISOR_COOKIE``; never from argv."""
    if args.cookie is not None:
        raise ClusterError("--cookie is refused: a secret on the command line is visible to "
                           "every local user (ps, /proc/PID/cmdline). Put it in a file of mode "
                           "0600 and pass --cookie-file FILE, or set STREAMVISOR_COOKIE")
    if args.cookie_file:
        path = Path(args.cookie_file)
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text().strip()
        except OSError as exc:
            raise ClusterError(f"--cookie-file {path}: {exc.strerror or exc}") from None
        if mode & 0o077:
            raise ClusterError(f"--cookie-file {path} is mode {mode:o}: other users could read "
                               f"the cluster's secret; chmod 600 {path}")
        if not text:
            raise ClusterError(f"--cookie-file {path} is empty")
        return text
    return os.environ.get("STREAMVISOR_COOKIE") or None


def _tls_files(args: argparse.Namespace) -> Any:
    given = [args.tls_cert, args.tls_key, args.tls_ca]
    if not any(given):
        return None
    if not all(given):
        raise ClusterError("--tls-cert, --tls-key and --tls-ca go together (give all three)")
    from ._tlslink import TlsConfig
    return TlsConfig(*(str(Path(p).resolve()) for p in given))


def _app_options(module: Any, app: str, extra: list[str],
                 state: str | None = None) -> dict[str, Any]:
    """The app's own options (its ``add_arguments``). ``--state`` is the cluster's (the lease
    store) and also the app's when the app has a ``--state`` option: one shared database."""
    add_arguments = getattr(module, "add_arguments", None)
    if not callable(add_arguments):
        if extra:
            raise SystemExit(f"streamvisor cluster start: unrecognized arguments: {' '.join(extra)}")
        return {}
    parser = argparse.ArgumentParser(prog=f"streamvisor cluster start {app}")
    add_arguments(parser)
    options = vars(parser.parse_args(extra))
    if state is not None and "state" in options and options["state"] is None:
        options["state"] = state
    json.dumps(options)  # they travel to the nodes: plain values only
    return options


def run_cluster_command(args: argparse.Namespace, extra: list[str] | None = None,
                        out: Any = print) -> int:
    """Run a parsed ``cluster`` command; returns the exit status."""
    extra = list(extra or [])
    try:
        if args.cluster_command == "start":
            cookie = _cookie(args)
            module = load_app(args.app)
            join = None
            if args.join:
                host, _, port = args.join.rpartition(":")
                if not host or not port.isdigit():
                    raise ClusterError(f"--join needs HOST:PORT, got {args.join!r}")
                join = (host, int(port))
            result = start_cluster(
                args.app, nodes=args.nodes, state_dir=args.state_dir, bind=args.bind,
                admin_port=args.admin_port, join=join, cookie=cookie,
                tenants=_tenants(args.tenants, module),
                app_options=_app_options(module, args.app, extra, args.state), workers=args.workers,
                restart=args.restart, name=args.name, heartbeat_timeout=args.heartbeat_timeout,
                timeout=args.timeout, tls=_tls_files(args), tls_generate=args.tls,
                insecure=args.insecure, log_max_bytes=args.log_max_bytes,
                log_keep=args.log_keep, state_url=args.state, lease_ttl=args.lease_ttl,
                lease_grace=args.lease_grace, lease_table=args.lease_table)
            if args.json:
                out(json.dumps(result))
            else:
                out(f"cluster {result['cluster']} started: {len(result['nodes'])} nodes, admin "
                    f"{result['admin']}, state {result['state_dir']}")
                for node in result["nodes"]:
                    host, port = node["info"]["data"]
                    out(f"  {node['id']:<12} pid {node['pid']:<8} data {host}:{port}")
            return 0
        if extra:
            raise SystemExit(f"streamvisor cluster: unrecognized arguments: {' '.join(extra)}")
        if args.cluster_command == "cert":
            from ._tlslink import issue
            state = Path(args.state_dir)
            files = issue(state / "tls", args.out, args.host or ["127.0.0.1"])
            out(f"issued {files.cert} (key {files.key}) from the CA of {state}; "
                f"use --tls-cert {files.cert} --tls-key {files.key} --tls-ca {files.ca}")
            return 0
        if args.cluster_command == "status":
            status = cluster_status(args.state_dir, args.timeout or 2.0)
            out(json.dumps(status, default=str) if args.json else _table(status))
            return 0
        if args.cluster_command == "stop":
            report = stop_cluster(args.state_dir, args.timeout or 10.0)
            if args.json:
                out(json.dumps(report))
            else:
                out(f"stopped {len(report['stopped'])} processes, killed {len(report['killed'])}"
                    + (f", STILL RUNNING: {report['left']}" if report["left"] else ""))
            return 1 if report["left"] else 0
    except ClusterError as exc:
        print(exc.code, file=sys.stderr)
        return 1
    raise SystemExit(f"streamvisor cluster: unknown command {args.cluster_command!r}")


def _table(status: dict[str, Any]) -> str:
    admin = status["admin"]
    lines = [f"cluster {status['cluster']}  admin {admin['address']} pid {admin['pid']} "
             f"{'up' if admin['alive'] else 'DOWN'}  state {status['state_dir']}",
             f"{'node':<12} {'pid':>8} {'alive':<6} {'inc':>3} {'state':<5} tenants"]
    for node in status["nodes"]:
        leases = node.get("leases") or {}   # with --state: tenant -> epoch held
        tenants = [f"{t}@{leases[t]}" if t in leases else t for t in node.get("tenants") or []]
        lines.append(f"{node['id']:<12} {node.get('pid') or '-':>8} "
                     f"{'yes' if node['alive'] else 'NO':<6} {node.get('incarnation') or '-':>3} "
                     f"{node.get('state', ''):<5} {', '.join(tenants) or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m supervisors.cluster.cli [cluster] start|status|stop ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cluster"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="streamvisor")
    add_cluster_commands(parser.add_subparsers(dest="command", required=True))
    args, extra = parser.parse_known_args(["cluster", *argv])
    return run_cluster_command(args, extra)


if __name__ == "__main__":
    sys.exit(main())
