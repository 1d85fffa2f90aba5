"""``MqttIngest`` as the node's one MQTT client for every tenant, against a private Mosquitto on
a free loopback port: readings routed to their tenant's durable queue (one put per tenant and
batch), unknown tenants and bad payloads dead-lettered with a reason and counted, the broker
acked only after the commit (a refused batch is never acked and comes back after a restart),
shared subscriptions splitting the load between nodes, per-tenant subscriptions."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from actors import Runtime
from actors.connectors import MqttIngest, MqttOptions, MqttSink, readings_topic
from actors.queue import DurableQueue, QueueFull
from actors.testing import wait_until
from tests._mosquitto import PrivateBroker
from tests.conftest import require_program

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    require_program("mosquitto")
    with PrivateBroker(tmp_path_factory.mktemp("ingest-broker")) as broker:
        yield broker.port


@pytest.fixture
def publisher(port: int) -> Iterator[MqttSink]:
    sink = MqttSink(MqttOptions(port=port), max_inflight=200).start()
    try:
        assert sink.wait_connected(5.0)
        yield sink
    finally:
        sink.stop()


def options(port: int, name: str) -> MqttOptions:
    return MqttOptions(port=port, client_id=f"{name}-{uuid.uuid4().hex[:8]}", reconnect_min=0.05,
                       reconnect_max=0.5, session_expiry=60)


def body(ts: float, temp: Any = 21.5) -> bytes:
    return json.dumps({"ts": ts, "temp": temp, "hum": 40.0}).encode()


def stats(ref: Any) -> Any:
    return ref.ask("statistics")


def subscribed(ref: Any) -> bool:
    return stats(ref).subscribed


def rows(queue: DurableQueue) -> list[tuple[Any, ...]]:
    got = queue.get(max_items=10_000)
    queue.ack_many(got)
    return [tuple(d.payload) for d in got]


class Refusing:
    """A queue that refuses ``put_many`` (``QueueFull``) while ``refuse`` is set."""

    def __init__(self, queue: DurableQueue) -> None:
        self.queue, self.refuse, self.refused = queue, True, 0

    def put_many(self, rows: Any) -> Any:
        if self.refuse:
            self.refused += 1
            raise QueueFull("test: the queue is full")
        return self.queue.put_many(rows)


def test_one_client_routes_each_tenant_to_its_queue_and_dead_letters_the_rest(
        port: int, publisher: MqttSink, tmp_path: Path) -> None:
    tenants = ("acme", "globex")
    queues = {t: DurableQueue(tmp_path / f"{t}.queue", t) for t in tenants}
    dead = DurableQueue(tmp_path / "mqtt.dead", "mqtt-dead")
    try:
        with Runtime(workers=2) as rt:
            ingest = rt.spawn(MqttIngest, options(port, "node"), queues.get, dead_letters=dead,
                              batch_size=50)
            wait_until(lambda: subscribed(ingest), timeout=10.0, message="subscribed")
            messages = []
            for i in range(120):
                tenant = ("acme", "globex", "evil")[i % 3]
                messages.append((readings_topic(tenant, f"{tenant}-d{i % 4}"), body(1000 + i)))
            messages.append((readings_topic("acme", "broken"), body(5, temp="hot")))
            messages.append(("tenants/ac$me/devices/x/readings", body(6)))
            publisher.publish_many(messages)
            wait_until(lambda: stats(ingest).queued == 80 and stats(ingest).dead_lettered == 42,
                       timeout=15.0, message="every reading routed or dead-lettered")
            s = stats(ingest)
            assert s.unknown == 40 and s.source.dead_lettered == 2 and s.held == 0
            assert s.queued_by_tenant["globex"] == 40
        for tenant in tenants:
            got = rows(queues[tenant])
            assert len(got) == 40 and {r[0] for r in got} == {tenant}
            assert all(r[1].startswith(f"{tenant}-") for r in got)  # never another's data
        letters = [d.payload for d in dead.get(max_items=100)]
        kinds = sorted(letter["kind"] for letter in letters)
        assert kinds == sorted(["bad_topic", "wrong_type"] + ["unknown_tenant"] * 40)
        unknown = [letter for letter in letters if letter["kind"] == "unknown_tenant"]
        assert {letter["tenant"] for letter in unknown} == {"evil"}
        assert all("'evil'" in letter["reason"] for letter in unknown)
    finally:
        for q in (*queues.values(), dead):
            q.close()


def test_the_broker_is_acked_only_after_the_commit_and_a_refused_batch_comes_back(
        port: int, publisher: MqttSink, tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "acme.queue", "acme")
    refusing = Refusing(queue)
    opts = options(port, "acked")
    try:
        with Runtime(workers=2) as rt:
            ingest = rt.spawn(MqttIngest, opts, lambda t: refusing, retry_delay=0.05)
            wait_until(lambda: subscribed(ingest), timeout=10.0, message="subscribed")
            n = 0

            def refused() -> bool:
                nonlocal n
                n += 1
                publisher.publish(readings_topic("acme", "d1"), body(n))
                return refusing.refused >= 2  # one refusal, then the retry refused again
            wait_until(refused, timeout=10.0, message="a refused batch")
            s = stats(ingest)
            assert s.queued == 0 and s.held >= 1
            assert s.source.acked == 0  # nothing acked while nothing is on disk
            rt.stop(ingest, "shutdown")  # held readings were never acked: the broker keeps them
        assert queue.stats()["ready"] == 0
        with Runtime(workers=2) as rt:  # the same session: the broker redelivers
            ingest = rt.spawn(MqttIngest, opts, lambda t: queue)
            wait_until(lambda: stats(ingest).queued >= n, timeout=15.0,
                       message=f"all {n} readings redelivered and queued")
            s = stats(ingest)
            assert s.source.acked == s.queued
        assert sorted({r[2] for r in rows(queue)}) == [float(i) for i in range(1, n + 1)]
    finally:
        queue.close()


def test_a_shared_subscription_splits_the_readings_between_nodes(
        port: int, publisher: MqttSink, tmp_path: Path) -> None:
    queues = [DurableQueue(tmp_path / f"n{i}.queue", "all") for i in range(2)]
    group = f"g{uuid.uuid4().hex[:6]}"
    try:
        with Runtime(workers=2) as rt:
            nodes = [rt.spawn(MqttIngest, options(port, f"n{i}"), queues[i], group=group)
                     for i in range(2)]
            wait_until(lambda: all(subscribed(n) for n in nodes), timeout=10.0,
                       message="both nodes subscribed")
            publisher.publish_many([(readings_topic("acme", "d1"), body(10_000 + i))
                                    for i in range(200)])
            wait_until(lambda: sum(stats(n).queued for n in nodes) == 200, timeout=15.0,
                       message="every reading on one node")
        got = [[r[2] for r in rows(q)] for q in queues]
        assert sorted(got[0] + got[1]) == [10_000.0 + i for i in range(200)]  # each exactly once
        assert got[0] and got[1]  # both nodes took a share
    finally:
        for q in queues:
            q.close()


def test_a_node_subscribes_only_to_the_tenants_it_hosts(
        port: int, publisher: MqttSink, tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "hosted.queue", "hosted")
    run = uuid.uuid4().hex[:6]
    a, b = f"a{run}", f"b{run}"
    try:
        with Runtime(workers=2) as rt:
            ingest = rt.spawn(MqttIngest, options(port, "hosted"), queue, filters=[])
            wait_until(lambda: subscribed(ingest), timeout=10.0, message="connected")
            ingest.tell(("subscribe", a))
            sent = 0

            def arrived() -> bool:
                nonlocal sent
                sent += 1
                publisher.publish(readings_topic(a, "probe"), body(sent))
                return stats(ingest).queued >= 1
            wait_until(arrived, timeout=10.0, message=f"{a}'s subscription")
            ingest.tell(("unsubscribe", a))
            ingest.tell(("subscribe", b))

            def moved() -> bool:
                nonlocal sent
                sent += 1
                publisher.publish(readings_topic(b, "probe"), body(sent))
                return stats(ingest).queued_by_tenant.get(b, 0) >= 1
            wait_until(moved, timeout=10.0, message=f"{b}'s subscription")
            # a's reading goes out before b's marker (one publisher, in order): once the marker
            # is in the queue, a's reading would be too if a were still read
            publisher.publish_many([(readings_topic(a, "late"), body(1)),
                                    (readings_topic(b, "marker"), body(2))])
            got: list[tuple[Any, ...]] = []

            def marker() -> bool:
                got.extend(rows(queue))
                return any(r[:2] == (b, "marker") for r in got)
            wait_until(marker, timeout=10.0, message="the marker")
            assert not [r for r in got if r[:2] == (a, "late")]  # a is no longer read
    finally:
        queue.close()


def test_a_supervised_ingest_survives_crashes_and_resubscribes_to_what_is_hosted_then(
        port: int, publisher: MqttSink, tmp_path: Path) -> None:
    """The node's client under a supervisor, crashed twice while readings arrive: every reading
    reaches its queue (at least once: a crash between commit and PUBACK only redelivers), each
    incarnation subscribes to the tenants of ``filters()`` at its start, and the progress line's
    source of state, ``report``, keeps coming without an ask."""
    import supervisors
    from actors.connectors import readings_filter
    from actors.testing import Faults
    from supervisors import Backoff, ChildSpec, Strategy, Supervisor
    run = uuid.uuid4().hex[:6]
    hosted = [f"a{run}"]
    queues = {t: DurableQueue(tmp_path / "q.db", "readings", tenant=t) for t in (f"a{run}",
                                                                                  f"b{run}")}
    reports: list[Any] = []
    with Runtime(workers=2) as rt:
        sup = rt.spawn(Supervisor, strategy=Strategy.ONE_FOR_ONE, intensity=5, period=60.0,
                       children=[ChildSpec("mqtt", MqttIngest, args=(options(port, "sup"),
                                                                      queues.get),
                                           kwargs=dict(filters=lambda: [readings_filter(t)
                                                                        for t in hosted],
                                                       report=reports.append, tick=0.05),
                                           backoff=Backoff(min=0.05, max=0.2, jitter=0.0))])
        mqtt = supervisors.child(sup, "mqtt")
        wait_until(lambda: bool(reports) and reports[-1].subscribed, 5.0, "subscribed")
        sent: dict[str, set[float]] = {t: set() for t in queues}
        faults = Faults(rt)
        incarnations = [mqtt.ref]
        for round_ in range(3):
            for t in hosted:
                items = [(readings_topic(t, "d1"), body(1000.0 * round_ + i)) for i in range(200)]
                publisher.publish_many(items)
                sent[t] |= {1000.0 * round_ + i for i in range(200)}
            if round_ < 2:
                before = mqtt.ref
                assert before is not None and faults.crash(before)
                if f"b{run}" not in hosted:
                    hosted.append(f"b{run}")  # hosted from now on: the next incarnation reads it
                reports.clear()
                wait_until(lambda: mqtt.ref not in (None, before) and bool(reports)
                           and reports[-1].subscribed, 10.0, "the restarted client")
                incarnations.append(mqtt.ref)
        got: dict[str, set[float]] = {t: set() for t in queues}

        def complete() -> bool:
            for t, q in queues.items():
                got[t] |= {row[2] for row in rows(q)}
            return got == sent
        wait_until(complete, 15.0, "every reading in its tenant's queue")
        assert len(set(incarnations)) == 3 and reports[-1].connected
        assert [i.id for i in supervisors.which_children(sup)] == ["mqtt"]
    for q in queues.values():
        q.close()
