"""The data plane's handshake and heartbeats under attack, with real nodes on loopback.

The attacker knows everything but the cookie: node ids, incarnations, addresses, and whatever
it can read off a socket. It relays one node's proof to the other (the split-brain reproduction
of issue 12), reflects a node's own proof back at it, replays captured heartbeats and sends
stale ones. Every attempt must fail, be counted, and leave the membership as it was.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors import Actor
from actors.codec import encode_frame
from actors.testing import wait_until
from supervisors.cluster._conn import HandshakeError, handshake
from supervisors.cluster._wire import AUTH, HELLO, TELL, VERSION, FrameReader
from supervisors.cluster.testing import local_cluster

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "examples" / "cluster_app.py")


class Recorder(Actor):
    def __init__(self) -> None:
        self.got: list = []

    def receive(self, message):
        if message == "got?":
            return list(self.got)
        self.got.append(message)
        return None


def _read_frame(sock: socket.socket, timeout: float = 3.0) -> list | None:
    """One frame's records, or None when the node closed the connection."""
    reader = FrameReader(1 << 20)
    sock.settimeout(timeout)
    while True:
        for item, _size in reader.frames():
            return item
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            return None
        if not data:
            return None
        reader.feed(data)


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(3.0)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


def _hello(cluster: str, node_id: str, inc: int, nonce: bytes, info: dict) -> bytes:
    return encode_frame([[HELLO, VERSION, cluster, node_id, inc, nonce, info, b""]])


def _node_downs(node, about: str) -> list:
    return [e for e in node.events() if e["event"] == "node_down" and e.get("node") == about]


def test_a_relayed_proof_is_refused_and_the_real_peer_keeps_its_place():
    """Issue 12: dial n1 as n2 (with a forged, newer incarnation), relay n1's nonce to the real
    n2 as if n1 dialled it, and hand n2's proof back to n1. n1 must refuse; no frame of the
    attacker reaches an actor; n2 stays alive with its incarnation and heartbeats."""
    with local_cluster(2, heartbeat_interval=0.05, heartbeat_timeout=0.6) as (n1, n2):
        victim = n1.runtime.spawn(Recorder, name="victim")
        failures = n1.statistics()["auth_failures"]
        forged = dict(n2.info, inc=n2.incarnation + 1)
        to_n1 = socket.create_connection(n1.address)
        to_n2 = socket.create_connection(n2.address)
        try:
            to_n1.sendall(_hello(n1.cluster, "n2", forged["inc"], os.urandom(16), forged))
            hello1 = _read_frame(to_n1)[0]
            assert hello1[3] == "n1"
            to_n2.sendall(_hello(n2.cluster, "n1", n1.incarnation, hello1[5], n1.info))
            hello2 = _read_frame(to_n2)
            assert hello2 is not None and hello2[0][3] == "n2"
            to_n1.sendall(encode_frame([[AUTH, hello2[0][7]]]))
            to_n1.sendall(encode_frame([[TELL, "victim", ["injected"]]]))
            assert _closed(to_n1), "n1 kept the attacker's connection open"
        finally:
            to_n1.close()
            to_n2.close()
        wait_until(lambda: n1.statistics()["auth_failures"] > failures, 3.0,
                   "the refusal to be counted")
        time.sleep(1.0)   # more than the heartbeat timeout: n2 must still be heard
        assert victim.ask("got?") == []
        rows = {m["id"]: m for m in n1.members()}
        assert rows["n2"]["alive"] and rows["n2"]["incarnation"] == n2.incarnation
        assert _node_downs(n1, "n2") == [] and _node_downs(n2, "n1") == []
        assert n1.whereis("nothing-here") is None      # the link still works both ways
        n2.runtime.spawn(Recorder, name="echo")
        assert n1.whereis("echo").ask("got?") == []


def test_a_nodes_own_proof_reflected_back_at_it_is_refused():
    """Open two connections to n1 as n2; send on the second the nonce n1 chose on the first,
    and answer the first with the proof n1 made on the second."""
    with local_cluster(2) as (n1, n2):
        failures = n1.statistics()["auth_failures"]
        first = socket.create_connection(n1.address)
        second = socket.create_connection(n1.address)
        try:
            first.sendall(_hello(n1.cluster, "n2", n2.incarnation, os.urandom(16), n2.info))
            hello_a = _read_frame(first)[0]
            second.sendall(_hello(n1.cluster, "n2", n2.incarnation, hello_a[5], n2.info))
            hello_b = _read_frame(second)[0]
            first.sendall(encode_frame([[AUTH, hello_b[7]]]))
            assert _closed(first)
        finally:
            first.close()
            second.close()
        wait_until(lambda: n1.statistics()["auth_failures"] > failures, 3.0,
                   "the refusal to be counted")
        assert _node_downs(n1, "n2") == []


