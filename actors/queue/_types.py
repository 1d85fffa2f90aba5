"""Value types and errors of the durable queue: Delivery, DeadLetter, RecoveryReport."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._queue import DurableQueue

__all__ = ["DeadLetter", "Delivery", "QueueClosed", "QueueError", "QueueFull", "QueueUnavailable",
           "RecoveryReport"]


class QueueError(Exception):
    """A storage error that is neither 'full' nor 'closed' (the sqlite3 error is the cause)."""


class QueueUnavailable(QueueError, OSError):
    """The queue file cannot be used right now: busy or locked by another connection for longer
    than ``busy_timeout``, the disk full, an I/O error, permission denied. Nothing was changed
    and the file was not touched (only real corruption is ever moved aside); retry later.

    An ``OSError`` too: ``errno`` says what kind (EBUSY, ENOSPC, EIO, EACCES, ...), the message
    names the file and the cause, and ``__cause__`` is the original error.
    """

    def __init__(self, message: str, code: int = errno.EIO) -> None:
        OSError.__init__(self, code, message)

    def __str__(self) -> str:
        return str(self.strerror)


class QueueFull(QueueUnavailable):
    """The queue reached its ``max_bytes`` or the disk is full (``errno`` is ``ENOSPC``).

    The refused records were not written and nothing was acknowledged; stored data stays
    readable, consumers can still drain, and puts succeed again once space returns. Counted in
    ``stats()["refused_full"]`` of the queue that refused them.
    """

    def __init__(self, message: str) -> None:
        QueueUnavailable.__init__(self, message, errno.ENOSPC)


class QueueClosed(QueueError, RuntimeError):
    """The queue was closed; no more calls are accepted."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that will not be delivered again (until ``requeue_dead``).

    ``reason`` is exactly ``"max_deliveries"``, ``"expired"`` or ``"error: <text>"``;
    ``attempts`` counts the deliveries it got. ``payload`` is the decoded payload, or the raw
    stored bytes when the record could not be decoded (its reason then says so).
    """

    id: int
    payload: Any
    reason: str
    attempts: int


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the file found. ``corrupt`` is False on a clean open.

    When corrupt, the damaged file (and its WAL) were moved to ``moved_to``, ``salvaged``
    records were copied into a fresh file, and ``lost_estimate`` counts records seen but not
    recoverable (``None`` when nothing could be estimated, e.g. an unreadable header).
    """

    corrupt: bool = False
    salvaged: int = 0
    lost_estimate: int | None = 0
    moved_to: str | None = None
    detail: str = ""


class Delivery:
    """One delivery of a record: ``id``, ``payload``, ``attempt`` (1 for the first), ``key``.

    Settle it exactly once with ``ack()``, ``nack(delay, error)`` or ``reject(error)``. They are
    buffered for the queue's next group commit and return True at once (False if already
    settled); with ``wait=True`` each blocks until the decision is on disk and returns False
    also when the delivery is stale (its visibility timeout passed and the record was delivered
    again, or it was dead-lettered). Safe from any thread. Raises ``QueueClosed`` after
    ``close()``.
    """

    __slots__ = ("id", "payload", "attempt", "key", "_lease", "_queue", "_settled")

    def __init__(self, queue: "DurableQueue", id: int, payload: Any, attempt: int,
                 key: str | None, lease: int) -> None:
        self.id = id
        self.payload = payload
        self.attempt = attempt
        self.key = key
        self._lease = lease
        self._queue = queue
        self._settled = False

    def ack(self, wait: bool = False) -> bool:
        """Processed: remove the record for good.

        Without ``wait`` the ack is buffered and made durable by the queue's next group commit
        (any call that commits, ``queue.flush()``, or at once if the committer is idle): it
        returns True at once, False if this delivery was already settled. A buffered ack lost
        to a crash only means the record is delivered again. ``wait=True`` blocks until the ack
        is on disk and returns False also for a stale delivery (its lease ran out and the record
        was delivered again, or it was dead-lettered)."""
        return self._queue._ack(self, wait)

    def nack(self, delay: float = 0.0, error: str | None = None, wait: bool = False) -> bool:
        """Not processed: deliver again after ``delay`` seconds. On the last allowed delivery
        the record is dead-lettered at once, reason ``"error: <error>"`` when ``error`` is given,
        else ``"max_deliveries"``. Buffered like ``ack`` unless ``wait=True`` (lost: the record
        comes back after its visibility timeout instead of ``delay``)."""
        return self._queue._settle(self, "nack", delay, error, wait)

    def reject(self, error: str, wait: bool = False) -> bool:
        """Poison: dead-letter at once with reason ``"error: <error>"``. Buffered like ``ack``
        unless ``wait=True`` (lost: the record is delivered again and can be rejected again)."""
        return self._queue._settle(self, "reject", 0.0, error, wait)

    @property
    def settled(self) -> bool:
        """True once this delivery was acked, nacked or rejected through this object."""
        return self._settled

    def __repr__(self) -> str:
        state = "settled" if self._settled else "open"
        return f"<Delivery id={self.id} attempt={self.attempt} key={self.key!r} {state}>"
