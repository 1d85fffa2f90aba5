"""Prometheus metrics of a node, scraped over HTTP on 127.0.0.1: counters per tenant (monotonic
across actor exits), the deepest mailboxes only, durable queue depths, connector dead letters by
reason, restarts, and the loopback-only rule."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors import Actor, ActorRef, Runtime
from actors.queue import DurableQueue
from actors.testing import Faults, inline_runtime, wait_until
from supervisors import ChildSpec, Supervisor, which_children
from streamvisor.metrics import NodeMetrics, metrics_for
from streamvisor.top import HttpServer, start_http


class Sink(Actor):
    def receive(self, message: Any) -> Any:
        return message


def scrape(server: HttpServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as ``{(name, sorted labels): value}``, fetched over HTTP."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items())]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples"
    return matches[0]


def series(samples: dict[Any, float], name: str) -> list[dict[str, str]]:
    return [dict(ls) for (n, ls) in samples if n == name]


@pytest.fixture
def inline() -> Iterator[Runtime]:
    rt = inline_runtime(node="m1")
    try:
        yield rt
    finally:
        rt.shutdown()


@pytest.fixture
def server(inline: Runtime) -> Iterator[HttpServer]:
    srv = start_http(inline, "127.0.0.1", 0, top_n=3)
    try:
        yield srv
    finally:
        srv.close()


class Gated(Actor):
    """Blocks its worker on its first message until the gate opens: what it is sent after
    that waits in its mailbox, so depths are exact."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def receive(self, message: Any) -> Any:
        self.gate.wait(10.0)
        return message


@pytest.fixture
def threads() -> Iterator[Runtime]:
    rt = Runtime(workers=2, node="m1")
    try:
        yield rt
    finally:
        rt.shutdown()


def test_messages_processed_and_mailbox_depths_are_exported_per_tenant(threads):
    gate = threading.Event()
    sent = {}
    try:
        for tenant, n in (("acme", 4), ("globex", 2)):
            for i in range(n):
                ref = threads.tenant(tenant).spawn(Gated, gate, name=f"s{i}")
                sent[ref] = 10 * (i + 1) if tenant == "acme" else 7
                for _ in range(sent[ref]):
                    ref.tell("m")
        with start_http(threads, "127.0.0.1", 0, top_n=3) as srv:
            s = scrape(srv)
            queued = {ref: ref.statistics().queued for ref in sent}  # the one in hand is not
            for tenant in ("acme", "globex"):
                want = sum(q for ref, q in queued.items() if ref.tenant == tenant)
                assert value(s, "streamvisor_mailbox_depth_sum", tenant=tenant) == want
            assert sum(queued.values()) >= sum(sent.values()) - 2 * len(sent)
            deepest = series(s, "streamvisor_mailbox_depth")
            assert len(deepest) == 3  # top_n bounds the cardinality
            assert {d["actor"] for d in deepest} == {"/tenants/acme/s3", "/tenants/acme/s2",
                                                     "/tenants/acme/s1"}
            s3 = next(ref for ref in sent if ref.path == "/tenants/acme/s3")
            assert value(s, "streamvisor_mailbox_depth", actor="/tenants/acme/s3") == queued[s3]
            gate.set()
            assert threads.wait_idle(10.0)
            s = scrape(srv)
        assert value(s, "streamvisor_messages_processed_total", tenant="acme") == 100
        assert value(s, "streamvisor_messages_processed_total", tenant="globex") == 14
        assert value(s, "streamvisor_actors", tenant="acme") == 4
        assert series(s, "streamvisor_mailbox_depth") == []
        assert value(s, "streamvisor_workers", node="m1") == 2
    finally:
        gate.set()


def test_tenant_counters_stay_monotonic_when_actors_exit(inline, server):
    ref = inline.tenant("acme").spawn(Sink)
    for _ in range(25):
        ref.tell("m")
    inline.wait_idle()
    assert value(scrape(server), "streamvisor_messages_processed_total", tenant="acme") == 25
    inline.stop(ref)
    s = scrape(server)
    assert value(s, "streamvisor_messages_processed_total", tenant="acme") == 25
    assert not any(d["tenant"] == "acme" for d in series(s, "streamvisor_actors"))


