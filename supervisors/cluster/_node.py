"""``ClusterNode``: one node of a cluster - a ``Runtime`` plus its links to the other nodes.

It knows nothing of thespian (the launcher hosts one inside a thespian actor; tests and
benchmarks run several in one process). What it owns:

- a TCP listener (data plane, loopback unless ``bind`` says otherwise) and one authenticated
  connection per peer, carrying batched ``actors.codec`` frames with credit-based flow control
  (``_conn``, ``_outbox``);
- UDP heartbeats and the failure detector (``_heartbeat``, ``_placement.Detector``): a peer not
  heard from for ``heartbeat_timeout`` seconds is declared dead - its proxies exit with
  ``"noconnection"``, pending asks fail with ``ActorDead``, queued tells are dropped (counted),
  and its tenants are placed again;
- exports, proxies and the agent actor behind ``RemoteRef`` (``_remote``);
- the cluster-wide pub/sub (``_pubsub``, installed as ``rt.pubsub``);
- the tenants placed on it (``_tenants``; placement by rendezvous hashing over live nodes);
  with ``lease_dsn`` a tenant runs only while this node holds its lease in the shared
  PostgreSQL table, and stops when the lease is lost (``_lease``: fencing).

Membership changes are decided under ``_lock`` and acted upon after it is released (closing
connections, stopping proxies, failing asks and moving tenants never run under the lock).
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections import deque
from types import SimpleNamespace
from typing import Any, Callable, Sequence

from actors import Actor, ActorError, ActorRef, Down, Runtime, get_logger

from actors import lowlevel
from ._conn import LinkStats
from ._dispatch import Dispatcher
from ._heartbeat import Heartbeats
from ._lease import LeaseKeeper, LeaseStore
from ._membership import Membership
from ._peer import MemberInfo, Peer
from ._placement import Detector, owner, place
from ._ratelog import RateLimitedLog
from ._tlslink import TlsConfig
from ._pubsub import ClusterPubSub
from ._remote import Exports, Proxies, RemoteRef
from ._tenants import TenantHost
from ._wire import LOOKUP

__all__ = ["ClusterNode"]

_log = get_logger(component="cluster.node")


class _Agent(Actor):
    """Monitors this node's exported actors; their exits become DOWN records."""

    mailbox_size = 1_000_000

    def __init__(self, node: "ClusterNode") -> None:
        self.node = node

    def receive(self, message: Any) -> None:
        match message:
            case ("watch", ActorRef() as ref):
                self.monitor(ref)
            case Down(ref=ref, reason=reason):
                if reason == "noproc":  # it died before our monitor: tell the real reason
                    reason = lowlevel.exit_reason(ref)
                self.node._exported_down(ref, reason)


