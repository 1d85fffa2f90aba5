"""``MqttIngest``: MQTT readings into durable queues, at least once - the broker gets its PUBACK
only after the readings are on disk in a queue.

One client per node for every tenant: ``MqttIngest(options, route)`` subscribes to
``tenants/+/devices/+/readings`` (or, with ``group="g"``, the shared subscription
``$share/g/tenants/+/devices/+/readings``, so several nodes split the load and each reading goes
to one of them), and ``route(tenant)`` names the tenant's ``DurableQueue`` (``None``: the tenant
is unknown here). ``route`` may also be one ``DurableQueue`` that takes every reading.

The actor owns an ``MqttSource`` (whose paho thread is the I/O boundary: it reads the socket,
validates each message, dead-letters bad ones). The source wakes the actor when readings arrive
(one message per empty -> non-empty transition, so the mailbox never fills with wake-ups); each
turn takes up to ``batch_size`` readings, groups them by tenant, ``put_many``s each tenant's
rows ``(tenant, device, ts, temp, hum)`` into its queue (one transaction per tenant and batch),
and acks each group once its put returned (committed). Readings of an unknown tenant are
dead-lettered (``dead_letters``, the node's queue, record ``{"topic", "tenant", "reason",
"kind": "unknown_tenant", "payload", "size"}``), counted, then acked. A queue that refuses a
batch (``QueueFull``, the disk) keeps that tenant's readings in the actor and retries after
``retry_delay``: meanwhile nothing of them is acked, the source's hand-off fills to ``capacity``
and the broker stops sending - backpressure all the way to the broker. A crash between the put
and the ack makes the broker redeliver: the reading is queued twice and the idempotent SQL
store keeps it once.

``subscribe(tenant)``/``unsubscribe(tenant)`` (messages ``("subscribe", tenant)`` and
``("unsubscribe", tenant)``) narrow a node to the tenants it hosts (a cluster places tenants on
nodes): start with ``filters=[]`` and add each tenant's filter as it arrives. Under a supervisor,
pass ``filters`` as a function returning the current list: a restarted incarnation subscribes to
what the node hosts then, not to what it hosted when the spec was written.

Reporting without asking: ``report(statistics)`` (optional) is called with
``MqttIngestStatistics`` after every ``tick`` and when the actor stops, so that a progress line
reads the last report instead of sending an ``ask`` to a busy actor. The counters are the
incarnation's; what must survive a restart (what each tenant's queue received) is counted by
the queues the ``route`` returns.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .._actor import Actor
from .._errors import MailboxFull
from ..queue._routed import put_each
from ..queue._types import QueueError
from ._client import MqttOptions
from ._mqtt_source import BadMessage, Inbound, MqttSource, MqttSourceStatistics
from ._readings import readings_filter, readings_topic

__all__ = ["MqttIngest", "MqttIngestStatistics", "shared_filter"]

_READY = "sv-mqtt-ready"
_TICK = "sv-mqtt-tick"
_RETRY = "sv-mqtt-retry"


def shared_filter(group: str, filter: str) -> str:
    """``$share/<group>/<filter>``; ``ValueError`` for a group with ``/``, ``+``, ``#`` or
    nothing in it."""
    if not isinstance(group, str) or not group or any(c in group for c in "/+#\0"):
        raise ValueError(f"MQTT shared subscription group must be a non-empty name without "
                         f"'/', '+', '#', got {group!r}")
    return f"$share/{group}/{filter}"


@dataclass(frozen=True)
class MqttIngestStatistics:
    """``queued``: readings committed to their tenant's queue (and then acked); ``unknown``:
    readings of a tenant that ``route`` did not know (dead-lettered); ``queued_by_tenant``;
    ``held``: readings waiting for a queue that refused them; ``refusals``: refused puts;
    ``source``: the MQTT source's own counters (``dead_lettered`` there: bad topics and
    payloads)."""

    queued: int
    unknown: int
    held: int
    refusals: int
    batches: int
    dead_lettered: int          # bad payloads (the source's) + unknown tenants
    connected: bool
    subscribed: bool
    source: MqttSourceStatistics | None
    queued_by_tenant: dict[str, int] = field(default_factory=dict)


class MqttIngest(Actor):
    """``MqttIngest(options, route, filters=None, tenant=None, group=None, capacity=1000,
    batch_size=500, dead_letters=None, max_payload_bytes=4096, retry_delay=0.5, tick=1.0,
    report=None)``;
    see the module docstring. ``tenant`` accepts only that tenant's readings (a per-tenant
    ingest, as before one client per node). ``ask("statistics")`` answers
    ``MqttIngestStatistics``. ``tick`` is a safety poll (a wake-up is never lost, but costs
    nothing to double-check)."""

    def __init__(self, options: MqttOptions, route: Any, *,
                 filters: Sequence[str] | Callable[[], Sequence[str]] | None = None,
                 tenant: str | None = None, group: str | None = None, capacity: int = 1000,
                 batch_size: int = 500, dead_letters: Any = None, max_payload_bytes: int = 4096,
                 retry_delay: float = 0.5, tick: float = 1.0,
                 report: Callable[[MqttIngestStatistics], None] | None = None) -> None:
        if hasattr(route, "put_many"):
            queue = route
            self._route: Callable[[str], Any] = lambda tenant: queue
        elif callable(route):
            self._route = route
        else:
            raise TypeError(f"MqttIngest route must be a DurableQueue or a function tenant -> "
                            f"DurableQueue | None, got {type(route).__name__}")
        if callable(filters):
            filters = filters()
        if filters is None:
            filters = [readings_filter(tenant)]
        self._group = group
        if group is not None:
            filters = [shared_filter(group, f) for f in filters]
        self._args = dict(filters=list(filters), tenant=tenant, capacity=capacity,
                          dead_letters=dead_letters, max_payload_bytes=max_payload_bytes)
        self._dead = dead_letters
        self._options = options
        self._batch = batch_size
        self._retry = retry_delay
        self._tick = tick
        self._report = report
        self._held: dict[str, list[Inbound]] = {}  # tenant -> readings a queue refused
        self._c: Counter[str] = Counter()
        self._by_tenant: Counter[str] = Counter()
        self.source: MqttSource | None = None

    def on_start(self) -> None:
        ref = self.ref

        def ready() -> None:  # the paho thread
            try:
                ref.tell(_READY)
            except MailboxFull:
                pass  # it has plenty to do already
        self.source = MqttSource(self._options, on_ready=ready, **self._args).start()
        self.send_after(self._tick, _TICK, key=_TICK)

    def receive(self, message: Any) -> Any:
        if message == _READY or message == _TICK or message == _RETRY:
            self._pump(retry=message == _RETRY)
            if message == _TICK:
                self.send_after(self._tick, _TICK, key=_TICK)
                if self._report is not None:
                    self._report(self.statistics())
        elif message == "statistics":
            return self.statistics()
        elif isinstance(message, tuple) and len(message) == 2 and message[0] in ("subscribe",
                                                                                 "unsubscribe"):
            self._subscription(message[0], message[1])
        return None

    def statistics(self) -> MqttIngestStatistics:
        src = self.source.statistics() if self.source is not None else None
        return MqttIngestStatistics(
            queued=self._c["queued"], unknown=self._c["unknown"],
            held=sum(len(v) for v in self._held.values()), refusals=self._c["refusals"],
            batches=self._c["batches"],
            dead_lettered=self._c["unknown"] + (src.dead_lettered if src else 0),
            connected=bool(src and src.connected), subscribed=bool(src and src.subscribed),
            source=src,
            queued_by_tenant=dict(self._by_tenant))

    def _subscription(self, action: str, tenant: str) -> None:
        f = readings_filter(tenant)
        if self._group is not None:
            f = shared_filter(self._group, f)
        assert self.source is not None
        (self.source.subscribe if action == "subscribe" else self.source.unsubscribe)([f])

    def _pump(self, retry: bool = False) -> None:
        src = self.source
        assert src is not None
        if self._held:
            if not retry:
                return  # a queue refused a batch: wait for the retry, keep the order
            held, self._held = self._held, {}
        else:
            taken = src.take(self._batch)
            if not taken:
                return
            held = defaultdict(list)
            for item in taken:
                held[item.reading.tenant].append(item)
        self._c["batches"] += 1
        routed: list[tuple[str, list[Inbound], Any]] = []
        for tenant, items in held.items():
            queue = self._route(tenant)
            if queue is None:
                self._unknown(tenant, items)
            else:
                routed.append((tenant, items, queue))
        if routed:
            # every tenant's rows in one call: queues that share a file share one transaction.
            # Lists, not tuples: msgpack packs them natively (a tuple is an extension type).
            try:
                outcomes = put_each([(queue, [[r.tenant, r.device, r.ts, r.temp, r.hum]
                                              for r in (i.reading for i in items)])
                                     for _t, items, queue in routed])
            except (OSError, QueueError) as exc:  # the shared transaction failed: none stored
                outcomes = [exc] * len(routed)
            for (tenant, items, _q), outcome in zip(routed, outcomes):
                if isinstance(outcome, (OSError, QueueError)):  # full, unavailable, closed
                    self._hold(tenant, items, outcome)  # (the tenant stopped): ack nothing
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome  # a programming error (an unencodable row): crash loudly
                src.ack(items)  # committed: now the broker may forget them
                self._c["queued"] += len(items)
                self._by_tenant[tenant] += len(items)
        if self._held:
            self.send_after(self._retry, _RETRY, key=_RETRY)
        elif src.pending():
            self.ref.tell(_READY)  # the next batch in the next turn

    def _hold(self, tenant: str, items: list[Inbound], exc: Exception) -> None:
        self._held[tenant] = items
        self._c["refusals"] += 1
        self.log.warning("ingest queue refused a batch; retrying", tenant=tenant,
                         error=str(exc)[:200], held=len(items), retry_in=self._retry)

    def _unknown(self, tenant: str, items: list[Inbound]) -> None:
        """Dead-letter readings of a tenant that ``route`` does not know, then ack them."""
        assert self.source is not None
        records: list[dict[str, Any]] = []
        for i in items:
            r = i.reading
            body = json.dumps({"ts": r.ts, "temp": r.temp, "hum": r.hum}).encode()
            records.append({"topic": readings_topic(r.tenant, r.device), "tenant": r.tenant,
                            "reason": f"unknown_tenant: {r.tenant!r} is not hosted here",
                            "kind": "unknown_tenant", "payload": body, "size": len(body)})
        if self._dead is not None:
            try:
                if callable(self._dead) and not hasattr(self._dead, "put_many"):
                    for record, i in zip(records, items):
                        self._dead(BadMessage(record["topic"], record["payload"], record["size"],
                                              "unknown_tenant", record["reason"], i.qos))
                else:
                    self._dead.put_many(records)
            except Exception as exc:  # (a callable may raise anything): nothing acked, retried
                self._hold(tenant, items, exc)
                return
        self.source.ack(items)
        self._c["unknown"] += len(items)
        if self._c["unknown"] == len(items) or self._c["unknown"] % 1000 < len(items):
            self.log.warning("mqtt readings of an unknown tenant dead-lettered", tenant=tenant,
                             count=self._c["unknown"])

    def on_stop(self, reason: Any) -> None:
        if self.source is not None:
            self.source.stop()  # unacked readings stay in the broker's session
        if self._report is not None:
            self._report(self.statistics())
