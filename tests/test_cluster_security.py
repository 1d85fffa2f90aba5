"""Trust at the cluster's sockets: what listens where, and what a stranger's bytes can do.

A real cluster (started by the CLI, as a user would) is attacked from outside: its listeners are
listed with psutil and must all be on loopback (or ``--bind``); every listening port, thespian's
included, is sent a pickle whose unpickling would create a file, an unauthenticated
``ActorExitRequest``, a frame announcing a huge size and raw garbage. Nothing may be unpickled,
every node must stay alive and keep serving. ``SealedPickle`` (what thespian unpickles through)
is tested alone too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import socket
import struct
import time
from pathlib import Path

import psutil
import pytest

from actors.queue import DurableQueue
from actors.testing import wait_until
from supervisors.cluster._seal import MAGIC, SealedPickle, SealError, bounded_receive_buffer
from supervisors.cluster._state import StateDir
from tests.test_cluster_launcher import Cluster, status


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing means code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _thespian_frame(payload: bytes) -> bytes:
    return f"{len(payload)}>".encode() + payload


def cluster_pids(state: Path) -> list[int]:
    sd = StateDir(state)
    record = sd.read() or {}
    pids = {record["admin_pid"]} | {h["pid"] for h in record.get("helpers", [])}
    pids |= {n["pid"] for n in sd.node_records()}
    for pid in list(pids):   # and whatever the admin forked that was not recorded
        try:
            pids |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
    return sorted(pids)


def listeners(state: Path) -> set[tuple[str, str, int]]:
    """``(kind, ip, port)`` of every listening TCP socket and bound UDP socket of the cluster."""
    found = set()
    for pid in cluster_pids(state):
        try:
            conns = psutil.Process(pid).net_connections("inet")
        except psutil.NoSuchProcess:
            continue
        for c in conns:
            if c.type == socket.SOCK_STREAM and c.status == psutil.CONN_LISTEN:
                found.add(("tcp", c.laddr.ip, c.laddr.port))
            elif c.type == socket.SOCK_DGRAM and c.laddr:
                found.add(("udp", c.laddr.ip, c.laddr.port))
    return found


def _send_tcp(ip: str, port: int, data: bytes) -> None:
    try:
        with socket.create_connection((ip, port), timeout=2.0) as s:
            s.sendall(data)
            s.settimeout(0.5)
            try:
                s.recv(4096)
            except OSError:
                pass
    except OSError:
        pass  # a port that closes on us is fine: it refused


def attacks(marker: Path) -> list[bytes]:
    from thespian.actors import ActorExitRequest

    evil = pickle.dumps(_CreatesFile(str(marker)))
    forged = MAGIC + struct.pack(">q", time.time_ns()) + os.urandom(16) + os.urandom(32) + evil
    return [
        _thespian_frame(evil),                                   # a bare pickle
        _thespian_frame(pickle.dumps((None, ActorExitRequest()))),  # "stop", unauthenticated
        _thespian_frame(forged),                                 # sealed with a guessed MAC
        b"99999999999999>" + b"x" * 65536,                       # a huge announced size
        os.urandom(4096),                                        # garbage
        evil,                                                    # a pickle without a header
    ]


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.stop()


def _serves(cluster: Cluster, ids: set[str]) -> None:
    """Every node answers over thespian, sees the others connected, and a record put into a
    tenant's queue is consumed by whichever node hosts it."""
    nodes = {n["id"]: n for n in status(cluster.state)["nodes"]}
    assert set(nodes) == ids and all(n["alive"] for n in nodes.values()), nodes
    assert all(n["incarnation"] == 1 for n in nodes.values()), nodes   # none died and came back
    for node in nodes.values():
        linked = {m["id"] for m in node["members"] if m["self"] or m.get("connected")}
        assert linked == ids, (node["id"], node["members"])
    with DurableQueue(cluster.data / "acme.db", "work") as work:
        work.put({"id": 424242})

    def consumed() -> bool:
        with DurableQueue(cluster.data / "acme-done.db", "done", visibility_timeout=3600) as d:
            return any(x.payload["id"] == 424242 for x in d.get(max_items=10_000, timeout=0))

    wait_until(consumed, 15.0, "the record to be consumed after the attack")


@pytest.mark.slow
def test_every_listener_of_a_cluster_is_on_loopback(cluster):
    proc = cluster.start("--nodes", "2")
    assert proc.returncode == 0, proc.stderr
    found = listeners(cluster.state)
    assert len([f for f in found if f[0] == "tcp"]) >= 4, found   # admin, logger, 2 nodes, 2 data
    assert {ip for _, ip, _ in found} == {"127.0.0.1"}, found


@pytest.mark.slow
def test_with_bind_nodes_listen_there_and_thespian_stays_on_loopback(cluster):
    proc = cluster.start("--nodes", "2", "--bind", "127.0.0.2")
    assert proc.returncode == 0, proc.stderr
    found = listeners(cluster.state)
    assert {ip for _, ip, _ in found} == {"127.0.0.1", "127.0.0.2"}, found
    data = {tuple(n["data"]) for n in (json.loads(proc.stdout)["nodes"][i]["info"]
                                        for i in range(2))}
    assert {("tcp", ip, port) for ip, port in data} <= found
    assert all(ip == "127.0.0.2" for ip, _ in data)


