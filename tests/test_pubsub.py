"""The pub/sub registry (``runtime.pubsub``): routing, retained messages, QoS 0/1/2, sessions,
last wills (F14), shared subscriptions, redelivery after a crash (F15), slow consumers (F4).

Every behaviour test takes ``rt`` and so runs inline and on threads, on a manual clock, without
sleeping. Where a test needs messages to pile up, a ``Script`` actor publishes them in one turn
(inline, nobody else runs meanwhile; on threads the subscriber is held on a gate until the
script's last step opens it), so the outcome is the same on both runtimes - or, where a race is
inherent, the test checks an exact invariant (accepted = delivered + counted drops, unique ids).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import Actor, ActorDead, ActorRef, Overflow, Runtime
from actors.pubsub import (DEFAULT_LIMITS, FilterTrie, Publish, PubSub, PubSubStatistics,
                           Subscription, TenantPubSub, TopicTrie)
from actors.testing import Recorder, wait_until
from actors.topics import matches

from .conftest import Script, run_script, settle


# -- helpers ---------------------------------------------------------------------------------------
class Boom(Exception):
    pass


class Sink(Actor):
    """Records every ``Publish`` it is handed, then: raises if the payload is in ``crash_on``,
    kills itself for ``kill_on``, stops itself for ``stop_on``. With a ``gate`` it waits for it
    before handling its first message (a slow consumer)."""

    def __init__(self, seen: list[Publish] | Recorder, gate: threading.Event | None = None,
                 crash_on: Iterable[Any] = (), kill_on: Iterable[Any] = (),
                 stop_on: Iterable[Any] = ()) -> None:
        self.seen = seen
        self.gate = gate
        self.crash_on, self.kill_on, self.stop_on = set(crash_on), set(kill_on), set(stop_on)

    def receive(self, message: Any) -> Any:
        if self.gate is not None:
            assert self.gate.wait(5.0), "gate never opened"
            self.gate = None
        if isinstance(message, tuple) and message[0] == "link":
            self.link(message[1])
            return None
        assert isinstance(message, Publish), message
        self.seen.append(message)
        if message.payload in self.crash_on:
            raise Boom(f"cannot handle {message.payload!r}")
        if message.payload in self.kill_on:
            self.runtime.kill(self.ref)
        if message.payload in self.stop_on:
            self.stop()
        return message.id


def payloads(seen: Iterable[Publish]) -> list[Any]:
    return [m.payload for m in seen]


def spawn_sink(rt: Runtime, **kwargs: Any) -> tuple[ActorRef, list[Publish]]:
    seen: list[Publish] = []
    spawn = {k: kwargs.pop(k) for k in ("mailbox_size", "overflow") if k in kwargs}
    return rt.spawn(Sink, seen, **kwargs, **spawn), seen


def assert_accounted(stats: PubSubStatistics) -> None:
    """Every routed (message, subscriber) pair is delivered, dropped (counted) or still held."""
    assert stats.routed == (stats.delivered + stats.dropped_overflow + stats.dropped_buffer
                            + stats.dropped_dead + stats.inflight + stats.buffered), stats


# -- routing ---------------------------------------------------------------------------------------
ROUTES = [  # filter, topic, delivered
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/b", "a/b/c", False),
    ("A/b", "a/b", False),                  # case-sensitive
    ("a/ b", "a/b", False),                 # spaces count
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/+", "a", False),
    ("a/+/c", "a//c", True),                # + matches an empty level
    ("+/+", "/a", True),
    ("a/#", "a", True),                     # # matches the parent level
    ("a/#", "a/b/c/d", True),
    ("a/#", "ab", False),
    ("#", "a/b/c", True),
    ("#", "$SYS/uptime", False),            # wildcards never match $-topics at the first level
    ("+/uptime", "$SYS/uptime", False),
    ("+/#", "$SYS/uptime", False),
    ("$SYS/#", "$SYS/uptime", True),
    ("$SYS/+", "$SYS/uptime", True),
    ("a/$x", "a/$x", True),
    ("+/$x", "a/$x", True),
    ("$share/g/a/+", "a/b", True),          # shared: matches like its inner filter
    ("$share/g/#", "$SYS/x", False),
    ("$share/g/$share/h/x", "$share/h/x", True),  # a nested $share is an ordinary filter
]


@pytest.mark.parametrize("filter, topic, delivered", ROUTES)
def test_publish_reaches_a_subscription_exactly_when_its_filter_matches(
        rt: Runtime, filter: str, topic: str, delivered: bool) -> None:
    assert matches(filter, topic) is delivered  # the table agrees with actors.topics
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe(filter, ref)
    assert rt.pubsub.publish(topic, "x") == int(delivered)
    settle(rt)
    assert seen == ([Publish(topic, "x", 0, False, 1)] if delivered else [])


def test_each_matching_subscriber_gets_one_copy(rt: Runtime) -> None:
    refs = [spawn_sink(rt) for _ in range(5)]
    for i, (ref, _) in enumerate(refs):
        rt.pubsub.subscribe("plant/+/temp" if i % 2 else "plant/#", ref)
    assert rt.pubsub.publish("plant/7/temp", 21.5) == 5
    settle(rt)
    assert all(payloads(seen) == [21.5] for _, seen in refs)


def test_overlapping_subscriptions_of_one_subscriber_deliver_one_copy_at_the_highest_qos(
        rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    for filter, qos in (("a/+", 0), ("a/#", 2), ("a/b", 1), ("#", 0)):
        rt.pubsub.subscribe(filter, ref, qos=qos)
    assert rt.pubsub.publish("a/b", "x", qos=2) == 1
    settle(rt)
    assert [(m.payload, m.qos) for m in seen] == [("x", 2)]


@pytest.mark.parametrize("pub_qos", [0, 1, 2])
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
def test_delivered_qos_is_the_lower_of_the_publish_and_the_subscription(
        rt: Runtime, pub_qos: int, sub_qos: int) -> None:
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("q", ref, qos=sub_qos)
    rt.pubsub.publish("q", "x", qos=pub_qos)
    settle(rt)
    assert [m.qos for m in seen] == [min(pub_qos, sub_qos)]


def test_messages_to_one_subscriber_arrive_in_publish_order_with_increasing_ids(
        rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("seq/#", ref, qos=1)
    run_script(rt, *[lambda i=i: rt.pubsub.publish(f"seq/{i % 3}", i, qos=i % 2)
                     for i in range(100)])
    assert payloads(seen) == list(range(100))
    assert [m.id for m in seen] == sorted(m.id for m in seen)


def test_unsubscribed_filter_receives_nothing_more(rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    sub = rt.pubsub.subscribe("a/#", ref)
    keep = rt.pubsub.subscribe("b", ref)
    assert rt.pubsub.unsubscribe(sub) is True
    assert rt.pubsub.unsubscribe(sub) is False and not sub.active
    assert rt.pubsub.publish("a/x", 1) == 0
    assert rt.pubsub.publish("b", 2) == 1
    settle(rt)
    assert payloads(seen) == [2] and keep.active


def test_subscribing_again_to_the_same_filter_replaces_its_qos(rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    first = rt.pubsub.subscribe("a", ref, qos=0)
    again = rt.pubsub.subscribe("a", ref, qos=2)
    assert again is first and first.qos == 2
    rt.pubsub.publish("a", "x", qos=2)
    settle(rt)
    assert [m.qos for m in seen] == [2]
    assert rt.pubsub.statistics().subscriptions == 1


@pytest.mark.parametrize("topic, problem", [
    ("a/+", "wildcards"),
    ("#", "wildcards"),
    ("a/#", "wildcards"),
    ("", "at least one character"),
    ("a\x00b", "NUL"),
    ("\ud800", "surrogate"),
    ("x" * 70_000, "bytes"),
])
def test_publish_to_an_invalid_topic_raises_value_error_naming_the_problem(
        rt: Runtime, topic: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rt.pubsub.publish(topic, "x")
    assert rt.pubsub.statistics().published == 0


@pytest.mark.parametrize("filter, problem", [
    ("a/#/b", "'#' must be the last level"),
    ("a+", "'\\+' must occupy an entire level"),
    ("a/b#", "'#' must occupy an entire level"),
    ("", "at least one character"),
    ("a\x00", "NUL"),
    ("$share//a", "share name"),
    ("$share/g", "share name"),
    ("$share/g+/a", "share name"),
    ("$share/g/a/#/b", "'#' must be the last level"),
])
def test_subscribe_with_an_invalid_filter_raises_value_error_naming_the_problem(
        rt: Runtime, filter: str, problem: str) -> None:
    ref, _ = spawn_sink(rt)
    with pytest.raises(ValueError, match=problem):
        rt.pubsub.subscribe(filter, ref)
    assert rt.pubsub.statistics().subscriptions == 0


@pytest.mark.parametrize("call", [
    lambda ps, ref: ps.subscribe("a", ref, qos=3),
    lambda ps, ref: ps.subscribe("a", ref, qos=True),
    lambda ps, ref: ps.subscribe("a", ref, session=""),
    lambda ps, ref: ps.publish("a", "x", qos=-1),
    lambda ps, ref: ps.publish("a", "x", retain="yes"),
    lambda ps, ref: ps.set_will(ref, "a/+", "x"),
    lambda ps, ref: ps.set_will(ref, "a", "x", qos=5),
    lambda ps, ref: ps.attach("", ref),
])
def test_bad_arguments_raise_value_error(rt: Runtime, call: Callable[..., Any]) -> None:
    ref, _ = spawn_sink(rt)
    with pytest.raises(ValueError):
        call(rt.pubsub, ref)


@pytest.mark.parametrize("call", [
    lambda ps: ps.subscribe("a", "not a ref"),
    lambda ps: ps.publish(b"a/b", "x"),
    lambda ps: ps.subscribe(5, None),
    lambda ps: ps.unsubscribe("a"),
])
def test_wrong_types_raise_type_error(rt: Runtime, call: Callable[..., Any]) -> None:
    with pytest.raises(TypeError):
        call(rt.pubsub)


def test_subscribing_a_dead_actor_raises_actor_dead(rt: Runtime) -> None:
    ref, _ = spawn_sink(rt)
    rt.stop(ref)
    with pytest.raises(ActorDead):
        rt.pubsub.subscribe("a", ref)


def test_plain_subscriptions_end_with_their_actor(rt: Runtime) -> None:
    ref, _ = spawn_sink(rt)
    sub = rt.pubsub.subscribe("a/#", ref)
    rt.stop(ref)
    assert not sub.active and sub.ref is None
    assert rt.pubsub.statistics().subscriptions == 0
    assert rt.pubsub.publish("a/b", 1) == 0


# -- the trie (pure) -------------------------------------------------------------------------------
_LEVELS = ["a", "b", "", "$x", "$SYS", "c d"]
topic_levels = st.lists(st.sampled_from(_LEVELS), min_size=1, max_size=4).filter(
    lambda levels: levels != [""])  # "" is not a topic name


@st.composite
def filter_levels(draw: Any) -> list[str]:
    levels = draw(st.lists(st.sampled_from(_LEVELS + ["+", "+"]), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels = levels[:3] + ["#"]
    return levels if levels != [""] else ["#"]


@settings(max_examples=300, deadline=None)
@given(st.lists(filter_levels(), min_size=1, max_size=25), st.lists(topic_levels, max_size=10))
def test_filter_trie_matches_exactly_what_topics_matches_says(
        filters: list[list[str]], topics: list[list[str]]) -> None:
    trie = FilterTrie()
    for i, levels in enumerate(filters):
        trie.add(levels, i, "/".join(levels))
    for levels in topics:
        topic = "/".join(levels)
        found, visited = trie.match(levels)
        expected = {"/".join(f) for f in filters if matches("/".join(f), topic)}
        assert set(found) == expected, topic
        assert len(found) == len(set(found)) or len(filters) != len({tuple(f) for f in filters})
        assert visited <= trie.nodes


@settings(max_examples=300, deadline=None)
@given(st.lists(topic_levels, min_size=1, max_size=25), st.lists(filter_levels(), max_size=10))
def test_retained_topic_trie_walks_a_filter_exactly_like_topics_matches(
        topics: list[list[str]], filters: list[list[str]]) -> None:
    store = TopicTrie()
    for levels in topics:
        store.put(levels, "/".join(levels))
    for levels in filters:
        filter = "/".join(levels)
        assert sorted(store.matching(levels)) == sorted(
            {"/".join(t) for t in topics if matches(filter, "/".join(t))}), filter


@settings(max_examples=100, deadline=None)
@given(st.lists(filter_levels(), min_size=1, max_size=25, unique_by=tuple))
def test_removing_every_filter_leaves_an_empty_trie(filters: list[list[str]]) -> None:
    trie = FilterTrie()
    for levels in filters:
        trie.add(levels, "k", levels)
    for levels in reversed(filters):
        assert trie.remove(levels, "k") == levels
    assert (len(trie), trie.nodes) == (0, 1)


def _fan_visits(subscriptions: int) -> int:
    trie = FilterTrie()
    for i in range(subscriptions):
        trie.add(["dev", str(i), "temp"], i, i)
    trie.add(["dev", "+", "temp"], "any", "any")
    trie.add(["#"], "all", "all")
    found, visited = trie.match(["dev", "0", "temp"])
    assert sorted(map(str, found)) == ["0", "all", "any"]
    return visited


@pytest.mark.parametrize("subscriptions", [10, 1_000, 20_000])
def test_routing_cost_does_not_grow_with_the_number_of_subscriptions(subscriptions: int) -> None:
    # root, its '#', dev, dev/+, dev/0, and each one's temp: 7 nodes, however many siblings
    assert _fan_visits(subscriptions) == _fan_visits(1) == 7


@pytest.mark.parametrize("depth", [1, 2, 4, 8, 16])
def test_routing_cost_grows_linearly_with_topic_depth(depth: int) -> None:
    trie = FilterTrie()
    trie.add(["a"] * depth, "exact", "exact")
    trie.add(["#"], "all", "all")
    for i in range(1_000):
        trie.add(["a"] * depth + [str(i)], i, i)
    found, visited = trie.match(["a"] * depth)
    assert sorted(map(str, found)) == ["all", "exact"]
    assert visited == depth + 2  # each level once, plus the root's '#'


def test_route_visits_of_a_publish_are_the_same_with_ten_or_two_thousand_subscriptions(
        rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    costs = []
    for total in (10, 2_000):
        for i in range(len(costs) and 10, total):
            rt.pubsub.subscribe(f"dev/{i}/temp", ref)
        before = rt.pubsub.statistics().route_visits
        assert rt.pubsub.publish("dev/3/temp", 1) == 1
        costs.append(rt.pubsub.statistics().route_visits - before)
    assert costs[0] == costs[1] > 0


# -- retained messages ----------------------------------------------------------------------------
def test_new_subscriber_gets_matching_retained_messages_at_once_with_retain_true(
        rt: Runtime) -> None:
    for topic, value in (("plant/1/temp", 20), ("plant/2/temp", 21), ("plant/1/hum", 40)):
        rt.pubsub.publish(topic, value, qos=1, retain=True)
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("plant/+/temp", ref, qos=1)
    settle(rt)
    assert sorted((m.topic, m.payload, m.retain) for m in seen) == [
        ("plant/1/temp", 20, True), ("plant/2/temp", 21, True)]


def test_live_delivery_of_a_retained_publish_has_retain_false(rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("a", ref)
    rt.pubsub.publish("a", "now", retain=True)
    settle(rt)
    assert [(m.payload, m.retain) for m in seen] == [("now", False)]


def test_newer_retained_message_replaces_the_older_one(rt: Runtime) -> None:
    rt.pubsub.publish("a", "old", retain=True)
    rt.pubsub.publish("a", "new", retain=True)
    rt.pubsub.publish("a", "not kept")            # not retained: the store keeps "new"
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("#", ref)
    settle(rt)
    assert payloads(seen) == ["new"]
    assert rt.pubsub.statistics().retained == 1


@pytest.mark.parametrize("empty", [b"", "", None])
def test_retained_publish_with_an_empty_payload_clears_the_topic(rt: Runtime, empty: Any) -> None:
    live, live_seen = spawn_sink(rt)
    rt.pubsub.subscribe("a", live)
    rt.pubsub.publish("a", "kept", retain=True)
    rt.pubsub.publish("a", empty, retain=True)
    late, late_seen = spawn_sink(rt)
    rt.pubsub.subscribe("a", late)
    settle(rt)
    assert late_seen == []
    assert payloads(live_seen) == ["kept", empty]  # the clearing publish is still delivered
    assert rt.pubsub.statistics().retained == 0


@pytest.mark.parametrize("stored, subscribed, delivered", [(2, 1, 1), (0, 2, 0), (1, 1, 1)])
def test_retained_message_is_delivered_at_the_lower_qos(rt: Runtime, stored: int,
                                                        subscribed: int, delivered: int) -> None:
    rt.pubsub.publish("a", "x", qos=stored, retain=True)
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("a", ref, qos=subscribed)
    settle(rt)
    assert [(m.qos, m.retain) for m in seen] == [(delivered, True)]


def test_shared_subscription_gets_no_retained_messages(rt: Runtime) -> None:
    rt.pubsub.publish("a", "x", retain=True)
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("$share/g/a", ref)
    settle(rt)
    assert seen == []


def test_retained_store_is_bounded_per_namespace_and_refusals_are_counted(rt: Runtime) -> None:
    shop = rt.tenant("shop", retained_messages=3)
    for i in range(10):
        shop.pubsub.publish(f"t/{i}", i, retain=True)
    shop.pubsub.publish("t/0", "updated", retain=True)   # updating a kept topic is allowed
    stats = shop.pubsub.statistics()
    assert (stats.retained, stats.retained_refused) == (3, 7)
    ref, seen = spawn_sink(rt)
    shop.pubsub.subscribe("t/#", ref)
    settle(rt)
    assert sorted(map(str, payloads(seen))) == ["1", "2", "updated"]


def test_retained_message_delivered_to_a_subscriber_and_its_session_later(rt: Runtime) -> None:
    rt.pubsub.publish("cfg", {"rate": 5}, qos=1, retain=True)
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("cfg", ref, qos=1, session="cfg-reader")
    settle(rt)
    assert [(m.payload, m.retain) for m in seen] == [({"rate": 5}, True)]


# -- QoS 0 and slow consumers (F4) -----------------------------------------------------------------
@pytest.mark.parametrize("policy", [Overflow.DROP_OLDEST, Overflow.DROP_NEWEST, Overflow.LATEST,
                                    Overflow.FAIL])
def test_slow_qos0_subscriber_drops_by_its_policy_and_counted_drops_equal_actual_drops(
        rt: Runtime, policy: Overflow) -> None:
    total = 60
    gate = threading.Event()
    slow, slow_seen = spawn_sink(rt, gate=gate, mailbox_size=5, overflow=policy)
    fast, fast_seen = spawn_sink(rt)
    rt.pubsub.subscribe("s/#", slow)
    rt.pubsub.subscribe("s/#", fast)
    returned: list[int] = []
    run_script(rt, *[lambda i=i: returned.append(rt.pubsub.publish(f"s/{i}", i))
                     for i in range(total)], gate.set)
    stats = rt.pubsub.statistics()
    got = payloads(slow_seen)
    assert len(got) == len(set(got)) and set(got) <= set(range(total))  # unique ids, no dupes
    dropped = slow.statistics().dropped
    assert dropped > 0                                   # it really was too slow
    assert len(got) + dropped == total                   # accepted = delivered + counted drops
    assert stats.dropped_overflow == dropped
    assert payloads(fast_seen) == list(range(total))     # the other subscriber lost nothing
    assert stats.delivered == len(got) + total
    assert stats.routed == 2 * total
    assert_accounted(stats)
    refused = total * 2 - sum(returned)                  # publish() counts what got in
    assert refused == (dropped if policy in (Overflow.DROP_NEWEST, Overflow.FAIL) else 0)
    if policy in (Overflow.DROP_OLDEST, Overflow.LATEST):
        assert got[-1] == total - 1                      # the newest survives
    if policy is Overflow.DROP_NEWEST:
        assert got == sorted(got) and got[0] == 0


def test_qos0_messages_in_a_dead_subscribers_mailbox_are_lost_and_counted(rt: Runtime) -> None:
    ref, seen = spawn_sink(rt, crash_on={0})
    rt.pubsub.subscribe("a", ref, session="s")
    run_script(rt, *[lambda i=i: rt.pubsub.publish("a", i) for i in range(5)])
    stats = rt.pubsub.statistics()
    assert payloads(seen) == [0]
    assert stats.redelivered == 0 and stats.delivered == 0   # its handler never returned
    assert stats.dropped_dead + stats.buffered == 5   # in the mailbox: lost; later: buffered
    assert stats.dropped_dead >= 1
    assert_accounted(stats)


# -- QoS 1 and 2: redelivery (F15) ------------------------------------------------------------------
@pytest.mark.parametrize("how", ["subscribe", "attach"])
@pytest.mark.parametrize("qos", [1, 2])
def test_message_whose_handler_crashed_is_redelivered_to_the_sessions_next_actor(
        rt: Runtime, qos: int, how: str) -> None:
    first, first_seen = spawn_sink(rt, crash_on={"m0"})
    rt.pubsub.subscribe("jobs/#", first, qos=qos, session="worker")
    run_script(rt, *[lambda i=i: rt.pubsub.publish(f"jobs/{i}", f"m{i}", qos=qos)
                     for i in range(5)])
    assert not first.is_alive() and payloads(first_seen) == ["m0"]
    assert rt.pubsub.statistics().buffered == 5
    second, second_seen = spawn_sink(rt)
    if how == "subscribe":
        rt.pubsub.subscribe("jobs/#", second, qos=qos, session="worker")
    else:
        assert rt.pubsub.attach("worker", second) == 5
    settle(rt)
    assert payloads(second_seen) == [f"m{i}" for i in range(5)]   # in order, none lost
    assert second_seen[0].id == first_seen[0].id                    # the same message
    stats = rt.pubsub.statistics()
    assert stats.redelivered >= 1 and stats.dropped_dead == 0 and stats.duplicates == 0
    assert_accounted(stats)


@pytest.mark.parametrize("qos, ending, resent", [
    (1, "crash", ["m0", "m1", "m2", "m3"]),  # crashed mid-handler: resent, with all queued
    (2, "crash", ["m0", "m1", "m2", "m3"]),
    (1, "kill", ["m0", "m1", "m2", "m3"]),   # killed mid-handler: QoS 1 resends at once
    (2, "kill", ["m1", "m2", "m3"]),         # QoS 2 waits: the handler finished it, once
    (1, "stop", ["m1", "m2", "m3"]),         # stopped after finishing m0: only the queue
    (2, "stop", ["m1", "m2", "m3"]),
])
def test_unfinished_messages_of_a_session_go_to_its_next_actor(
        rt: Runtime, qos: int, ending: str, resent: list[str]) -> None:
    trigger = {f"{ending}_on": {"m0"}}
    first, first_seen = spawn_sink(rt, **trigger)
    rt.pubsub.subscribe("jobs", first, qos=qos, session="worker")
    run_script(rt, *[lambda i=i: rt.pubsub.publish("jobs", f"m{i}", qos=qos) for i in range(4)])
    assert payloads(first_seen) == ["m0"] and not first.is_alive()
    second, second_seen = spawn_sink(rt)
    rt.pubsub.attach("worker", second)
    settle(rt)
    assert payloads(second_seen) == resent
    stats = rt.pubsub.statistics()
    assert stats.duplicates == (1 if (qos, ending) == (1, "kill") else 0)
    assert stats.dropped_dead == 0
    assert_accounted(stats)


def test_plain_qos1_subscriber_that_crashes_loses_its_queue_and_it_is_counted(
        rt: Runtime) -> None:
    ref, seen = spawn_sink(rt, crash_on={"m0"})
    rt.pubsub.subscribe("jobs", ref, qos=1)
    run_script(rt, *[lambda i=i: rt.pubsub.publish("jobs", f"m{i}", qos=1) for i in range(4)])
    stats = rt.pubsub.statistics()
    assert payloads(seen) == ["m0"]
    assert stats.routed == stats.dropped_dead + stats.delivered  # nothing silently vanished
    assert stats.subscriptions == 0
    assert_accounted(stats)


@pytest.mark.parametrize("resubscribe_qos, again", [(1, True), (2, False)])
def test_qos2_session_never_gets_an_id_twice_even_when_resubscribing(
        rt: Runtime, resubscribe_qos: int, again: bool) -> None:
    rt.pubsub.publish("cfg/a", "v1", qos=2, retain=True)
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("cfg/#", ref, qos=resubscribe_qos, session="s")
    rt.pubsub.subscribe("cfg/+", ref, qos=resubscribe_qos, session="s")  # matches the retained
    settle(rt)
    assert payloads(seen) == (["v1", "v1"] if again else ["v1"])
    assert rt.pubsub.statistics().deduplicated == (0 if again else 1)


def test_qos2_message_is_handled_once_by_the_session_across_a_crash(rt: Runtime) -> None:
    recorder = Recorder()
    first = rt.spawn(Sink, recorder, crash_on={"boom"})
    rt.pubsub.subscribe("x", first, qos=2, session="s")
    for payload in ("a", "boom", "b"):
        rt.pubsub.publish("x", payload, qos=2)
    settle(rt)
    second = rt.spawn(Sink, recorder)
    rt.pubsub.attach("s", second)
    settle(rt)
    handled = [(m.payload, m.id) for m in recorder.items]
    # "boom" crashed the first actor and was redelivered; "a" (finished) was not.
    assert payloads(recorder.items) == ["a", "boom", "boom", "b"]
    assert len({i for p, i in handled if p == "a"}) == 1


def test_qos1_window_bounds_the_subscribers_mailbox_and_buffers_the_rest_in_order(
        rt: Runtime) -> None:
    shop = rt.tenant("shop", inflight_messages=3)
    gate = threading.Event()
    seen: list[Publish] = []
    ref = shop.spawn(Sink, seen, gate)
    shop.pubsub.subscribe("w", ref, qos=1)
    peaks: list[tuple[int, int]] = []
    run_script(rt, *[lambda i=i: shop.pubsub.publish("w", i, qos=1) for i in range(20)],
               lambda: peaks.append((ref.statistics().queued,
                                     shop.pubsub.statistics().buffered)), gate.set)
    queued, buffered = peaks[0]
    assert queued <= 3 and buffered >= 20 - 4
    assert payloads(seen) == list(range(20))
    assert ref.statistics().dropped == 0


@pytest.mark.parametrize("mailbox_size", [1, 2])
def test_qos1_window_never_exceeds_the_mailbox_capacity(rt: Runtime, mailbox_size: int) -> None:
    gate = threading.Event()
    ref, seen = spawn_sink(rt, gate=gate, mailbox_size=mailbox_size, overflow=Overflow.FAIL)
    rt.pubsub.subscribe("w", ref, qos=2)
    run_script(rt, *[lambda i=i: rt.pubsub.publish("w", i, qos=2) for i in range(10)], gate.set)
    assert payloads(seen) == list(range(10))
    assert ref.statistics().dropped == 0 and rt.pubsub.statistics().dropped_overflow == 0


def test_buffer_of_a_subscriber_whose_window_is_full_is_bounded(rt: Runtime) -> None:
    shop = rt.tenant("shop", inflight_messages=1, session_buffer=4)
    gate = threading.Event()
    seen: list[Publish] = []
    ref = shop.spawn(Sink, seen, gate)
    shop.pubsub.subscribe("w", ref, qos=1)
    run_script(rt, *[lambda i=i: shop.pubsub.publish("w", i, qos=1) for i in range(10)],
               gate.set)
    stats = shop.pubsub.statistics()
    assert payloads(seen) == list(range(5))     # 1 in flight + 4 buffered; the rest dropped
    assert stats.dropped_buffer == 5
    assert_accounted(stats)


# -- sessions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["stop", "kill", "shutdown"])
def test_session_buffers_while_no_actor_is_attached_and_hands_over_in_order(
        rt: Runtime, ending: str) -> None:
    first, _ = spawn_sink(rt)
    sub = rt.pubsub.subscribe("feed/#", first, qos=1, session="reader")
    if ending == "kill":
        rt.kill(first)
    else:
        rt.stop(first, reason="normal" if ending == "stop" else "shutdown")
    assert sub.active and sub.ref is None and sub.session == "reader"
    for i in range(5):
        assert rt.pubsub.publish(f"feed/{i}", i, qos=i % 3) == 1
    assert rt.pubsub.statistics().buffered == 5
    second, seen = spawn_sink(rt)
    assert rt.pubsub.attach("reader", second) == 5
    settle(rt)
    assert payloads(seen) == list(range(5))
    assert sub.ref == second
    rt.pubsub.publish("feed/x", "live")
    settle(rt)
    assert payloads(seen)[-1] == "live"


def test_session_buffer_is_bounded_and_overflow_is_counted(rt: Runtime) -> None:
    shop = rt.tenant("shop", session_buffer=3)
    first = shop.spawn(Sink, [])
    shop.pubsub.subscribe("a", first, qos=1, session="s")
    rt.stop(first)
    routed = [shop.pubsub.publish("a", i, qos=1) for i in range(10)]
    assert routed == [1, 1, 1] + [0] * 7
    stats = shop.pubsub.statistics()
    assert (stats.buffered, stats.dropped_buffer) == (3, 7)
    seen: list[Publish] = []
    shop.pubsub.attach("s", shop.spawn(Sink, seen))
    settle(rt)
    assert payloads(seen) == [0, 1, 2]  # the oldest are kept; newer ones were refused
    assert_accounted(shop.pubsub.statistics())


def test_attaching_a_new_actor_takes_the_session_over_from_a_live_one(rt: Runtime) -> None:
    old, old_seen = spawn_sink(rt)
    rt.pubsub.subscribe("a", old, session="s")
    new, new_seen = spawn_sink(rt)
    rt.pubsub.attach("s", new)
    rt.pubsub.publish("a", 1)
    settle(rt)
    assert (old_seen, payloads(new_seen)) == ([], [1])
    assert old.is_alive()
    rt.stop(old)                              # the old actor's exit does not detach the new one
    rt.pubsub.publish("a", 2)
    settle(rt)
    assert payloads(new_seen) == [1, 2]


def test_end_session_drops_its_subscriptions_and_buffer(rt: Runtime) -> None:
    ref, _ = spawn_sink(rt)
    sub = rt.pubsub.subscribe("a", ref, qos=1, session="s")
    rt.stop(ref)
    rt.pubsub.publish("a", 1, qos=1)
    assert rt.pubsub.end_session("s") is True
    assert rt.pubsub.end_session("s") is False
    stats = rt.pubsub.statistics()
    assert not sub.active and (stats.sessions, stats.buffered, stats.dropped_dead) == (0, 0, 1)
    assert rt.pubsub.publish("a", 2) == 0


def test_number_of_sessions_is_bounded_per_namespace(rt: Runtime) -> None:
    shop = rt.tenant("shop", sessions=2)
    ref = shop.spawn(Sink, [])
    shop.pubsub.subscribe("a", ref, session="one")
    shop.pubsub.attach("two", ref)
    with pytest.raises(ValueError, match="'sessions' limit"):
        shop.pubsub.subscribe("a", ref, session="three")
    shop.pubsub.subscribe("b", ref, session="one")  # an existing one is fine


def test_one_actor_can_serve_several_sessions(rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("a", ref, session="s1")
    rt.pubsub.subscribe("b", ref, session="s2")
    rt.pubsub.publish("a", 1)
    rt.pubsub.publish("b", 2)
    settle(rt)
    assert payloads(seen) == [1, 2]


# -- last will (F14) ---------------------------------------------------------------------------------
class Victim(Actor):
    def receive(self, message: Any) -> None:
        match message:
            case ("link", ref):
                self.link(ref)
            case "crash":
                raise Boom("crash")
            case "stop":
                self.stop()


@pytest.mark.parametrize("ending, published", [
    ("crash", True),          # an exception
    ("kill", True),           # "killed"
    ("linked_crash", True),   # an exit signal carrying an exception
    ("stop", False),          # "normal"
    ("self_stop", False),
    ("stop_shutdown", False),  # "shutdown"
    ("runtime_shutdown", False),
])
def test_last_will_is_published_exactly_once_on_abnormal_exit_only(
        rt: Runtime, ending: str, published: bool) -> None:
    recorder = Recorder()
    watcher = rt.spawn(Sink, recorder)
    rt.pubsub.subscribe("wills/#", watcher, qos=1)
    victim = rt.spawn(Victim)
    rt.pubsub.set_will(victim, "wills/victim", b"offline", qos=1)
    if ending == "crash":
        victim.tell("crash")
    elif ending == "kill":
        rt.kill(victim)
    elif ending == "linked_crash":
        buddy = rt.spawn(Victim)
        victim.tell(("link", buddy))
        settle(rt)
        buddy.tell("crash")
    elif ending == "stop":
        rt.stop(victim)
    elif ending == "self_stop":
        victim.tell("stop")
    elif ending == "stop_shutdown":
        rt.stop(victim, reason="shutdown")
    else:
        rt.shutdown()
    settle(rt) if ending != "runtime_shutdown" else None
    wait_until(lambda: not victim.is_alive(), message="the victim's exit")
    rt.kill(victim)  # a second ending never repeats the will
    if ending != "runtime_shutdown":
        settle(rt)
    expected = [Publish("wills/victim", b"offline", 1, False, 1)] if published else []
    assert recorder.items == expected
    assert rt.pubsub.statistics().wills == int(published)


def test_retained_will_is_kept_for_later_subscribers(rt: Runtime) -> None:
    victim = rt.spawn(Victim)
    rt.pubsub.set_will(victim, "status/victim", "dead", retain=True)
    rt.kill(victim)
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("status/+", ref)
    settle(rt)
    assert [(m.payload, m.retain) for m in seen] == [("dead", True)]


def test_a_new_will_replaces_the_old_and_a_cleared_will_is_never_published(rt: Runtime) -> None:
    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("#", ref)
    first, second = rt.spawn(Victim), rt.spawn(Victim)
    rt.pubsub.set_will(first, "w", "old")
    rt.pubsub.set_will(first, "w", "new")
    rt.pubsub.set_will(second, "w", "cleared")
    assert rt.pubsub.clear_will(second) is True and rt.pubsub.clear_will(second) is False
    rt.kill(first)
    rt.kill(second)
    settle(rt)
    assert payloads(seen) == ["new"]


def test_setting_a_will_for_a_dead_actor_raises_actor_dead(rt: Runtime) -> None:
    victim = rt.spawn(Victim)
    rt.kill(victim)
    with pytest.raises(ActorDead):
        rt.pubsub.set_will(victim, "w", "x")


def test_will_of_an_actor_that_crashed_in_on_start_is_published(rt: Runtime) -> None:
    class BadStart(Actor):
        def on_start(self) -> None:
            self.runtime.pubsub.set_will(self.ref, "w", "never started")
            raise Boom("no")

    ref, seen = spawn_sink(rt)
    rt.pubsub.subscribe("w", ref)
    rt.spawn(BadStart)
    settle(rt)
    assert payloads(seen) == ["never started"]


# -- shared subscriptions ---------------------------------------------------------------------------
def test_shared_subscription_gives_each_message_to_one_member_round_robin(rt: Runtime) -> None:
    members = [spawn_sink(rt) for _ in range(3)]
    for ref, _ in members:
        rt.pubsub.subscribe("$share/workers/jobs/+", ref, qos=1)
    outsider, outsider_seen = spawn_sink(rt)
    rt.pubsub.subscribe("jobs/+", outsider)
    assert [rt.pubsub.publish(f"jobs/{i}", i, qos=1) for i in range(9)] == [2] * 9
    settle(rt)
    assert [payloads(seen) for _, seen in members] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert payloads(outsider_seen) == list(range(9))   # a plain subscription gets them all


def test_two_share_groups_on_one_filter_each_get_every_message(rt: Runtime) -> None:
    a, a_seen = spawn_sink(rt)
    b, b_seen = spawn_sink(rt)
    rt.pubsub.subscribe("$share/g1/x", a)
    rt.pubsub.subscribe("$share/g2/x", b)
    assert rt.pubsub.publish("x", 1) == 2
    settle(rt)
    assert payloads(a_seen) == payloads(b_seen) == [1]


@pytest.mark.parametrize("session", [None, "member-a"])
def test_crashed_members_unfinished_share_goes_to_the_other_members_not_its_buffer(
        rt: Runtime, session: str | None) -> None:
    a, a_seen = spawn_sink(rt, crash_on={0})
    b, b_seen = spawn_sink(rt)
    rt.pubsub.subscribe("$share/g/jobs", a, qos=1, session=session)
    rt.pubsub.subscribe("$share/g/jobs", b, qos=1)
    run_script(rt, *[lambda i=i: rt.pubsub.publish("jobs", i, qos=1) for i in range(6)])
    assert payloads(a_seen) == [0] and not a.is_alive()
    assert sorted(payloads(b_seen)) == list(range(6))     # all of them, 0 included
    stats = rt.pubsub.statistics()
    assert stats.buffered == 0 and stats.redelivered >= 1 and stats.dropped_dead == 0
    if session is not None:                               # nothing waits in a's session
        replacement, replacement_seen = spawn_sink(rt)
        assert rt.pubsub.attach(session, replacement) == 0
        rt.pubsub.publish("jobs", "next", qos=1)
        settle(rt)
        assert payloads(replacement_seen) + payloads(b_seen)[6:] == ["next"]
    assert_accounted(rt.pubsub.statistics())


def test_shared_group_without_live_members_buffers_in_a_session_member(rt: Runtime) -> None:
    a, _ = spawn_sink(rt)
    rt.pubsub.subscribe("$share/g/jobs", a, qos=1, session="a")
    rt.stop(a)
    assert rt.pubsub.publish("jobs", 1, qos=1) == 1
    b, seen = spawn_sink(rt)
    rt.pubsub.attach("a", b)
    settle(rt)
    assert payloads(seen) == [1]


def test_shared_group_whose_only_member_died_drops_and_counts(rt: Runtime) -> None:
    a, _ = spawn_sink(rt)
    rt.pubsub.subscribe("$share/g/jobs", a, qos=1)
    rt.stop(a)
    assert rt.pubsub.publish("jobs", 1, qos=1) == 0
    assert rt.pubsub.statistics().subscriptions == 0


def test_unsubscribing_the_last_member_removes_the_group(rt: Runtime) -> None:
    a, seen = spawn_sink(rt)
    sub = rt.pubsub.subscribe("$share/g/jobs", a)
    assert sub.group == "g" and sub.filter == "$share/g/jobs"
    rt.pubsub.unsubscribe(sub)
    assert rt.pubsub.publish("jobs", 1) == 0


def test_share_handed_to_another_member_is_capped_at_that_members_qos(rt: Runtime) -> None:
    a, a_seen = spawn_sink(rt, crash_on={"x"})
    b, b_seen = spawn_sink(rt)
    rt.pubsub.subscribe("$share/g/t", a, qos=2)
    rt.pubsub.subscribe("$share/g/t", b, qos=1)
    rt.pubsub.publish("t", "x", qos=2)
    settle(rt)
    assert [(m.payload, m.qos) for m in a_seen] == [("x", 2)]
    assert [(m.payload, m.qos) for m in b_seen] == [("x", 1)]


# -- with a real supervisor (F15: redelivered after restart) ----------------------------------------
class SessionWorker(Actor):
    """Subscribes in ``on_start`` with a session, so every incarnation resumes it; the first
    attempt at ``"poison-once"`` crashes."""

    def __init__(self, handled: Recorder, attempts: dict[int, int]) -> None:
        self.handled = handled
        self.attempts = attempts

    def on_start(self) -> None:
        self.runtime.pubsub.subscribe("orders/+", self.ref, qos=1, session="order-worker")

    def receive(self, message: Any) -> None:
        if isinstance(message, Publish):
            self.attempts[message.id] = self.attempts.get(message.id, 0) + 1
            if message.payload == "poison-once" and self.attempts[message.id] == 1:
                raise Boom("first attempt fails")
            self.handled.append(message.payload)


def test_supervised_session_worker_gets_the_message_it_crashed_on_after_its_restart(
        rt: Runtime) -> None:
    supervisors = pytest.importorskip("supervisors")
    handled, attempts = Recorder(), {}
    sup = rt.spawn(supervisors.Supervisor, strategy=supervisors.Strategy.ONE_FOR_ONE,
                   intensity=5, children=[supervisors.ChildSpec(
                       "worker", SessionWorker, args=(handled, attempts))])
    settle(rt)
    for payload in ("a", "poison-once", "b", "c"):
        rt.pubsub.publish("orders/1", payload, qos=1)
    settle(rt)
    wait_until(lambda: len(handled) == 4, message="every order handled")
    assert handled.items == ["a", "poison-once", "b", "c"]     # in order, nothing lost
    assert sorted(attempts.values()) == [1, 1, 1, 2]
    (info,) = supervisors.which_children(sup)
    assert isinstance(info.ref, ActorRef) and info.ref.is_alive()
    stats = rt.pubsub.statistics()
    assert stats.redelivered >= 1 and stats.dropped_dead == 0 and stats.sessions == 1


# -- re-entrancy -----------------------------------------------------------------------------------
class Relay(Actor):
    """Publishes n + 1 on its own topic from its handler, up to 5."""

    def __init__(self, seen: list[Publish]) -> None:
        self.seen = seen

    def on_start(self) -> None:
        self.runtime.pubsub.subscribe("relay", self.ref, qos=1)

    def receive(self, message: Publish) -> None:
        self.seen.append(message)
        if message.payload < 5:
            self.runtime.pubsub.publish("relay", message.payload + 1, qos=1)


def test_subscriber_publishing_from_its_own_handler_receives_its_messages_in_order(
        rt: Runtime) -> None:
    seen: list[Publish] = []
    rt.spawn(Relay, seen)
    settle(rt)
    rt.pubsub.publish("relay", 0, qos=1)
    settle(rt)
    assert payloads(seen) == [0, 1, 2, 3, 4, 5]
    assert_accounted(rt.pubsub.statistics())


# -- concurrency: many publishers, members killed under load ----------------------------------------
def test_qos1_shared_group_under_load_with_a_member_killed_loses_nothing() -> None:
    from actors.testing import ManualClock
    with Runtime(workers=3, clock=ManualClock(), node="test") as rt:
        recorder = Recorder()
        members = [rt.spawn(Sink, recorder) for _ in range(3)]
        for i, ref in enumerate(members):
            rt.pubsub.subscribe("$share/g/load/#", ref, qos=1, session=f"m{i}")
        publishers = [rt.spawn(Script) for _ in range(2)]
        for p, pub in enumerate(publishers):
            pub.tell([lambda p=p, i=i: rt.pubsub.publish(f"load/{p}", (p, i), qos=1)
                      for i in range(400)])
        wait_until(lambda: len(recorder) > 50, message="some deliveries")
        rt.kill(members[0])
        rt.pubsub.attach("m0", rt.spawn(Sink, recorder))
        settle(rt)
        got = [m.payload for m in recorder.items]
        assert set(got) == {(p, i) for p in range(2) for i in range(400)}
        stats = rt.pubsub.statistics()
        assert len(got) - 800 == stats.duplicates  # at least once; every extra one is counted
        assert stats.dropped_dead == 0 and stats.inflight == 0 and stats.buffered == 0
        assert_accounted(stats)


# -- statistics and representation ----------------------------------------------------------------
def test_statistics_are_a_frozen_value_and_reprs_explain_state(rt: Runtime) -> None:
    ref, _ = spawn_sink(rt)
    sub = rt.pubsub.subscribe("a", ref, qos=1, session="s")
    stats = rt.pubsub.statistics()
    with pytest.raises(AttributeError):  # a frozen dataclass's FrozenInstanceError
        stats.routed = 5  # type: ignore[misc]  # frozen on purpose: the test
    assert (stats.subscriptions, stats.sessions) == (1, 1)
    assert "session='s'" in repr(sub) and "qos=1" in repr(sub)
    assert "PubSub" in repr(rt.pubsub)
    assert isinstance(rt.pubsub, PubSub) and isinstance(sub, Subscription)
    assert isinstance(rt.tenant("acme").pubsub, TenantPubSub)


def test_default_limits_are_documented_values() -> None:
    assert dict(DEFAULT_LIMITS) == {"retained_messages": 10_000, "session_buffer": 1_000,
                                    "sessions": 10_000, "inflight_messages": 10_000}


@pytest.mark.parametrize("limits", [{"session_buffer": 0}, {"sessions": -1},
                                    {"retained_messages": "many"}, {"inflight_messages": True}])
def test_an_invalid_pubsub_limit_is_a_value_error_naming_it(rt: Runtime,
                                                           limits: dict[str, Any]) -> None:
    (key,) = limits
    with pytest.raises(ValueError, match=key):
        rt.tenant("shop", **limits)
    with pytest.raises(ValueError, match=key):
        PubSub(rt, **limits)
    rt.tenant("later")
    rt.tenant("later", **limits)       # an update is checked when pub/sub reads it
    with pytest.raises(ValueError, match=key):
        rt.tenant("later").pubsub.publish("a", 1)


def test_unknown_system_limit_is_rejected(rt: Runtime) -> None:
    with pytest.raises(ValueError, match="unknown pub/sub limit"):
        PubSub(rt, max_things=3)
