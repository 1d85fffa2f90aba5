"""Incoming records: what a node does with each record of a peer's frame (reader thread).

A record that is not what its kind requires (wrong arity, wrong types, unknown kind, unknown
topic) is rejected and counted (``records_rejected``) - never executed. A tell to an actor that
does not exist (or no longer) is a counted dead letter; a tell refused by a full mailbox is
counted (``dropped_full``), exactly as a local ``tell`` would have counted it there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors import ActorCrashed, ActorDead, ActorError, ActorRef, MailboxFull, get_logger

from actors import lowlevel

from ._ratelog import RateLimitedLog
from ._remote import proxy_actor
from ._wire import (ASK, CRASHED, CREDIT, DEAD, DOWN, ERROR, FULL, INTEREST, LINK, LOOKUP, OK,
                    PUBLISH, REPLY, TELL, UNLINK, decode_reason, encode_reason)

if TYPE_CHECKING:
    from ._node import ClusterNode
    from ._peer import Peer

__all__ = ["Dispatcher"]

_log = get_logger(component="cluster.dispatch")
_warn = RateLimitedLog(_log)   # a peer sending bad records cannot flood the log


class _Rejected(Exception):
    pass


class _RemoteReply:
    """The reply slot of an ask that came over the wire: the outcome goes back as REPLY."""

    __slots__ = ("peer", "corr", "done")

    def __init__(self, peer: "Peer", corr: int) -> None:
        self.peer = peer
        self.corr = corr
        self.done = False

    @property
    def ready(self) -> bool:
        return self.done

    def set(self, value: Any) -> bool:
        return self._send(OK, value)

    def fail(self, error: BaseException) -> bool:
        if isinstance(error, ActorCrashed):
            return self._send(CRASHED, encode_reason(error.reason))
        if isinstance(error, ActorDead):
            return self._send(DEAD, str(error))
        if isinstance(error, MailboxFull):
            return self._send(FULL, str(error))
        return self._send(ERROR, f"{type(error).__name__}: {error}")

    def _send(self, status: int, value: Any) -> bool:
        if self.done:
            return False
        self.done = True
        return self.peer.outbox.put([REPLY, self.corr, status, value], system=True)


class Dispatcher:
    def __init__(self, node: "ClusterNode") -> None:
        self.node = node

    def dispatch(self, peer: "Peer", records: list[Any]) -> None:
        stats = peer.stats
        for record in records:
            try:
                if not isinstance(record, list) or not record:
                    raise _Rejected("not a record")
                kind = record[0]
                if kind == TELL:
                    self._tell(peer, record)
                elif kind == CREDIT:
                    _, nbytes = record
                    if not isinstance(nbytes, int) or nbytes < 0:
                        raise _Rejected("bad credit")
                    peer.outbox.add_credit(nbytes)
                elif kind == REPLY:
                    self._reply(peer, record)
                elif kind == ASK:
                    self._ask(peer, record)
                elif kind == LOOKUP:
                    self._lookup(peer, record)
                elif kind == DOWN:
                    _, export_id, reason = record
                    proxy = self.node.proxies.find(peer, export_id)
                    if proxy is not None:
                        lowlevel.exit_quietly(proxy, decode_reason(reason))
                elif kind in (LINK, UNLINK):
                    self._link(peer, record, kind == LINK)
                elif kind == PUBLISH:
                    self._publish(peer, record)
                elif kind == INTEREST:
                    _, namespace, filter, present = record
                    if not isinstance(filter, str) or not (namespace is None
                                                          or isinstance(namespace, str)):
                        raise _Rejected("bad interest")
                    filters = peer.interest.setdefault(namespace, {})
                    if present:
                        filters[filter] = 1
                    else:
                        filters.pop(filter, None)
                else:
                    raise _Rejected(f"unknown record kind {kind!r}")
            except (_Rejected, ValueError, TypeError, IndexError, KeyError) as exc:
                stats.records_rejected += 1
                _warn.warning(f"record:{peer.id}", "record rejected", peer=peer.id,
                              error=str(exc), rejected=stats.records_rejected)

    def _target(self, target: Any) -> ActorRef | None:
        if type(target) is int:
            return self.node.exports.get(target)
        if type(target) is str:
            return self.node.runtime.whereis(target)
        raise _Rejected(f"bad target {target!r}")

    def _tell(self, peer: "Peer", record: list[Any]) -> None:
        _, target, payloads = record
        if type(payloads) is not list:
            raise _Rejected("tell payloads are not a list")
        ref = self._target(target)
        stats = peer.stats
        stats.records_in += len(payloads)
        if ref is None:
            stats.dead_letters += len(payloads)
            return
        tell = ref.tell
        for payload in payloads:
            try:
                if not tell(payload):
                    stats.dead_letters += 1
            except MailboxFull:
                stats.dropped_full += 1
            except ActorDead:    # it exited while this thread waited on its BLOCK mailbox
                stats.dead_letters += 1

    def _ask(self, peer: "Peer", record: list[Any]) -> None:
        _, target, corr, payload = record
        if type(corr) is not int:
            raise _Rejected("bad correlation id")
        peer.stats.records_in += 1
        reply = _RemoteReply(peer, corr)
        ref = self._target(target)
        if ref is None:
            reply.fail(ActorDead(f"no actor {target!r} on node {self.node.id}"))
            return
        try:
            if not lowlevel.ask_async(ref, payload, reply):
                reply.fail(ActorDead(f"{ref.path} is not alive"))
        except (MailboxFull, ActorDead) as exc:
            reply.fail(exc)   # no-op if the mailbox already failed it

    def _reply(self, peer: "Peer", record: list[Any]) -> None:
        _, corr, status, value = record
        waiter = peer.resolve(corr)
        if waiter is None:
            return  # late: the asker gave up
        if status == OK:
            waiter.set(value)
        elif status == CRASHED:
            reason = decode_reason(value)
            waiter.fail(ActorCrashed(f"actor on node {peer.id} crashed: {reason}", reason))
        elif status == DEAD:
            waiter.fail(ActorDead(f"on node {peer.id}: {value}"))
        elif status == FULL:
            waiter.fail(MailboxFull(f"on node {peer.id}: {value}"))
        elif status == ERROR:
            waiter.fail(ActorError(f"on node {peer.id}: {value}"))
        else:
            waiter.fail(ActorError(f"node {peer.id} answered with unknown status {status!r}"))
            raise _Rejected(f"unknown reply status {status!r}")

    def _lookup(self, peer: "Peer", record: list[Any]) -> None:
        _, corr, name = record
        if not isinstance(name, str) or type(corr) is not int:
            raise _Rejected("bad lookup")
        ref = self.node.runtime.whereis(name)
        value = None
        if ref is not None and not lowlevel.is_dead(ref):
            value = [self.node.export(ref, peer), {"path": ref.path, "name": ref.name,
                                                   "tenant": ref.tenant}]
        peer.outbox.put([REPLY, corr, OK, value], system=True)

    def _link(self, peer: "Peer", record: list[Any], added: bool) -> None:
        _, target, export_id, info = record
        if type(target) is not int or type(export_id) is not int or not isinstance(info, dict):
            raise _Rejected("bad link record")
        local = self.node.exports.get(target)
        if local is None:
            return  # it exited: the peer has (or will have) its DOWN
        remote = self.node.proxies.get(peer, export_id, info)
        proxy = proxy_actor(remote)
        cell = lowlevel.process_of(local)
        proxy.suppress.add(cell)
        try:
            if added:
                lowlevel.link(local, remote)
            else:
                lowlevel.unlink(local, remote)
        finally:
            proxy.suppress.discard(cell)

    def _publish(self, peer: "Peer", record: list[Any]) -> None:
        _, namespace, topic, payload, qos, retain = record
        if not (namespace is None or isinstance(namespace, str)) or not isinstance(topic, str):
            raise _Rejected("bad publish")
        pubsub = self.node.pubsub
        if pubsub is None:
            raise _Rejected("pub/sub is not clustered on this node")
        peer.stats.records_in += 1
        pubsub.deliver_remote(namespace, topic, payload, qos, bool(retain))

    def unsendable(self, peer: "Peer", record: list[Any], why: str) -> None:
        """The writer could not encode ``record`` for ``peer``: fail whoever waits for it."""
        kind = record[0]
        if kind == REPLY:
            peer.outbox.put([REPLY, record[1], ERROR, f"the reply {why}"], system=True)
        elif kind in (ASK, LOOKUP):
            waiter = peer.resolve(record[2] if kind == ASK else record[1])
            if waiter is not None:
                waiter.fail(ActorError(f"not sent to node {peer.id}: {why}"))
