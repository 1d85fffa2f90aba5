"""A passing fault is never corruption (docs/RELIABILITY.md F22, F23; SECURITY.md section 2).

A locked file, a full disk, an I/O error or a permission problem raises ``QueueUnavailable``
(``QueueFull`` for a full disk) and never moves the file aside; a failed rebuild of a really
damaged file puts the original back. After each fault every acknowledged record is still there.

Faults are real, each in a child process (``_queue_fault_child.py``): another SQLite connection
holding the write lock, ``RLIMIT_FSIZE`` standing in for a full disk (SIGXFSZ ignored, so writes
fail with EFBIG), EIO from an ``LD_PRELOAD`` shim (``_eio_shim.c``, compiled here with ``cc``;
skipped without a compiler, failed under CI=true), and another user (setuid 65534 when root,
else a read-only file). Bounds and file modes are at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from actors.queue import DurableQueue, QueueFull, QueueUnavailable

from .conftest import in_ci

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("_queue_fault_child.py")
SHIM = Path(__file__).with_name("_eio_shim.c")
DATA = Path(__file__).with_name("data")
HOLD = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
        " c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.readline();"
        " c.execute('ROLLBACK'); c.close()")


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def _child(spec: dict[str, Any], **env: str) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, str(CHILD), json.dumps(spec)], capture_output=True,
                          env=_env(**env), cwd=str(ROOT), timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _acked(lines: list[dict[str, Any]]) -> list[int]:
    return [i for line in lines for i in line.get("acked", ())]


def _refusals(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "error" in line]


def _seed(path: Path, n: int = 50) -> list[int]:
    with DurableQueue(path, "work") as q:
        return q.put_many([{"seed": i, "pad": "s" * 100} for i in range(n)])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_intact(path: Path, acked: list[int]) -> None:
    """Never moved aside, opens clean, and holds every acknowledged id."""
    assert not [p.name for p in path.parent.iterdir() if ".corrupt-" in p.name]
    with DurableQueue(path, "work") as q:
        assert not q.recovery_report.corrupt, q.recovery_report
        stored: set[int] = set()
        while batch := q.get(max_items=1000):
            stored.update(d.id for d in batch)
            assert all(q.ack_many(batch))
    missing = set(acked) - stored
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if in_ci():
            pytest.fail("no C compiler (cc) to build the EIO shim; CI=true requires it")
        pytest.skip("no C compiler (cc) to build the EIO shim")
    out = tmp_path_factory.mktemp("shim") / "eio_shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(SHIM), "-ldl"], check=True,
                   timeout=60)
    return out


@pytest.fixture
def holder() -> Iterator[Any]:
    """Start another process whose SQLite connection holds a file's write lock."""
    procs: list[subprocess.Popen[bytes]] = []

    def hold(path: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == b"locked\n"
        return proc

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.communicate(b"\n", timeout=30)


def _release(proc: subprocess.Popen[bytes]) -> None:
    proc.communicate(b"\n", timeout=30)
    assert proc.returncode == 0


# ---------------------------------------------------------------- F22: the write lock is held


def test_a_write_lock_held_at_open_never_moves_the_file_and_a_put_raises_unavailable(
        tmp_path, holder):
    path = tmp_path / "q.db"
    acked = _seed(path)
    proc = holder(path)
    with DurableQueue(path, "work", busy_timeout=0.3) as q:  # opening needs no write lock
        assert not q.recovery_report.corrupt
        with pytest.raises(QueueUnavailable) as info:
            q.put({"while": "locked"})  # waits busy_timeout, then refuses (never acks)
        assert not isinstance(info.value, QueueFull)
        assert isinstance(info.value, OSError) and info.value.errno == 16  # EBUSY
        assert str(path) in str(info.value) and "locked" in str(info.value)
        _release(proc)
        acked.append(q.put({"after": "release"}))  # the same object works once it is free
    _assert_intact(path, acked)


def test_an_old_format_file_opened_while_locked_raises_unavailable_and_is_left_as_it_was(
        tmp_path, holder):
    path = tmp_path / "old.db"
    shutil.copy(DATA / "queue-v2.db", path)
    before = _digest(path)
    proc = holder(path)
    with pytest.raises(QueueUnavailable) as info:  # the upgrade needs the write lock
        DurableQueue(path, "readings", busy_timeout=0.3)
    assert str(path) in str(info.value)
    _release(proc)
    assert _digest(path) == before
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    with DurableQueue(path, "readings") as q:  # and opens (upgraded) once free
        assert not q.recovery_report.corrupt
        assert q.stats()["dead"] == 1 and q.stats()["acked"] == 2


# ---------------------------------------------------------------- F23: full disk, EIO, EACCES


def test_a_full_disk_at_open_raises_and_every_acked_record_is_there_once_space_returns(tmp_path):
    path = tmp_path / "q.db"
    acked = _seed(path)
    lines = _child({"path": str(path), "fault": "fsize", "limit": 4096, "when": "open"})
    (refusal,) = _refusals(lines)
    assert refusal["event"] == "open" and refusal["oserror"]
    assert refusal["error"] in ("QueueUnavailable", "QueueFull"), refusal
    assert str(path) in refusal["message"]
    _assert_intact(path, acked)


def test_a_full_disk_during_a_put_refuses_it_and_puts_resume_once_space_returns(tmp_path):
    path = tmp_path / "q.db"
    acked = _seed(path)
    size = max(os.path.getsize(path), 64 * 1024)
    lines = _child({"path": str(path), "fault": "fsize", "limit": size + 40_000, "when": "put",
                    "before": 20, "after": 20})
    (refusal,) = _refusals(lines)
    assert refusal["event"] == "put" and refusal["oserror"]
    assert refusal["error"] in ("QueueUnavailable", "QueueFull"), refusal
    assert len(_acked(lines)) == 40  # before and after the fault; the refused put acked nothing
    _assert_intact(path, acked + _acked(lines))


def test_an_io_error_at_open_raises_unavailable_and_never_moves_the_file(tmp_path, shim):
    path = tmp_path / "q.db"
    acked = _seed(path)
    lines = _child({"path": str(path), "fault": "eio", "when": "open"},
                   LD_PRELOAD=str(shim), SV_EIO_MATCH=str(tmp_path))
    (refusal,) = _refusals(lines)
    assert refusal["error"] == "QueueUnavailable" and refusal["errno"] == 5, refusal
    assert str(path) in refusal["message"] and "I/O" in refusal["message"]
    _assert_intact(path, acked)


def test_an_io_error_during_a_put_refuses_it_and_puts_resume_once_it_clears(tmp_path, shim):
    path = tmp_path / "q.db"
    acked = _seed(path)
    lines = _child({"path": str(path), "fault": "eio", "when": "put", "before": 20, "after": 20},
                   LD_PRELOAD=str(shim), SV_EIO_MATCH=str(tmp_path))
    (refusal,) = _refusals(lines)
    assert refusal["event"] == "put" and refusal["error"] == "QueueUnavailable", refusal
    assert len(_acked(lines)) == 40
    _assert_intact(path, acked + _acked(lines))


def test_permission_denied_raises_unavailable_and_never_moves_the_file(tmp_path):
    # The directory is writable by the opener (so the file could be moved aside), the file is
    # not: as root, a child that became user 65534; otherwise a read-only file.
    work = Path(tempfile.mkdtemp(prefix="queue-perm-"))
    try:
        path = work / "q.db"
        acked = _seed(path)
        before = _digest(path)
        spec: dict[str, Any] = {"path": str(path), "when": "open"}
        if os.geteuid() == 0:
            os.chmod(path, 0o644)
            for p in (work, Path(f"{path}.lock")):
                os.chown(p, 65534, 65534)
            spec.update(fault="user", uid=65534)
        else:
            os.chmod(path, 0o444)
        lines = _child(spec)
        refusals = _refusals(lines)
        assert refusals and all(r["error"] == "QueueUnavailable" for r in refusals), lines
        assert _acked(lines) == []
        assert _digest(path) == before
        os.chmod(path, 0o600)
        _assert_intact(path, acked)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_failed_rebuild_of_a_damaged_file_puts_the_original_back(tmp_path):
    path = tmp_path / "q.db"
    acked = _seed(path, 200)
    with open(path, "r+b") as f:
        f.write(b"garbage header!!")  # real damage: a bad header
    damaged = _digest(path)
    lines = _child({"path": str(path), "fault": "fsize", "limit": 4096, "when": "open"})
    (refusal,) = _refusals(lines)  # the disk is "full": the rebuild cannot be written
    assert refusal["event"] == "open" and refusal["error"] in ("QueueUnavailable", "QueueFull")
    assert "put back" in refusal["message"]
    assert _digest(path) == damaged  # the original is where it was, byte for byte
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name or ".new-" in p.name]
    with DurableQueue(path, "work") as q:  # with space, recovery salvages every record
        assert q.recovery_report.corrupt and q.recovery_report.salvaged == len(acked)
        got = q.get(max_items=1000)
        assert sorted(d.id for d in got) == acked


