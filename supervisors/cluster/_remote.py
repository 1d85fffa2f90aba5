"""Remote refs: an ``ActorRef`` to an actor on another node, used exactly like a local one.

``RemoteRef`` is an ``ActorRef`` (``isinstance`` holds, so ``monitor``, ``link``, pub/sub and
supervisors accept it). Behind it sits a *proxy*: a tiny local actor that stands for the remote
actor in this runtime. Links and monitors attach to the proxy with the core's own machinery;
the proxy exits when the remote actor exits (with its reason; an exception arrives as a
``RemoteError``) or with ``"noconnection"`` when its node is declared dead, and the core then
delivers ``Down``/``Exit`` carrying the very ``RemoteRef`` the user holds.

- ``tell(message)`` queues the message in the peer's outbox (no mailbox hop, no thread switch);
  it returns False when the ref is dead (counted dead letter) and raises ``MailboxFull`` when the
  outbox is over its bound (pool workers at once, other threads after ``block_timeout``).
  Messages must be ``actors.codec`` values; one that cannot be encoded is dropped by the
  writer, counted (``unencodable``) and logged - never pickled.
- ``ask(message, timeout)`` sends an ASK and blocks like a local ask: the remote handler's
  return value, ``ActorCrashed`` (its ``reason`` a ``RemoteError``), ``ActorDead`` (also when the
  node dies: ``noconnection``), ``AskTimeout``, ``MailboxFull``.
- A link from a local actor to a ``RemoteRef`` is mirrored on the remote node (a proxy of the
  local actor linked to the target there), so exits travel both ways with Erlang's rules, and a
  node's death breaks both ends with ``"noconnection"``.
- A ``RemoteRef`` belongs to one incarnation of the remote actor and one life of its node:
  after a ``"noconnection"`` it stays dead, as a pid does for Erlang's monitors; look the name up
  again. ``rt.kill(remote_ref)`` kills only the local proxy.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any, Callable

from actors import Actor, ActorDead, ActorRef, ActorStatistics, Exit
from actors.codec import encode

from actors import lowlevel
from ._wire import ASK, LINK, UNLINK

if TYPE_CHECKING:
    from ._node import ClusterNode
    from ._peer import Peer

__all__ = ["RemoteRef", "Exports", "Proxies", "NOCONNECTION"]

NOCONNECTION = "noconnection"


class RemoteRef(ActorRef):
    """A ref to an actor on node ``node`` (see the module docstring). Safe from any thread."""

    __slots__ = ("node", "target", "_peer", "_info", "_rt", "_send")

    node: str
    target: Any  # an export id (int) or a registered name (str)
    _peer: Peer
    _info: dict[str, Any]
    _rt: Any  # the Runtime
    _send: Callable[[Any], bool]

    def tell(self, message: Any) -> bool:
        """Hand ``message`` to the peer's outbox; False (a counted dead letter) when the proxy
        exited or the outbox refused it."""
        return self._send(message)

    def ask(self, message: Any, timeout: float = 5.0) -> Any:
        """Like ``ActorRef.ask``, across the wire. Blocks up to ``timeout`` seconds."""
        lowlevel.check_number(timeout, "ask timeout", positive=True, unit="seconds")
        if lowlevel.is_dead(self):
            raise ActorDead(f"{self.path} is not alive")
        encode(message)  # raises EncodeError here, in the caller, rather than in the writer
        peer = self._peer
        reply = lowlevel.Reply()
        corr = peer.expect(reply)
        try:
            if not peer.outbox.put([ASK, self.target, corr, message], peer.can_block):
                raise ActorDead(f"{self.path} is not reachable ({NOCONNECTION})")
            return lowlevel.wait_reply(self._rt, reply, timeout, self.path)
        finally:
            peer.forget(corr)

    @property
    def name(self) -> str | None:
        name = self._info.get("name")
        return name if isinstance(name, str) else None

    @property
    def path(self) -> str:
        """``node:path`` of the remote actor, e.g. ``n2:/tenants/acme/store``."""
        return f"{self.node}:{self._info.get('path', self.target)}"

    @property
    def tenant(self) -> str | None:
        tenant = self._info.get("tenant")
        return tenant if isinstance(tenant, str) else None

    def statistics(self) -> ActorStatistics:
        """The local side only: messages this node could not hand over show as ``dropped``
        of the peer's outbox in the node's statistics; the remote mailbox is the remote
        node's to report."""
        alive = not lowlevel.is_dead(self)
        return ActorStatistics(name=self.name, path=self.path, alive=alive, queued=0, peak=0,
                               processed=0, dropped=0, capacity=0, overflow="REMOTE")

    def __repr__(self) -> str:
        return f"<RemoteRef {self.path}{'' if self.is_alive() else ' dead'}>"

    def __reduce__(self) -> Any:
        raise TypeError("a RemoteRef cannot be pickled; send names, or look the actor up")


class _Proxy(Actor):
    """Stands for one remote actor in this runtime. Traps exits (a linked local actor's exit is
    the remote node's business, told by DOWN); forwards anything queued to it."""

    trap_exits = True
    mailbox_size = 1_000_000

    def __init__(self, proxies: "Proxies", key: tuple[str, int, Any]) -> None:
        self.proxies = proxies
        self.key = key
        self.remote: RemoteRef | None = None
        self.suppress: set[Any] = set()   # cells being (un)linked at the remote node's request
        self.alive = [True]               # read by the ref's tell; False once this proxy exits

    def receive(self, message: Any) -> None:
        if isinstance(message, Exit):
            return
        if self.remote is not None:
            self.remote.tell(message)

    def on_stop(self, reason: Any) -> None:
        self.alive[0] = False
        self.proxies.forget(self.key, self.ref)


