"""The thespian adapter: the only module of streamvisor that imports thespian.

One thespian actor per node (thespian runs each actor in its own OS process): ``NodeActor``
hosts a ``ClusterNode`` - a streamvisor ``Runtime`` with its data plane - and handles lifecycle
and control only: ``Configure`` (become node X), ``StatusRequest``, ``ActorExitRequest``
(stop) and restarts of killed nodes of its own admin. thespian stays on this host: ``harden``
binds every thespian socket to loopback and seals every frame (``_seal``); nodes on other
hosts meet on the authenticated data plane (``--join``). thespian's names stay at this boundary:
``receiveMessage`` calls ``receive``.

Helpers for the launcher (``connect``, ``create_node``, ``ask_all``, ``shutdown``) keep the rest
of the package free of thespian too.
"""

from __future__ import annotations

import os
import time
from typing import Any

from thespian.actors import (ActorExitRequest, ActorSystem, ChildActorExited, PoisonMessage,
                             WakeupMessage)
from thespian.actors import Actor as _ThespianActor
from thespian.system.transport import IPBase as _ipbase
from thespian.system.transport import TCPTransport as _tcp
from thespian.system.transport.TCPTransport import TCPTransport

from actors import configure_logging, get_logger

from ._control import Configure, Ready, StatusReply, StatusRequest, global_name
from ._tlslink import TlsConfig
from ._seal import MAX_FRAME, SealedPickle, bounded_receive_buffer
from ._state import StateDir, is_running, process_start_time, rotate_log
from supervisors.apps import load_app  # the same loader as `streamvisor run`

__all__ = ["NodeActor", "BASE", "connect", "create_node", "ask_all", "shutdown", "address_of",
           "harden", "HOST"]

BASE = "multiprocTCPBase"
NODE_ACTOR = "supervisors.cluster._thespian.NodeActor"
_HOUSEKEEPING = 0.2          # seconds between restart checks
_MAX_RESTARTS = (3, 30.0)    # at most 3 restarts of one node id in 30 s (then its tenants stay
                             # re-placed on the survivors; counted again once the window passed)
_log = get_logger(component="cluster.thespian")
HOST = "127.0.0.1"           # thespian never listens anywhere else (cross-host traffic uses the
                             # authenticated data plane, see README "More hosts")
_ORIGINAL_BUFFER = _tcp.ReceiveBuffer
_ORIGINAL_BIND_ARGS = _ipbase.IPActorAddress.bindArgs


def harden(key: bytes, host: str = HOST) -> SealedPickle:
    """Make thespian safe to run in this process and in every process forked from it (thespian
    forks its admin, logger and actors, which inherit this): every listening socket binds to
    ``host`` (thespian itself binds ``0.0.0.0`` whatever ``THESPIAN_BASE_IPADDR`` says), and
    every frame is sealed and checked with ``key`` before anything is unpickled
    (``_seal.SealedPickle``; announced sizes over ``MAX_FRAME`` are refused from the header).
    Call it before ``connect``. Returns the serializer (its ``rejected`` counts refusals)."""
    sealed = SealedPickle(key)
    os.environ["THESPIAN_BASE_IPADDR"] = host    # the address thespian advertises
    _tcp.serializer = sealed                     # TCPTransport looks it up at every use
    _tcp.ReceiveBuffer = bounded_receive_buffer(_ORIGINAL_BUFFER, MAX_FRAME)

    def bind_args(self: Any) -> tuple[tuple[str, int]]:
        return ((host, self.bindname[1]),)

    _ipbase.IPActorAddress.bindArgs = property(bind_args)
    return sealed


def control_rejected() -> dict[str, int]:
    """What this process's sealed serializer refused so far, by reason."""
    sealed = _tcp.serializer
    return dict(sealed.rejected) if isinstance(sealed, SealedPickle) else {}