def test_a_dialer_refuses_a_node_other_than_the_one_it_dialled():
    a, b = socket.socketpair()
    results: dict = {}

    def accept() -> None:
        try:
            results["b"] = handshake(b, dialer=False, cluster="c", cookie=b"k", me="n3",
                                     incarnation=1, info={"id": "n3", "inc": 1}, timeout=2.0)
        except (HandshakeError, OSError) as exc:
            results["b"] = exc

    import threading
    t = threading.Thread(target=accept)
    t.start()
    with pytest.raises(HandshakeError, match="dialed node 'n2', node 'n3' answered"):
        handshake(a, dialer=True, cluster="c", cookie=b"k", me="n1", incarnation=1,
                  info={"id": "n1", "inc": 1}, timeout=2.0, expect="n2")
    a.close()
    t.join(3.0)
    b.close()


def test_both_sides_agree_with_the_right_cookie_and_refuse_a_wrong_one():
    import threading

    for cookie_b, ok in ((b"secret", True), (b"wrong", False)):
        a, b = socket.socketpair()
        out: dict = {}

        def accept(cookie: bytes = cookie_b) -> None:
            try:
                out["b"] = handshake(b, dialer=False, cluster="c", cookie=cookie, me="n2",
                                     incarnation=3, info={"id": "n2", "inc": 3}, timeout=2.0)
            except (HandshakeError, OSError) as exc:
                out["b"] = exc

        t = threading.Thread(target=accept)
        t.start()
        try:
            got = handshake(a, dialer=True, cluster="c", cookie=b"secret", me="n1",
                            incarnation=1, info={"id": "n1", "inc": 1}, timeout=2.0)
        except HandshakeError as exc:
            got = exc
        a.close()
        t.join(3.0)
        b.close()
        if ok:
            assert got[:3] == ("n2", 3, {"id": "n2", "inc": 3})
            assert out["b"][:2] == ("n1", 1)
        else:
            assert isinstance(got, HandshakeError)


# -- heartbeats ------------------------------------------------------------------------------
def _forge(cookie: bytes, record: list) -> bytes:
    body = encode_frame([record])
    return body + hmac.new(cookie, body, hashlib.sha256).digest()


def test_a_captured_heartbeat_of_a_dead_node_cannot_bring_it_back():
    with local_cluster(2, heartbeat_interval=0.05, heartbeat_timeout=0.5) as (n1, n2):
        captured = n2._heartbeats._datagram()   # genuine, as n2 would send it
        hb1 = tuple(n1.info["hb"])
        heard = n1._heartbeats.received       # n1 hears a later one of n2 before n2 stops
        wait_until(lambda: n1._heartbeats.received >= heard + 2, 3.0, "two more heartbeats")
        n2.stop()
        wait_until(lambda: not {m["id"]: m for m in n1.members()}["n2"]["alive"], 5.0,
                   "n1 to declare n2 dead")
        ups = [e for e in n1.events() if e["event"] == "node_up" and e["node"] == "n2"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(20):
                s.sendto(captured, hb1)
                time.sleep(0.05)
        wait_until(lambda: n1.statistics()["heartbeats_rejected_by"].get("replayed", 0) >= 20,
                   3.0, "the replays to be counted")
        assert not {m["id"]: m for m in n1.members()}["n2"]["alive"]
        assert [e for e in n1.events() if e["event"] == "node_up" and e["node"] == "n2"] == ups


def test_a_heartbeat_outside_the_clock_window_is_refused():
    with local_cluster(2, cookie="test-cookie") as (n1, _n2):
        info = {"id": "n9", "inc": 1, "data": ["127.0.0.1", 1], "hb": ["127.0.0.1", 1],
                "admin": "", "pid": 1}
        old = time.time_ns() - 120 * 10**9
        datagram = _forge(b"test-cookie", [n1.cluster, "n9", 1, info, [], 1, old])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(datagram, tuple(n1.info["hb"]))
        wait_until(lambda: n1.statistics()["heartbeats_rejected_by"].get("stale", 0) == 1, 3.0,
                   "the stale heartbeat to be counted")
        assert "n9" not in {m["id"] for m in n1.members()}


# -- the cookie never on a command line ------------------------------------------------------
def _start(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisors.cluster.cli", "start", APP, *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_a_cookie_on_the_command_line_is_refused_with_the_reason(tmp_path):
    proc = _start("--cookie", "s3cret", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1
    assert "--cookie is refused" in proc.stderr and "STREAMVISOR_COOKIE" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_a_cookie_file_readable_by_others_is_refused(tmp_path):
    cookie = tmp_path / "cookie"
    cookie.write_text("s3cret\n")
    os.chmod(cookie, 0o644)
    proc = _start("--cookie-file", str(cookie), "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1
    assert "chmod 600" in proc.stderr
