"""Authenticated thespian frames: nothing is unpickled before its MAC, age and nonce are checked.

thespian's TCP transport pickles every message (``serializer.dumps``) and unpickles every frame
it receives (``serializer.loads``) - and unpickling runs code. ``SealedPickle`` takes the place
of that serializer in every process of a cluster (``_thespian.harden``):

- ``dumps(obj)`` returns ``MAGIC | timestamp (8 bytes, ns) | nonce (16) | HMAC-SHA256 (32) |
  pickle`` where the MAC covers ``timestamp | nonce | pickle`` under the cluster's control key
  (32 random bytes in ``<state-dir>/control.key``, mode 0600; never on a command line);
- ``loads(data)`` refuses, before ``pickle.loads`` is ever reached: a frame over ``max_size``,
  a frame without the magic, a wrong MAC, a timestamp outside ``window`` seconds of this
  process's clock, and a nonce it has already accepted (replay). Each refusal raises
  ``SealError`` (thespian drops the connection) and is counted in ``rejected`` by reason, with a
  rate-limited warning.

thespian's own transport ACKs (the constant pickles of ``'ACK'`` / ``'ACK+DATAERR'``) are
recognised by comparing bytes, never unpickled either.

``BoundedReceiveBuffer`` caps the size a frame's ``N>`` header may announce, so a stranger
cannot make a process buffer an unbounded frame before the MAC check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import struct
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from actors import get_logger

from ._ratelog import RateLimitedLog

__all__ = ["SealedPickle", "SealError", "MAGIC", "MAX_FRAME", "WINDOW"]

MAGIC = b"SVs1"
MAX_FRAME = 4 << 20        # bytes of one control frame (status replies are the largest: ~100 KB)
WINDOW = 120.0             # seconds a sealed frame stays acceptable (thespian retries resend it)
_HEAD = len(MAGIC) + 8 + 16 + 32
_ACKS = {pickle.dumps(p): p for p in ("ACK", "ACK+DATAERR")}
for _proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
    _ACKS.update({pickle.dumps(p, _proto): p for p in ("ACK", "ACK+DATAERR")})
_log = get_logger(component="cluster.seal")


class SealError(ValueError):
    """A thespian frame that was not sealed with this cluster's control key (or was replayed)."""


class SealedPickle:
    """The ``serializer`` of thespian's TCP transport for one cluster (see the module doc)."""

    def __init__(self, key: bytes, *, max_size: int = MAX_FRAME, window: float = WINDOW,
                 clock: Callable[[], float] = time.time, max_nonces: int = 200_000) -> None:
        if len(key) < 16:
            raise ValueError("the control key must be at least 16 bytes")
        self._key = bytes(key)
        self.max_size = max_size
        self.window = window
        self._clock = clock
        self._max_nonces = max_nonces
        self._seen: OrderedDict[bytes, float] = OrderedDict()   # nonce -> its timestamp
        self._lock = threading.Lock()
        self.rejected: dict[str, int] = {}
        self.accepted = 0
        self._warn = RateLimitedLog(_log)

    # thespian calls ``serializer.dumps(obj)`` and ``serializer.loads(data)``
    def dumps(self, obj: Any, protocol: int | None = None) -> bytes:
        payload = pickle.dumps(obj, protocol)
        stamp = struct.pack(">q", int(self._clock() * 1e9))
        nonce = os.urandom(16)
        tag = hmac.new(self._key, stamp + nonce + payload, hashlib.sha256).digest()
        return MAGIC + stamp + nonce + tag + payload

    def loads(self, data: bytes) -> Any:
        data = bytes(data)
        ack = _ACKS.get(data)
        if ack is not None:
            return ack
        if len(data) > self.max_size:
            self._reject("oversize", size=len(data))
        if len(data) < _HEAD or not data.startswith(MAGIC):
            self._reject("unsealed", size=len(data))
        stamp, nonce = data[4:12], data[12:28]
        tag, payload = data[28:60], data[60:]
        expected = hmac.new(self._key, stamp + nonce + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected):
            self._reject("bad_mac", size=len(data))
        when = struct.unpack(">q", stamp)[0] / 1e9
        now = self._clock()
        if abs(now - when) > self.window:
            self._reject("stale", age=round(now - when, 3))
        with self._lock:
            if nonce in self._seen:
                self._reject_locked("replayed")
            self._seen[nonce] = when
            self._forget_old_locked(now)
            self.accepted += 1
        return pickle.loads(payload)   # authenticated, fresh, first seen

    def _forget_old_locked(self, now: float) -> None:
        seen = self._seen
        while seen:
            nonce, when = next(iter(seen.items()))
            if now - when <= self.window and len(seen) <= self._max_nonces:
                break
            seen.popitem(last=False)   # oldest first; an evicted one is also stale by then
        # (over ``max_nonces`` a nonce may be forgotten before its window ends: the window
        # then shrinks; only a holder of the key can send that many sealed frames)

    def _reject(self, reason: str, **fields: Any) -> None:
        with self._lock:
            self._reject_locked(reason, **fields)

    def _reject_locked(self, reason: str, **fields: Any) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        count = self.rejected[reason]
        self._warn.warning(reason, "thespian frame rejected before unpickling", reason=reason,
                           count=count, pid=os.getpid(), **fields)
        raise SealError(f"thespian frame rejected: {reason}")


def bounded_receive_buffer(base: type, max_size: int) -> type:
    """A subclass of thespian's ``ReceiveBuffer`` whose ``N>`` header may not exceed
    ``max_size`` (raises ``SealError`` as soon as the header is read)."""

    class BoundedReceiveBuffer(base):  # type: ignore[misc]  # a class known only at run time
        def addMore(self, buf: bytes) -> None:  # thespian's name
            super().addMore(buf)
            size = getattr(self, "_size", None)
            if size is not None and (size > max_size or size < 0):
                raise SealError(f"thespian frame of {size} bytes announced (limit {max_size})")

    return BoundedReceiveBuffer
