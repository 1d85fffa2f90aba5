"""What the durable-queue tests share: a wall clock moved by hand, and killing a writer child
(``_queue_writer.write_queue``) at a random moment to read the ids it had printed."""

from __future__ import annotations

import random
import signal
import subprocess


class WallClock:
    """A wall clock that moves only when told to (``time()`` like ``time.time``)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def kill_writer(proc: subprocess.Popen[bytes], rnd: random.Random, *, after_ready: bool,
                within: float) -> set[int]:
    """SIGKILL the writer ``proc`` after a random ``0..within`` s (counted from its ``ready``
    line when ``after_ready``, else from now: maybe during start-up); return the ids it had
    printed in full (a torn last line was never acknowledged). Fails if it exits by itself."""
    assert proc.stdout is not None
    if after_ready:
        assert proc.stdout.readline() == b"ready\n"
    try:
        proc.wait(timeout=rnd.uniform(0.0, within))
        raise AssertionError(f"writer exited by itself with {proc.returncode}")
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    complete = out[:out.rfind(b"\n") + 1]
    return {int(line) for line in complete.split() if line != b"ready"}
