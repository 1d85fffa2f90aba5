"""Errors raised by the actor runtime.

Every error is an ``ActorError``; each names the actor (and what was wrong) in its message.
"""

from __future__ import annotations

__all__ = ["ActorError", "ActorCrashed", "ActorDead", "AskTimeout", "MailboxFull"]


class ActorError(Exception):
    """Base class of the runtime's errors (also raised for misuse, e.g. asking yourself)."""


class ActorCrashed(ActorError):
    """The actor raised while handling the asked message; ``reason`` is its exception."""

    def __init__(self, message: str, reason: BaseException) -> None:
        super().__init__(message)
        self.reason = reason


class ActorDead(ActorError):
    """The target actor is not alive (it exited before or while the message was queued)."""


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived in time; a reply that arrives later is dropped."""


class MailboxFull(ActorError):
    """The target's mailbox is full and its overflow policy is FAIL (or BLOCK timed out)."""
