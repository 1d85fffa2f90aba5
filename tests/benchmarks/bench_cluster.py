"""Cluster figures: records/s between two node processes on loopback beside its peers, and how an
app's throughput scales from 1 to 2 nodes. Rows for the harness (``run(repeats, quick)``), or:

    .venv/bin/python -m tests.benchmarks.bench_cluster [--quick] [--repeats N]

Group "cluster link, 2 processes" (records/s, median of ``repeats``, peers interleaved; every
run uses fresh processes). One record is ``["dev-0042", 23.5, seq]``.
- streamvisor: a ``RemoteRef.tell`` per record from a thread of node ``s`` to a counting actor
  on node ``r`` (another process): the outbox groups tells into ``actors.codec`` frames of up to
  1,000 records over TCP on 127.0.0.1, credit window 1 MiB; the receiver decodes each frame and
  tells every record to the actor (mailbox 100,000, BLOCK: back-pressure reaches the sender).
  Timed from the first tell until the sender's ``ask("count")`` sees N.
- streamvisor over TLS: the same, with both nodes on mutual TLS 1.3 (``--tls``): what
  encryption and the lock-guarded TLS stream cost.
- thespian ``multiprocTCPBase``: one actor sends N records to an actor in another process, one
  thespian message each (pickled), timed until the receiver reports N.
- raw Unix socket: a process writes ``msgpack.packb`` batches of 256 records (length-prefixed)
  to a ``socketpair``, another unpacks and counts: the transport ceiling, no actors, no codec
  checks, no flow control.

Group "cluster scaling, app" (records processed per second by the whole cluster): 8 tenants,
each a ``Worker`` actor doing about 20 us of arithmetic per record, placed on the nodes by the
cluster. ``1 node``: one process feeds and works for all tenants. ``2 nodes, local ingest``:
each node feeds the tenants it hosts (tenants sharded, nothing crosses nodes).
``2 nodes, ingest on n1``: one node feeds every tenant, through ``RemoteRef`` for those on the
other node. Feeding: one thread per node telling records round-robin to its targets.
"""

from __future__ import annotations

import json
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from thespian.actors import Actor as _ThespianActor

ROOT = Path(__file__).resolve().parents[2]
LINK = "cluster link, 2 processes"
SCALE = "cluster scaling, app"
MARKER = "@@bench-cluster "
COOKIE = "bench-cookie"
TENANTS = [f"t{i}" for i in range(32)]

__all__ = ["run"]


DEVICES = [f"dev-{i:04d}" for i in range(1000)]


def _record(i: int) -> list[Any]:
    return [DEVICES[i % 1000], 21.5 + i % 7, i]


