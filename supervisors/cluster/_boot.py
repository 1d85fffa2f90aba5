"""``python -m supervisors.cluster._boot STATE_DIR``: the process that starts a cluster.

The launcher runs this as a child whose stdin is ``/dev/null`` and whose stdout/stderr are the
cluster log, with no other file descriptors: thespian's admin forks from here and detaches, and
must not inherit the caller's pipes (a test capturing the launcher's output would otherwise wait
for the whole cluster to exit). It reads ``boot-request.json``, starts the admin and the node
actors, configures them, waits until they see each other, records every pid in
``cluster.json`` and writes ``boot-result.json``. Then it exits; the cluster runs on.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from ._control import Configure, StatusRequest
from ._state import StateDir, children_of, process_start_time, write_private

__all__ = ["boot"]


def boot(state: StateDir, request: dict[str, Any]) -> dict[str, Any]:
    from . import _thespian

    name, bind, admin_port = request["cluster"], request["bind"], request["admin_port"]
    members = [dict(m) for m in request["members"]]
    # Before thespian starts: its admin, logger and node processes fork from here and inherit
    # the loopback-only binding and the sealed serializer.
    _thespian.harden(state.control_key())
    capabilities = {"streamvisor.cluster": name}
    system = _thespian.connect(admin_port, capabilities)
    configs = {}
    for member in members:
        others = tuple(m for m in members if m["id"] != member["id"])
        configs[member["id"]] = Configure(
            cluster=name, node_id=member["id"], cookie=request["cookie"], bind=bind,
            port=member["data"][1], heartbeat_port=member["hb"][1], admin=member["admin"],
            state_dir=str(state.path), app=request.get("app"),
            app_options=request.get("app_options") or {},
            tenants=tuple(request.get("tenants") or ()), members=others,
            seeds=tuple(tuple(s) for s in request.get("seeds") or ()),
            workers=request.get("workers", 2), restart=request.get("restart", "always"),
            heartbeat_interval=request.get("heartbeat_interval", 0.2),
            heartbeat_timeout=request.get("heartbeat_timeout", 1.5),
            tls=tuple(request["tls"]) if request.get("tls") else None,
            log_max_bytes=request.get("log_max_bytes", 10 << 20),
            log_keep=request.get("log_keep", 3),
            leases=tuple(request["leases"]) if request.get("leases") else None)
    addresses = {node_id: _thespian.create_node(system, name, node_id) for node_id in configs}
    for node_id, address in addresses.items():
        system.tell(address, configs[node_id])
    readies: dict[str, Any] = {}
    deadline = time.monotonic() + request.get("timeout", 30.0)
    while len(readies) < len(addresses) and time.monotonic() < deadline:
        answer = system.listen(max(0.05, deadline - time.monotonic()))
        node_id = getattr(answer, "node_id", None)
        if isinstance(node_id, str) and node_id in addresses:
            readies[node_id] = answer
    errors = {n: r.error for n, r in readies.items() if r.error}
    missing = sorted(set(addresses) - set(readies))
    admin_pid = next((r.ppid for r in readies.values()), None)
    record = {
        "cluster": name, "bind": bind, "admin_port": admin_port, "join": request.get("join"),
        "app": request.get("app"), "tenants": request.get("tenants"),
        "admin_pid": admin_pid,
        "admin_start_time": process_start_time(admin_pid) if admin_pid else None,
        "pgid": os.getpgid(admin_pid) if admin_pid else None,
        "nodes": sorted(addresses), "started_at": time.time(),
        "helpers": [], "launcher_pid": os.getppid(),
    }
    if admin_pid:
        node_pids = {r.pid for r in readies.values()}
        record["helpers"] = [{"pid": p, "start_time": process_start_time(p)}
                             for p in children_of(admin_pid) if p not in node_pids]
    state.write(record)
    if errors or missing:
        return {"ok": False, "errors": errors, "missing": missing, "record": record}
    _wait_until_connected(system, addresses, len(members), request.get("settle", 5.0))
    return {"ok": True, "record": record,
            "nodes": [{"id": n, "pid": readies[n].pid, "info": readies[n].info}
                      for n in sorted(readies)]}


def _wait_until_connected(system: Any, addresses: dict[str, Any], count: int,
                          timeout: float) -> None:
    """Until every node sees the others alive and connected (best effort, bounded)."""
    from . import _thespian

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = _thespian.ask_all(system, addresses, StatusRequest(), 1.0)
        done = len(answers) == len(addresses)
        for answer in answers.values():
            members = answer.status.get("members", [])
            linked = [m for m in members if m.get("self") or (m["alive"] and m.get("connected"))]
            done &= len(linked) >= count
        if done:
            return
        time.sleep(0.05)  # bounded by the deadline; the nodes are connecting in the background


def main() -> int:
    state = StateDir(sys.argv[1])
    request_file = state.path / "boot-request.json"
    result_file = state.path / "boot-result.json"
    try:
        request = json.loads(request_file.read_text())
        result = boot(state, request)
    except BaseException as exc:  # everything goes into the result the launcher reads
        result = {"ok": False, "errors": {"boot": repr(exc)},
                  "traceback": traceback.format_exc()}
    write_private(result_file, json.dumps(result, default=str))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: the thespian client must not touch the system


if __name__ == "__main__":
    main()
