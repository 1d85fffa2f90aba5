"""Tenants in pub/sub (docs/ARCHITECTURE.md section 6; docs/RELIABILITY.md F5, F13, promise 4):
the namespace comes from the caller's identity - the tenant of the actor calling, or of
``rt.tenant(name).pubsub`` - never from the topic string. No filter or topic from one tenant
reaches another tenant or the system namespace; one tenant's flood is bounded by its own limits.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import Actor, Runtime
from actors.pubsub import Publish
from actors.testing import inline_runtime

from .conftest import settle
from .test_pubsub import Sink, payloads, spawn_sink

HOSTILE_FILTERS = ["#", "+", "+/#", "+/+/#", "/#", "$SYS/#", "$SYS/+", "$share/g/#",
                   "$share/g/+/#", "acme/#", "beta/#", "tenants/#", "../#", "../../#",
                   "..", "$tenant/#", "$share/acme/#", "+/acme/#", "/tenants/+/#"]
HOSTILE_TOPICS = ["x", "acme", "acme/x", "beta/x", "../beta/x", "a/../../beta/x", "$SYS/x",
                  "$SYS/broker/clients", "/beta/x", "tenants/beta/x", "/tenants/beta/x",
                  "$share/g/x", "$tenant/beta/x", "..", "./x", "beta", " beta/x", "%2Fbeta"]
INVALID_TOPICS = ["#", "+", "beta/#", "+/x", "a\x00b", "", "beta/+"]


class Publisher(Actor):
    """Publishes (through ``rt.pubsub``) from inside its tenant; returns what publish returned."""

    def receive(self, message: tuple[str, Any]) -> Any:
        topic, payload = message
        return self.runtime.pubsub.publish(topic, payload)


class Subscriber(Sink):
    """Subscribes itself (through ``rt.pubsub``) from inside its tenant."""

    def on_start(self) -> None:
        for filter in HOSTILE_FILTERS:
            self.runtime.pubsub.subscribe(filter, self.ref)


def listeners(rt: Runtime) -> dict[str, list[Publish]]:
    """A subscriber with every hostile filter in acme, beta and the system namespace; acme's and
    beta's subscribe themselves from inside (identity), the system one from outside."""
    seen: dict[str, list[Publish]] = {"acme": [], "beta": [], "system": []}
    rt.tenant("acme").spawn(Subscriber, seen["acme"])
    rt.tenant("beta").spawn(Subscriber, seen["beta"])
    system = rt.spawn(Sink, seen["system"])
    for filter in HOSTILE_FILTERS:
        rt.pubsub.subscribe(filter, system)
    settle(rt)
    return seen


# -- F13: injection never crosses -----------------------------------------------------------------
@pytest.mark.parametrize("topic", HOSTILE_TOPICS)
@pytest.mark.parametrize("via", ["actor", "view"])
def test_hostile_topic_published_by_a_tenant_reaches_only_that_tenant(
        rt: Runtime, topic: str, via: str) -> None:
    seen = listeners(rt)
    if via == "actor":
        routed = rt.tenant("acme").spawn(Publisher).ask((topic, "secret"))
    else:
        routed = rt.tenant("acme").pubsub.publish(topic, "secret")
    settle(rt)
    assert seen["beta"] == [] and seen["system"] == []
    assert routed == len(seen["acme"])        # one plain copy plus one per matching share group
    assert all(m.topic == topic for m in seen["acme"])   # tenant-relative: no prefix shown
    assert rt.tenant("beta").pubsub.statistics().routed == 0


@pytest.mark.parametrize("topic", INVALID_TOPICS)
def test_topic_with_wildcards_nul_or_nothing_is_rejected_for_tenants_too(
        rt: Runtime, topic: str) -> None:
    with pytest.raises(ValueError):
        rt.tenant("acme").pubsub.publish(topic, "x")


@pytest.mark.parametrize("topic", HOSTILE_TOPICS)
def test_system_publish_never_reaches_a_tenant(rt: Runtime, topic: str) -> None:
    seen = listeners(rt)
    rt.pubsub.publish(topic, "internal")
    settle(rt)
    assert seen["acme"] == [] and seen["beta"] == []
    assert set(payloads(seen["system"])) <= {"internal"}


def test_tenant_actor_using_the_runtime_pubsub_is_confined_to_its_tenant(rt: Runtime) -> None:
    acme_ref, acme_seen = spawn_sink(rt)
    rt.tenant("acme").pubsub.subscribe("news", acme_ref)
    system_ref, system_seen = spawn_sink(rt)
    rt.pubsub.subscribe("news", system_ref)
    assert rt.tenant("acme").spawn(Publisher).ask(("news", "from acme")) == 1
    settle(rt)
    assert payloads(acme_seen) == ["from acme"] and system_seen == []