class Proxies:
    """The proxies of one node, by ``(peer id, peer incarnation, target)``."""

    def __init__(self, node: "ClusterNode") -> None:
        self._node = node
        self._lock = threading.Lock()  # guards _by_key; held for dict updates only
        self._by_key: dict[tuple[str, int, Any], RemoteRef] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, peer: "Peer", target: Any, info: dict[str, Any]) -> RemoteRef:
        """The ``RemoteRef`` for ``target`` on ``peer`` (made on first use)."""
        key = (peer.id, peer.incarnation, target)
        with self._lock:
            ref = self._by_key.get(key)
            if ref is not None and not lowlevel.is_dead(ref):
                return ref
        rt = self._node.runtime
        proxy_ref = rt.spawn(_Proxy, self, key)
        proxy: _Proxy = proxy_actor(proxy_ref)
        ref = RemoteRef.__new__(RemoteRef)
        ActorRef.__init__(ref, lowlevel.process_of(proxy_ref))
        ref.node, ref.target, ref._peer, ref._info, ref._rt = peer.id, target, peer, info, rt
        ref._send = _make_tell(ref, peer, proxy.alive)
        proxy.remote = ref
        lowlevel.set_ref(proxy_ref, ref)
        lowlevel.install_link_observer(
            proxy_ref, lambda cell: self._node.link_changed(proxy, cell, True),
            lambda cell: self._node.link_changed(proxy, cell, False))
        with self._lock:
            other = self._by_key.get(key)
            if other is not None and not lowlevel.is_dead(other):
                winner = other
            else:
                self._by_key[key] = winner = ref
        if winner is not ref:
            lowlevel.request_stop(proxy_ref, "normal")
        if not peer.alive:  # the node died while we built it
            lowlevel.exit_quietly(winner, NOCONNECTION)
        return winner

    def find(self, peer: "Peer", target: Any) -> RemoteRef | None:
        with self._lock:
            return self._by_key.get((peer.id, peer.incarnation, target))

    def of_peer(self, peer_id: str) -> list[RemoteRef]:
        with self._lock:
            return [r for k, r in self._by_key.items() if k[0] == peer_id]

    def forget(self, key: tuple[str, int, Any], proxy_ref: ActorRef) -> None:
        with self._lock:
            ref = self._by_key.get(key)
            if ref is not None and lowlevel.process_of(ref) is lowlevel.process_of(proxy_ref):
                del self._by_key[key]


def proxy_actor(proxy_ref: ActorRef) -> _Proxy:
    actor = lowlevel.actor_of(lowlevel.process_of(proxy_ref))
    assert isinstance(actor, _Proxy)
    return actor


def is_proxy_cell(cell: Any) -> bool:
    return isinstance(lowlevel.actor_of(cell), _Proxy)


def _make_tell(ref: RemoteRef, peer: "Peer", alive: list[bool]) -> Any:
    """The ``tell`` of one RemoteRef: ``alive[0]`` turns False when its proxy exits."""
    put, can_block = peer.outbox.put_tell, peer.can_block
    target, count_dead = ref.target, peer.count_dead_letter

    def tell(message: Any) -> bool:
        if alive[0] and put(target, message, can_block):
            return True
        count_dead()
        return False

    return tell


class Exports:
    """Local actors that other nodes hold refs to: ``id -> ref`` and which peers watch each.

    An export id names one incarnation of an actor for the life of this node process. The node's
    agent actor monitors every exported actor; on its exit each watching peer gets DOWN.
    Lock rule (``_lock``): dict updates only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._by_id: dict[int, ActorRef] = {}
        self._by_ref: dict[ActorRef, int] = {}
        self._watchers: dict[int, set[str]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def export(self, ref: ActorRef, watcher: str) -> tuple[int, bool]:
        """The export id of ``ref`` (made on first use) with ``watcher`` added; True as the
        second item when it is new (the caller then has it monitored)."""
        with self._lock:
            eid = self._by_ref.get(ref)
            new = eid is None
            if eid is None:
                eid = next(self._ids)
                self._by_ref[ref] = eid
                self._by_id[eid] = ref
                self._watchers[eid] = set()
            self._watchers[eid].add(watcher)
            return eid, new

    def get(self, eid: Any) -> ActorRef | None:
        return self._by_id.get(eid)

    def exited(self, ref: ActorRef) -> tuple[int, set[str]] | None:
        """``ref`` exited: forget it; its id and watchers (None if it was not exported)."""
        with self._lock:
            eid = self._by_ref.pop(ref, None)
            if eid is None:
                return None
            self._by_id.pop(eid, None)
            return eid, self._watchers.pop(eid, set())

    def drop_watcher(self, peer_id: str) -> None:
        with self._lock:
            for watchers in self._watchers.values():
                watchers.discard(peer_id)


def link_record(kind: int, target: Any, export_id: int, ref: ActorRef) -> list[Any]:
    """A LINK/UNLINK record: the proxy's target on the peer, and our actor's export."""
    assert kind in (LINK, UNLINK)
    return [kind, target, export_id, describe(ref)]


def describe(ref: ActorRef) -> dict[str, Any]:
    """What a peer needs to show a ref of ours: its path, name and tenant."""
    return {"path": ref.path, "name": ref.name, "tenant": ref.tenant}