def test_node_totals_stay_exact_including_what_exited_between_scrapes(inline, server):
    ref = inline.spawn(Sink)
    for _ in range(5):
        ref.tell("m")
    inline.wait_idle()
    inline.stop(ref)  # never seen by a scrape while alive
    s = scrape(server)
    total = sum(v for (n, _), v in s.items() if n == "streamvisor_messages_processed_total")
    assert total == inline.statistics().processed


def test_drops_and_dead_letters_are_counted(threads):
    gate = threading.Event()
    try:
        ref = threads.tenant("acme").spawn(Gated, gate, mailbox_size=2, overflow="drop_newest")
        for _ in range(6):
            ref.tell("m")
        dropped = ref.statistics().dropped
        assert dropped >= 3
        with start_http(threads, "127.0.0.1", 0) as srv:
            assert value(scrape(srv), "streamvisor_messages_dropped_total", tenant="acme") == dropped
            gate.set()
            threads.stop(ref)
            ref.tell("to a dead actor")
            s = scrape(srv)
        assert value(s, "streamvisor_messages_dropped_total", tenant="acme") == dropped
        assert value(s, "streamvisor_dead_letters_total", source="mailbox") >= 1
    finally:
        gate.set()


def test_queue_depths_and_connector_dead_letters_are_labelled_by_tenant(inline, server, tmp_path):
    q = DurableQueue(tmp_path / "q.db", "readings")
    try:
        q.put_many(range(5))
        [d] = q.get(max_items=1)
        d.reject("poison")
        metrics_for(inline).add_queue(q, tenant="acme")
        stats = {"received": 10, "accepted": 7, "pending": 2, "connected": True,
                 "rejected": {"invalid_json": 2, "oversize": 1}}
        metrics_for(inline).add_source("mqtt", lambda: stats, tenant="acme")
        metrics_for(inline).add_source("broken", lambda: 1 / 0)
        s = scrape(server)
        assert value(s, "streamvisor_queue_depth", queue="readings", state="ready") == 4
        assert value(s, "streamvisor_queue_depth", queue="readings", state="dead") == 1
        assert value(s, "streamvisor_queue_depth", tenant="acme", state="in_flight") == 0
        assert value(s, "streamvisor_dead_letters_total", source="mqtt",
                     reason="invalid_json") == 2
        assert value(s, "streamvisor_dead_letters_total", source="mqtt", reason="oversize") == 1
        assert value(s, "streamvisor_connector_events_total", connector="mqtt",
                     event="received") == 10
        assert value(s, "streamvisor_connector_state", connector="mqtt", field="pending") == 2
        assert value(s, "streamvisor_connector_state", connector="mqtt", field="connected") == 1
    finally:
        q.close()


def test_restarts_of_supervised_children_are_exported():
    with Runtime(workers=2, node="m2") as rt:
        sup = rt.tenant("acme").spawn(Supervisor, intensity=5,
                                      children=[ChildSpec("c", Sink), ChildSpec("d", Sink)])
        faults = Faults(rt)
        for _ in range(2):
            old = which_children(sup)[0].ref
            faults.crash(old)
            wait_until(lambda o=old: isinstance(new := which_children(sup)[0].ref, ActorRef)
                       and new is not o, timeout=5.0, message="the restart")
        with start_http(rt, "127.0.0.1", 0) as srv:
            s = scrape(srv)
        assert value(s, "streamvisor_child_restarts", tenant="acme") == 2


def test_the_server_refuses_non_loopback_addresses_and_unknown_paths(inline):
    with pytest.raises(ValueError, match="loopback"):
        start_http(inline, "0.0.0.0", 0)
    with start_http(inline, "localhost", 0) as srv:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(srv.url + "/nope", timeout=5)
        assert info.value.code == 404
        info.value.close()


def test_metrics_for_is_one_object_per_runtime(inline):
    other = inline_runtime()
    try:
        assert metrics_for(inline) is metrics_for(inline)
        assert metrics_for(other) is not metrics_for(inline)
        assert isinstance(metrics_for(inline), NodeMetrics)
    finally:
        other.shutdown()
    with pytest.raises(ValueError, match="top_n"):
        NodeMetrics(inline, top_n=-1)