# ---------------------------------------------------------------- bounds and file modes


def test_max_bytes_bounds_each_queue_counting_dead_letters_and_every_refusal_is_counted(tmp_path):
    path = tmp_path / "q.db"
    with DurableQueue(path, "small", max_bytes=8192) as small, \
            DurableQueue(path, "other") as other:
        accepted, refused = [], 0
        for i in range(1000):  # bounded: 8 KiB fills after a few dozen records
            try:
                accepted.append(small.put({"i": i, "pad": "x" * 100}))
            except QueueFull as exc:
                refused += 1
                assert "small" in str(exc) and "max_bytes=8192" in str(exc)
                if refused == 3:
                    break
        assert 10 < len(accepted) < 100 and small.stats()["bytes"] <= 8192
        with pytest.raises(QueueFull):  # a batch over the bound is refused whole
            small.put_many([{"pad": "y"}] * 5)
        assert small.stats()["refused_full"] == refused + 5
        assert other.put({"other": "queue"}) > 0  # the bound is per queue

        batch = small.get(max_items=5)
        assert all(d.reject("poison") for d in batch)  # dead letters still count ...
        with pytest.raises(QueueFull):
            small.put({"pad": "x" * 100})
        assert small.purge_dead([d.id for d in batch]) == 5  # ... until purged
        accepted.append(small.put({"pad": "x" * 100}))
        rest = small.get(max_items=1000)
        assert sorted(d.id for d in rest) == sorted(set(accepted) - {d.id for d in batch})
        assert all(small.ack_many(rest)) and small.stats()["bytes"] == 0


def test_the_default_bound_is_one_gib_per_queue_and_none_means_unbounded(tmp_path):
    with DurableQueue(tmp_path / "q.db") as q:
        assert q.max_bytes == 1 << 30
        q.set_max_bytes(None)
        assert q.max_bytes is None and q.put("x") > 0
        with pytest.raises(ValueError, match="max_bytes"):
            q.set_max_bytes(10)


def test_files_and_directories_holding_queue_data_are_private(tmp_path):
    old = os.umask(0o022)  # the usual umask: without care files would be 0644, dirs 0755
    try:
        path = tmp_path / "tenants" / "acme" / "q.db"
        with DurableQueue(path, "work") as q:
            q.put({"secret": 1})
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
            dirs = [stat.S_IMODE(p.stat().st_mode) for p in (path.parent, path.parent.parent)]
        assert {"q.db", "q.db-wal", "q.db-shm", "q.db.lock"} <= modes.keys()
        assert set(modes.values()) == {0o600}, modes
        assert dirs == [0o700, 0o700]
        with open(path, "r+b") as f:
            f.write(b"garbage header!!")
        with DurableQueue(path, "work") as q:  # a rebuilt file is private too
            assert q.recovery_report.corrupt
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)
