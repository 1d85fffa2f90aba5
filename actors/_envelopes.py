"""Internal envelopes that travel in mailboxes: asks (with their reply slot) and deferred
messages whose content is decided when the actor takes them (the bus's latest-value slots)."""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

from ._errors import ActorError, AskTimeout
from ._mailbox import register_undroppable

__all__ = ["Reply", "ReplyTo", "Ask", "Deferred", "SKIP"]

SKIP = object()  # what Deferred.open returns when there is nothing to deliver
_MISSING = object()
# _guard makes "first outcome wins" atomic for every reply (set/fail may race with a kill).
_guard = threading.Lock()


class Reply:
    """A one-shot reply slot. ``wait`` blocks the asking thread; the first outcome wins and an
    outcome that arrives after the waiter gave up is dropped (``late`` tells)."""

    __slots__ = ("_done", "_value", "_error", "_abandoned")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._value: Any = _MISSING
        self._error: BaseException | None = None
        self._abandoned = False

    @property
    def ready(self) -> bool:
        return self._value is not _MISSING or self._error is not None

    def set(self, value: Any) -> bool:
        with _guard:
            if self.ready:
                return False
            self._value = value
        self._done.release()
        return not self._abandoned

    def fail(self, error: BaseException) -> bool:
        with _guard:
            if self.ready:
                return False
            self._error = error
        self._done.release()
        return not self._abandoned

    def wait(self, timeout: float, what: str) -> Any:
        """Block up to ``timeout`` seconds; the value, or raise the error / ``AskTimeout``."""
        if not self._done.acquire(timeout=timeout):
            with _guard:
                self._abandoned = True
                if not self.ready:
                    raise AskTimeout(f"no reply from {what} within {timeout} s")
        return self.outcome(what)

    def abandon(self) -> bool:
        """Give up waiting: a later outcome is dropped. True if an outcome is already there."""
        with _guard:
            self._abandoned = True
            return self.ready

    def outcome(self, what: str) -> Any:
        if self._error is not None:
            raise self._error
        if self._value is _MISSING:
            raise AskTimeout(f"no reply from {what}")
        return self._value


class ReplyTo(Protocol):
    """Where an ask's outcome goes: ``set(value)`` or ``fail(error)``, called once on the actor's
    worker (``Reply`` is one; the cluster's remote reply is another)."""

    def set(self, value: Any) -> bool: ...

    def fail(self, error: BaseException) -> bool: ...


class Ask:
    """``ask()``'s envelope: the handler's return value goes into ``reply``."""

    __slots__ = ("message", "reply")

    def __init__(self, message: Any, reply: ReplyTo) -> None:
        self.message = message
        self.reply = reply

    def fail_dropped(self, error: ActorError) -> None:
        self.reply.fail(error)

    def __repr__(self) -> str:
        return f"<Ask {self.message!r}>"


class Deferred:
    """A message decided at delivery time: ``open()`` returns it, or ``SKIP``. Never dropped by
    overflow: whoever sends these bounds them (one per bus subscription)."""

    __slots__ = ("open",)

    def __init__(self, open: Callable[[], Any]) -> None:
        self.open = open


register_undroppable(Deferred)