class NodeActor(_ThespianActor):  # type: ignore[misc]  # thespian has no types: its Actor is Any
    """A cluster node inside thespian (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node: Any = None
        self.config: Configure | None = None
        self._restarts: dict[str, list[float]] = {}   # node id -> monotonic restart times
        self._waiting: dict[str, float] = {}          # node id -> when its Ready is overdue
        self._gave_up: set[str] = set()

    def receiveMessage(self, message: Any, sender: Any) -> None:  # thespian's name
        self.receive(message, sender)

    def receive(self, message: Any, sender: Any) -> None:
        if isinstance(message, Configure):
            self.send(sender, self._configure(message))
        elif isinstance(message, StatusRequest):
            status = self.node.status() if self.node is not None else {"alive": False}
            status["control_rejected"] = control_rejected()
            self.send(sender, StatusReply(self.config.node_id if self.config else "?", status))
        elif isinstance(message, WakeupMessage):
            self._housekeeping()
        elif isinstance(message, ActorExitRequest):
            if self.node is not None:
                self.node.stop(timeout=3.0)
                self.node = None
        elif isinstance(message, Ready):
            self._waiting.pop(message.node_id, None)
            if message.error:
                _log.error("restarted node failed to start", node=message.node_id,
                           error=message.error)
        elif isinstance(message, (ChildActorExited, PoisonMessage)):
            pass

    # -- becoming a node -----------------------------------------------------------------------
    def _configure(self, config: Configure) -> Ready:
        if self.node is not None:
            return Ready(config.node_id, os.getpid(), os.getppid(), self.node.info,
                         error=None if config.node_id == self.config.node_id  # type: ignore[union-attr]  # a configured node has its config
                         else "already configured")
        try:
            configure_logging()
            from ._node import ClusterNode
            app = load_app(config.app) if config.app else None
            node = ClusterNode(
                config.node_id, cookie=config.cookie, cluster=config.cluster, bind=config.bind,
                port=config.port, heartbeat_port=config.heartbeat_port,
                incarnation=config.incarnation, admin=config.admin, workers=config.workers,
                tenants=config.tenants, app=app, app_options=dict(config.app_options),
                heartbeat_interval=config.heartbeat_interval,
                heartbeat_timeout=config.heartbeat_timeout,
                tls=TlsConfig(*config.tls) if config.tls else None,
                lease_dsn=config.leases[0] if config.leases else None,
                lease_ttl=config.leases[1] if config.leases else 6.0,
                lease_grace=config.leases[2] if config.leases else 1.0,
                lease_table=config.leases[3] if config.leases else "streamvisor_leases")
            node.start(members=config.members, seeds=config.seeds)
        except (Exception, SystemExit) as exc:  # reported to the launcher, which says why
            _log.error("node failed to start", node=config.node_id, error=repr(exc))
            return Ready(config.node_id, os.getpid(), os.getppid(), error=repr(exc))
        self.node, self.config = node, config
        StateDir(config.state_dir).write_node({
            "id": config.node_id, "pid": os.getpid(), "ppid": os.getppid(),
            "start_time": process_start_time(os.getpid()), "pgid": os.getpgid(0),
            "incarnation": config.incarnation, "data": list(node.address),
            "thespian": list(self.myAddress.addressDetails.sockname),
            "admin": config.admin, "at": time.time()})
        self.wakeupAfter(_HOUSEKEEPING)
        return Ready(config.node_id, os.getpid(), os.getppid(), node.info)

    # -- restarting killed nodes of this admin ---------------------------------------------------
    def _housekeeping(self) -> None:
        """Every ``_HOUSEKEEPING`` s: rotate ``cluster.log`` when it is over its size; restart
        the dead nodes of this admin whose process is gone,
        if this node is the lowest live one of the admin (so exactly one survivor does it, and
        another takes over if that one dies too)."""
        if self.config is not None:
            try:
                rotate_log(StateDir(self.config.state_dir).log_file, self.config.log_max_bytes,
                           self.config.log_keep)
            except OSError as exc:   # a full disk must not stop the node
                _log.error("cluster.log not rotated", error=repr(exc))
        if self.node is not None and self.config is not None and self.config.restart == "always":
            for member in self.node.members():
                if not member["alive"]:
                    self._maybe_restart(member)
        self.wakeupAfter(_HOUSEKEEPING)

    def _maybe_restart(self, member: dict[str, Any]) -> None:
        config, node = self.config, self.node
        assert config is not None and node is not None
        node_id, now = member["id"], time.monotonic()
        if node.peer_admin(node_id) != config.admin or self._waiting.get(node_id, 0.0) > now:
            return
        same_admin = [m["id"] for m in node.members()
                      if m["alive"] and (m["self"] or node.peer_admin(m["id"]) == config.admin)]
        if min(same_admin) != node.id or is_running(member.get("pid")):
            return  # another survivor restarts it, or it is paused (SIGSTOP), not gone
        history = [t for t in self._restarts.get(node_id, []) if now - t < _MAX_RESTARTS[1]]
        self._restarts[node_id] = history
        if len(history) >= _MAX_RESTARTS[0]:
            if node_id not in self._gave_up:
                self._gave_up.add(node_id)
                node._event("restart_gave_up", node=node_id, restarts=len(history))
            return
        self._gave_up.discard(node_id)
        info = node.peer_info(node_id)
        if info is None:
            return
        history.append(now)
        members = tuple([node.info] + [i for i in (node.peer_info(m) for m in node.alive_nodes()
                                                   if m != node.id) if i is not None])
        restart = config.for_node(node_id, int(info["data"][1]), int(info["hb"][1]),
                                  int(member["incarnation"]) + 1, members)
        address = self.createActor(NODE_ACTOR, globalName=global_name(config.cluster, node_id))
        self.send(address, restart)
        self._waiting[node_id] = now + 5.0   # no second attempt before its Ready is due
        node._event("node_restart", node=node_id, incarnation=restart.incarnation,
                    attempt=len(history))


# -- launcher side -------------------------------------------------------------------------------
def connect(admin_port: int, capabilities: dict[str, Any] | None = None) -> ActorSystem:
    """Start (or join) the local thespian admin on ``admin_port``; the caller's process becomes
    a thespian client. The admin detaches and outlives the caller."""
    caps = {"Admin Port": admin_port, **(capabilities or {})}
    return ActorSystem(BASE, capabilities=caps)


def create_node(system: ActorSystem, cluster: str, node_id: str) -> Any:
    return system.createActor(NODE_ACTOR, globalName=global_name(cluster, node_id))


def address_of(sockname: list[Any] | tuple[Any, ...]) -> Any:
    """The thespian address of the actor listening on ``(host, port)``."""
    return TCPTransport.getAddressFromString((str(sockname[0]), int(sockname[1])))


def ask_all(system: ActorSystem, targets: dict[str, Any], message: Any,
            timeout: float, answers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send ``message`` to every address in ``targets`` and collect the answers that arrive
    within ``timeout`` seconds into ``answers``: ``{key: answer}`` (a silent target is
    missing). Each answer is stored as it arrives, so a caller that gives up early keeps them."""
    for address in targets.values():
        system.tell(address, message)
    answers = {} if answers is None else answers
    by_address = {str(a): k for k, a in targets.items()}
    deadline = time.monotonic() + timeout
    while len(answers) < len(targets):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        answer = system.listen(left)
        if answer is None:
            continue
        key = getattr(answer, "node_id", None)
        if key in targets:
            answers[key] = answer
        elif str(getattr(answer, "source", "")) in by_address:
            answers[by_address[str(answer.source)]] = answer
    return answers


def shutdown(system: ActorSystem) -> None:
    """Stop the admin and every actor it hosts (each node's ``ActorExitRequest`` stops it)."""
    system.shutdown()