def test_system_caller_subscribing_a_tenants_actor_subscribes_in_that_tenant(
        rt: Runtime) -> None:
    ref = rt.tenant("acme").spawn(Sink, seen := [])
    sub = rt.pubsub.subscribe("#", ref)
    assert sub.tenant == "acme"
    rt.pubsub.publish("x", "system")
    rt.tenant("beta").pubsub.publish("x", "beta")
    rt.tenant("acme").pubsub.publish("x", "acme")
    settle(rt)
    assert payloads(seen) == ["acme"]


@pytest.mark.parametrize("act", [
    lambda view, ref: view.publish("x", 1),
    lambda view, ref: view.subscribe("x", ref),
    lambda view, ref: view.set_will(ref, "x", 1),
    lambda view, ref: view.attach("s", ref),
    lambda view, ref: view.end_session("s"),
    lambda view, ref: view.statistics(),
])
def test_tenant_actor_cannot_use_another_tenants_pubsub(rt: Runtime,
                                                        act: Callable[..., Any]) -> None:
    class Intruder(Actor):
        def receive(self, message: Any) -> str:
            try:
                act(self.runtime.tenant("beta").pubsub, self.ref)
            except PermissionError as exc:
                return str(exc)
            return "allowed"

    answer = rt.tenant("acme").spawn(Intruder).ask("go")
    assert "acme" in answer and "beta" in answer


def test_tenant_actor_cannot_subscribe_or_will_another_tenants_actor(rt: Runtime) -> None:
    beta_ref = rt.tenant("beta").spawn(Sink, [])

    class Meddler(Actor):
        def receive(self, message: Any) -> list[str]:
            errors = []
            for act in (lambda: self.runtime.pubsub.subscribe("#", beta_ref),
                        lambda: self.runtime.pubsub.set_will(beta_ref, "x", 1),
                        lambda: self.runtime.pubsub.attach("s", beta_ref)):
                try:
                    act()
                except PermissionError as exc:
                    errors.append(str(exc))
            return errors

    assert len(rt.tenant("acme").spawn(Meddler).ask("go")) == 3
    with pytest.raises(PermissionError):
        rt.tenant("acme").pubsub.subscribe("#", beta_ref)  # a system caller, but wrong view


def test_tenant_cannot_unsubscribe_another_tenants_subscription(rt: Runtime) -> None:
    sub = rt.tenant("beta").pubsub.subscribe("x", rt.tenant("beta").spawn(Sink, []))
    with pytest.raises(PermissionError):
        rt.tenant("acme").pubsub.unsubscribe(sub)
    assert sub.active


def test_retained_messages_are_per_tenant(rt: Runtime) -> None:
    rt.tenant("acme").pubsub.publish("cfg", "acme-config", retain=True)
    rt.pubsub.publish("cfg", "system-config", retain=True)
    seen = {name: [] for name in ("acme", "beta")}
    for name in seen:
        ref = rt.tenant(name).spawn(Sink, seen[name])
        rt.tenant(name).pubsub.subscribe("#", ref)
    settle(rt)
    assert payloads(seen["acme"]) == ["acme-config"] and seen["beta"] == []


def test_session_and_share_names_are_per_tenant(rt: Runtime) -> None:
    seen = {name: [] for name in ("acme", "beta")}
    for name in seen:
        first = rt.tenant(name).spawn(Sink, [])
        rt.tenant(name).pubsub.subscribe("jobs", first, qos=1, session="worker")
        rt.tenant(name).pubsub.subscribe("$share/g/tasks", rt.tenant(name).spawn(Sink, seen[name]))
        rt.stop(first)
    rt.tenant("acme").pubsub.publish("jobs", "acme job", qos=1)
    rt.tenant("acme").pubsub.publish("tasks", "acme task")
    second = rt.tenant("beta").spawn(Sink, seen["beta"])
    assert rt.tenant("beta").pubsub.attach("worker", second) == 0
    settle(rt)
    assert payloads(seen["beta"]) == [] and payloads(seen["acme"]) == ["acme task"]
    assert rt.tenant("acme").pubsub.statistics().buffered == 1


def test_last_will_is_published_in_its_actors_tenant_only(rt: Runtime) -> None:
    seen = listeners(rt)
    victim = rt.tenant("acme").spawn(Sink, [])
    rt.pubsub.set_will(victim, "status/victim", "gone")   # a system caller: victim's tenant
    rt.kill(victim)
    settle(rt)
    assert set(payloads(seen["acme"])) == {"gone"}      # once per matching share group too
    assert rt.tenant("acme").pubsub.statistics().wills == 1
    assert seen["beta"] == [] and seen["system"] == []


def test_statistics_of_a_tenant_count_only_its_namespace(rt: Runtime) -> None:
    ref = rt.tenant("acme").spawn(Sink, [])
    rt.tenant("acme").pubsub.subscribe("x", ref)
    rt.tenant("acme").pubsub.publish("x", 1)
    rt.tenant("beta").pubsub.publish("x", 2)
    rt.pubsub.publish("x", 3)
    settle(rt)
    assert rt.tenant("acme").pubsub.statistics().published == 1
    assert rt.tenant("beta").pubsub.statistics().routed == 0
    assert rt.pubsub.statistics().published == 3          # a system caller sees the sum
    assert rt.tenant("acme").spawn(Publisher).ask(("y", 0)) == 0


