"""``streamvisor cluster start|status|stop`` on thespian, with node faults (RELIABILITY F6, F18).

Every test starts its cluster under ``tmp_path`` through the CLI (a fresh process, as a user
would) and stops it in ``finally``; the stop is checked to leave no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from actors.queue import DurableQueue
from actors.testing import wait_until
from supervisors.cluster._state import StateDir, is_running, pids_in_group

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "examples" / "cluster_app.py")
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisors.cluster.cli", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def status(state: Path) -> dict:
    proc = cli("status", "--json", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def by_id(state: Path) -> dict[str, dict]:
    return {n["id"]: n for n in status(state)["nodes"]}


def recorded_processes(state: Path) -> tuple[list[int], int | None]:
    """Every pid the cluster recorded (admin, helpers, nodes), and its process group."""
    sd = StateDir(state)
    record = sd.read() or {}
    pids = [record["admin_pid"]] if record.get("admin_pid") else []
    pids += [h["pid"] for h in record.get("helpers", [])]
    pids += [n["pid"] for n in sd.node_records()]
    return pids, record.get("pgid")


def stop_and_check(state: Path, seen_pids: set[int], pgid: int | None) -> None:
    proc = cli("stop", "--json", "--state-dir", str(state))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["left"] == []
    wait_until(lambda: not any(is_running(p) for p in seen_pids), 5.0, "every process to exit")
    if pgid:
        assert pids_in_group(pgid) == []
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    assert str(state) not in ps


class Cluster:
    """A cluster started by the CLI; remembers every pid it ever saw, for the final check."""

    def __init__(self, tmp: Path, name: str = "c") -> None:
        self.state = tmp / f"{name}-state"
        self.data = tmp / f"{name}-data"
        self.pids: set[int] = set()
        self.pgid: int | None = None

    def start(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = cli("start", APP, "--state-dir", str(self.state), "--json", *args,
                   "--data-dir", str(self.data), "--visibility", "1.0", "--poll", "0.02")
        self.remember()
        return proc

    def remember(self) -> None:
        pids, pgid = recorded_processes(self.state)
        self.pids.update(pids)
        self.pgid = self.pgid or pgid

    def stop(self) -> None:
        self.remember()
        stop_and_check(self.state, self.pids, self.pgid)


class Producer:
    """Puts numbered records into every tenant's queue; ``acked`` holds the ids whose put
    returned (acknowledged = on disk)."""

    def __init__(self, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.queues = {t: DurableQueue(data / f"{t}.db", "work") for t in TENANTS}
        self.acked: dict[str, set[int]] = {t: set() for t in TENANTS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._next = 0

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for tenant, queue in self.queues.items():
                ids = list(range(self._next, self._next + 5))
                queue.put_many([{"id": i} for i in ids])
                self.acked[tenant].update(ids)
            self._next += 5

    def __enter__(self) -> "Producer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for queue in self.queues.values():
            queue.close()


def done_ids(data: Path, seen: dict[str, list[int]]) -> None:
    """Read what the consumers wrote to each tenant's ``done`` queue (ids, with repeats)."""
    for tenant in TENANTS:
        with DurableQueue(data / f"{tenant}-done.db", "done", visibility_timeout=3600) as done:
            while batch := done.get(max_items=10_000, timeout=0):
                seen[tenant] += [d.payload["id"] for d in batch]


def events(state: Path, kind: str) -> list[dict]:
    return [e for n in status(state)["nodes"] for e in n.get("events", []) if e["event"] == kind]