class ClusterNode(Membership):
    """One node (see the module docstring). ``start`` binds and starts its threads; ``stop``
    ends them and shuts the runtime down. Public methods are safe from any thread."""

    def __init__(self, node_id: str, *, cookie: bytes | str, cluster: str = "streamvisor",
                 bind: str = "127.0.0.1", port: int = 0, heartbeat_port: int = 0,
                 incarnation: int = 1, admin: str = "", runtime: Runtime | None = None,
                 workers: int = 2, tenants: Sequence[str] = (), app: Any = None,
                 app_options: dict[str, Any] | None = None,
                 heartbeat_interval: float = 0.2, heartbeat_timeout: float = 1.5,
                 window: int = 1 << 20, outbox_limit: int = 100_000,
                 block_timeout: float = 5.0, cluster_pubsub: bool = True,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 tls: TlsConfig | None = None, max_handshakes: int = 16,
                 lease_dsn: str | None = None, lease_ttl: float = 6.0,
                 lease_margin: float | None = None, lease_grace: float = 1.0,
                 lease_table: str = "streamvisor_leases") -> None:
        if not isinstance(node_id, str) or not node_id or "/" in node_id:
            raise ValueError(f"node id must be a non-empty string without '/', got {node_id!r}")
        if not cookie:
            raise ValueError("a cluster needs a cookie (a shared secret); got an empty one")
        self.id = node_id
        self.cluster = cluster
        self.incarnation = incarnation
        self.admin = admin
        self._cookie = cookie.encode() if isinstance(cookie, str) else bytes(cookie)
        self._bind = bind
        self.tls = tls
        # (server, client) SSL contexts; loading them checks the files at once
        self._tls_contexts = tls.contexts() if tls is not None else None
        self._want_port = port
        self._want_hb_port = heartbeat_port
        self._hb_interval = heartbeat_interval
        self._window = window
        self._limit = outbox_limit
        self._block_timeout = block_timeout
        self._on_event = on_event
        self._own_runtime = runtime is None
        self.runtime = runtime if runtime is not None else Runtime(workers=workers, node=node_id)
        self._can_block = lowlevel.blocking_allowed(self.runtime)
        self._lock = threading.RLock()  # guards _peers, _detector, _seeds, _tenants, _closed
        self._peers: dict[str, Peer] = {}
        self._detector = Detector(heartbeat_timeout)
        self._seeds: set[tuple[str, int]] = set()
        self._tenants = list(tenants)
        self._closed = False
        self._started = False
        self._events: deque[dict[str, Any]] = deque(maxlen=500)
        self.stats = LinkStats()  # handshake failures, and the counters of retired peers
        self._warn = RateLimitedLog(_log)   # what strangers cause is logged at a bounded rate
        self._max_handshakes = max_handshakes
        self._handshake_slots = threading.BoundedSemaphore(max_handshakes)
        self._retired_refused = 0
        self.exports = Exports()
        self.proxies = Proxies(self)
        self._dispatcher = Dispatcher(self)
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self.pubsub: ClusterPubSub | None = None
        if cluster_pubsub:
            self.pubsub = ClusterPubSub(self.runtime.pubsub, self)
            self.runtime.pubsub = self.pubsub  # type: ignore[assignment]  # the cluster pub/sub stands in for the node's (same interface)
        self._agent = self.runtime.spawn(_Agent, self, name="_cluster_agent")
        self.app = app
        self.app_progress: Callable[[], Any] | None = None
        self.options = SimpleNamespace(**(app_options or {}))
        self.leases: LeaseKeeper | None = None
        self._host = TenantHost(self.runtime, app, self.options, self._event, name=node_id)
        if lease_dsn is not None:
            self.leases = LeaseKeeper(
                LeaseStore(lease_dsn, table=lease_table, io_timeout=min(2.0, lease_ttl / 3)),
                node_id, ttl=lease_ttl, margin=lease_margin, grace=lease_grace,
                on_lost=self._host.fence, event=self._event)
            self._host.leases = self.leases
        self._listener: socket.socket | None = None
        self._heartbeats: Heartbeats | None = None
        self._threads: list[threading.Thread] = []
        self.address: tuple[str, int] = (bind, port)

    def __repr__(self) -> str:
        return (f"<ClusterNode {self.id}#{self.incarnation} {self.address[0]}:{self.address[1]} "
                f"alive={sorted(self.alive_nodes())}>")

    # -- life ------------------------------------------------------------------------------
    @property
    def info(self) -> MemberInfo:
        """How other nodes reach this one."""
        hb = self._heartbeats.address if self._heartbeats is not None else (self._bind, 0)
        return {"id": self.id, "inc": self.incarnation, "data": list(self.address),
                "hb": list(hb), "admin": self.admin, "pid": os.getpid()}

    def start(self, members: Sequence[MemberInfo] = (), seeds: Sequence[tuple[str, int]] = (),
              start_app: bool = True) -> None:
        """Bind the sockets, start the threads, meet ``members`` and dial ``seeds``; then start
        the app (``start(rt, options)``) and the tenants placed here. Raises ``OSError`` when a
        port cannot be bound."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._bind, self._want_port))
        listener.listen(64)
        self._listener = listener
        self.address = listener.getsockname()[:2]
        self._heartbeats = Heartbeats(
            cluster=self.cluster, cookie=self._cookie, me=lambda: self.info, view=self._view,
            targets=self._hb_targets, on_datagram=self._on_heartbeat, on_tick=self._on_tick,
            bind=(self._bind, self._want_hb_port), interval=self._hb_interval, name=self.id)
        now = time.monotonic()
        with self._lock:
            for info in members:
                self._learn_locked(info, now, direct=True, quiet=True)
            self._seeds.update((h, int(p)) for h, p in seeds)
        for target, name in ((self._accept_loop, "accept"), (self._connect_loop, "connect"),
                             (self._job_loop, "jobs")):
            thread = threading.Thread(target=target, daemon=True, name=f"{self.id}-{name}")
            self._threads.append(thread)
            thread.start()
        self._heartbeats.start()
        if start_app:
            self.start_app()

    def start_app(self) -> None:
        """Call the app's ``start(rt, options)`` and begin hosting the tenants placed here
        (``start`` does it unless ``start_app=False``, e.g. to meet the members first)."""
        if self._started:
            return
        if self.leases is not None:
            self.leases.start(self.id)
        self._host.start()
        self._started = True
        self._options_update()
        if self.app is not None:
            self.app_progress = self.app.start(self.runtime, self.options)
        self._rebalance()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop hosting tenants, close every link, run the app's ``stop(rt)``, shut the runtime
        down (if this node made it). Idempotent; blocks up to about ``timeout`` seconds."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            peers = list(self._peers.values())
        self._stopping.set()
        if self._started:
            self._host.close(timeout)
        if self.leases is not None:
            self.leases.close(timeout)
            self.leases.store.close()  # type: ignore[attr-defined]
        if self.app is not None and callable(getattr(self.app, "stop", None)):
            try:
                self.app.stop(self.runtime)
            except Exception as exc:  # an app callback: reported, shutdown goes on
                _log.error("app stop raised", error=repr(exc), exc_info=exc)
        if self._heartbeats is not None:
            self._heartbeats.stop()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        for peer in peers:
            peer.outbox.close()
            if peer.conn is not None:
                peer.conn.close("node stopping")
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)
        for peer in peers:
            if peer.conn is not None:
                peer.conn.join(timeout)
        if self._own_runtime:
            self.runtime.shutdown(timeout)

    # -- what apps and tests use -----------------------------------------------------------
    def alive_nodes(self) -> list[str]:
        """Ids of the nodes this node believes alive, itself included (sorted)."""
        with self._lock:
            return sorted({self.id, *(p.id for p in self._peers.values() if p.alive)})

    def members(self) -> list[dict[str, Any]]:
        """Every node this node knows: ``{"id", "incarnation", "alive", "silent_for", ...}``."""
        now = time.monotonic()
        with self._lock:
            rows = [{"id": self.id, "incarnation": self.incarnation, "alive": True,
                     "silent_for": 0.0, "pid": os.getpid(), "self": True}]
            for peer in sorted(self._peers.values(), key=lambda p: p.id):
                last = self._detector.last_heard(peer.id)
                rows.append({"id": peer.id, "incarnation": peer.incarnation,
                             "alive": peer.alive, "connected": peer.conn is not None,
                             "silent_for": None if last is None else round(now - last, 3),
                             "pid": peer.info.get("pid"), "self": False})
        return rows

    @property
    def tenants(self) -> list[str]:
        with self._lock:
            return list(self._tenants)

    def owner(self, tenant: str) -> str | None:
        """The node that should host ``tenant`` now (this node's view)."""
        return owner(tenant, self.alive_nodes())

    def placement(self) -> dict[str, str]:
        return place(self.tenants, self.alive_nodes())

    def hosted(self) -> list[str]:
        """Tenants running on this node now."""
        return self._host.hosted()

    def lease(self, tenant: str) -> int | None:
        """The epoch (fencing token) of ``tenant``'s lease if this node holds it now; None
        without leases or when not held. Pass it to ``fenced_commit`` in durable writes."""
        if self.leases is None:
            return None
        held = self.leases.lease(tenant)
        return None if held is None else held.epoch

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    def remote(self, node_id: str, name: str) -> RemoteRef:
        """A ref to whatever is registered as ``name`` on node ``node_id``, resolved there for
        every message (Erlang's ``{Name, Node}``): it survives restarts of that actor, dies with
        the node. Raises ``ActorDead`` if the node is not alive."""
        peer = self._alive_peer(node_id)
        return self.proxies.get(peer, name, {"path": f"/{name}", "name": name,
                                             "tenant": name.split("/")[0] if "/" in name else None})

    def whereis(self, name: str, timeout: float = 2.0) -> ActorRef | None:
        """The actor registered as ``name`` anywhere in the cluster: a local ``ActorRef``, a
        ``RemoteRef`` bound to the remote actor's current incarnation, or None. A tenant's name
        (``"acme/store"``) is looked up on the tenant's node first. Blocks up to ``timeout``."""
        local = self.runtime.whereis(name)
        if local is not None:
            return local
        nodes = [n for n in self.alive_nodes() if n != self.id]
        if "/" in name:
            first = self.owner(name.split("/", 1)[0])
            if first in nodes:
                nodes.remove(first)
                nodes.insert(0, first)
        waiting: list[tuple[Peer, Any, int]] = []
        for node_id in nodes:
            peer = self._peer(node_id)
            if peer is None or not peer.alive:
                continue
            reply = lowlevel.Reply()
            corr = peer.expect(reply)
            if peer.outbox.put([LOOKUP, corr, name], system=True):
                waiting.append((peer, reply, corr))
            else:
                peer.forget(corr)
        deadline = time.monotonic() + timeout
        try:
            for peer, reply, _corr in waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    found = lowlevel.wait_reply(self.runtime, reply, left, f"node {peer.id}")
                except ActorError:
                    continue
                if found:
                    export_id, info = found
                    return self.proxies.get(peer, export_id, info)
        finally:
            for peer, _reply, corr in waiting:
                peer.forget(corr)
        return None

    def statistics(self) -> dict[str, Any]:
        """Counters of the links (summed over peers), outboxes and exports."""
        with self._lock:
            peers = list(self._peers.values())
        totals: dict[str, Any] = dict(self.stats.snapshot())
        for peer in peers:
            for key, value in peer.stats.snapshot().items():
                totals[key] += value
            totals["dead_letters"] += peer.dead_letters
        totals["outbox_refused"] = self._retired_refused + sum(p.outbox.refused for p in peers)
        totals["outbox_queued"] = sum(p.outbox.queued() for p in peers)
        totals["system_dropped"] = sum(p.outbox.system_dropped for p in peers)
        totals["exports"] = len(self.exports)
        totals["proxies"] = len(self.proxies)
        hb = self._heartbeats
        totals["heartbeats_rejected"] = hb.rejected if hb is not None else 0
        totals["heartbeats_rejected_by"] = dict(hb.reasons) if hb is not None else {}
        totals["publishes_forwarded"] = self.pubsub.forwarded if self.pubsub is not None else 0
        return totals

    def status(self) -> dict[str, Any]:
        """Everything ``streamvisor cluster status`` shows about this node (JSON-able)."""
        progress: Any = None
        if callable(self.app_progress):
            try:
                progress = self.app_progress()
            except Exception as exc:  # an app callback: its failure is shown, not raised
                progress = {"error": repr(exc)}
        rt = self.runtime.statistics()
        return {"id": self.id, "pid": os.getpid(), "alive": True, "tls": self.tls is not None,
                "incarnation": self.incarnation, "tenants": self.hosted(),
                "leases": self.leases.held() if self.leases is not None else None,
                "address": list(self.address), "members": self.members(),
                "links": self.statistics(), "events": self.events(), "app": progress,
                "runtime": {"actors": rt.actors, "processed": rt.processed, "timers": rt.timers,
                            "dropped": rt.dropped, "dead_letters": rt.dead_letters}}

    # -- jobs (one thread: membership consequences, link mirroring) -------------------------
    def _job_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # one failing job must not stop the others
                _log.error("cluster job failed", error=repr(exc), exc_info=exc)

    def _rebalance(self) -> None:
        if not self._started or self._closed:
            return
        mine = {t for t, n in self.placement().items() if n == self.id}
        if self._host.managed or not self._host.hosted():
            self._host.want(mine)
        self._options_update()

    def _options_update(self) -> None:
        self.options.node = self.id
        self.options.cluster = self
        if not hasattr(self.options, "tenants") or self._host.managed or not self._started:
            self.options.tenants = sorted(
                t for t, n in self.placement().items() if n == self.id)

    def _event(self, kind: str, **fields: Any) -> None:
        event = {"event": kind, "node": self.id, "at": time.time(), **fields}
        if kind == "node_down":
            event["node"], event["by"] = fields["node"], self.id
        elif kind == "node_up":
            event["by"] = self.id
        self._events.append(event)
        _log.info(kind, **{k: v for k, v in event.items() if k != "event"})
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:  # the host's callback: reported only
                _log.error("event callback failed", error=repr(exc), exc_info=exc)
