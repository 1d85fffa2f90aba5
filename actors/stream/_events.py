"""Stream events on ``runtime.bus`` (also logged through structlog, with the node's tenant).

| event          | when                                                                    |
|----------------|-------------------------------------------------------------------------|
| ``ItemsDropped``| an edge's policy dropped items (at most once a second per edge)        |
| ``ItemsLost``  | a crash lost items: in flight to a dead receiver, in a crashed sender's |
|                | buffer, or in a crashed node's hands (``where``)                        |
"""

from __future__ import annotations

from dataclasses import dataclass

from .._events import LifecycleEvent

__all__ = ["StreamEvent", "ItemsDropped", "ItemsLost"]


@dataclass(frozen=True)
class StreamEvent(LifecycleEvent):
    """Base of the stream events: ``graph`` and ``node`` name where it happened."""

    graph: str = ""
    node: str = ""


@dataclass(frozen=True)
class ItemsDropped(StreamEvent):
    edge: str = ""
    policy: str = ""
    total: int = 0
    since_last: int = 0


@dataclass(frozen=True)
class ItemsLost(StreamEvent):
    where: str = ""        # "in_flight" | "buffered" | "custody"
    edge: str | None = None
    count: int = 0
