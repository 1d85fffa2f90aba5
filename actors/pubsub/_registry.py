"""``PubSub``: the in-process MQTT registry of one runtime (``runtime.pubsub``).

Contract (docs/ARCHITECTURE.md section 6):

- ``subscribe(filter, ref, qos=0, session=None) -> Subscription``; ``unsubscribe(sub)``;
  ``publish(topic, payload, qos=0, retain=False) -> int`` (how many subscribers it was routed
  to); ``set_will(ref, topic, payload, qos=0, retain=False)``; ``attach(session, ref)``;
  ``end_session(session)``; ``statistics()``. The subscriber receives a ``Publish``.
- Routing is a trie per namespace: cost grows with topic depth and matches, not subscriptions.
  Overlapping subscriptions of one subscriber give one copy at the highest of their QoS; the
  delivered QoS is the lower of the publication's and the subscription's.
- Retained: a retained publish replaces the topic's retained message; ``b""``, ``""`` or
  ``None`` clears it (and is still delivered to current subscribers, as MQTT does). A new
  (non-shared) subscription gets the matching retained messages at once with ``retain=True``;
  every other delivery has ``retain=False``. The store is bounded (``retained_messages``):
  a new topic beyond it is not retained (counted ``retained_refused``), still delivered.
- QoS 0: at most once, straight into the mailbox, whose overflow policy may drop it (counted).
  QoS 1: at least once - a message whose handler crashed, or still queued when its actor died,
  goes to the session's next actor or to another member of its shared group. QoS 2: the same,
  plus exactly once per session: an id the session handled (or holds) is never queued to it
  again, and the message of a killed handler that may still run is resent only if that handler
  fails. Plain subscriptions (no session, not shared) die with their actor and lose its queue
  (counted ``dropped_dead``).
- Sessions (``session="name"``): subscriptions and a bounded buffer (``session_buffer``) that
  outlive the actor; while no live actor is attached, messages are buffered (overflow counted
  ``dropped_buffer``); ``attach`` (or subscribing with the same session) hands the buffer over
  in order. Attaching a new actor while another is attached takes the session over (MQTT).
- Last will: published exactly once when its actor exits abnormally (an exception or
  ``"killed"``), never on ``"normal"`` or ``"shutdown"``; it is forgotten at any exit.
- Shared subscriptions ``$share/<group>/<filter>``: each message goes to one live member, round
  robin; a dead member's share (its buffer and unfinished messages) goes to the other members,
  a detached session member only when no member is live. No retained messages on joining.
- Tenants: the namespace is the caller's identity - the tenant of the actor calling (or of
  ``rt.tenant(name).pubsub``), or, for a trusted system caller, the tenant of the subscribing
  actor. Each namespace has its own trie, retained store and sessions: no filter (``#``, ``+/#``,
  ``$SYS/#``, ``$share/...``) reaches another tenant or the system namespace, and a tenant's
  actors see tenant-relative topics. An actor cannot act for another tenant (``PermissionError``).

Every method is safe from any thread, including inside actors; none blocks, except that a
publish to a subscriber with the BLOCK overflow policy waits as a ``tell`` would. Errors:
``ValueError`` for an invalid topic, filter, QoS or session name (the message names the
problem), ``TypeError`` for a non-str topic or non-ref, ``ActorDead`` for a dead ref,
``PermissionError`` for crossing tenants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .._cell import current_cell
from .._errors import ActorDead
from .._events import ActorExited
from .._mailbox import DEAD
from ..topics import split_shared, validate_topic
from ._delivery import Deliveries
from ._state import Delivery, Namespace, SharedGroup, Target
from ._types import DEFAULT_LIMITS, Publish, PubSubStatistics, Subscription, read_limit

if TYPE_CHECKING:
    from .._actor import ActorRef
    from .._runtime import Runtime
    from ._view import TenantPubSub

__all__ = ["PubSub"]


class _Will(NamedTuple):
    ns: str | None
    topic: str
    payload: Any
    qos: int
    retain: bool


def _check_qos(qos: object) -> None:
    if isinstance(qos, bool) or qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")


def _check_topic(topic: str) -> list[str]:
    validate_topic(topic)
    return topic.split("/")


def _check_ref(ref: object) -> "ActorRef":
    from .._actor import ActorRef
    if not isinstance(ref, ActorRef):
        raise TypeError(f"expected an ActorRef, got {type(ref).__name__}: {ref!r}")
    return ref


def _abnormal(reason: Any) -> bool:
    return not (isinstance(reason, str) and reason in ("normal", "shutdown"))


class PubSub(Deliveries):
    """The registry. ``PubSub(runtime, **limits)``: ``limits`` bound the system namespace
    (defaults in ``DEFAULT_LIMITS``); a tenant's bounds come from ``Tenant.limits``."""

    def __init__(self, runtime: "Runtime", **limits: int) -> None:
        super().__init__()
        for key in limits:
            if key not in DEFAULT_LIMITS:
                raise ValueError(f"unknown pub/sub limit {key!r}; choose from "
                                 f"{', '.join(DEFAULT_LIMITS)}")
            read_limit(limits, key)
        self._runtime = runtime
        self._limits = dict(limits)
        self._wills: dict["ActorRef", _Will] = {}
        self._views: dict[str, "TenantPubSub"] = {}
        runtime.bus._listen(ActorExited, self._on_exit)

    def __repr__(self) -> str:
        with self._lock:
            spaces = len(self._namespaces)
        return f"<PubSub namespaces={spaces} wills={len(self._wills)}>"

    # -- the public API (the tenant view passes its name as ``scope``) --------------------------
    def subscribe(self, filter: str, ref: "ActorRef", qos: int = 0,
                  session: str | None = None, *, scope: str | None = None) -> Subscription:
        """Subscribe ``ref`` (or the named ``session``, attaching ``ref`` to it) to ``filter``.
        Subscribing again with the same filter replaces the QoS. Matching retained messages are
        sent at once (not for shared subscriptions)."""
        group, inner = split_shared(filter)
        _check_qos(qos)
        if session is not None and (not isinstance(session, str) or not session):
            raise ValueError(f"session must be a non-empty string or None, got {session!r}")
        levels = inner.split("/")
        sends: list[Delivery] = []
        with self._lock:
            ns = self._ns(self._scope_for(scope, _check_ref(ref)))
            self._check_limits(ns)
            self._alive_or_raise(ref, "subscribe")
            target = self._target_locked(ns, ref, session, sends)
            sub = target.subs.get(filter)
            if sub is not None:
                sub.qos = qos
            else:
                sub = target.subs[filter] = Subscription(filter, inner, qos, group, target)
                if group is None:
                    ns.trie.add(levels, sub, sub)
                else:
                    shared = ns.groups.get((group, inner))
                    if shared is None:
                        shared = ns.groups[(group, inner)] = SharedGroup(group, inner)
                        ns.trie.add(levels, ("$share", group), shared)
                    shared.join(target, sub)
            if group is None:
                for kept in ns.retained.matching(levels):
                    msg = kept if kept.qos <= qos else Publish(
                        kept.topic, kept.payload, qos, True, kept.id)
                    self._offer_locked(target, msg, None, sends)
        self._send(sends)
        return sub

    def unsubscribe(self, sub: Subscription, *, scope: str | None = None) -> bool:
        """Remove ``sub``; False if it was not active. A plain subscriber's last unsubscribe
        drops its buffered messages (counted); a session keeps its buffer."""
        if not isinstance(sub, Subscription):
            raise TypeError(f"expected a Subscription, got {type(sub).__name__}")
        sends: list[Delivery] = []
        with self._lock:
            space = self._scope(scope)
            if space is not None and sub.tenant != space:
                raise PermissionError(f"tenant {space!r} cannot unsubscribe {sub!r}")
            if not sub.active:
                return False
            self._remove_sub_locked(sub)
            target = sub._target
            if target.session is None and not target.subs and target.ref is not None:
                self._forget_plain_locked(target, target.ref, sends)
        self._send(sends)
        return True

    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False, *,
                scope: str | None = None) -> int:
        """Publish in the caller's namespace; returns the number of subscribers it was routed
        to (mailboxes and buffers; a synchronous overflow refusal is not counted)."""
        levels = _check_topic(topic)
        _check_qos(qos)
        if not isinstance(retain, bool):
            raise ValueError(f"retain must be a bool, got {retain!r}")
        sends: list[Delivery] = []
        with self._lock:
            ns = self._ns(self._scope(scope))
            self._check_limits(ns)
            routed = self._route_locked(ns, topic, levels, payload, qos, retain, sends)
        refused = len(sends) - self._send(sends)
        return routed - refused

    def set_will(self, ref: "ActorRef", topic: str, payload: Any, qos: int = 0,
                 retain: bool = False, *, scope: str | None = None) -> None:
        """Publish ``payload`` on ``topic`` (in ``ref``'s namespace) when ``ref`` exits
        abnormally, exactly once. Replaces an earlier will of ``ref``."""
        _check_topic(topic)
        _check_qos(qos)
        if not isinstance(retain, bool):
            raise ValueError(f"retain must be a bool, got {retain!r}")
        with self._lock:
            space = self._scope_for(scope, _check_ref(ref))
            self._alive_or_raise(ref, "set a will for")
            self._wills[ref] = _Will(space, topic, payload, qos, retain)

    def clear_will(self, ref: "ActorRef", *, scope: str | None = None) -> bool:
        """Forget ``ref``'s will; True if it had one."""
        with self._lock:
            self._scope_for(scope, _check_ref(ref))
            return self._wills.pop(ref, None) is not None

    def attach(self, session: str, ref: "ActorRef", *, scope: str | None = None) -> int:
        """Attach ``ref`` to ``session`` (created if new): it receives the session's buffered
        messages in order, then everything its subscriptions match. Returns how many messages
        were buffered."""
        if not isinstance(session, str) or not session:
            raise ValueError(f"session must be a non-empty string, got {session!r}")
        sends: list[Delivery] = []
        with self._lock:
            ns = self._ns(self._scope_for(scope, _check_ref(ref)))
            self._check_limits(ns)
            self._alive_or_raise(ref, "attach")
            target = self._session_locked(ns, session)
            buffered = len(target.pending) if target.ref is not ref else 0
            self._attach_locked(target, ref, sends)
        self._send(sends)
        return buffered

    def end_session(self, session: str, *, scope: str | None = None) -> bool:
        """Delete a named session: its subscriptions and buffer (dropped, counted). Messages
        in its actor's mailbox still arrive. True if it existed."""
        sends: list[Delivery] = []
        with self._lock:
            ns = self._ns(self._scope(scope))
            target = ns.sessions.pop(session, None)
            if target is None:
                return False
            for sub in list(target.subs.values()):
                self._remove_sub_locked(sub)
            if target.ref is not None:
                self._detach_locked(target, target.ref, sends, died=False)
            else:
                self._evacuate_locked(target, [], sends)
        self._send(sends)
        return True

    def statistics(self, *, scope: str | None = None) -> PubSubStatistics:
        """Counters of the caller's namespace; a system caller gets the sum over every
        namespace (``rt.tenant(name).pubsub.statistics()`` gives one tenant's)."""
        with self._lock:
            space = self._scope(scope)
            if space is None and scope is None:
                spaces = list(self._namespaces.values())
            else:
                spaces = [self._namespaces[space]] if space in self._namespaces else []
            totals = dict.fromkeys(PubSubStatistics.__dataclass_fields__, 0)
            for ns in spaces:
                for key, value in ns.counts.items():
                    totals[key] += value
                targets = ns.targets()
                totals["subscriptions"] += sum(len(t.subs) for t in targets)
                totals["sessions"] += len(ns.sessions)
                totals["retained"] += len(ns.retained)
                totals["inflight"] += (sum(len(t.inflight) + len(t.orphans) for t in targets)
                                       + ns.unsettled0)
                totals["buffered"] += sum(len(t.pending) for t in targets)
        return PubSubStatistics(**totals)

    def tenant(self, name: str) -> "TenantPubSub":
        """The pub/sub of tenant ``name`` (what ``rt.tenant(name).pubsub`` returns)."""
        from ._view import TenantPubSub
        with self._lock:
            view = self._views.get(name)
            if view is None:
                view = self._views[name] = TenantPubSub(self, name)
            return view

    # -- identity ---------------------------------------------------------------------------------
    @staticmethod
    def _scope(view: str | None) -> str | None:
        """The namespace of the caller: its actor's tenant, else the view's (None: system)."""
        cell = current_cell()
        caller = cell.tenant if cell is not None else None
        if caller is None:
            return view
        if view is not None and view != caller:
            raise PermissionError(f"an actor of tenant {caller!r} cannot use the pub/sub of "
                                  f"tenant {view!r}")
        return caller

    def _scope_for(self, view: str | None, ref: "ActorRef") -> str | None:
        """The namespace for an act on ``ref``: a system caller acts in ``ref``'s tenant."""
        space = self._scope(view)
        owner = ref._cell.tenant
        if owner is None or owner == space:
            return space
        if space is None:
            return owner
        raise PermissionError(f"{ref.path} belongs to tenant {owner!r}, not {space!r}")

    @staticmethod
    def _alive_or_raise(ref: "ActorRef", what: str) -> None:
        # Checked under _lock: if it is alive now, its exit (later) will find what we register.
        if ref._cell._state == DEAD:
            raise ActorDead(f"cannot {what} {ref.path}: it is not alive")

    # -- targets ----------------------------------------------------------------------------------
    def _session_locked(self, ns: Namespace, name: str) -> Target:
        target = ns.sessions.get(name)
        if target is None:
            limit = self._limit(ns, "sessions")
            if len(ns.sessions) >= limit:
                who = "the system" if ns.key is None else f"tenant {ns.key!r}"
                raise ValueError(f"{who} already has {limit} pub/sub sessions (its 'sessions' "
                                 f"limit); end_session() some or raise the limit")
            target = ns.sessions[name] = Target(ns, name)
        return target

    def _target_locked(self, ns: Namespace, ref: "ActorRef", session: str | None,
                       sends: list[Delivery]) -> Target:
        if session is not None:
            target = self._session_locked(ns, session)
        else:
            plain = ns.plain.get(ref)
            target = plain if plain is not None else Target(ns, None)
            ns.plain[ref] = target
        self._attach_locked(target, ref, sends)
        return target

    # -- exits (a synchronous bus listener: runs on the exiting actor's thread) -----------------
    def _on_exit(self, event: ActorExited) -> None:
        ref = event.ref
        sends: list[Delivery] = []
        with self._lock:
            will = self._wills.pop(ref, None)
            for target in self._attached.pop(ref, ()):
                self._detach_locked(target, ref, sends, died=True)
                if target.session is None:
                    self._forget_plain_locked(target, ref, sends)
            if will is not None and _abnormal(event.reason):
                ns = self._ns(will.ns)
                ns.count("wills")
                self._route_locked(ns, will.topic, will.topic.split("/"), will.payload,
                                   will.qos, will.retain, sends)
        self._send(sends)
