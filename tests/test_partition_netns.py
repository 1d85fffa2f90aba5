"""Network partitions between two cluster nodes on their own addresses, with tenant leases.

The test builds a private network on this machine: a bridge in the root namespace
(10.213.0.254/24), two network namespaces joined to it by veth pairs (node a on 10.213.0.1,
node b on 10.213.0.2), and a TCP forwarder on the bridge address to PostgreSQL on 127.0.0.1
(which listens on loopback only). Nothing leaves the host; the teardown removes all of it,
failure or not. Each node is a real ``ClusterNode`` process (``tests/_fencing_node.py``) with
``lease_dsn``; each tenant consumes its ``DurableQueue`` on PostgreSQL into a counter whose
writes are fenced by the lease epoch.
Partitions are iptables DROP rules inside a node's namespace (silent loss, as a real one).

Needs root, ``ip netns`` and iptables: skipped with the reason otherwise, failed under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from supervisors.cluster import owner
from tests._fencing_node import work_queue
from tests.conftest import in_ci, require_service

ROOT = Path(__file__).resolve().parent.parent
SUBNET = "10.213.0"
BRIDGE_IP = f"{SUBNET}.254"
ADDR = {"a": f"{SUBNET}.1", "b": f"{SUBNET}.2"}
TTL, MARGIN, GRACE = 3.0, 1.0, 1.0
RECORDS = 2000           # per tenant: more than the tenants consume (~20/s) during a test
LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _need(condition: bool, why: str) -> None:
    if not condition:
        if in_ci():
            pytest.fail(f"{why}; CI=true requires it")
        pytest.skip(why)


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=check)


class Forwarder:
    """TCP forwarder ``listen`` -> ``target`` in this (root) namespace; ``close`` ends every
    connection. At most 64 connections."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.create_server(listen)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name="pg-forwarder")
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                client.close()
                continue
            with self.lock:
                if len(self.open) >= 128:
                    client.close()
                    upstream.close()
                    continue
                self.open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        self.thread.join(2.0)
        with self.lock:
            for s in self.open:
                try:
                    s.close()
                except OSError:
                    pass
            self.open.clear()


