"""The run directory of a cluster (``--state-dir``, default ``./.streamvisor-cluster``) and the
process facts the launcher needs to stop exactly what it started.

Layout (the directory is ``0700``, files ``0600``)::

    cluster.json        what the launcher started: name, admin address, pids, process group
    cookie              the cluster's shared secret (data plane and heartbeats)
    control.key         32 random bytes sealing every thespian frame (``_seal``)
    nodes/<id>.json     written by each node process itself at start (a restarted node rewrites
                        its file): pid, start time, incarnation, addresses, thespian address
    cluster.log         stdout/stderr of thespian's admin, logger and node processes

A pid is only ever signalled together with its start time (``/proc/<pid>/stat`` field 22), so
a pid reused by an unrelated process is never touched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["StateDir", "write_private", "rotate_log", "process_start_time", "process_state",
           "is_running", "pids_in_group", "children_of", "DEFAULT_STATE_DIR"]

DEFAULT_STATE_DIR = ".streamvisor-cluster"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: cut at the last ')'.
    return raw[raw.rfind(")") + 2:].split()


def process_start_time(pid: int) -> int | None:
    """Clock ticks since boot at which ``pid`` started, or None if there is no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def process_state(pid: int) -> str | None:
    """``R``, ``S``, ``D``, ``T`` (stopped), ``Z`` (zombie), ... or None when gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def is_running(pid: int | None, start_time: int | None = None) -> bool:
    """True if ``pid`` exists, is not a zombie and (when given) started at ``start_time``."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def pids_in_group(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                found.append(int(entry))
    return found


class StateDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        self.cluster_file = self.path / "cluster.json"
        self.cookie_file = self.path / "cookie"
        self.control_key_file = self.path / "control.key"
        self.nodes_dir = self.path / "nodes"
        self.log_file = self.path / "cluster.log"

    def __repr__(self) -> str:
        return f"<StateDir {self.path}>"

    def create(self) -> None:
        old = os.umask(0o077)
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.nodes_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o700)
        os.chmod(self.nodes_dir, 0o700)

    def control_key(self) -> bytes:
        """The key sealing thespian frames; ``SystemExit`` when missing or readable by others."""
        try:
            fd = os.open(self.control_key_file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise SystemExit(f"streamvisor: no control key in {self.path} (is a cluster "
                             f"started there?)") from None
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise SystemExit(f"streamvisor: {self.control_key_file} is mode {mode:o}; it "
                                 f"must be readable by its owner only (chmod 600)")
            key = bytes.fromhex(f.read().decode().strip())
        if len(key) < 16:
            raise SystemExit(f"streamvisor: {self.control_key_file} holds no usable key")
        return key

    def write_control_key(self) -> bytes:
        key = os.urandom(32)
        write_private(self.control_key_file, key.hex() + "\n")
        return key

    def read(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.cluster_file.read_text())
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SystemExit(
                f"streamvisor: unreadable cluster state {self.cluster_file}: {exc}") from exc

    def write(self, data: dict[str, Any]) -> None:
        _write_json(self.cluster_file, data)

    def cookie(self) -> str | None:
        try:
            return self.cookie_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def write_cookie(self, cookie: str) -> None:
        write_private(self.cookie_file, cookie + "\n")

    def open_log(self) -> int:
        """The cluster log for appending (created 0600); a file descriptor."""
        return os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def node_records(self) -> list[dict[str, Any]]:
        records = []
        if self.nodes_dir.is_dir():
            for path in sorted(self.nodes_dir.glob("*.json")):
                try:
                    records.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue  # a node writing it right now: the next read sees it
        return records

    def write_node(self, record: dict[str, Any]) -> None:
        self.nodes_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.nodes_dir / f"{record['id']}.json", record)

    def clear(self) -> None:
        """Remove what the launcher and nodes wrote (the log stays for post-mortems)."""
        for path in list(self.nodes_dir.glob("*.json")) if self.nodes_dir.is_dir() else []:
            path.unlink(missing_ok=True)
        for path in (self.cluster_file, self.cookie_file, self.control_key_file):
            path.unlink(missing_ok=True)


def rotate_log(path: Path, max_bytes: int, keep: int) -> bool:
    """Copy-truncate ``path`` once it reaches ``max_bytes``: ``path.1`` .. ``path.<keep>`` hold
    the older parts (0600), ``keep=0`` keeps none. Every writer appends (``O_APPEND``), so they
    go on writing at the start of the emptied file. Several processes may call this: an
    exclusive ``flock`` on ``path.lock`` lets one rotate. True if it rotated. Lines written
    between the copy and the truncation are lost (a few bytes; the price of copy-truncate)."""
    import fcntl
    import shutil

    try:
        if os.stat(path).st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    lock_fd = os.open(f"{path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False   # another process is rotating it
        if os.stat(path).st_size < max_bytes:
            return False   # it just did
        if keep > 0:
            for i in range(keep - 1, 0, -1):
                older = Path(f"{path}.{i}")
                if older.exists():
                    os.replace(older, f"{path}.{i + 1}")
            fd = os.open(f"{path}.1", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.truncate(path, 0)
        return True
    finally:
        os.close(lock_fd)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (a temp file renamed over it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (write a temp file, rename) with mode 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
