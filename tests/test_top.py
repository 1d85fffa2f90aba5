"""``streamvisor top`` and ``/status.json``: the supervision tree (which_children order, ids,
kinds, restarting children), rates from two samples, and ``top --once --json`` against a node
started in the test."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import Actor, ManualClock, Runtime
from actors.testing import Faults, inline_runtime
from supervisors import (Backoff, ChildSpec, Restart, Strategy, Supervisor, delete_child,
                         peek_children, start_child, terminate_child, which_children)
from streamvisor.metrics import metrics_for
from streamvisor.top import (add_top_command, node_status, parse_hostport, run_top, start_http,
                             with_rates)

ROOT = Path(__file__).resolve().parent.parent


class Worker(Actor):
    def receive(self, message: Any) -> Any:
        return message


class Ticker(Actor):
    """Keeps itself busy: about a thousand messages a second, for the rates."""

    def on_start(self) -> None:
        self.send_after(0.001, "tick")

    def receive(self, message: Any) -> Any:
        self.send_after(0.001, "tick")


def tree_sup() -> list[ChildSpec]:
    return [ChildSpec("reader", Worker),
            ChildSpec("pipeline", Supervisor, kwargs={"strategy": Strategy.REST_FOR_ONE, "children": [
                ChildSpec("parse", Worker), ChildSpec("store", Worker, restart=Restart.TRANSIENT)]}),
            ChildSpec("writer", Worker)]


def shape(node: dict[str, Any]) -> Any:
    return (node["label"], node["kind"], [shape(c) for c in node["children"]])


def top_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamvisor")
    add_top_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["top", *argv])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def inline(clock: ManualClock) -> Iterator[Runtime]:
    rt = inline_runtime(clock, node="t1")
    try:
        yield rt
    finally:
        rt.shutdown()


def test_status_shows_the_supervision_tree_in_start_order_with_ids_and_kinds(inline):
    sup = inline.spawn(Supervisor, children=tree_sup(), name="root")
    metrics_for(inline).add_root(sup)
    inline.tenant("acme").spawn(Worker, name="solo")
    status = node_status(inline)
    root, solo = status["tree"]
    assert shape(root) == ("root", "supervisor", [
        ("reader", "worker", []),
        ("pipeline", "supervisor", [("parse", "worker", []), ("store", "worker", [])]),
        ("writer", "worker", [])])
    store = root["children"][1]["children"][1]
    assert store["restart"] == "transient" and store["id"] == "store" and store["state"] == "running"
    assert (solo["label"], solo["tenant"], solo["kind"]) == ("solo", "acme", "actor")
    assert status["node"] == "t1" and status["runtime"]["actors"] == 7 and status["truncated"] == 0


def test_a_child_in_backoff_is_shown_restarting_until_it_is_back(inline, clock):
    sup = inline.spawn(Supervisor, intensity=5, seed=1, children=[
        ChildSpec("flaky", Worker, backoff=Backoff(min=1.0, max=1.0, jitter=0.0)),
        ChildSpec("steady", Worker)])
    metrics_for(inline).add_root(sup)
    Faults(inline).crash(_child_ref(sup, "flaky"))
    inline.wait_idle()
    [root] = node_status(inline)["tree"]
    assert [(c["label"], c["state"]) for c in root["children"]] == [("flaky", "restarting"),
                                                                   ("steady", "running")]
    clock.advance(1.5)
    inline.wait_idle()
    [root] = node_status(inline)["tree"]
    again = root["children"][0]
    assert again["state"] == "running" and again["restarts"] == 1


class Slow(Actor):
    """Its ``on_start`` holds its supervisor's turn until the test lets it go (bounded)."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        self.entered, self.release = entered, release

    def on_start(self) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released the slow start"


@pytest.fixture(params=["inline", "threads"])
def any_runtime(request: Any) -> Iterator[Runtime]:
    rt = (inline_runtime(ManualClock(), node="t1") if request.param == "inline"
          else Runtime(workers=2, node="t1", clock=ManualClock()))
    try:
        yield rt
    finally:
        rt.shutdown()


def test_status_never_waits_on_a_supervisor_busy_in_a_long_turn(any_runtime):
    rt = any_runtime
    sup = rt.spawn(Supervisor, children=[ChildSpec("reader", Worker)], name="root")
    entered, release = threading.Event(), threading.Event()
    starter = threading.Thread(target=start_child, args=(
        sup, ChildSpec("slow", Slow, args=(entered, release))))
    starter.start()
    try:
        assert entered.wait(30)  # the supervisor is inside its turn, waiting for slow's start
        status = node_status(rt)  # would wait for that turn if it asked which_children
        assert not release.is_set() and starter.is_alive()
        [root] = status["tree"]
        assert root["kind"] == "supervisor" and root["state"] == "running"
        # as published at the end of its last finished turn: slow is not its child yet
        assert [c.id for c in peek_children(sup)] == ["reader"]
        assert (root["children"][0]["label"], root["children"][0]["kind"]) == ("reader", "worker")
    finally:
        release.set()
        starter.join(30)
    rt.wait_idle(10)
    [root] = node_status(rt)["tree"]
    assert [(c["label"], c["kind"]) for c in root["children"]] == [("reader", "worker"),
                                                                   ("slow", "worker")]