# -- fuzz: hostile input from one tenant never reaches another --------------------------------------
_PIECES = ["beta", "acme", "..", ".", "", "$SYS", "$share", "g", "tenants", "#", "+", "$", "x",
           "\x00", " ", "/", "%2F", "\\", "beta\x00"]
hostile = st.one_of(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6).map("/".join),
    st.text(alphabet="/+#$.ab \x00\\", min_size=0, max_size=12),
    st.sampled_from(HOSTILE_FILTERS + HOSTILE_TOPICS + INVALID_TOPICS),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters=st.lists(hostile, min_size=1, max_size=6),
       topics=st.lists(hostile, min_size=1, max_size=8), qos=st.sampled_from([0, 1, 2]),
       retain=st.booleans())
def test_fuzz_hostile_topics_and_filters_from_one_tenant_never_reach_another(
        filters: list[str], topics: list[str], qos: int, retain: bool) -> None:
    rt = inline_runtime()
    try:
        seen = {"acme": [], "beta": [], "system": []}
        refs = {"acme": rt.tenant("acme").spawn(Sink, seen["acme"]),
                "beta": rt.tenant("beta").spawn(Sink, seen["beta"]),
                "system": rt.spawn(Sink, seen["system"])}
        for filter in filters:        # the victims listen with the attacker's filters too
            for name, ref in refs.items():
                view = rt.pubsub if name == "system" else rt.tenant(name).pubsub
                try:
                    view.subscribe(filter, ref, qos=qos)
                except ValueError:
                    pass
        for name in ("beta", "system"):
            view = rt.pubsub if name == "system" else rt.tenant(name).pubsub
            view.subscribe("#", refs[name])
            view.subscribe("$SYS/#", refs[name])
        acme = rt.tenant("acme").pubsub
        publisher = rt.tenant("acme").spawn(Publisher)
        published = []
        for topic in topics:
            try:
                acme.publish(topic, "secret", qos=qos, retain=retain)
                published.append(topic)
            except ValueError:
                continue
            assert publisher.ask((topic, "secret")) >= 0
        for filter in filters:        # late subscribers elsewhere get no acme retained message
            for name in ("beta", "system"):
                view = rt.pubsub if name == "system" else rt.tenant(name).pubsub
                try:
                    view.subscribe(filter, refs[name], qos=qos)
                except ValueError:
                    pass
        settle(rt)
        assert seen["beta"] == [] and seen["system"] == []
        assert {m.topic for m in seen["acme"]} <= set(published)
        assert rt.tenant("beta").pubsub.statistics().routed == 0
    finally:
        rt.shutdown()


# -- F5: one tenant floods 50x its quota ------------------------------------------------------------
def test_tenant_flooding_fifty_times_its_quota_is_bounded_and_others_are_untouched(
        rt: Runtime) -> None:
    quota = 20
    flooder = rt.tenant("flood", retained_messages=quota, session_buffer=quota)
    calm = rt.tenant("calm", retained_messages=quota, session_buffer=quota)
    for tenant in (flooder, calm):
        parked = tenant.spawn(Sink, [])
        tenant.pubsub.subscribe("data/#", parked, qos=1, session="offline")
        rt.stop(parked)                                   # its session buffers from now on
    calm_live: list[Publish] = []
    calm.pubsub.subscribe("data/#", calm.spawn(Sink, calm_live), qos=1)
    for i in range(50 * quota):
        flooder.pubsub.publish(f"data/{i}", i, qos=1, retain=True)
        if i % 50 == 0:
            calm.pubsub.publish(f"data/{i}", i, qos=1, retain=True)
    settle(rt)
    flood_stats, calm_stats = flooder.pubsub.statistics(), calm.pubsub.statistics()
    assert (flood_stats.retained, flood_stats.buffered) == (quota, quota)
    assert flood_stats.retained_refused == 50 * quota - quota
    assert flood_stats.dropped_buffer == 50 * quota - quota
    assert (calm_stats.retained, calm_stats.buffered, calm_stats.dropped_buffer) == (20, 20, 0)
    assert calm_stats.retained_refused == 0
    assert payloads(calm_live) == list(range(0, 50 * quota, 50))   # nothing of calm was lost


def test_limits_are_read_when_used_so_raising_a_quota_applies_at_once(rt: Runtime) -> None:
    tenant = rt.tenant("grow", retained_messages=1)
    tenant.pubsub.publish("a", 1, retain=True)
    tenant.pubsub.publish("b", 2, retain=True)
    rt.tenant("grow", retained_messages=5)
    tenant.pubsub.publish("c", 3, retain=True)
    stats = tenant.pubsub.statistics()
    assert (stats.retained, stats.retained_refused) == (2, 1)