@pytest.mark.slow
def test_a_killed_node_is_detected_its_tenants_move_and_no_acknowledged_record_is_lost(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        proc = cluster.start("--nodes", "3")
        assert proc.returncode == 0, proc.stderr
        nodes = by_id(cluster.state)
        assert sorted(nodes) == ["n1", "n2", "n3"] and all(n["alive"] for n in nodes.values())
        assert sorted(t for n in nodes.values() for t in n["tenants"]) == sorted(TENANTS)
        victim = max(nodes.values(), key=lambda n: len(n["tenants"]))
        moved = set(victim["tenants"])
        with Producer(cluster.data) as producer:
            wait_until(lambda: all(len(a) > 20 for a in producer.acked.values()), 10.0, "records")
            killed_at = time.time()
            os.kill(victim["pid"], signal.SIGKILL)
            wait_until(lambda: len([e for e in events(cluster.state, "node_down")
                                    if e["node"] == victim["id"]]) >= 2, 10.0, "detection")

            def replaced() -> set[str]:
                return {e["tenant"] for e in events(cluster.state, "tenant_started")
                        if e["at"] > killed_at and e["node"] != victim["id"]}

            # records keep coming while the victim's tenants start on the survivors
            wait_until(lambda: moved <= replaced(), 10.0, f"the tenants of {victim['id']} "
                       "to start on the survivors")
            producer.stop()
            acked = {t: set(ids) for t, ids in producer.acked.items()}
        downs = [e for e in events(cluster.state, "node_down") if e["node"] == victim["id"]]
        detection = max(e["at"] for e in downs) - killed_at
        assert detection < 3.0, f"detected after {detection:.2f} s"
        seen: dict[str, list[int]] = {t: [] for t in TENANTS}

        def all_done() -> bool:
            done_ids(cluster.data, seen)
            return all(acked[t] <= set(seen[t]) for t in TENANTS)

        wait_until(all_done, 30.0, "every acknowledged record to be processed")
        lost = sum(len(acked[t] - set(seen[t])) for t in TENANTS)
        duplicates = sum(len(seen[t]) - len(set(seen[t])) for t in TENANTS)
        assert lost == 0
        print(f"F6: detection {detection:.2f} s, {sum(map(len, acked.values()))} acked, "
              f"lost 0, duplicates {duplicates}")
        # the killed node was restarted by a survivor and took its tenants back
        wait_until(lambda: by_id(cluster.state)[victim["id"]].get("incarnation") == 2, 10.0,
                   "the restarted node")
        cluster.remember()
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_paused_node_is_detected_replaced_and_rejoins_when_resumed(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        assert cluster.start("--nodes", "3").returncode == 0
        nodes = by_id(cluster.state)
        victim = max(nodes.values(), key=lambda n: len(n["tenants"]))
        stopped_at = time.time()
        os.kill(victim["pid"], signal.SIGSTOP)
        try:
            def replaced() -> bool:
                hosted = [t for n in by_id(cluster.state).values() if n["alive"]
                          for t in n["tenants"]]
                return sorted(hosted) == sorted(TENANTS)

            wait_until(replaced, 10.0, "the paused node's tenants to run on the others")
            assert by_id(cluster.state)[victim["id"]]["state"] == "T"
            downs = [e for e in events(cluster.state, "node_down") if e["node"] == victim["id"]]
            assert downs and max(e["at"] for e in downs) - stopped_at < 3.0
            assert not events(cluster.state, "node_restart")    # paused is not dead
        finally:
            os.kill(victim["pid"], signal.SIGCONT)
        wait_until(lambda: by_id(cluster.state)[victim["id"]]["alive"], 10.0, "the resumed node")

        def healed() -> bool:
            now = by_id(cluster.state)
            hosted = [t for n in now.values() for t in n["tenants"]]
            return (sorted(hosted) == sorted(TENANTS)
                    and sorted(now[victim["id"]]["tenants"]) == sorted(victim["tenants"]))

        wait_until(healed, 10.0, "the tenants to move back, each hosted once")
        assert by_id(cluster.state)[victim["id"]]["pid"] == victim["pid"]
    finally:
        cluster.stop()


def test_status_lists_every_node_and_a_second_start_is_refused(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        proc = cluster.start("--nodes", "2", "--tenants", "4")
        assert proc.returncode == 0, proc.stderr
        started = json.loads(proc.stdout)
        assert [n["id"] for n in started["nodes"]] == ["n1", "n2"]
        assert all(n["info"]["data"][0] == "127.0.0.1" for n in started["nodes"])
        shown = status(cluster.state)
        assert all({"id", "pid", "alive", "tenants"} <= set(n) and n["alive"]
                   for n in shown["nodes"]) and len(shown["nodes"]) == 2
        assert sorted(t for n in shown["nodes"] for t in n["tenants"]) == [
            "tenant-01", "tenant-02", "tenant-03", "tenant-04"]
        text = cli("status", "--state-dir", str(cluster.state)).stdout
        assert "n1" in text and "n2" in text and "tenant-01" in text
        again = cluster.start("--nodes", "2")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        cluster.stop()


@pytest.mark.slow
def test_nodes_started_with_join_become_members_of_the_existing_cluster(tmp_path):
    first, second = Cluster(tmp_path, "a"), Cluster(tmp_path, "b")
    try:
        started = first.start("--nodes", "2")
        assert started.returncode == 0, started.stderr
        host, port = json.loads(started.stdout)["nodes"][0]["info"]["data"]
        proc = second.start("--nodes", "1", "--join", f"{host}:{port}",
                            "--cookie-file", str(first.state / "cookie"))
        assert proc.returncode == 0, proc.stderr
        joined = json.loads(proc.stdout)["nodes"][0]["id"]

        wait_for_joined(first, second, joined)
    finally:
        try:
            second.stop()
        finally:
            first.stop()


def wait_for_joined(first: "Cluster", second: "Cluster", joined: str, tls: bool = False) -> None:
    """Two clusters joined into one: every node sees n1, n2 and ``joined`` alive (each link over
    TLS when ``tls``), and the tenants are placed over the three nodes, once each."""

    def members_everywhere() -> bool:
        views = status(first.state)["nodes"] + status(second.state)["nodes"]
        return all({m["id"] for m in v["members"] if m["alive"]} == {"n1", "n2", joined}
                   and (v["tls"] or not tls) for v in views)

    wait_until(members_everywhere, 15.0,
               "every node to see the joined one" + (", over TLS" if tls else ""))

    def spread() -> bool:
        hosted = [t for s in (first.state, second.state)
                  for n in status(s)["nodes"] for t in n["tenants"]]
        return sorted(hosted) == sorted(TENANTS)

    wait_until(spread, 10.0, "the tenants to be placed over three nodes, once each")
