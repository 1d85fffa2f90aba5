"""One engine per database file per process: one SQLite connection and one committer thread
shared by every ``DurableQueue`` opened on that file, whatever its name or tenant.

``acquire(path, busy_timeout)`` returns the file's engine (opening, creating or recovering the
file on first use) and counts the user; ``release(engine)`` uncounts it, and the last release
finishes pending work and buffered acks, stops the thread and closes the connection. So 1,000
queues (or tenants) in one file cost one thread and a constant number of file descriptors, and
a group commit serves all of them at once. A second, read-only use of the file (``read``) serves
whole-file snapshots such as ``stats_many`` without holding up the committer.

The engine is found by the file's real path. Its ``busy_timeout`` is the first opener's. A
forked child starts with no engines (the parent's connections and threads are not its own).
``recovery_report`` is what opening (or a later repair of) the file found, shared by its queues.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from ._committer import Committer
from ._faults import kind, unavailable
from ._groupcommit import Registry
from ._ops import Group
from ._store import connect, hold, open_database, release as release_hold
from ._types import RecoveryReport

__all__ = ["Engine", "acquire", "open_engines", "release"]


class Engine:
    """A file's connection and committer; see the module docstring. Use ``acquire``."""

    def __init__(self, path: str, key: str, busy_timeout: float) -> None:
        self.path, self.key, self.busy_timeout = path, key, busy_timeout
        conn, self.recovery_report = open_database(path, busy_timeout)
        hold(path)
        self.users = 0
        self.committer = Committer(conn, os.path.basename(path), path, self._repair,
                                   self._reopen)
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()

    def read(self, fn: Any, *args: Any) -> Any:
        """``fn(group, *args)`` in a read transaction on the engine's second connection: a
        consistent snapshot of what is committed, without holding up the committer (WAL
        readers never block the writer). For whole-file reads such as ``stats_many``."""
        with self._read_lock:
            try:
                if self._reader is None:
                    self._reader = connect(self.path, self.busy_timeout)
                conn = self._reader
                conn.execute("BEGIN")
                try:
                    return fn(Group(conn, time.time()), *args)
                finally:
                    conn.execute("ROLLBACK")  # nothing was written
            except Exception as exc:  # the read boundary: name the file and the cause
                if kind(exc) is None:
                    raise
                raise unavailable(self.path, "reading", exc) from exc

    def close(self) -> None:
        self.committer.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    recovery_report: RecoveryReport

    def _repair(self, problem: str, certain: bool) -> sqlite3.Connection:
        # Called by the committer thread when an operation met damage at run time.
        conn, report = open_database(self.path, self.busy_timeout, thorough=True,
                                     damaged=problem if certain else None)
        if report.corrupt:
            self.recovery_report = report
        return conn

    def _reopen(self) -> sqlite3.Connection:
        # After a failed repair (the original file was put back): a plain connection to it.
        return connect(self.path, self.busy_timeout)

    def __repr__(self) -> str:
        return f"<queue Engine {self.path!r} users={self.users}>"


_registry = Registry()


def acquire(path: str, busy_timeout: float) -> Engine:
    """The engine of ``path``, opened on first use; pair with ``release``. Raises what opening
    raises (``QueueUnavailable`` for a passing fault)."""
    key = os.path.realpath(path)
    engine: Engine = _registry.acquire(key, lambda: Engine(path, key, busy_timeout))
    return engine


def release(engine: Engine) -> None:
    """One user fewer; the last one closes the engine (blocks until its work is on disk)."""
    if _registry.release(engine):
        engine.close()
        release_hold(engine.path)


def _forget_in_child() -> None:
    # A forked child inherits the registry but not the committer threads, and must not use
    # the parent's SQLite connections: its queues open engines of their own.
    _registry.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def open_engines() -> dict[str, Any]:
    """``{real path: users}`` of the engines open in this process (for tests and status)."""
    return _registry.users()
