"""One place that decides what a storage error means: damage, a full disk, or a passing fault.

The rule (RELIABILITY F22/F23): only real corruption moves a queue file aside. Everything else
(a busy or locked database, a full disk, an I/O error, a permission problem) is a fault of the
moment: it raises ``QueueUnavailable`` (``QueueFull`` for a full disk) and never touches the file.

``kind(exc)`` returns one of

- ``"corrupt"``: SQLITE_CORRUPT or SQLITE_NOTADB (the bytes on disk are not a sound database);
- ``"full"``: SQLITE_FULL, or an ``OSError`` with ENOSPC, EDQUOT or EFBIG;
- ``"unavailable"``: SQLITE_BUSY, LOCKED, IOERR, PERM, READONLY, CANTOPEN, PROTOCOL, NOMEM, AUTH,
  or any other ``OSError`` (EACCES, EIO, EROFS, ...);
- ``None``: anything else (a programming error, an incompatible schema): the caller decides.

Checks of file content (bad header, failed ``integrity_check``) are corruption by definition and
are decided where they are made (``_store``).
"""

from __future__ import annotations

import errno
import sqlite3

from ._types import QueueFull, QueueUnavailable

__all__ = ["CORRUPT", "FULL", "UNAVAILABLE", "kind", "sqlite_code", "unavailable"]

CORRUPT, FULL, UNAVAILABLE = "corrupt", "full", "unavailable"

_SQLITE_CORRUPT = frozenset({11, 26})                    # CORRUPT, NOTADB
_SQLITE_FULL = 13
_SQLITE_PASSING = frozenset({3, 5, 6, 7, 8, 10, 14, 15, 23})
# PERM, BUSY, LOCKED, NOMEM, READONLY, IOERR, CANTOPEN, PROTOCOL, AUTH
_ERRNO_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def sqlite_code(exc: BaseException) -> int:
    """The primary SQLite result code of ``exc`` (0 when it has none)."""
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def kind(exc: BaseException) -> str | None:
    """``"corrupt"``, ``"full"``, ``"unavailable"`` or None; see the module docstring."""
    if isinstance(exc, (QueueFull,)):
        return FULL
    if isinstance(exc, QueueUnavailable):
        return UNAVAILABLE
    if isinstance(exc, sqlite3.Error):
        code = sqlite_code(exc)
        if code in _SQLITE_CORRUPT:
            return CORRUPT
        if code == _SQLITE_FULL:
            return FULL
        if code in _SQLITE_PASSING:
            return UNAVAILABLE
        return None
    if isinstance(exc, OSError):
        return FULL if exc.errno in _ERRNO_FULL else UNAVAILABLE
    return None


def unavailable(path: str, doing: str, exc: BaseException) -> QueueUnavailable:
    """The error to raise for a passing fault ``exc`` met while ``doing`` something to ``path``:
    ``QueueFull`` for a full disk, else ``QueueUnavailable``; the message names the file and the
    cause, ``__cause__`` is ``exc``. (Already one of ours: returned as it is.)"""
    if isinstance(exc, QueueUnavailable):
        return exc
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    text = f"queue file {path!r} unavailable while {doing}: {name}: {exc}"
    err: QueueUnavailable
    if kind(exc) == FULL:
        err = QueueFull(f"disk full: {text}")
    else:
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO
        if sqlite_code(exc) in (5, 6):
            code = errno.EBUSY
        elif sqlite_code(exc) in (3, 8, 23):
            code = errno.EACCES
        err = QueueUnavailable(text, code)
    err.__cause__ = exc
    return err
