"""The in-process pub/sub registry with MQTT semantics (``runtime.pubsub``).

    from actors import Actor
    from actors.pubsub import Publish

    class Thermometer(Actor):
        def on_start(self):
            self.runtime.pubsub.subscribe("plant/+/temp", self.ref, qos=1, session="thermo")
        def receive(self, message):
            match message:
                case Publish(topic=topic, payload=value):
                    ...

    rt.pubsub.publish("plant/7/temp", 21.5, qos=1, retain=True)
    rt.tenant("acme").pubsub.publish("plant/7/temp", 19.0)   # acme's own namespace

The contract (retained messages, QoS 0/1/2, sessions, wills, shared subscriptions, tenants) is
in the docstring of ``actors.pubsub._registry``; topic rules are ``actors.topics``.
"""

from ._registry import PubSub
from ._trie import FilterTrie, TopicTrie
from ._types import DEFAULT_LIMITS, Publish, PubSubStatistics, Subscription
from ._view import TenantPubSub

__all__ = ["PubSub", "TenantPubSub", "Publish", "Subscription", "PubSubStatistics",
           "DEFAULT_LIMITS", "FilterTrie", "TopicTrie"]