class Net:
    """The bridge, the two namespaces and their veths (names carry a random tag)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"fzbr{tag}"
        self.ns = {n: f"fz-{n}-{tag}" for n in ADDR}
        self.veth = {n: (f"fz{n}{tag}h", f"fz{n}{tag}n") for n in ADDR}

    def up(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for n, addr in ADDR.items():
            host, inner = self.veth[n]
            _run("ip", "netns", "add", self.ns[n])
            _run("ip", "link", "add", host, "type", "veth", "peer", "name", inner)
            _run("ip", "link", "set", inner, "netns", self.ns[n])
            _run("ip", "link", "set", host, "master", self.bridge)
            _run("ip", "link", "set", host, "up")
            _run("ip", "-n", self.ns[n], "addr", "add", f"{addr}/24", "dev", inner)
            _run("ip", "-n", self.ns[n], "link", "set", inner, "up")
            _run("ip", "-n", self.ns[n], "link", "set", "lo", "up")

    def down(self) -> None:
        for n in ADDR:
            _run("ip", "netns", "del", self.ns[n], check=False)   # takes its veth end along
            _run("ip", "link", "del", self.veth[n][0], check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    def iptables(self, n: str, *rule: str) -> None:
        _run("ip", "netns", "exec", self.ns[n], "iptables", "-w", "2", *rule)

    def isolate(self, n: str, peer: str | None = None) -> None:
        """Drop everything between ``n`` and ``peer`` (None: everyone, the store included)."""
        other = f"{SUBNET}.0/24" if peer is None else ADDR[peer]
        self.iptables(n, "-I", "INPUT", "-s", other, "-j", "DROP")
        self.iptables(n, "-I", "OUTPUT", "-d", other, "-j", "DROP")

    def heal(self, n: str) -> None:
        self.iptables(n, "-F", "INPUT")
        self.iptables(n, "-F", "OUTPUT")


class Events:
    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        return out

    def find(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [e for e in self.all() if pred(e)]


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Cluster:
    def __init__(self, net: Net, fwd_port: int, tmp: Path, tenants: list[str]) -> None:
        self.net, self.tmp, self.tenants = net, tmp, tenants
        self.prefix = f"fz_{uuid.uuid4().hex[:8]}"
        self.dsn = f"postgresql://postgres@{BRIDGE_IP}:{fwd_port}/test"
        self.events = {n: Events(tmp / f"{n}.events") for n in ADDR}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        ports = {"a": (7411, 7412), "b": (7421, 7422)}
        for n in ADDR:
            peer = "b" if n == "a" else "a"
            log = open(self.tmp / f"{n}.log", "wb")
            self.procs[n] = subprocess.Popen(
                ["ip", "netns", "exec", self.net.ns[n], sys.executable, "-m",
                 "tests._fencing_node", "--id", n, "--bind", ADDR[n],
                 "--port", str(ports[n][0]), "--hb-port", str(ports[n][1]),
                 "--seed", f"{ADDR[peer]}:{ports[peer][0]}", "--dsn", self.dsn,
                 "--tenants", ",".join(self.tenants), "--events", str(self.events[n].path),
                 "--prefix", self.prefix, "--cookie", "netns-test-cookie",
                 "--ttl", str(TTL), "--margin", str(MARGIN), "--grace", str(GRACE)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            log.close()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def started(self, n: str, tenant: str) -> list[dict[str, Any]]:
        return self.events[n].find(lambda e: e["event"] == "tenant_started"
                                   and e.get("tenant") == tenant)

    def log_rows(self, conn: Any) -> list[tuple[int, str, str, int, int]]:
        return conn.execute(f"SELECT id, tenant, node, epoch, value FROM {self.prefix}_log "
                            "ORDER BY id").fetchall()

    def written(self, conn: Any, tenant: str, node: str, epoch: int) -> int:
        return conn.execute(f"SELECT count(*) FROM {self.prefix}_log WHERE tenant = %s AND "
                            "node = %s AND epoch = %s", (tenant, node, epoch)).fetchone()[0]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    _need(os.geteuid() == 0, "network namespaces need root")
    _need(shutil.which("ip") is not None, "iproute2 (`ip`) is not installed")
    _need(shutil.which("iptables") is not None, "iptables is not installed")
    _need(_run("ip", "netns", "list", check=False).returncode == 0, "`ip netns` does not work")
    require_service("127.0.0.1", 5432, "PostgreSQL")
    clash = _run("ip", "-o", "addr", check=False).stdout
    _need(f" {SUBNET}." not in clash, f"{SUBNET}.0/24 is already in use on this host")
    import psycopg

    net = Net()
    fwd: Forwarder | None = None
    made: list[Cluster] = []
    conn = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True)
    try:
        net.up()
        fwd = Forwarder((BRIDGE_IP, 0), ("127.0.0.1", 5432))

        def make(tenants: list[str]) -> Cluster:
            c = Cluster(net, fwd.port, tmp_path, tenants)
            conn.execute(f"CREATE TABLE {c.prefix}_log (id BIGSERIAL PRIMARY KEY, tenant TEXT, "
                         "node TEXT, epoch BIGINT, value BIGINT, rid BIGINT, UNIQUE (tenant, rid))")
            for t in tenants:
                with work_queue(LOCAL_DSN, c.prefix, t) as q:
                    q.put_many([{"rid": i} for i in range(RECORDS)])
            conn.execute(f"CREATE TABLE {c.prefix}_state (tenant TEXT PRIMARY KEY, "
                         "value BIGINT, epoch BIGINT)")
            made.append(c)
            c.start()
            return c
        yield make, net, conn
    finally:
        for c in made:
            c.stop()
        if fwd is not None:
            fwd.close()
        net.down()
        for c in made:
            for suffix in ("log", "state", "leases", "q_messages", "q_counters", "q_meta"):
                conn.execute(f"DROP TABLE IF EXISTS {c.prefix}_{suffix} CASCADE")
            conn.execute(f"DROP SEQUENCE IF EXISTS {c.prefix}_q_ids")
        for n in ADDR:  # shown by pytest when the test failed
            log = tmp_path / f"{n}.log"
            if log.exists():
                print(f"--- node {n} log (tail)\n{log.read_text()[-3000:]}")
        conn.close()


def tenant_on(node: str) -> str:
    for i in range(100):
        if owner(f"t{i}", ["a", "b"]) == node:
            return f"t{i}"
    raise AssertionError("no tenant name places on " + node)


def assert_no_fork(c: Cluster, conn: Any, tenant: str) -> list[tuple[int, str, int, int]]:
    """Each epoch wrote from one node, epochs only grow in commit order, the values are
    1..N without a gap or a repeat, and the state row is N."""
    rows = [(i, n, e, v) for i, t, n, e, v in c.log_rows(conn) if t == tenant]
    assert rows, f"{tenant}: nothing written"
    nodes_of: dict[int, set[str]] = {}
    for _i, n, e, _v in rows:
        nodes_of.setdefault(e, set()).add(n)
    assert all(len(s) == 1 for s in nodes_of.values()), nodes_of
    epochs = [e for _i, _n, e, _v in rows]
    assert epochs == sorted(epochs), "an older epoch wrote after a newer one"
    assert [v for *_x, v in rows] == list(range(1, len(rows) + 1))
    state = conn.execute(f"SELECT value, epoch FROM {c.prefix}_state WHERE tenant = %s",
                         (tenant,)).fetchone()
    assert state == (len(rows), epochs[-1])
    # the queue: each record processed at most once (the log's unique rid), none lost (every
    # record processed or still in the queue), nothing dead-lettered, no ack without a write
    with work_queue(LOCAL_DSN, c.prefix, tenant) as q:
        s = q.stats()
    assert s["dead"] == 0 and s["acked"] <= len(rows) <= RECORDS
    assert len(rows) + s["ready"] + s["in_flight"] + s["delayed"] >= RECORDS
    assert s["acked"] + s["ready"] + s["in_flight"] + s["delayed"] == RECORDS
    return rows


def test_partitioned_owner_fences_before_the_other_node_takes_over(cluster: Any) -> None:
    make, net, conn = cluster
    t = tenant_on("a")
    c = make([t])
    first = wait_for("a hosts the tenant", lambda: c.started("a", t), 20)
    assert first[0]["epoch"] >= 1
    epoch_a = first[0]["epoch"]
    wait_for("a's writes", lambda: c.written(conn, t, "a", epoch_a) >= 10, 10)
    assert not c.started("b", t)

    cut = time.monotonic()
    net.isolate("a")                                   # from b and from the store
    fenced = wait_for("a fences", lambda: c.events["a"].find(
        lambda e: e["event"] == "tenant_fenced" and e["tenant"] == t), 15)[0]
    taken = wait_for("b takes over", lambda: c.started("b", t), 15)[0]
    assert fenced["mono"] < taken["mono"], (fenced, taken)
    assert fenced["epoch"] == epoch_a and taken["epoch"] == epoch_a + 1
    stopped = c.events["a"].find(lambda e: e["event"] == "counter_stopped")
    assert stopped and stopped[0]["mono"] < taken["mono"]   # a's writer itself is gone
    wait_for("b's writes", lambda: c.written(conn, t, "b", epoch_a + 1) >= 10, 10)
    figures = {"fence_after_cut": round(fenced["mono"] - cut, 3),
               "takeover_after_cut": round(taken["mono"] - cut, 3),
               "gap": round(taken["mono"] - fenced["mono"], 3)}
    print("partition figures (s):", figures)

    healed = time.monotonic()
    net.heal("a")
    c.procs["a"].send_signal(signal.SIGUSR1)          # a writes again with its lost epoch
    zombie = wait_for("a's zombie write", lambda: c.events["a"].find(
        lambda e: e["event"] == "zombie_write"), 10)[0]
    assert zombie["epoch"] == epoch_a and zombie["outcome"] == "rejected"
    # after the heal the placement gives the tenant back to a: b stops and releases, a
    # acquires a new epoch - never a's old one, never while b still runs it
    back = wait_for("a hosts the tenant again", lambda: [
        e for e in c.started("a", t) if e["mono"] > healed], 20)[0]
    b_stop = c.events["b"].find(lambda e: e["event"] == "tenant_stopped" and e["tenant"] == t)
    assert back["epoch"] == epoch_a + 2
    assert b_stop and b_stop[0]["mono"] < back["mono"]
    wait_for("a's new writes", lambda: c.written(conn, t, "a", epoch_a + 2) >= 5, 10)
    c.stop()
    rows = assert_no_fork(c, conn, t)
    assert [e for e in dict.fromkeys(e for _i, _n, e, _v in rows)] == [
        epoch_a, epoch_a + 1, epoch_a + 2]
    assert not c.events["a"].find(lambda e: e["event"] == "write_rejected"
                                  and e["epoch"] != epoch_a)


def test_nodes_cut_from_each_other_but_not_from_the_store_keep_their_tenants(
        cluster: Any) -> None:
    make, net, conn = cluster
    ta, tb = tenant_on("a"), tenant_on("b")
    c = make([ta, tb])
    wait_for("a hosts its tenant", lambda: c.started("a", ta), 20)
    wait_for("b hosts its tenant", lambda: c.started("b", tb), 20)
    net.isolate("a", "b")
    # each declares the other dead, wants its tenant, and finds the lease held
    wait_for("b waits for a's lease", lambda: c.events["b"].find(
        lambda e: e["event"] == "lease_wait" and e["tenant"] == ta), 15)
    wait_for("a waits for b's lease", lambda: c.events["a"].find(
        lambda e: e["event"] == "lease_wait" and e["tenant"] == tb), 15)
    before = {t: conn.execute(f"SELECT count(*) FROM {c.prefix}_log WHERE tenant = %s",
                              (t,)).fetchone()[0] for t in (ta, tb)}
    time.sleep(TTL + GRACE + 1.0)                     # a whole lease and its grace pass
    after = {t: conn.execute(f"SELECT count(*) FROM {c.prefix}_log WHERE tenant = %s",
                             (t,)).fetchone()[0] for t in (ta, tb)}
    assert all(after[t] > before[t] for t in (ta, tb)), (before, after)   # both kept writing
    assert not c.started("b", ta) and not c.started("a", tb)
    for n in ADDR:
        assert not c.events[n].find(lambda e: e["event"] in ("tenant_fenced", "lease_lost"))
    net.heal("a")
    c.stop()
    for t in (ta, tb):
        rows = assert_no_fork(c, conn, t)
        assert {e for _i, _n, e, _v in rows} == {1}
