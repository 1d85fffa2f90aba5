"""Prometheus metrics of one node, computed when scraped (no sampling thread, no global registry).

    from streamvisor.metrics import metrics_for
    m = metrics_for(rt)                       # one per runtime, created on first use
    m.add_queue(queue, tenant="acme")         # DurableQueue.stats() as depths
    m.add_source("mqtt", lambda: ingest.ask("statistics", timeout=1.0))
    server = streamvisor.top.start_http(rt, "127.0.0.1", 0)   # /metrics and /status.json

| metric (labels ``node``, ``tenant`` on each)            | type    | from                        |
|---------------------------------------------------------|---------|-----------------------------|
| ``streamvisor_messages_processed_total``                | counter | actors' ``processed``       |
| ``streamvisor_messages_dropped_total``                  | counter | actors' overflow ``dropped``|
| ``streamvisor_dead_letters_total{source, reason}``      | counter | runtime (``mailbox``) and   |
|                                                         |         | each source's ``rejected``  |
| ``streamvisor_child_restarts``                          | gauge   | live children's restarts    |
| ``streamvisor_actors``                                  | gauge   | live actors                 |
| ``streamvisor_mailbox_depth{actor}``                    | gauge   | the ``top_n`` deepest (> 0) |
| ``streamvisor_mailbox_depth_sum``                       | gauge   | every mailbox of the tenant |
| ``streamvisor_queue_depth{queue, state}``               | gauge   | ``DurableQueue.stats()``    |
| ``streamvisor_queue_acked_total{queue}``                | counter | ``DurableQueue.stats()``    |
| ``streamvisor_connector_events_total{connector, event}``| counter | a source's counters         |
| ``streamvisor_connector_state{connector, field}``       | gauge   | a source's gauges           |
| ``streamvisor_run_queue``, ``streamvisor_workers``      | gauge   | ``Runtime.statistics()``    |

Per-tenant counters stay monotonic across actor exits: each scrape remembers every live actor's
last values and keeps those of actors that exited since (what an actor did between the last
scrape and its exit lands in tenant ``""``, the node's remainder, so the node total is exact).
``streamvisor_child_restarts`` is a gauge: each live child carries its cumulative count, and a
child that is gone for good takes its count with it. Cardinality is bounded by tenants x a few
series, plus ``top_n`` actor series.

A scrape blocks the HTTP thread: it walks every live actor (about 1 µs each) and asks each
registered queue for its stats (one read). Thread-safe; scrapes are serialised.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import weakref
from collections import defaultdict
from typing import Any, Callable, Iterable, NamedTuple

from actors import ActorRef, ActorStatistics, Runtime
from actors.lowlevel import check_number

__all__ = ["ActorSample", "NodeMetrics", "metrics_for"]

_BY_RUNTIME: "weakref.WeakKeyDictionary[Runtime, NodeMetrics]" = weakref.WeakKeyDictionary()
_BY_RUNTIME_LOCK = threading.Lock()
GAUGE_FIELDS = frozenset({"connected", "pending", "peak", "capacity", "holding", "waiting",
                          "in_flight"})


def metrics_for(rt: Runtime, *, top_n: int | None = None) -> "NodeMetrics":
    """The ``NodeMetrics`` of ``rt`` (created on first use; it lives as long as ``rt``: the
    table is keyed weakly by runtime, so runtimes side by side never share one). ``top_n``
    (default 20) sets how many mailboxes ``streamvisor_mailbox_depth`` shows."""
    with _BY_RUNTIME_LOCK:
        m = _BY_RUNTIME.get(rt)
        if m is None:
            m = _BY_RUNTIME[rt] = NodeMetrics(rt, top_n=20 if top_n is None else top_n)
        elif top_n is not None:
            m.top_n = _top_n(top_n)
        return m


def _top_n(value: Any) -> int:
    return check_number(value, "top_n", integer=True, low=0, high=10_000)


class ActorSample(NamedTuple):
    ref: ActorRef
    tenant: str | None
    stats: ActorStatistics


def _numbers(value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else {}


class NodeMetrics:
    """What the node exports; see the module docstring. ``add_*`` are safe from any thread."""

    def __init__(self, rt: Runtime, *, top_n: int = 20) -> None:
        self.runtime = rt
        self.top_n = _top_n(top_n)
        # _lock guards the registrations and the tally; collect() holds it for a whole scrape.
        self._lock = threading.Lock()
        self._queues: list[tuple[str, str, Any]] = []
        self._sources: list[tuple[str, str, Callable[[], Any]]] = []
        self._roots: list[ActorRef] = []
        self._last: dict[ActorRef, tuple[str, int, int]] = {}
        self._retired: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._registry: Any = None

    # -- registration -----------------------------------------------------------------------------
    def add_queue(self, queue: Any, *, name: str | None = None, tenant: str | None = None) -> None:
        """Export ``queue.stats()`` (a ``DurableQueue``) as depths, labelled ``name`` (default:
        the queue's name) and ``tenant``."""
        if not callable(getattr(queue, "stats", None)):
            raise TypeError(f"add_queue needs an object with stats(), got {queue!r}")
        with self._lock:
            self._queues.append((name or str(getattr(queue, "name", "queue")), tenant or "", queue))

    def add_source(self, name: str, statistics: Callable[[], Any], *,
                   tenant: str | None = None) -> None:
        """Export a connector's counters: ``statistics()`` returns a dataclass or a dict of
        numbers (``GAUGE_FIELDS`` are gauges, other numbers counters, a ``rejected`` dict of
        reason -> count becomes dead letters). It is called at each scrape; if it raises, that
        source is skipped for that scrape."""
        if not callable(statistics):
            raise TypeError(f"add_source needs a callable, got {statistics!r}")
        with self._lock:
            self._sources.append((name, tenant or "", statistics))

    def add_root(self, ref: ActorRef) -> None:
        """Show ``ref`` (a supervisor) as a root of the supervision tree in ``/status.json``."""
        with self._lock:
            if ref not in self._roots:
                self._roots.append(ref)

    def roots(self) -> list[ActorRef]:
        with self._lock:
            self._roots = [r for r in self._roots if r.is_alive()]
            return list(self._roots)

    # -- reading ----------------------------------------------------------------------------------
    def actor_samples(self) -> list[ActorSample]:
        """Every live actor's statistics (a snapshot; actors may exit meanwhile)."""
        return [ActorSample(ref, ref.tenant, ref.statistics()) for ref in self.runtime.actors()]

    def queue_stats(self) -> list[dict[str, Any]]:
        with self._lock:
            queues = list(self._queues)
        out = []
        for name, tenant, queue in queues:
            try:
                stats = dict(queue.stats())
            except Exception as exc:  # a closed or broken queue must not break the scrape
                stats = {"error": repr(exc)[:200]}
            out.append({"name": name, "tenant": tenant, **stats})
        return out

    def source_stats(self) -> list[dict[str, Any]]:
        with self._lock:
            sources = list(self._sources)
        out = []
        for name, tenant, fn in sources:
            try:
                stats = _numbers(fn())
            except Exception as exc:  # the source's own failure: shown, not fatal
                stats = {"error": repr(exc)[:200]}
            out.append({"name": name, "tenant": tenant, **stats})
        return out

    def tenant_totals(self, samples: list[ActorSample]) -> dict[str, tuple[int, int]]:
        """Monotonic ``(processed, dropped)`` per tenant (see the module docstring)."""
        with self._lock:
            live = {s.ref: (s.tenant or "", s.stats.processed, s.stats.dropped) for s in samples}
            for ref, (tenant, processed, dropped) in self._last.items():
                if ref not in live:
                    acc = self._retired[tenant]
                    acc[0] += processed
                    acc[1] += dropped
            self._last = live
            totals = {t: [p, d] for t, (p, d) in self._retired.items()}
        for tenant, processed, dropped in live.values():
            acc = totals.setdefault(tenant, [0, 0])
            acc[0] += processed
            acc[1] += dropped
        return {t: (p, d) for t, (p, d) in totals.items()}

    # -- Prometheus ---------------------------------------------------------------------------------
    @property
    def registry(self) -> Any:
        """A ``prometheus_client.CollectorRegistry`` of this node only (created on first use)."""
        with self._lock:
            if self._registry is None:
                from prometheus_client import CollectorRegistry
                self._registry = CollectorRegistry(auto_describe=False)
                self._registry.register(_Collector(self))
            return self._registry

    def exposition(self) -> bytes:
        """The text format of every metric (what ``/metrics`` serves). Blocks for a scrape."""
        from prometheus_client import generate_latest
        return bytes(generate_latest(self.registry))

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        rt = self.runtime
        node = rt.node
        samples = self.actor_samples()  # before the runtime totals: they then include these
        totals = self.tenant_totals(samples)
        stats = rt.statistics()

        def family(kind: Any, name: str, doc: str, *labels: str) -> Any:
            return kind(name, doc, labels=["node", "tenant", *labels])

        processed = family(CounterMetricFamily, "streamvisor_messages_processed",
                           "Messages handled by actors")
        dropped = family(CounterMetricFamily, "streamvisor_messages_dropped",
                         "Messages dropped by mailbox overflow policies")
        named = sum(p for t, (p, _) in totals.items() if t)
        named_d = sum(d for t, (_, d) in totals.items() if t)
        totals[""] = (max(0, stats.processed - named), max(0, stats.dropped - named_d))
        for tenant, (p, d) in sorted(totals.items()):
            processed.add_metric([node, tenant], p)
            dropped.add_metric([node, tenant], d)
        yield processed
        yield dropped

        actors_g = family(GaugeMetricFamily, "streamvisor_actors", "Live actors")
        restarts = family(GaugeMetricFamily, "streamvisor_child_restarts",
                          "Restarts of the live supervised children (cumulative per child)")
        depth_sum = family(GaugeMetricFamily, "streamvisor_mailbox_depth_sum",
                           "Messages waiting in every mailbox of the tenant")
        per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for s in samples:
            acc = per[s.tenant or ""]
            acc[0] += 1
            acc[1] += s.stats.restarts
            acc[2] += s.stats.queued
        for tenant, (n, r, q) in sorted(per.items()):
            actors_g.add_metric([node, tenant], n)
            restarts.add_metric([node, tenant], r)
            depth_sum.add_metric([node, tenant], q)
        yield actors_g
        yield restarts
        yield depth_sum

        depth = family(GaugeMetricFamily, "streamvisor_mailbox_depth",
                       f"Messages waiting in the {self.top_n} deepest mailboxes", "actor")
        for s in heapq.nlargest(self.top_n, samples, key=lambda s: s.stats.queued):
            if not s.stats.queued:
                break
            depth.add_metric([node, s.tenant or "", s.stats.path], s.stats.queued)
        yield depth

        yield from self._queue_families(node, family, CounterMetricFamily, GaugeMetricFamily)
        yield from self._source_families(node, family, stats.dead_letters, CounterMetricFamily,
                                         GaugeMetricFamily)
        run_queue = GaugeMetricFamily("streamvisor_run_queue", "Actors waiting for a worker",
                                      labels=["node"])
        run_queue.add_metric([node], stats.run_queue)
        workers = GaugeMetricFamily("streamvisor_workers", "Worker threads", labels=["node"])
        workers.add_metric([node], stats.workers)
        yield run_queue
        yield workers

    def _queue_families(self, node: str, family: Any, counter: Any, gauge: Any) -> Iterable[Any]:
        depth = family(gauge, "streamvisor_queue_depth", "Durable queue records by state",
                       "queue", "state")
        acked = family(counter, "streamvisor_queue_acked", "Durable queue records acknowledged",
                       "queue")
        for q in self.queue_stats():
            for state in ("ready", "in_flight", "delayed", "dead"):
                if state in q:
                    depth.add_metric([node, q["tenant"], q["name"], state], q[state])
            if "acked" in q:
                acked.add_metric([node, q["tenant"], q["name"]], q["acked"])
        yield depth
        yield acked

    def _source_families(self, node: str, family: Any, mailbox_dead: int, counter: Any,
                         gauge: Any) -> Iterable[Any]:
        dead = family(counter, "streamvisor_dead_letters",
                      "Dead letters: messages to dead actors (source mailbox) and rejected "
                      "input (source = connector, reason = kind)", "source", "reason")
        dead.add_metric([node, "", "mailbox", "dead_actor"], mailbox_dead)
        events = family(counter, "streamvisor_connector_events", "Connector counters",
                        "connector", "event")
        state = family(gauge, "streamvisor_connector_state", "Connector gauges",
                       "connector", "field")
        for src in self.source_stats():
            labels = [node, src["tenant"], src["name"]]
            for reason, n in sorted(_numbers(src.get("rejected", {})).items()):
                dead.add_metric([node, src["tenant"], src["name"], str(reason)], n)
            for key, value in sorted(src.items()):
                if isinstance(value, bool):
                    value = int(value)
                if not isinstance(value, (int, float)) or key in ("name", "tenant"):
                    continue
                if key in GAUGE_FIELDS:
                    state.add_metric(labels + [key], value)
                else:
                    events.add_metric(labels + [key], value)
        yield dead
        yield events
        yield state


class _Collector:
    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics
        self._scrape = threading.Lock()  # one scrape at a time

    def collect(self) -> Iterable[Any]:
        with self._scrape:
            return list(self._metrics.collect())

