"""Membership and links of a ``ClusterNode``: who is alive, how they are reached, what follows a
death; plus the per-peer bookkeeping behind exports, cross-node links and pub/sub forwarding.

``Membership`` is a base class of ``ClusterNode`` (split out to keep each module small); it
uses the node's ``_lock`` (guards ``_peers``, ``_detector``, ``_seeds`` and ``_closed``),
``_jobs`` (the job queue: membership consequences run there, outside the lock), ``_event``,
``_rebalance``, ``exports``, ``proxies``, ``_dispatcher``, ``stats`` and ``pubsub``.

Rules (decided under ``_lock``, acted upon after it):
- a member is learned from the launcher's configuration, a heartbeat (directly, or in another
  node's view: gossip), or a handshake; a higher incarnation replaces the old one (declared
  dead first), a lower one is stale news;
- a member silent for the heartbeat timeout is declared dead: its outbox is closed (queued
  tells are counted as dead letters), its connection closed, pending asks fail with
  ``ActorDead`` (``noconnection``), its proxies exit with ``"noconnection"``, and tenants are
  placed again; a dead member heard again directly is alive again (a new ``Peer``);
- between two nodes the one with the smaller id dials; an address given as a seed is dialled
  whatever its id (joining); at most one connection per peer is kept.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Sequence

from actors import ActorDead, ActorRef, MailboxFull, get_logger

from actors import lowlevel
from ._conn import Connection, HandshakeError, handshake
from ._tlslink import TlsStream
from ._peer import MemberInfo, Peer
from ._pubsub import wanted_by
from ._remote import NOCONNECTION, is_proxy_cell, link_record
from ._wire import DOWN, INTEREST, LINK, PUBLISH, UNLINK, encode_reason

__all__ = ["Membership"]

_log = get_logger(component="cluster.membership")


class Membership:
    """Membership, connections and per-peer records of a node (see the module docstring)."""

    # -- membership ------------------------------------------------------------------------
    def add_members(self, members: Sequence[MemberInfo]) -> None:
        now = time.monotonic()
        with self._lock:
            for info in members:
                self._learn_locked(info, now, direct=True)

    def add_seeds(self, seeds: Sequence[tuple[str, int]]) -> None:
        """Addresses of nodes to dial without knowing their ids (joining a cluster)."""
        with self._lock:
            self._seeds.update((h, int(p)) for h, p in seeds)

    def peer_info(self, node_id: str) -> MemberInfo | None:
        """What this node knows about how to reach ``node_id`` (its latest incarnation)."""
        peer = self._peer(node_id)
        return None if peer is None else dict(peer.info)

    def peer_admin(self, node_id: str) -> str | None:
        peer = self._peer(node_id)
        return None if peer is None else peer.info.get("admin")

    def _peer(self, node_id: str) -> Peer | None:
        with self._lock:
            return self._peers.get(node_id)

    def _alive_peer(self, node_id: str) -> Peer:
        peer = self._peer(node_id)
        if peer is None or not peer.alive:
            raise ActorDead(f"node {node_id!r} is not alive ({NOCONNECTION})")
        return peer

    def _view(self) -> list[MemberInfo]:
        with self._lock:
            return [p.info for p in self._peers.values() if p.alive]

    def _hb_targets(self) -> list[tuple[str, int]]:
        with self._lock:
            return [p.hb_address for p in self._peers.values()]

    def _learn_locked(self, info: MemberInfo, now: float, direct: bool,
                      quiet: bool = False) -> Peer | None:
        """Fold what we heard about a member into the view (under ``_lock``). Returns its live
        ``Peer`` (None when the news is stale or about a dead member heard indirectly)."""
        try:
            node_id, inc = info["id"], int(info["inc"])
            info = {"id": node_id, "inc": inc, "data": list(info["data"]),
                    "hb": list(info["hb"]), "admin": info.get("admin", ""),
                    "pid": info.get("pid")}
        except (KeyError, TypeError, ValueError):
            return None
        if node_id == self.id or not isinstance(node_id, str):
            return None
        peer = self._peers.get(node_id)
        if peer is not None and inc < peer.incarnation:
            return None
        if peer is not None and inc == peer.incarnation:
            if peer.alive:
                if direct:
                    self._detector.heard(node_id, now)
                    if info != peer.info:
                        peer.info = info
                return peer
            if not direct:
                return None
        if peer is not None and peer.alive:  # a new incarnation: the old one is gone
            self._declare_dead_locked(peer, "restarted", now)
        if peer is not None:
            self._retire_locked(peer)
        peer = Peer(info, can_block=self._can_block, limit=self._limit, window=self._window,
                    block_timeout=self._block_timeout)
        self._peers[node_id] = peer
        self._detector.add(node_id, now)
        if not quiet:
            self._event("node_up", node=node_id, incarnation=inc)
            self._jobs.put(self._rebalance)
        return peer

    def _retire_locked(self, peer: Peer) -> None:
        """Keep the counters of a peer's past life in the node's totals."""
        for key, value in peer.stats.snapshot().items():
            setattr(self.stats, key, getattr(self.stats, key) + value)
        self.stats.dead_letters += peer.dead_letters
        self._retired_refused += peer.outbox.refused

    def _on_heartbeat(self, info: MemberInfo, view: list[MemberInfo]) -> None:
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return
            self._learn_locked(info, now, direct=True)
            for other in view:
                if isinstance(other, dict) and other.get("id") not in self._peers:
                    self._learn_locked(other, now, direct=False)

    def _on_tick(self, now: float) -> None:
        with self._lock:
            if self._closed:
                return
            for node_id in self._detector.tick(now):
                peer = self._peers.get(node_id)
                if peer is not None and peer.alive:
                    self._declare_dead_locked(peer, "heartbeat timeout", now)

    def _declare_dead_locked(self, peer: Peer, why: str, now: float) -> None:
        last = self._detector.last_heard(peer.id)
        peer.alive = False
        self._detector.forget(peer.id)
        self._event("node_down", node=peer.id, incarnation=peer.incarnation, why=why,
                    silent_for=None if last is None else round(now - last, 3),
                    pid=peer.info.get("pid"), admin=peer.info.get("admin"))
        self._jobs.put(lambda: self._cleanup_dead(peer))
        self._jobs.put(self._rebalance)

    def _cleanup_dead(self, peer: Peer) -> None:
        """Everything a node's death implies, outside the lock (a job)."""
        left = peer.outbox.close()
        lost = sum(len(r[2]) if r[0] == 0 else 1 for r in left)
        peer.stats.dead_letters += lost
        if peer.conn is not None:
            peer.conn.close("node declared dead")
        dead = ActorDead(f"node {peer.id} is down ({NOCONNECTION})")
        for waiter in peer.take_pending():
            waiter.fail(dead)
        for ref in self.proxies.of_peer(peer.id):
            lowlevel.exit_quietly(ref, NOCONNECTION)
        self.exports.drop_watcher(peer.id)

    # -- connections -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        """Accept connections; each handshake runs on its own thread, at most
        ``max_handshakes`` at a time: a connection over that is closed at once and counted
        (``handshakes_refused``), so strangers holding handshakes open cost bounded threads."""
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _addr = self._listener.accept()
            except OSError:
                return
            if not self._handshake_slots.acquire(blocking=False):
                self.stats.handshakes_refused += 1
                self._warn.warning("handshake-slots", "connection refused: too many handshakes "
                                   "in progress", limit=self._max_handshakes,
                                   refused=self.stats.handshakes_refused)
                sock.close()
                continue
            threading.Thread(target=self._admit_in_slot, args=(sock,), daemon=True,
                             name=f"{self.id}-handshake").start()

    def _admit_in_slot(self, sock: socket.socket) -> None:
        try:
            self._admit(sock, False)
        finally:
            self._handshake_slots.release()

    def _connect_loop(self) -> None:
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            with self._lock:
                dial = [p for p in self._peers.values()
                        if p.alive and p.conn is None and self.id < p.id and now >= p.next_dial]
                for p in dial:
                    p.next_dial = now + p.dial_backoff
                    p.dial_backoff = min(p.dial_backoff * 2, 1.0)
                known = {tuple(p.info["data"]) for p in self._peers.values() if p.alive}
                seeds = [s for s in self._seeds if s not in known and s != tuple(self.address)]
            for target, expect in [(p.data_address, p.id) for p in dial] + [
                    (s, None) for s in seeds]:
                self._dial(target, expect)

    def _dial(self, address: tuple[str, int], expect: str | None = None) -> None:
        try:
            sock = socket.create_connection(address, timeout=1.0)
        except OSError:
            return
        self._admit(sock, True, expect)

    def _admit(self, sock: socket.socket, dialer: bool, expect: str | None = None) -> None:
        try:
            if self._tls_contexts is not None:
                sock = TlsStream(sock, self._tls_contexts[0 if not dialer else 1],  # type: ignore[assignment]  # a TlsStream stands in for the socket
                                 server_side=not dialer, timeout=3.0)
            peer_id, inc, info, reader = handshake(
                sock, dialer=dialer, cluster=self.cluster, cookie=self._cookie, me=self.id,
                incarnation=self.incarnation, info=self.info, expect=expect)
        except (HandshakeError, OSError, ValueError, TypeError, IndexError) as exc:
            self.stats.auth_failures += 1
            self._warn.warning("handshake", "connection refused: handshake failed",
                               error=str(exc), failures=self.stats.auth_failures)
            sock.close()
            return
        with self._lock:
            peer = None if self._closed else self._learn_locked(info, time.monotonic(), True)
            if peer is None or peer.conn is not None:
                sock.close()
                return
            conn = Connection(sock, peer.id, peer.outbox, reader, peer.stats,
                              lambda records, p=peer: self._dispatcher.dispatch(p, records),
                              self._conn_lost, self.id,
                              lambda record, why, p=peer: self._dispatcher.unsendable(p, record, why))
            peer.conn = conn
            peer.dial_backoff = 0.05
        conn.start()
        self._jobs.put(lambda: self._sync_interest(peer))

    def _conn_lost(self, conn: Connection, reason: str) -> None:
        with self._lock:
            peer = self._peers.get(conn.peer_id)
            if peer is not None and peer.conn is conn:
                peer.conn = None
        try:
            conn.sock.close()
        except OSError:
            pass

    # -- exports, links, pub/sub (called by the dispatcher and by proxies) -----------------
    def export(self, ref: ActorRef, peer: Peer) -> int:
        """The export id of local ``ref`` for ``peer`` (the agent monitors new exports; the
        request goes through the job thread, so this is safe under a cell's lock)."""
        export_id, new = self.exports.export(ref, peer.id)
        if new:
            self._jobs.put(lambda: self._agent.tell(("watch", ref)))
        return export_id

    def _exported_down(self, ref: ActorRef, reason: Any) -> None:
        found = self.exports.exited(ref)
        if found is None:
            return
        export_id, watchers = found
        record = [DOWN, export_id, encode_reason(reason)]
        for node_id in watchers:
            peer = self._peer(node_id)
            if peer is not None and peer.alive:
                peer.outbox.put(record, system=True)

    def link_changed(self, proxy: Any, cell: Any, added: bool) -> None:
        """A local actor linked or unlinked a proxy. Runs under the proxy cell's lock, in the
        linking actor's turn: the LINK/UNLINK record is queued at once (only the outbox's lock
        is taken), so it precedes any later exit signal of that actor on the wire."""
        if cell in proxy.suppress:
            return
        remote = proxy.remote
        if remote is None or is_proxy_cell(cell) or not isinstance(remote.target, int):
            return
        ref = lowlevel.ref_of(cell)
        if not added and lowlevel.is_dead(ref):
            return  # an exit, not an unlink: the DOWN for it tells the peer
        peer = remote._peer
        if peer.alive:
            peer.outbox.put(link_record(LINK if added else UNLINK, remote.target,
                                        self.export(ref, peer), ref), system=True)

    def interest_changed(self, namespace: str | None, filter: str, present: bool) -> None:
        with self._lock:
            peers = [p for p in self._peers.values() if p.alive]
        for peer in peers:
            peer.outbox.put([INTEREST, namespace, filter, present], system=True)

    def _sync_interest(self, peer: Peer) -> None:
        if self.pubsub is None:
            return
        for namespace, filter in self.pubsub.interest():
            peer.outbox.put([INTEREST, namespace, filter, True], system=True)

    def forward_publish(self, namespace: str | None, topic: str, payload: Any, qos: int,
                        retain: bool) -> int:
        """Send one PUBLISH to each live node that wants it; returns how many got one."""
        with self._lock:
            peers = [p for p in self._peers.values() if p.alive]
        sent = 0
        record = [PUBLISH, namespace, topic, payload, qos, retain]
        for peer in peers:
            if retain or wanted_by(peer.interest, namespace, topic):
                try:
                    if peer.outbox.put(record, peer.can_block):
                        sent += 1
                except MailboxFull:
                    pass  # counted by the outbox (refused); QoS 0 semantics across nodes
        return sent
