"""kill -9, 50 times, of a queue-fed windowed app with checkpoints (examples/checkpoint_minutes.py)
while readings flow; restarted each time. At the end the per-device minute sums equal a reference
computed from the readings put into the queue: none counted twice, none missed.

Bounded: 50 runs, each killed 0.05-0.6 s (random, seeded) after it said it is ready (every fifth
run already during its start, when it restores), each start waited for at most 20 s; then one
drain of at most 60 s."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from actors.testing import wait_until
from examples.checkpoint_minutes import FAR, open_queue

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "checkpoint_minutes.py"
KILLS = 50
DEVICES = 10
BATCH = 400  # readings put into the queue before each run


def reading(i: int) -> dict:
    return {"device": f"d{i % DEVICES}", "ts": float(i // DEVICES) * 2.0,
            "temp": (i * 37) % 400 - 100}


def start(data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(APP), str(data_dir), "--every", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def queued(data_dir: Path) -> int:
    """Readings ready, leased or delayed in the app's queue (acked ones are in a checkpoint)."""
    q = open_queue(str(data_dir))
    try:
        stats = q.stats()
    finally:
        q.close()
    return int(stats["ready"] + stats["in_flight"] + stats["delayed"])


def minute_rows(db: Path) -> dict[tuple[str, float], list[int]]:
    if not db.exists():
        return {}
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        return {(d, s): [t, n] for d, s, t, n in conn.execute(
            "SELECT device, start, total, n FROM minute_sums WHERE start < ?", (FAR,))}


def wait_ready(proc: subprocess.Popen) -> None:
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(20), "the app did not start within 20 s"
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read().decode()[-2000:])


@pytest.mark.timeout(240)  # ~70 s alone (a process start costs ~1 s); more on a loaded machine
def test_fifty_kill9_restarts_count_every_reading_exactly_once(tmp_path):
    rnd = random.Random(16)
    put = 0
    progress = []
    for run in range(KILLS):
        q = open_queue(str(tmp_path))
        q.put_many([reading(i) for i in range(put, put + BATCH)])
        put += BATCH
        q.close()
        proc = start(tmp_path)
        if run % 5 == 4:
            time.sleep(rnd.uniform(0.0, 1.0))  # while it starts and restores
        else:
            wait_ready(proc)
            time.sleep(rnd.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        proc.stderr.close()
        proc.stdout.close()
        if run % 10 == 9:
            q = open_queue(str(tmp_path))
            progress.append(q.stats()["acked"])
            q.close()
    assert progress[-1] > 0, "no checkpoint ever committed between the kills"
    # the drain, in two steps. (1) The app consumes every reading: a reading leased by a killed
    # run comes back only after its visibility timeout, so wait until nothing is ready, leased
    # or delayed (acked means a committed checkpoint holds it). (2) Then readings far in the
    # future close every minute; a reading still out on a lease would arrive after its minute
    # closed, and be late.
    reference: dict[tuple[str, float], list[int]] = {}
    for i in range(put):
        r = reading(i)
        acc = reference.setdefault((r["device"], r["ts"] // 60 * 60), [0, 0])
        acc[0] += r["temp"]
        acc[1] += 1
    proc = start(tmp_path)
    try:
        wait_until(lambda: queued(tmp_path) == 0, timeout=60,
                   message="the drain to consume and ack every reading")
        q = open_queue(str(tmp_path))
        q.put_many([{"device": f"d{d}", "ts": FAR * 3, "temp": 0} for d in range(DEVICES)])
        q.close()
        rows: dict = {}

        def all_rows_there() -> bool:
            nonlocal rows
            rows = minute_rows(tmp_path / "minutes.db")
            return len(rows) >= len(reference) and sum(n for _, n in rows.values()) >= put

        try:
            wait_until(all_rows_there, timeout=60, message="every minute row")
        except TimeoutError:
            pass  # the assertions below say what is missing
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
        proc.stdout.close()
    assert sum(n for _, n in rows.values()) == put
    assert rows == reference
    q = open_queue(str(tmp_path))
    stats = q.stats()
    q.close()
    assert stats["dead"] == 0
