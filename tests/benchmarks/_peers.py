"""The peers of the "pipeline, 1 msg/hop" group: what runs them and at which sizes.

``n`` is the number of messages of one pipeline run, scaled down for slow peers so that a run
stays well under 5 s; ``idle`` is how many idle actors the memory/spawn measurement spawns
(capped where every actor is an OS thread). ``--quick`` divides both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Kind", "Peer", "PEERS", "QUICK_DIVISOR", "by_key"]

QUICK_DIVISOR = 10


class Kind(Enum):
    PYTHON = "python"  # runs as `python -m tests.benchmarks._one ... <key>`
    ERLANG = "erlang"  # runs as `erl ... -run sv_bench ...`


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    kind: Kind
    module: str = ""                       # PYTHON: tests.benchmarks.<module>
    options: dict[str, int] = field(default_factory=dict)  # extra keyword arguments
    n: int = 200_000
    idle: int = 20_000
    idle_note: str = ""
    reference: bool = False                # the row the ratio column divides by

    def sizes(self, quick: bool) -> tuple[int, int]:
        if not quick:
            return self.n, self.idle
        return max(1_000, self.n // QUICK_DIVISOR), max(100, self.idle // QUICK_DIVISOR)


_THREAD_CAP = "idle count capped: one OS thread per actor"

PEERS: tuple[Peer, ...] = (
    Peer("streamvisor-w2", "streamvisor (workers=2)", Kind.PYTHON, "_peer_streamvisor",
         {"workers": 2}, reference=True),
    Peer("streamvisor-w1", "streamvisor (workers=1)", Kind.PYTHON, "_peer_streamvisor",
         {"workers": 1}),
    Peer("raw", "raw CPython loop (deques, budget 128)", Kind.PYTHON, "_peer_raw"),
    Peer("erlang-s1", "Erlang/OTP (erl +S 1)", Kind.ERLANG, options={"schedulers": 1}),
    Peer("erlang-default", "Erlang/OTP (default schedulers)", Kind.ERLANG),
    Peer("asyncio", "asyncio (3 tasks, asyncio.Queue)", Kind.PYTHON, "_peer_asyncio"),
    Peer("threads", "threads (3, queue.SimpleQueue)", Kind.PYTHON, "_peer_threads",
         idle=1_000, idle_note=_THREAD_CAP),
    Peer("pykka", "pykka ThreadingActor (tell)", Kind.PYTHON, "_peer_pykka", n=50_000,
         idle=1_000, idle_note=_THREAD_CAP),
    Peer("thespian", "thespian simpleSystemBase", Kind.PYTHON, "_peer_thespian", n=50_000),
)


def by_key(key: str) -> Peer:
    for peer in PEERS:
        if peer.key == key:
            return peer
    raise KeyError(f"unknown peer {key!r}; known: {', '.join(p.key for p in PEERS)}")
