"""Exponential backoff for restarts: Akka's ``BackoffSupervisor`` arithmetic, as pure functions.

A child spec may carry a ``Backoff``; the supervisor then waits before each restart instead of
restarting at once. Nothing here sleeps, reads a clock or draws a random number: the caller passes
the restart count, the child's uptime and a uniform ``rand`` in ``[0, 1)``.

Delay (Akka ``BackoffRestarter.calculateDelay``, vectors B1)::

    restart_count >= 30   ->  max                                   (overflow guard, no jitter)
    otherwise             ->  min(max, min * 2 ** restart_count) * (1 + rand * jitter)

The jitter is applied *after* the cap, so a delay may exceed ``max`` by up to ``jitter * max``.

| failure | restart_count used | delay (jitter 0, min 0.2, max 5) | count afterwards |
|---------|--------------------|----------------------------------|------------------|
| 1st     | 0                  | 0.2                              | 1                |
| 2nd     | 1                  | 0.4                              | 2                |
| 3rd     | 2                  | 0.8                              | 3                |
| after running >= reset_after | 0 (reset)  | 0.2                       | 1                |

Reset (vectors B3): when the child has run for at least ``reset_after`` seconds since its last
(re)start, the count goes back to 0 before the next delay is computed. Akka schedules the reset as a
timer of ``reset_after`` seconds, so an uptime equal to ``reset_after`` already counts as stable. The
default ``reset_after`` is Akka typed's ``(min + max) / 2``.

``stash_size`` bounds the messages kept for the child while it is backing off (vectors B7); the
supervisor drops the rest and reports every drop. 0 means every such message is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from actors.lowlevel import check_number

__all__ = [
    "OVERFLOW_GUARD",
    "Backoff",
    "BackoffStep",
    "backoff_delay",
    "effective_reset_after",
    "next_backoff",
    "reset_restart_count",
]

OVERFLOW_GUARD: Final = 30
"""From this restart count on, the delay is exactly ``max`` (Akka's overflow guard)."""


@dataclass(frozen=True)
class Backoff:
    """Restart backoff of one child; all times in seconds.

    Raises ``ValueError`` naming the field: ``min`` must be > 0, ``max`` >= ``min``, ``jitter`` in
    ``[0, 1]`` (Akka's ``randomFactor``), ``reset_after`` > 0 or None (meaning ``(min + max) / 2``),
    ``stash_size`` an integer >= 0.
    """

    min: float = 0.1
    max: float = 5.0
    jitter: float = 0.2
    reset_after: float | None = None
    stash_size: int = 1000

    def __post_init__(self) -> None:
        low = check_number(self.min, "backoff: min", positive=True, unit="seconds")
        check_number(self.max, "backoff: max", low=low, unit="seconds")
        check_number(self.jitter, "backoff: jitter", low=0, high=1)
        check_number(self.reset_after, "backoff: reset_after", positive=True, unit="seconds",
                     or_none=True)
        check_number(self.stash_size, "backoff: stash_size", integer=True, low=0)
        for name in ("min", "max", "jitter", "reset_after"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class BackoffStep:
    """What to do after one failure: wait ``delay`` seconds, then remember ``restart_count``."""

    delay: float
    restart_count: int


def effective_reset_after(backoff: Backoff) -> float:
    """Seconds of uptime after which the restart count resets: ``reset_after`` or ``(min+max)/2``."""
    if backoff.reset_after is not None:
        return backoff.reset_after
    return backoff.min + (backoff.max - backoff.min) / 2


def backoff_delay(backoff: Backoff, restart_count: int, rand: float) -> float:
    """Seconds to wait before restart number ``restart_count`` (0 for the first failure).

    Pure; ``rand`` is a uniform draw in ``[0, 1)``. Raises ``ValueError`` for a negative or
    non-integer ``restart_count`` or a ``rand`` outside ``[0, 1)``.
    """
    _check_count(restart_count)
    if isinstance(rand, bool) or not isinstance(rand, (int, float)) or not 0 <= rand < 1:
        raise ValueError(f"rand must be a number in [0, 1), got {rand!r}")
    if restart_count >= OVERFLOW_GUARD:
        return backoff.max
    capped = min(backoff.max, backoff.min * 2.0**restart_count)
    return capped * (1.0 + rand * backoff.jitter)


def reset_restart_count(backoff: Backoff, restart_count: int, uptime: float) -> int:
    """The restart count to use for a failure after ``uptime`` seconds of running.

    0 if the child was stable (``uptime >= effective_reset_after``), else ``restart_count``.
    """
    _check_count(restart_count)
    if uptime >= effective_reset_after(backoff):
        return 0
    return restart_count


def next_backoff(
    backoff: Backoff, restart_count: int, uptime: float, rand: float
) -> BackoffStep:
    """Delay for the failure of a child that ran ``uptime`` seconds, and the count afterwards.

    Applies the reset rule, computes the delay from the (possibly reset) count, and increments it
    (Akka: ``restartCount += 1`` after scheduling the restart).
    """
    count = reset_restart_count(backoff, restart_count, uptime)
    return BackoffStep(backoff_delay(backoff, count, rand), count + 1)


def _check_count(restart_count: int) -> None:
    check_number(restart_count, "restart_count", integer=True, low=0)
