"""Opening the queue file: create atomically, check, and recover from corruption.

``open_database(path)`` always returns a working connection when the directory is writable:

1. Under an exclusive ``flock`` on ``<path>.lock`` (so that processes opening the same file at
   once do not both recover it), a missing file is created atomically (built as a temporary
   file, fsynced, renamed), so a zero-length or half-initialised file is always damage.
2. An existing file is checked: SQLite header, schema, ``PRAGMA quick_check``. (Damage found
   later, at run time, makes the committer reopen with the thorough ``integrity_check``.)
3. A damaged file and its WAL are moved aside to ``<path>.corrupt-<timestamp>``; what is
   readable is salvaged (``_salvage``), validated by checksum, and written to a fresh file that
   takes the original's place. The damage is reported as a ``RecoveryReport`` and logged.

Only real corruption is moved aside (a bad header, SQLITE_CORRUPT/SQLITE_NOTADB, a failed check;
see ``_faults``). A busy or locked file, a full disk, an I/O or permission error raises
``QueueUnavailable`` (``QueueFull`` for a full disk) and leaves the file as it was; if the
rebuild of a damaged file fails that way, the original is put back before raising.

Files are created 0600 (SQLite gives the WAL and shared-memory files the database's mode) and a
missing parent directory 0700: they hold tenant data.

A file whose ``messages`` table has other columns (another program's, or an incompatible
format) is moved aside like a damaged one: never deleted, never refused.

Blocking: these calls do file I/O and fsync; ``quick_check`` reads the whole file (recovery
time grows with the file size). Raises ``QueueUnavailable`` (an ``OSError``) for passing faults.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import sqlite3
import threading
import time
from typing import Iterator

from . import _log
from ._faults import CORRUPT, FULL, UNAVAILABLE, kind, unavailable
from ._salvage import Salvage, salvage
from ._schema import COLUMNS, configure, create_schema, recount
from ._types import QueueUnavailable, RecoveryReport

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: single-process use only
    fcntl = None  # type: ignore[assignment]  # not POSIX: no file locks

__all__ = ["connect", "create_file", "open_database"]

_HEADER = b"SQLite format 3\x00"
_PAGE_SIZE = 4096


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A configured autocommit connection usable from any one thread at a time."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False, cached_statements=64)
    try:
        configure(conn, busy_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _file_lock(path: str, busy_timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, waited for at most ``busy_timeout`` seconds."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise unavailable(path, "opening the open-lock file", exc) from exc
    try:
        if fcntl is not None:
            deadline = time.monotonic() + busy_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise QueueUnavailable(
                            f"queue file {path[:-5]!r} unavailable: another process is opening "
                            f"or repairing it (waited {busy_timeout:g} s for {path!r})",
                            errno.EBUSY) from None
                    time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


# Files this process has open through SQLite (real path -> open queues). POSIX record locks
# belong to the process: closing ANY descriptor of the file drops every lock the process holds on
# it, and another process may then delete the WAL under our connections. So once SQLite has the
# file open here, we never open() it ourselves again. (Process-wide by nature of those locks.)
_open_here: dict[str, int] = {}
_open_here_lock = threading.Lock()


def hold(path: str) -> None:
    """Note that a queue in this process has ``path`` open (pair with ``release``)."""
    key = os.path.realpath(path)
    with _open_here_lock:
        _open_here[key] = _open_here.get(key, 0) + 1


def release(path: str) -> None:
    key = os.path.realpath(path)
    with _open_here_lock:
        left = _open_here.get(key, 0) - 1
        if left > 0:
            _open_here[key] = left
        else:
            _open_here.pop(key, None)


def _open_in_this_process(path: str) -> bool:
    with _open_here_lock:
        return os.path.realpath(path) in _open_here


def _check(path: str, busy_timeout: float, thorough: bool) -> str | None:
    """None when the file is a healthy queue file, else what is wrong with it (damage only).
    Raises ``QueueUnavailable`` for a passing fault (busy, locked, full, I/O, permission)."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        if not _open_in_this_process(path):  # see _open_here: reading the header ourselves is safe
            with open(path, "rb") as f:
                head = f.read(len(_HEADER))
            if head != _HEADER:
                return "not an SQLite file (bad header)"
    except OSError as exc:
        raise unavailable(path, "reading its header", exc) from exc
    try:
        conn = connect(path, busy_timeout)
    except Exception as exc:  # the check boundary: whatever a damaged file makes SQLite raise
        if kind(exc) in (FULL, UNAVAILABLE):
            raise unavailable(path, "opening", exc) from exc
        return f"cannot open: {type(exc).__name__}: {exc}"
    try:
        found = [r[1] for r in conn.execute("PRAGMA table_info(messages)")]
        if found and tuple(found) != COLUMNS:
            return f"unexpected messages table columns {found}"
        check = "integrity_check" if thorough else "quick_check"
        problems = [r[0] for r in conn.execute(f"PRAGMA {check}(5)")]
        if problems != ["ok"]:
            return f"{check}: " + "; ".join(problems)
        create_schema(conn)  # idempotent: creates what is missing, upgrades an old format
        return None
    except Exception as exc:  # (same boundary) a damaged file is a problem to report, not a crash
        if kind(exc) in (FULL, UNAVAILABLE):
            raise unavailable(path, "checking", exc) from exc
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def _create(path: str, found: Salvage | None) -> None:
    """Build a queue file (with salvaged rows) beside ``path``, then rename it into place.
    On failure nothing is left behind and ``path`` is untouched; raises what failed."""
    tmp = f"{path}.new-{os.getpid()}"
    for suffix in ("", "-wal", "-shm", "-journal"):
        _remove(tmp + suffix)
    try:
        os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))  # 0600 before data
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            create_schema(conn)
            if found is not None:
                conn.execute("BEGIN IMMEDIATE")
                marks = ", ".join("?" * len(COLUMNS))
                conn.executemany(f"INSERT INTO messages VALUES ({marks})",
                                 (found.rows[i] for i in sorted(found.rows)))
                conn.executemany("INSERT INTO counters (queue, acked) VALUES (?, ?)",
                                 found.counters.items())
                conn.execute("UPDATE meta SET v = ? WHERE k = 'next_id'",
                             (max([found.seq, *found.rows]) + 1,))
                recount(conn)
                conn.execute("COMMIT")
        finally:
            conn.close()  # checkpoints the WAL into the file and deletes it
        if os.path.exists(tmp + "-wal"):  # the checkpoint at close failed (e.g. disk full)
            raise OSError(errno.EIO, f"could not checkpoint {tmp!r} at close")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        for suffix in ("", "-wal", "-shm", "-journal"):
            _remove(tmp + suffix)
        raise
    for suffix in ("-wal", "-shm"):
        _remove(path + suffix)  # a stale WAL must never be replayed onto the new file
    os.replace(tmp, path)
    _fsync_dir(path)