def test_peek_children_follows_every_change_the_way_which_children_sees_it(inline, clock):
    sup = inline.spawn(Supervisor, intensity=5, seed=1, children=[
        ChildSpec("a", Worker, backoff=Backoff(min=1.0, max=1.0, jitter=0.0)),
        ChildSpec("b", Worker, restart=Restart.TRANSIENT)])

    def same() -> list[Any]:
        peeked = peek_children(sup)
        assert peeked == which_children(sup)
        return [(c.id, c.ref if isinstance(c.ref, str) or c.ref is None else "live")
                for c in peeked]

    assert same() == [("a", "live"), ("b", "live")]
    Faults(inline).crash(_child_ref(sup, "a"))
    inline.wait_idle()
    assert same() == [("a", "restarting"), ("b", "live")]
    clock.advance(1.5)
    inline.wait_idle()
    assert same() == [("a", "live"), ("b", "live")]
    terminate_child(sup, "b")
    assert same() == [("a", "live"), ("b", None)]
    delete_child(sup, "b")
    start_child(sup, ChildSpec("c", Worker))
    assert same() == [("a", "live"), ("c", "live")]
    inline.stop(sup)
    assert [(c.id, c.ref) for c in peek_children(sup)] == [("a", None), ("c", None)]
    with pytest.raises(TypeError, match="not a supervisor"):
        peek_children(inline.spawn(Worker))


def _child_ref(sup: Any, child_id: str) -> Any:
    from supervisors import which_children
    return next(c.ref for c in which_children(sup) if c.id == child_id)


def test_root_supervisors_are_found_without_registration(inline):
    inline.spawn(Supervisor, children=tree_sup(), name="root")
    [root] = node_status(inline)["tree"]
    assert shape(root)[1] == "supervisor" and len(root["children"]) == 3


def test_the_tree_is_truncated_at_max_nodes(inline):
    for i in range(30):
        inline.spawn(Worker, name=f"w{i}")
    status = node_status(inline, max_nodes=10)
    assert len(status["tree"]) == 10 and status["truncated"] == 20


@pytest.mark.parametrize("before, after, rate", [
    (None, 100, None),   # one sample: no rate
    (100, 300, 100.0),   # 200 messages in 2 s
    (300, 40, 20.0),     # a restarted actor counts from 0
])
def test_rates_come_from_two_samples(before, after, rate):
    def doc(t: float, n: int) -> dict[str, Any]:
        return {"time": t, "runtime": {"processed": n, "dropped": 0},
                "tree": [{"path": "/a", "processed": n, "dropped": 0, "children": []}]}
    result = with_rates(doc(0.0, before) if before is not None else None, doc(2.0, after))
    assert result["tree"][0]["rate"] == rate and result["runtime"]["rate"] == rate


@pytest.fixture
def node() -> Iterator[tuple[Runtime, Any]]:
    rt = Runtime(workers=2, node="top-node")
    server = None
    try:
        sup = rt.spawn(Supervisor, children=[*tree_sup(), ChildSpec("ticker", Ticker)], name="app")
        metrics_for(rt).add_root(sup)
        server = start_http(rt, "127.0.0.1", 0)
        yield rt, server
    finally:
        if server is not None:
            server.close()
        rt.shutdown()


def test_top_once_json_reads_a_running_node_with_rates(node):
    rt, server = node
    proc = subprocess.run([sys.executable, "-m", "streamvisor.top", "--http",
                           f"127.0.0.1:{server.port}", "--once", "--json", "--interval", "0.3"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["node"] == "top-node"
    [app] = status["tree"]
    assert [c["label"] for c in app["children"]] == ["reader", "pipeline", "writer", "ticker"]
    ticker = app["children"][3]
    assert ticker["rate"] is not None and ticker["rate"] > 10  # ~1000/s, loaded machines slower
    assert status["runtime"]["rate"] > 10 and status["runtime"]["workers"] == 2


def test_top_once_prints_the_live_view_once(node):
    rt, server = node
    out = io.StringIO()
    assert run_top(top_args("--http", f"127.0.0.1:{server.port}", "--once", "--interval", "0.1"),
                   out=out) == 0
    text = out.getvalue()
    for word in ("top-node", "app", "pipeline", "parse", "ticker", "supervisor", "msg/s"):
        assert word in text


def test_status_json_and_metrics_share_one_loopback_server(node):
    import urllib.request
    rt, server = node
    assert server.host == "127.0.0.1"
    with urllib.request.urlopen(server.url + "/status.json", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        assert json.loads(resp.read())["node"] == "top-node"
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        assert b"streamvisor_messages_processed_total" in resp.read()


def test_top_says_how_to_start_a_node_it_cannot_reach(capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert run_top(top_args("--http", f"127.0.0.1:{port}", "--once", "--interval", "0")) == 1
    assert "--http 127.0.0.1:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [("--http", "nohostport"), ("--http", "h:99999"),
                                  ("--interval", "-1", "--once"), ("--interval", "0")])
def test_top_refuses_bad_arguments(argv, capsys):
    assert run_top(top_args(*argv)) == 2
    assert "streamvisor top:" in capsys.readouterr().err


def test_parse_hostport():
    assert parse_hostport("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_hostport("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport(":80")


def test_closing_the_server_is_idempotent_and_frees_the_port(node):
    import urllib.error
    import urllib.request
    rt, server = node
    server.close()
    server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/status.json", timeout=5)
