"""Pub/sub across nodes: a publish reaches subscribers on other nodes, once per node."""

from __future__ import annotations

from actors import Actor
from actors.pubsub import Publish
from actors.testing import Recorder, wait_until
from supervisors.cluster import ClusterPubSub
from supervisors.cluster.testing import local_cluster


class Sink(Actor):
    def __init__(self, recorder, tag):
        self.recorder, self.tag = recorder, tag

    def receive(self, message):
        if isinstance(message, Publish):
            self.recorder.append((self.tag, message.topic, message.payload))


def _interest(node, peer_id, filter, namespace=None):
    peer = node._peer(peer_id)
    return peer is not None and filter in peer.interest.get(namespace, {})


def test_a_publish_reaches_subscribers_on_other_nodes_with_one_forward_per_node():
    with local_cluster(3) as (a, b, c):
        assert isinstance(a.runtime.pubsub, ClusterPubSub)
        seen = Recorder()
        for tag in ("b1", "b2"):
            b.runtime.pubsub.subscribe("plant/+/temp", b.runtime.spawn(Sink, seen, tag))
        c.runtime.pubsub.subscribe("plant/#", c.runtime.spawn(Sink, seen, "c1"))
        wait_until(lambda: _interest(a, "n2", "plant/+/temp") and _interest(a, "n3", "plant/#"),
                   3.0, "the subscriptions to be known on n1")
        a.runtime.pubsub.publish("plant/7/temp", 21.5)
        assert sorted(seen.wait_for(3)) == [("b1", "plant/7/temp", 21.5),
                                            ("b2", "plant/7/temp", 21.5),
                                            ("c1", "plant/7/temp", 21.5)]
        assert a.pubsub.forwarded == 2          # one per node, not one per subscriber


def test_a_node_without_a_matching_subscription_receives_nothing():
    with local_cluster(2) as (a, b):
        seen = Recorder()
        b.runtime.pubsub.subscribe("alarms/#", b.runtime.spawn(Sink, seen, "b"))
        wait_until(lambda: _interest(a, "n2", "alarms/#"), 3.0, "the subscription to be known")
        a.runtime.pubsub.publish("plant/1/temp", 1.0)
        a.runtime.pubsub.publish("alarms/fire", "!")
        assert seen.wait_for(1) == [("b", "alarms/fire", "!")]
        assert a.pubsub.forwarded == 1 and b.statistics()["records_in"] == 1


def test_tenants_publish_across_nodes_only_within_their_own_namespace():
    with local_cluster(2) as (a, b):
        seen = Recorder()
        acme_sink = b.runtime.tenant("acme").spawn(Sink, seen, "acme")
        globex_sink = b.runtime.tenant("globex").spawn(Sink, seen, "globex")
        b.runtime.tenant("acme").pubsub.subscribe("#", acme_sink)
        b.runtime.tenant("globex").pubsub.subscribe("#", globex_sink)
        wait_until(lambda: _interest(a, "n2", "#", "acme") and _interest(a, "n2", "#", "globex"),
                   3.0, "the tenants' subscriptions to be known")
        a.runtime.tenant("acme").pubsub.publish("readings/1", "acme-only")
        assert seen.wait_for(1) == [("acme", "readings/1", "acme-only")]
        a.runtime.pubsub.publish("readings/1", "system")   # the system namespace: nobody there
        a.runtime.tenant("acme").pubsub.publish("readings/2", "sync")
        assert seen.wait_for(2)[1] == ("acme", "readings/2", "sync")
        assert len(seen) == 2


def test_a_retained_message_reaches_a_later_subscriber_on_another_node():
    with local_cluster(2) as (a, b):
        a.runtime.pubsub.publish("config/rate", 5, retain=True)
        wait_until(lambda: b.pubsub.local.statistics().retained == 1, 3.0,
                   "the retained message to be forwarded")
        seen = Recorder()
        b.runtime.pubsub.subscribe("config/#", b.runtime.spawn(Sink, seen, "late"))
        assert seen.wait_for(1) == [("late", "config/rate", 5)]
