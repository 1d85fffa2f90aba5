"""Bounds on what grows with input: system records in an outbox, handshake threads, log lines
for rejected input, the size of ``cluster.log``, and the modes of the state dir's files."""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest

from actors.testing import wait_until
from supervisors.cluster._outbox import Outbox
from supervisors.cluster._ratelog import RateLimitedLog
from supervisors.cluster._state import rotate_log
from supervisors.cluster._wire import DOWN, REPLY
from supervisors.cluster.testing import local_cluster
from tests.test_cluster_launcher import Cluster, status


def test_system_records_have_their_own_bound_and_every_drop_is_counted():
    box = Outbox("n2", limit=10, system_limit=3)
    assert all(box.put([DOWN, i, "normal"], system=True) for i in range(3))
    assert box.put([DOWN, 3, "normal"], system=True) is False
    assert box.system_dropped == 1
    records, _ = box.take(100, 0.0)
    assert [r[1] for r in records] == [0, 1, 2]
    assert box.put([REPLY, 7, 0, "ok"], system=True)   # room again once sent
    assert box.system_dropped == 1


def test_tells_and_system_records_are_bounded_apart():
    box = Outbox("n2", limit=2, system_limit=2)
    box.put_tell("a", 1, lambda: False)
    box.put_tell("b", 2, lambda: False)
    assert box.put([DOWN, 1, "x"], system=True)        # the tell bound does not stop it
    box.close()
    assert box.put([DOWN, 2, "x"], system=True) is False
    assert box.system_dropped == 0                      # closed is not a drop for the bound


class _Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.lines.append((event, fields))


def test_a_rate_limited_log_writes_a_few_lines_per_window_then_says_how_many_it_skipped():
    now = [0.0]
    out = _Lines()
    log = RateLimitedLog(out, per_interval=3, interval=10.0, clock=lambda: now[0])
    written = [log.warning("k", "bad frame", n=i) for i in range(100)]
    assert written.count(True) == 3 and len(out.lines) == 3
    assert log.suppressed == 97
    now[0] = 10.0
    assert log.warning("k", "bad frame", n=100)
    assert out.lines[-1][1]["suppressed"] == 97
    assert log.warning("other", "bad heartbeat")        # keys have their own budget


def test_garbage_heartbeats_are_all_counted_but_logged_a_few_times():
    with local_cluster(2) as (n1, _n2):
        out = _Lines()   # what the node's heartbeat thread writes (whatever the log level)
        n1._heartbeats._warn._log = out
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(200):
                s.sendto(os.urandom(100), tuple(n1.info["hb"]))
        wait_until(lambda: n1.statistics()["heartbeats_rejected"] >= 200, 5.0,
                   "every bad heartbeat to be counted")
        lines = [e for e, _ in out.lines if e == "heartbeat rejected"]
        assert 1 <= len(lines) <= 5, len(lines)


def test_at_most_max_handshakes_threads_and_the_rest_are_refused_and_counted():
    with local_cluster(1, max_handshakes=4) as (n1,):
        stalled = []
        try:
            for _ in range(20):   # connect and say nothing: each holds a handshake
                stalled.append(socket.create_connection(n1.address))
            wait_until(lambda: n1.statistics()["handshakes_refused"] >= 16, 5.0,
                       "the connections over the bound to be refused")
            handshakes = [t for t in threading.enumerate() if t.name == "n1-handshake"]
            assert len(handshakes) <= 4
        finally:
            for s in stalled:
                s.close()
        # once they are gone a real peer still gets in
        wait_until(lambda: not [t for t in threading.enumerate() if t.name == "n1-handshake"],
                   5.0, "the stalled handshakes to end")
        from supervisors.cluster._node import ClusterNode
        n2 = ClusterNode("n2", cookie="test-cookie", heartbeat_interval=0.1,
                         heartbeat_timeout=1.0)
        n2.start(members=[n1.info], start_app=False)
        try:
            wait_until(lambda: any(m["id"] == "n2" and m.get("connected")
                                   for m in n1.members()), 5.0, "n2 to connect")
        finally:
            n2.stop()


def test_rotate_log_keeps_the_given_number_of_parts_and_writers_go_on(tmp_path):
    log = tmp_path / "cluster.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)   # like the nodes
    try:
        for round_ in range(4):
            os.write(fd, f"round {round_} ".encode() * 100)
            assert rotate_log(log, 500, keep=2)
        os.write(fd, b"after")
        assert log.read_bytes() == b"after"            # the writer appends at the new end
        assert sorted(p.name for p in tmp_path.glob("cluster.log.*")) == [
            "cluster.log.1", "cluster.log.2", "cluster.log.lock"]
        assert (tmp_path / "cluster.log.1").read_bytes().startswith(b"round 3")
        assert (tmp_path / "cluster.log.2").read_bytes().startswith(b"round 2")
        assert not rotate_log(log, 500, keep=2)        # under the size: nothing to do
        assert stat.S_IMODE(os.stat(tmp_path / "cluster.log.1").st_mode) == 0o600
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_cluster_rotates_its_log_and_its_state_dir_is_private(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        proc = cluster.start("--nodes", "2", "--tls", "--log-max-bytes", "200",
                             "--log-keep", "1")
        assert proc.returncode == 0, proc.stderr
        log = cluster.state / "cluster.log"
        with open(log, "ab") as f:            # stands in for a chatty node
            f.write(b"x" * 1000)
        wait_until(lambda: (cluster.state / "cluster.log.1").exists()
                   and log.stat().st_size < 1000, 5.0, "the log to be rotated")
        assert not (cluster.state / "cluster.log.2").exists()
        assert all(n["alive"] for n in status(cluster.state)["nodes"])
        for path in [cluster.state, *cluster.state.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    finally:
        cluster.stop()
