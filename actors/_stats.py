"""Statistics value objects: frozen snapshots, cheap to take, safe to keep."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ActorStatistics", "RuntimeStatistics"]


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    """One actor's mailbox and work counters at the moment ``statistics()`` was called.

    ``queued`` counts waiting messages (not the one being handled), ``peak`` is the high-water
    mark of ``queued`` (the worker samples it every 16 messages it takes, so while senders run
    during a turn it can read low by at most 16), ``dropped`` counts overflow drops (exactly),
    ``capacity`` the bound.
    """

    name: str | None
    path: str
    alive: bool
    queued: int
    peak: int
    processed: int
    dropped: int
    capacity: int
    overflow: str
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """Runtime-wide counters: ``dropped`` is every overflow drop since start; ``dead_letters``
    counts messages sent to actors that were already dead or left in a mailbox at exit."""

    node: str
    actors: int
    workers: int
    processed: int
    dropped: int
    dead_letters: int
    run_queue: int
    spawned: int
    exited: int
    timers: int