@pytest.mark.slow
def test_a_pickle_or_garbage_sent_to_any_port_runs_nothing_and_every_node_survives(cluster,
                                                                                   tmp_path):
    proc = cluster.start("--nodes", "2")
    assert proc.returncode == 0, proc.stderr
    marker = tmp_path / "pwned"
    found = listeners(cluster.state)
    payloads = attacks(marker)
    for kind, ip, port in sorted(found):
        for data in payloads:
            if kind == "tcp":
                _send_tcp(ip, port, data)
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(data[:60000], (ip, port))

    def refusals() -> tuple[dict[str, int], list[int]]:
        rejected: dict[str, int] = {}
        nodes = status(cluster.state)["nodes"]
        for node in nodes:
            for reason, count in node["control_rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + count
        return rejected, [node["links"]["auth_failures"] for node in nodes]

    def all_refused() -> bool:  # the cluster has processed what it received
        rejected, auth_failures = refusals()
        return (rejected.get("unsealed", 0) >= 1 and rejected.get("bad_mac", 0) >= 1
                and all(n >= 1 for n in auth_failures))  # each data port refused the strangers

    wait_until(all_refused, timeout=30,
               message="every attack to be refused and counted (unsealed, bad_mac, auth_failures)")
    assert not marker.exists(), "a pickle sent to the cluster was unpickled"
    _serves(cluster, {"n1", "n2"})
    assert listeners(cluster.state) == found   # nobody stopped listening


# -- SealedPickle alone ----------------------------------------------------------------------
KEY = b"k" * 32


def test_a_sealed_frame_round_trips_once_and_a_replay_is_refused():
    sealed = SealedPickle(KEY)
    frame = sealed.dumps({"a": 1})
    assert sealed.loads(frame) == {"a": 1}
    with pytest.raises(SealError, match="replayed"):
        sealed.loads(frame)
    assert sealed.rejected == {"replayed": 1}


@pytest.mark.parametrize("tamper, reason", [
    (lambda f, evil: _reseal(f, b"x" * 32, evil), "bad_mac"),      # another key
    (lambda f, evil: evil, "unsealed"),                             # a bare pickle
    (lambda f, evil: f[:60] + evil, "bad_mac"),                     # payload swapped
])
def test_nothing_is_unpickled_unless_the_mac_checks(tmp_path, tamper, reason):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_CreatesFile(str(marker)))
    sealed = SealedPickle(KEY)
    with pytest.raises(SealError, match=reason):
        sealed.loads(tamper(sealed.dumps("hello"), evil))
    assert not marker.exists()
    assert sealed.rejected == {reason: 1}


def _reseal(_frame: bytes, key: bytes, payload: bytes, when: float | None = None) -> bytes:
    stamp = struct.pack(">q", int((time.time() if when is None else when) * 1e9))
    nonce = os.urandom(16)
    return MAGIC + stamp + nonce + hmac.new(key, stamp + nonce + payload,
                                            hashlib.sha256).digest() + payload


def test_a_frame_older_or_newer_than_the_window_is_refused():
    now = [1000.0]
    sealed = SealedPickle(KEY, window=30.0, clock=lambda: now[0])
    payload = pickle.dumps("x")
    with pytest.raises(SealError, match="stale"):
        sealed.loads(_reseal(b"", KEY, payload, when=969.0))
    with pytest.raises(SealError, match="stale"):
        sealed.loads(_reseal(b"", KEY, payload, when=1031.0))
    assert sealed.loads(_reseal(b"", KEY, payload, when=1029.0)) == "x"


def test_an_oversize_frame_is_refused_from_its_header_and_its_body():
    from thespian.system.transport.streamBuffer import ReceiveBuffer

    buffer = bounded_receive_buffer(ReceiveBuffer, 1000)(SealedPickle(KEY).loads)
    with pytest.raises(SealError, match="announced"):
        buffer.addMore(b"1001>abc")
    sealed = SealedPickle(KEY, max_size=100)
    with pytest.raises(SealError, match="oversize"):
        sealed.loads(sealed.dumps("y" * 200))


def test_thespian_acks_are_recognised_without_unpickling():
    sealed = SealedPickle(KEY)
    assert sealed.loads(pickle.dumps("ACK")) == "ACK"
    assert sealed.loads(pickle.dumps("ACK+DATAERR")) == "ACK+DATAERR"


def test_the_control_key_must_be_private(tmp_path):
    sd = StateDir(tmp_path / "state")
    sd.create()
    key = sd.write_control_key()
    assert sd.control_key() == key
    assert os.stat(sd.control_key_file).st_mode & 0o777 == 0o600
    os.chmod(sd.control_key_file, 0o644)
    with pytest.raises(SystemExit, match="chmod 600"):
        sd.control_key()