# -- child processes ---------------------------------------------------------------------------------
def _spawn(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("STREAMVISOR_LOG_LEVEL", "error")
    return subprocess.Popen([sys.executable, "-m", "tests.benchmarks.bench_cluster", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env)


def _read(proc: subprocess.Popen[str], timeout: float) -> Any:
    """The next ``MARKER`` line of a child, as JSON (``RuntimeError`` after ``timeout``)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise RuntimeError(f"no answer from child {proc.args[-1]!r} in {timeout} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {proc.args!r} exited with {proc.wait()}")
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])


def _send(proc: subprocess.Popen[str], *words: Any) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(list(words)) + "\n")
    proc.stdin.flush()


def _finish(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                _send(proc, "quit")
            except (BrokenPipeError, OSError):
                pass
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _say(value: Any) -> None:
    print(MARKER + json.dumps(value), flush=True)


def _commands() -> Any:
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


# -- streamvisor: two nodes -------------------------------------------------------------------------
def _counter_class() -> type:
    from actors import Actor, Overflow

    class Counter(Actor):
        mailbox_size = 100_000
        overflow = Overflow.BLOCK

        def __init__(self) -> None:
            self.n = 0

        def receive(self, message: Any) -> Any:
            if message == "count":
                return self.n
            self.n += 1
            return None

    return Counter


def _tls(directory: str | None) -> Any:
    """Certificates for both nodes of a TLS run (generated once into ``directory``)."""
    if not directory:
        return None
    from supervisors.cluster._tlslink import generate
    return generate(directory, ["127.0.0.1"])


def _role_receiver(tls_dir: str | None = None) -> None:
    from supervisors.cluster import ClusterNode
    node = ClusterNode("r", cookie=COOKIE, tls=_tls(tls_dir))
    node.start(start_app=False)
    node.runtime.spawn(_counter_class(), name="sink")
    _say(node.info)
    for words in _commands():
        if words[0] == "members":
            node.add_members(words[1])
        elif words[0] == "quit":
            break
    node.stop()


def _streamvisor_link(n: int, tls: bool = False) -> float:
    import tempfile

    from supervisors.cluster import ClusterNode
    from supervisors.cluster.testing import wait_connected
    tls_dir = tempfile.mkdtemp(prefix="bench-cluster-tls-") + "/tls" if tls else None
    config = _tls(tls_dir)
    receiver = _spawn("receiver", *([tls_dir] if tls_dir else []))
    sender = ClusterNode("s", cookie=COOKIE, tls=config)
    try:
        info = _read(receiver, 20)
        sender.start(start_app=False)
        sender.add_members([info])
        _send(receiver, "members", [sender.info])
        wait_connected([sender], 10.0)
        ref = sender.whereis("sink", timeout=5.0)
        if ref is None:
            raise RuntimeError("the receiver's sink was not found")
        tell, record = ref.tell, _record
        started = time.perf_counter()
        for i in range(n):
            tell(record(i))
        while ref.ask("count", timeout=30.0) < n:
            time.sleep(0.001)  # polling the remote count; bounded by the ask timeout below
            if time.perf_counter() - started > 60:
                raise RuntimeError("records did not all arrive within 60 s")
        return n / (time.perf_counter() - started)
    finally:
        sender.stop()
        _finish([receiver])


# -- thespian multiprocTCPBase ----------------------------------------------------------------------
class ThespianReceiver(_ThespianActor):  # thespian's names (receiveMessage) stay in these two
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count, self.expect, self.reply_to = 0, None, None

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, tuple) and message[0] == "expect":
            self.expect, self.reply_to = message[1], message[2]
            return
        self.count += 1
        if self.count == self.expect:
            self.send(self.reply_to, self.count)


class ThespianSender(_ThespianActor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asker = None

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, tuple) and message[0] == "go":
            _, n, receiver, _first = message
            self.asker = sender
            self.send(receiver, ("expect", n, self.myAddress))
            for i in range(n):
                self.send(receiver, _record(i))
        elif isinstance(message, int):
            self.send(self.asker, message)


def _role_thespian(n: int) -> None:
    os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")
    from thespian.actors import ActorSystem

    from tests.benchmarks import bench_cluster as actors_module  # classes by their module name
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    system = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": port})
    try:
        receiver = system.createActor(actors_module.ThespianReceiver)
        sender = system.createActor(actors_module.ThespianSender)
        started = time.perf_counter()
        done = system.ask(sender, ("go", n, receiver, _record(0)), 120)
        elapsed = time.perf_counter() - started
        if done != n:
            raise RuntimeError(f"thespian counted {done!r} of {n}")
        _say({"rate": n / elapsed})
    finally:
        system.shutdown()


def _thespian_link(n: int) -> float:
    proc = _spawn("thespian", str(n))
    try:
        return float(_read(proc, 120)["rate"])
    finally:
        _finish([proc])


# -- raw Unix socket, msgpack batches ----------------------------------------------------------------
def _role_unix(fd: int, n: int) -> None:
    import msgpack
    sock = socket.socket(fileno=fd)
    unpacker = msgpack.Unpacker(raw=False)
    count = 0
    while count < n:
        data = sock.recv(1 << 18)
        if not data:
            break
        unpacker.feed(data)
        for batch in unpacker:
            count += len(batch)
    sock.sendall(b"!")


def _raw_unix(n: int, batch: int = 256) -> float:
    import msgpack
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.bench_cluster", "unix",
                             str(child.fileno()), str(n)], pass_fds=[child.fileno()], cwd=ROOT,
                            env=env)
    child.close()
    try:
        packb, record = msgpack.packb, _record
        started = time.perf_counter()
        for start in range(0, n, batch):
            parent.sendall(packb([record(i) for i in range(start, min(n, start + batch))]))
        if parent.recv(1) != b"!":
            raise RuntimeError("the unix-socket receiver did not confirm")
        return n / (time.perf_counter() - started)
    finally:
        parent.close()
        proc.wait(30)


# -- scaling an app ------------------------------------------------------------------------------------
def _worker_class() -> type:
    from actors import Actor, Overflow

    class Worker(Actor):
        mailbox_size = 20_000
        overflow = Overflow.BLOCK
        instances: list["Worker"] = []   # read by the node's driver: counts without messages

        def __init__(self) -> None:
            self.n = 0
            self.total = 0.0
            Worker.instances.append(self)

        def receive(self, message: Any) -> Any:
            if message == "count":
                return self.n
            x = message[1]
            for _ in range(140):   # about 20 us of per-record work
                x = (x * 1.000001 + 0.5) % 1000.0
            self.total += x
            self.n += 1
            return None

    return Worker


class _ScaleApp:
    """The benchmark's app: one ``Worker`` per tenant, registered as ``<tenant>/worker``."""

    worker = None

    @classmethod
    def start(cls, rt: Any, options: Any) -> None:
        cls.worker = _worker_class()

    @classmethod
    def start_tenant(cls, rt: Any, tenant: str, options: Any) -> None:
        rt.tenant(tenant).spawn(cls.worker, name="worker")


def _feed(targets: list[Any], stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        for ref in targets:
            for _ in range(50):
                ref.tell(_record(i))
                i += 1


def _role_appnode(node_id: str) -> None:
    from actors.testing import wait_until
    from supervisors.cluster import ClusterNode
    node = ClusterNode(node_id, cookie=COOKIE, tenants=TENANTS, app=_ScaleApp,
                       heartbeat_timeout=3.0)
    node.start(start_app=False)
    _say(node.info)
    for words in _commands():
        if words[0] == "members":
            node.add_members(words[1])
            wait_until(lambda: len(node.alive_nodes()) == len(words[1]) + 1, 10.0, "members")
            node.start_app()
            mine = sorted(t for t, n in node.placement().items() if n == node.id)
            wait_until(lambda: node.hosted() == mine and all(
                node.runtime.whereis(f"{t}/worker") for t in mine), 10.0, "tenants")
            _say({"hosted": mine})
        elif words[0] == "run":
            _, mode, seconds = words
            local = [node.runtime.whereis(f"{t}/worker") for t in node.hosted()]
            if mode == "local":
                targets = local
            elif node_id == "n1":
                targets = [node.whereis(f"{t}/worker", timeout=5.0) for t in TENANTS]
            else:
                targets = []
            workers = _ScaleApp.worker.instances  # type: ignore[union-attr]  # set once the app runs
            stop = threading.Event()
            feeder = threading.Thread(target=_feed, args=(targets, stop), daemon=True)
            feeder.start()
            stop.wait(seconds / 4)               # warm-up: mailboxes and outboxes fill
            before, started = sum(w.n for w in workers), time.perf_counter()
            stop.wait(seconds)
            after, elapsed = sum(w.n for w in workers), time.perf_counter() - started
            stop.set()
            feeder.join(30.0)
            _say({"processed": after - before, "seconds": elapsed})
        elif words[0] == "quit":
            break
    node.stop()


def _scaling(nodes: int, mode: str, seconds: float) -> float:
    procs = [_spawn("appnode", f"n{i + 1}") for i in range(nodes)]
    try:
        infos = [_read(p, 20) for p in procs]
        for proc, info in zip(procs, infos):
            _send(proc, "members", [i for i in infos if i["id"] != info["id"]])
        hosted = [_read(p, 30)["hosted"] for p in procs]
        if sorted(t for h in hosted for t in h) != sorted(TENANTS):
            raise RuntimeError(f"tenants not placed once each: {hosted}")
        for proc in procs:
            _send(proc, "run", mode, seconds)
        results = [_read(p, seconds + 60) for p in procs]
        return sum(r["processed"] for r in results) / max(r["seconds"] for r in results)
    finally:
        _finish(procs)


# -- rows --------------------------------------------------------------------------------------------
def run(repeats: int = 3, quick: bool = False) -> list[dict[str, Any]]:
    n_sv, n_th, n_raw = (60_000, 60, 200_000) if quick else (300_000, 300, 1_000_000)
    seconds = 1.0 if quick else 2.0
    plan = [
        ("link", "streamvisor cluster: RemoteRef.tell, codec frames over TCP", n_sv,
         lambda: _streamvisor_link(n_sv), True),
        ("link", "streamvisor cluster over mutual TLS 1.3 (same, encrypted)", n_sv,
         lambda: _streamvisor_link(n_sv, tls=True), False),
        ("link", "thespian multiprocTCPBase, 1 record per message", n_th,
         lambda: _thespian_link(n_th), False),
        ("link", "raw Unix socket, msgpack batches of 256", n_raw, lambda: _raw_unix(n_raw), False),
        ("scale", "1 node", None, lambda: _scaling(1, "local", seconds), True),
        ("scale", "2 nodes, local ingest (tenants sharded)", None,
         lambda: _scaling(2, "local", seconds), False),
        ("scale", "2 nodes, ingest on n1 (half via RemoteRef)", None,
         lambda: _scaling(2, "ingest", seconds), False),
    ]
    rates: dict[str, list[float]] = {label: [] for _, label, *_ in plan}
    errors: dict[str, str] = {}
    budget = time.monotonic() + (25.0 if quick else 60.0)  # the harness allows 90 s in all
    for index in range(repeats):
        if index and time.monotonic() > budget:
            break  # fewer runs rather than a timeout: the note says how many
        for _group, label, _n, measure, _ref in plan:
            if label in errors:
                continue
            try:
                rates[label].append(measure())
            except Exception as exc:  # a failing peer is a table cell, not a crash
                errors[label] = f"{type(exc).__name__}: {exc}"
    rows = []
    for group, label, n, _measure, reference in plan:
        row: dict[str, Any] = {"group": LINK if group == "link" else SCALE, "peer": label,
                               "reference": reference, "note": errors.get(label, "")}
        values = rates[label]
        if values and len(values) < repeats:
            row["note"] = "; ".join(filter(None, [row["note"], f"{len(values)}/{repeats} runs "
                                                  "(time budget)"]))
        if n is not None:
            row["n"] = n
        if values:
            row["msg_per_s"] = statistics.median(values)
            if len(values) > 1:
                row["spread"] = (max(values) - min(values)) / row["msg_per_s"]
        rows.append(row)
    for group in (LINK, SCALE):
        base = next((r.get("msg_per_s") for r in rows if r["group"] == group and r["reference"]), None)
        for row in rows:
            if row["group"] == group and base and row.get("msg_per_s"):
                row["ratio"] = row["msg_per_s"] / base
    return rows


def main(argv: list[str]) -> int:
    role = argv[0] if argv else ""
    if role == "receiver":
        _role_receiver(argv[1] if len(argv) > 1 else None)
    elif role == "thespian":
        _role_thespian(int(argv[1]))
    elif role == "unix":
        _role_unix(int(argv[1]), int(argv[2]))
    elif role == "appnode":
        _role_appnode(argv[1])
    else:
        import argparse

        from tests.benchmarks._table import render
        parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_cluster")
        parser.add_argument("--quick", action="store_true")
        parser.add_argument("--repeats", type=int, default=3)
        args = parser.parse_args(argv)
        print(render(run(args.repeats, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
