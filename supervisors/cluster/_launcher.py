"""Start, inspect and stop a cluster on this host (what ``streamvisor cluster ...`` runs).

``start_cluster`` picks free ports on the bind address (loopback by default), writes the request
into the state directory and runs ``_boot`` in a clean child process, which starts thespian's
admin, one node actor per node, and records every process it started. ``cluster_status`` asks
each node for its status over thespian (nodes that do not answer show ``alive: false`` with
what ``/proc`` says of their pid). ``stop_cluster`` shuts the admin down (each node stops its
tenants, links and runtime), then waits for every recorded process - admin, logger, nodes,
restarted nodes - and kills what is left (SIGKILL, only pids whose start time matches), and
finally anything left in the admin's process group.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ._control import StatusRequest
from ._tlslink import TlsConfig, check_key_file
from ._tlslink import generate as generate_tls
from ._state import StateDir, is_running, pids_in_group, process_state, write_private

__all__ = ["start_cluster", "cluster_status", "stop_cluster", "ClusterError"]

_ROOT = Path(__file__).resolve().parents[2]   # the directory holding `actors` and `supervisors`


class ClusterError(SystemExit):
    """A launcher failure with a message for people (exits the CLI with status 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"streamvisor cluster: {message}")


_PORTS_FROM = 20_000  # the nodes' ports are picked in [_PORTS_FROM, start of the ephemeral range)


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the source ports of outgoing connections (Linux; IANA's elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49_152, 65_535


def _free_ports(host: str, count: int, kind: int) -> list[int]:
    """``count`` distinct ports free on ``host`` now, for nodes that bind them a moment later.

    They are picked below the ephemeral range: a port picked inside it (what binding port 0
    gives) can be handed to any outgoing connection - the nodes' own, thespian's - before the
    node binds it, and the node then fails with "Address already in use" (seen in the tests).
    Falls back to port 0 when that range leaves too little room."""
    low, _ = _ephemeral_range()
    pool = list(range(_PORTS_FROM, low)) if low - _PORTS_FROM >= 1_000 else []
    random.shuffle(pool)
    socks: list[socket.socket] = []
    try:
        for port in pool:
            if len(socks) == count:
                break
            s = socket.socket(socket.AF_INET, kind)
            try:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        while len(socks) < count:
            s = socket.socket(socket.AF_INET, kind)
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _admin_alive(record: dict[str, Any]) -> bool:
    return is_running(record.get("admin_pid"), record.get("admin_start_time"))


def start_cluster(app: str | None, *, nodes: int, state_dir: str | os.PathLike[str],
                  bind: str = "127.0.0.1", admin_port: int | None = None,
                  join: tuple[str, int] | None = None, cookie: str | None = None,
                  tenants: Sequence[str] = (), app_options: dict[str, Any] | None = None,
                  workers: int = 2, restart: str = "always", name: str = "streamvisor",
                  node_prefix: str | None = None, heartbeat_interval: float = 0.2,
                  heartbeat_timeout: float = 1.5, timeout: float = 30.0,
                  tls: TlsConfig | None = None, tls_generate: bool = False,
                  insecure: bool = False, log_max_bytes: int = 10 << 20,
                  log_keep: int = 3, state_url: str | None = None, lease_ttl: float = 6.0,
                  lease_grace: float = 1.0,
                  lease_table: str = "streamvisor_leases") -> dict[str, Any]:
    """Start ``nodes`` node processes running ``app``; returns once they are all up and see
    each other. Blocks up to ``timeout`` seconds; raises ``ClusterError`` with the reason (and
    stops whatever it had started) on failure.

    The data plane uses mutual TLS 1.3 with ``tls`` (PEM files), or with certificates generated
    into ``<state_dir>/tls`` when ``tls_generate``. A ``bind`` address that is not loopback is
    refused without TLS unless ``insecure``; ``0.0.0.0`` is always refused.

    ``state_url`` (a ``postgresql://`` URL, ``--state``) makes placement lease-based: a node
    starts a tenant only once it holds the tenant's lease in that database (``lease_ttl``
    seconds, renewed every third of it; taken over ``lease_grace`` seconds after its expiry,
    in ``lease_table``) and stops it when the lease is lost (see the cluster README,
    "Partitions and fencing")."""
    if nodes < 1:
        raise ClusterError("--nodes must be at least 1")
    check_bind(bind, tls is not None or tls_generate, insecure)
    if log_max_bytes < 1 or log_keep < 0:
        raise ClusterError(f"--log-max-bytes must be at least 1 and --log-keep at least 0, got "
                           f"{log_max_bytes} and {log_keep}")
    if tls is not None:
        check_tls(tls)
    if state_url is not None:
        if not state_url.startswith(("postgresql://", "postgres://")):
            raise ClusterError(f"--state must be a postgresql:// URL, got {state_url!r}")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", lease_table):
            raise ClusterError(f"--lease-table must be an SQL identifier, got {lease_table!r}")
        if not lease_ttl > 0 or not lease_grace >= 0:
            raise ClusterError(f"--lease-ttl must be > 0 and --lease-grace >= 0, got "
                               f"{lease_ttl} and {lease_grace}")
    state = StateDir(state_dir)
    previous = state.read()
    if previous is not None:
        if _admin_alive(previous):
            raise ClusterError(f"a cluster is already running from {state.path} "
                               f"(admin pid {previous['admin_pid']}); stop it first")
        stop_cluster(state_dir)  # leftovers of a dead cluster: clean them up
    state.create()
    if tls is None and tls_generate:
        tls = generate_tls(state.path / "tls", [bind])
    from ._thespian import HOST   # thespian listens on loopback only, whatever --bind says
    if admin_port is None:
        admin_port = _free_ports(HOST, 1, socket.SOCK_STREAM)[0]
    elif _port_in_use(HOST, admin_port):
        raise ClusterError(f"admin port {HOST}:{admin_port} is already in use")
    if join is not None and not cookie:
        raise ClusterError("joining a cluster needs its cookie (STREAMVISOR_COOKIE or "
                           "--cookie-file FILE, mode 0600)")
    cookie = cookie or secrets.token_hex(16)
    state.write_cookie(cookie)
    state.write_control_key()
    prefix = node_prefix or ("n" if join is None else f"n{admin_port}-")
    data_ports = _free_ports(bind, nodes, socket.SOCK_STREAM)
    hb_ports = _free_ports(bind, nodes, socket.SOCK_DGRAM)
    admin = f"{bind}:{admin_port}"   # a label: which admin (host) started a node
    members = [{"id": f"{prefix}{i + 1}", "inc": 1, "data": [bind, data_ports[i]],
                "hb": [bind, hb_ports[i]], "admin": admin, "pid": None} for i in range(nodes)]
    request = {"cluster": name, "bind": bind, "admin_port": admin_port, "join": join,
               "seeds": [list(join)] if join else [],
               "cookie": cookie, "members": members,
               "app": str(Path(app).resolve()) if app and app.endswith(".py") else app,
               "app_options": app_options or {}, "tenants": list(tenants), "workers": workers,
               "restart": restart, "heartbeat_interval": heartbeat_interval,
               "heartbeat_timeout": heartbeat_timeout, "timeout": timeout,
               "log_max_bytes": log_max_bytes, "log_keep": log_keep,
               "leases": [state_url, lease_ttl, lease_grace, lease_table] if state_url
               else None,
               "tls": [str(Path(p).resolve()) for p in (tls.cert, tls.key, tls.ca)]
               if tls is not None else None}
    result = _run_boot(state, request, timeout + 15.0)
    if not result.get("ok"):
        stop_cluster(state_dir)
        detail = "; ".join(f"{k}: {v}" for k, v in (result.get("errors") or {}).items())
        if result.get("missing"):
            detail += f"; no answer from {', '.join(result['missing'])}"
        raise ClusterError(f"the cluster did not start ({detail or 'unknown error'}); "
                           f"see {state.log_file}")
    return {"cluster": name, "state_dir": str(state.path), "admin": f"{HOST}:{admin_port}",
            "cookie_file": str(state.cookie_file), "nodes": result["nodes"],
            "tls": None if tls is None else {"cert": tls.cert, "key": tls.key, "ca": tls.ca}}


def check_bind(bind: str, tls: bool, insecure: bool) -> None:
    """Refuse ``0.0.0.0``, a name that is not an address, and a non-loopback address without
    TLS (unless ``insecure``), each with its reason."""
    if bind == "localhost":
        return
    try:
        ip = ipaddress.ip_address(bind)
    except ValueError:
        raise ClusterError(f"--bind needs an IP address of this host, got {bind!r}") from None
    if ip.version != 4:
        raise ClusterError(f"--bind {bind}: only IPv4 addresses are supported")
    if ip.is_unspecified:
        raise ClusterError(f"--bind {bind} is refused: nodes advertise the address they bind, "
                           f"and {bind} would listen on every interface; give this host's "
                           f"address on the network the nodes share")
    if not ip.is_loopback and not tls and not insecure:
        raise ClusterError(f"--bind {bind} is not a loopback address: the data plane needs TLS "
                           f"there (--tls to generate certificates into the state dir, or "
                           f"--tls-cert/--tls-key/--tls-ca), or --insecure to send it in clear")


def check_tls(tls: TlsConfig) -> None:
    for what, path in (("--tls-cert", tls.cert), ("--tls-key", tls.key), ("--tls-ca", tls.ca)):
        if not Path(path).is_file():
            raise ClusterError(f"{what} {path}: no such file")
    try:
        check_key_file(tls.key)
        tls.contexts()
    except (ssl.SSLError, OSError) as exc:
        raise ClusterError(f"the TLS files do not load ({exc})") from None
    except SystemExit as exc:
        raise ClusterError(str(exc.code).removeprefix("streamvisor cluster: ")) from None


def _run_boot(state: StateDir, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    request_file = state.path / "boot-request.json"
    result_file = state.path / "boot-result.json"
    result_file.unlink(missing_ok=True)
    write_private(request_file, json.dumps(request))
    env = dict(os.environ)
    env["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
    env.pop("STREAMVISOR_COOKIE", None)   # the nodes get it from the state dir, not inherited
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    with os.fdopen(state.open_log(), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "supervisors.cluster._boot",
                                 str(state.path)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, close_fds=True, env=env, cwd=os.getcwd(),
                                start_new_session=True)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"ok": False, "errors": {"boot": f"no result within {timeout} s"}}
    finally:
        request_file.unlink(missing_ok=True)
    try:
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result
    except (OSError, ValueError) as exc:
        return {"ok": False, "errors": {"boot": f"no result ({exc})"}}
    finally:
        result_file.unlink(missing_ok=True)


def _connect(state: StateDir, record: dict[str, Any]) -> Any:
    """A thespian client of the running admin, or None (never starts a new admin). Only a user
    who can read the state dir's control key can talk to the cluster."""
    from . import _thespian
    if not _admin_alive(record) or not _port_in_use(_thespian.HOST, record["admin_port"]):
        return None
    _thespian.harden(state.control_key())
    return _thespian.connect(record["admin_port"])


def cluster_status(state_dir: str | os.PathLike[str], timeout: float = 2.0) -> dict[str, Any]:
    """``{"cluster", "admin", "nodes": [{"id", "pid", "alive", "tenants", ...}]}``. Blocks up
    to about ``timeout`` seconds. Raises ``ClusterError`` when no cluster was started there."""
    state = StateDir(state_dir)
    record = state.read()
    if record is None:
        raise ClusterError(f"no cluster state in {state.path}")
    nodes = {r["id"]: r for r in state.node_records()}
    for node_id in record.get("nodes", []):
        nodes.setdefault(node_id, {"id": node_id})
    answers: dict[str, Any] = {}

    def ask() -> None:
        system = _connect(state, record)
        if system is not None:
            from . import _thespian
            # A stopped (SIGSTOP) process would hold thespian's send forever: not asked.
            targets = {n: _thespian.address_of(r["thespian"]) for n, r in nodes.items()
                       if r.get("thespian") and is_running(r.get("pid"), r.get("start_time"))
                       and process_state(r["pid"]) != "T"}
            _thespian.ask_all(system, targets, StatusRequest(), timeout, answers)

    _bounded(ask, timeout + 3.0)
    answers = dict(answers)
    rows = []
    for node_id in sorted(nodes):
        r = nodes[node_id]
        pid = r.get("pid")
        answer = answers.get(node_id)
        if answer is not None and answer.status.get("alive"):
            row = {**answer.status,
                   "state": (isinstance(pid, int) and process_state(pid)) or "gone"}
        else:
            running = is_running(pid, r.get("start_time"))
            row = {"id": node_id, "pid": pid, "alive": False, "tenants": [],
                   "incarnation": r.get("incarnation"),
                   "state": ((isinstance(pid, int) and process_state(pid)) or "gone")
                   if running else "gone"}
        rows.append(row)
    return {"cluster": record["cluster"], "state_dir": str(state.path),
            "admin": {"address": f"127.0.0.1:{record['admin_port']}",
                      "pid": record.get("admin_pid"), "alive": _admin_alive(record)},
            "nodes": rows}


def _recorded(state: StateDir, record: dict[str, Any] | None) -> list[tuple[int, int | None]]:
    procs: list[tuple[int, int | None]] = []
    if record is not None:
        if record.get("admin_pid"):
            procs.append((record["admin_pid"], record.get("admin_start_time")))
        procs += [(h["pid"], h.get("start_time")) for h in record.get("helpers", [])]
    procs += [(r["pid"], r.get("start_time")) for r in state.node_records() if r.get("pid")]
    return procs


def stop_cluster(state_dir: str | os.PathLike[str], timeout: float = 10.0) -> dict[str, Any]:
    """Stop every process the cluster started; returns ``{"stopped", "killed", "left"}`` pid
    lists (``left`` is empty unless a process survived SIGKILL). Blocks up to ``timeout`` plus a
    few seconds."""
    state = StateDir(state_dir)
    record = state.read()
    procs = _recorded(state, record)
    pgid = record.get("pgid") if record else None
    deadline = time.monotonic() + timeout  # one budget for the polite part: then SIGKILL
    if record is not None:
        def shut() -> None:
            system = _connect(state, record)
            if system is not None:
                from . import _thespian
                _thespian.shutdown(system)

        _bounded(shut, timeout)
    while time.monotonic() < deadline and any(
            is_running(p, t) and process_state(p) != "T" for p, t in procs):
        time.sleep(0.05)  # bounded by the deadline: nodes stop their runtimes meanwhile
    killed = []
    for pid, start in procs:
        if is_running(pid, start):
            _kill(pid)
            killed.append(pid)
    if pgid and pgid > 1 and pgid != os.getpgid(0):
        for pid in pids_in_group(pgid):
            if pid != os.getpid():
                _kill(pid)
                killed.append(pid)
    final = time.monotonic() + 3.0
    while time.monotonic() < final and any(is_running(p) for p in killed):
        time.sleep(0.02)
    left = [p for p in killed if is_running(p)]
    state.clear()
    return {"stopped": [p for p, _ in procs if p not in killed], "killed": killed, "left": left}


def _bounded(work: Any, timeout: float) -> bool:
    """Run ``work`` (a thespian client call that can block on an unresponsive process) on a
    daemon thread for at most ``timeout`` seconds; True if it finished. What it gathered so far
    stays usable; a call still blocked dies with this (short-lived) CLI process."""
    thread = threading.Thread(target=work, daemon=True, name="streamvisor-thespian-client")
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