def create_file(path: str) -> None:
    """Create an empty queue file at ``path`` (0600, atomically). Raises what failed."""
    _create(path, None)


def _move_aside(path: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    moved, n = f"{path}.corrupt-{stamp}", 1
    while os.path.exists(moved) or os.path.exists(moved + "-wal"):
        moved, n = f"{path}.corrupt-{stamp}.{n}", n + 1
    try:
        if os.path.exists(path):
            os.replace(path, moved)
        if os.path.exists(path + "-wal"):
            os.replace(path + "-wal", moved + "-wal")  # salvage reads it as the moved file's WAL
        _remove(path + "-shm")
        _fsync_dir(path)
    except OSError as exc:
        _put_back(moved, path)
        raise unavailable(path, "moving a damaged file aside (nothing was changed)", exc) from exc
    return moved


def _put_back(moved: str, path: str) -> None:
    """Undo ``_move_aside``: the original file (and its WAL) back in place."""
    if os.path.exists(moved + "-wal"):
        os.replace(moved + "-wal", path + "-wal")
    if os.path.exists(moved):
        os.replace(moved, path)
    with contextlib.suppress(OSError):
        _fsync_dir(path)


def _recover(path: str, problem: str) -> RecoveryReport:
    moved = _move_aside(path)
    try:
        try:
            found = salvage(moved) if os.path.exists(moved) else Salvage()
        except Exception as exc:  # the salvage boundary: salvage is best effort, start-up is not
            if kind(exc) in (FULL, UNAVAILABLE):
                raise
            _log.logger().error("queue.salvage_failed", path=path, moved_to=moved, error=repr(exc))
            found = Salvage(lost=None, notes=[f"salvage failed: {exc!r}"])
        try:
            _create(path, found)
        except Exception as exc:  # the start-up boundary: a salvaged row we cannot store again
            if kind(exc) in (FULL, UNAVAILABLE):
                raise
            _log.logger().error("queue.salvage_unstorable", path=path, error=repr(exc))
            found = Salvage(lost=None,
                            notes=[*found.notes, f"salvaged rows not storable: {exc!r}"])
            _create(path, None)
    except Exception as exc:  # a passing fault while rebuilding: put the original back
        _put_back(moved, path)
        _log.logger().warning("queue.rebuild_failed_original_restored", path=path,
                              problem=problem, error=repr(exc))
        raise unavailable(path, f"rebuilding a damaged file ({problem}); the original was put "
                          "back", exc) from exc
    detail = "; ".join([problem, *found.notes])
    report = RecoveryReport(corrupt=True, salvaged=len(found.rows), lost_estimate=found.lost,
                            moved_to=moved, detail=detail)
    _log.logger().warning("queue.recovered_corrupt_file", path=path, moved_to=moved,
                          salvaged=report.salvaged, lost_estimate=report.lost_estimate,
                          detail=detail)
    return report


def _make_dirs(directory: str, path: str) -> None:
    """Create ``directory`` and its missing parents, each 0700 (``os.makedirs`` gives the
    parents the default mode)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    try:
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)
    except OSError as exc:
        raise unavailable(path, "creating its directory", exc) from exc


def open_database(path: str, busy_timeout: float, *, thorough: bool = False,
                  damaged: str | None = None) -> tuple[sqlite3.Connection, RecoveryReport]:
    """Open (creating or recovering as needed) the queue file; see the module docstring.

    ``thorough`` runs ``PRAGMA integrity_check`` (which also compares indexes with their table,
    O(n log n)) instead of ``quick_check`` (O(n)); ``damaged`` names damage an operation found
    that no check can see, and recovers at once. Both serve repairs at run time.
    """
    _make_dirs(os.path.dirname(os.path.abspath(path)), path)
    with _file_lock(path + ".lock", busy_timeout):
        for stale in glob.glob(glob.escape(path) + ".new-*"):
            _remove(stale)  # left by a process killed while creating (we hold the lock)
        if not os.path.exists(path):
            report = RecoveryReport()
            if os.path.exists(path + "-wal"):  # a WAL without its database: damage
                report = _recover(path, "WAL file without its database file")
            else:
                try:
                    _create(path, None)
                except Exception as exc:
                    if kind(exc) not in (FULL, UNAVAILABLE, CORRUPT):
                        raise
                    raise unavailable(path, "creating it", exc) from exc
        else:
            problem = damaged or _check(path, busy_timeout, thorough)
            report = RecoveryReport() if problem is None else _recover(path, problem)
        try:
            return connect(path, busy_timeout), report
        except Exception as exc:
            if kind(exc) is None:
                raise
            raise unavailable(path, "connecting", exc) from exc
