"""The values of the pub/sub registry: the ``Publish`` message, ``Subscription`` handles, the
``PubSubStatistics`` snapshot and the per-namespace limits (with their defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Mapping

from .._checks import check_number

if TYPE_CHECKING:
    from .._actor import ActorRef
    from ._state import Target

__all__ = ["Publish", "Subscription", "PubSubStatistics", "DEFAULT_LIMITS", "read_limit",
           "is_empty_payload"]


@dataclass(frozen=True, slots=True)
class Publish:
    """What a subscriber receives. ``topic`` is relative to the subscriber's namespace (a tenant's
    actor never sees a tenant prefix); ``qos`` is the delivered QoS (the lower of the publish's and
    the subscription's); ``retain`` is True only for a message from the retained store sent at
    subscribe time; ``id`` identifies the publication within its namespace (a redelivery carries
    the same id)."""

    topic: str
    payload: Any
    qos: int
    retain: bool
    id: int


# Per-namespace bounds. A tenant's come from ``Tenant.limits`` (read at use, so updates apply at
# once); the system namespace's from ``PubSub(runtime, **limits)``.
DEFAULT_LIMITS: Final[Mapping[str, int]] = {
    "retained_messages": 10_000,   # retained topics kept; more are refused (counted)
    "session_buffer": 1_000,       # messages queued per subscriber/session; more are dropped
    "sessions": 10_000,            # named sessions; creating one more raises ValueError
    "inflight_messages": 10_000,   # QoS 1/2 messages in one subscriber's mailbox at once
}


def read_limit(limits: Mapping[str, Any], key: str) -> int:
    """``limits[key]`` or its default; ``ValueError`` names the key when it is not a positive
    int. Pure."""
    value = limits.get(key, DEFAULT_LIMITS[key])
    return check_number(value, f"pub/sub limit {key!r}", integer=True, positive=True)


def is_empty_payload(payload: Any) -> bool:
    """``b""``, ``""`` and ``None`` clear a retained message."""
    return payload is None or (isinstance(payload, (bytes, bytearray, str)) and len(payload) == 0)


class Subscription:
    """A handle ``subscribe`` returns; pass it to ``unsubscribe``. Read-only attributes:
    ``filter`` (as given, e.g. ``"$share/g/a/+"``), ``qos``, ``session`` (name or None),
    ``group`` (share name or None), ``tenant`` (the namespace, None for the system), ``active``;
    ``ref`` is the actor receiving now (a session's currently attached actor, or None)."""

    __slots__ = ("filter", "inner", "qos", "session", "group", "tenant", "active", "_target")

    def __init__(self, filter: str, inner: str, qos: int, group: str | None,
                 target: "Target") -> None:
        self.filter = filter
        self.inner = inner          # the filter without ``$share/<group>/``
        self.qos = qos
        self.group = group
        self.session = target.session
        self.tenant = target.ns.key
        self.active = True
        self._target = target

    @property
    def ref(self) -> "ActorRef | None":
        return self._target.ref

    def __repr__(self) -> str:
        where = f" tenant={self.tenant}" if self.tenant is not None else ""
        who = f"session={self.session!r}" if self.session is not None else repr(self.ref)
        state = "" if self.active else " inactive"
        return f"<Subscription {self.filter!r} qos={self.qos} {who}{where}{state}>"


@dataclass(frozen=True, slots=True)
class PubSubStatistics:
    """Counters of one namespace (or the sum of all). Exact; each (message, subscriber) pair that
    was ``routed`` ends as ``delivered`` (a handler returned), one of the ``dropped_*`` counts, or
    is still ``inflight``/``buffered``. ``deduplicated`` pairs (QoS 2 ids a session already had)
    are not routed. ``redelivered`` counts resends after a crash or death, ``duplicates`` handlers
    that finished a QoS 1 message already redelivered elsewhere; ``route_visits`` is the number of
    trie nodes publishes looked at (it grows with topic depth and matches, not subscriptions)."""

    subscriptions: int = 0
    sessions: int = 0
    retained: int = 0
    published: int = 0
    routed: int = 0
    delivered: int = 0
    redelivered: int = 0
    duplicates: int = 0
    deduplicated: int = 0
    dropped_overflow: int = 0    # the subscriber's mailbox policy dropped or refused it
    dropped_buffer: int = 0      # a subscriber's/session's buffer was full
    dropped_dead: int = 0        # its subscriber died and nobody could take it over
    retained_refused: int = 0    # the retained store was full
    wills: int = 0               # last wills published
    route_visits: int = 0
    inflight: int = 0
    buffered: int = 0
