"""Measure a whole ``streamvisor run`` job from outside: OS threads, RSS and fds of its process
(``/proc/<pid>``), its TCP connections to a broker port, when its first progress line came and
how long the run took in all.

    python -m tests.benchmarks._job --tenants 1000 --devices 2 --duration 30 [--mqtt HOST:PORT]

prints one JSON object. ``job(...)`` returns the same dict.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["job", "proc_sample"]

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "iot_cloud.py"
_LINE = re.compile(r"^\s*[\d.]+s\s+actors=")


def proc_sample(pid: int) -> dict[str, int] | None:
    """``{"threads", "rss_kb", "fds"}`` of a live process; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # exiting (a zombie has no memory left)
        return None
    return {"threads": int(fields["Threads"]), "rss_kb": int(fields["VmRSS"].split()[0]),
            "fds": fds}


def _connections(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` to remote ``port`` (from /proc/net/tcp*)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            remote, state, inode = parts[2], parts[3], parts[9]
            if state == "01" and inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def job(tenants: int | str, devices: int, duration: float, *, mqtt: str | None = None,
        extra: list[str] | None = None, timeout: float = 300.0) -> dict[str, Any]:
    """Run the IoT cloud job and measure it (see the module docstring). Peaks are sampled every
    0.2 s; ``first_line_s`` is from the process start to its first progress line."""
    data_dir = tempfile.mkdtemp(prefix="bench-density-")
    argv = [sys.executable, "-m", "streamvisor.cli", "run", str(APP), "--duration", str(duration),
            "--tenants", str(tenants), "--devices", str(devices), "--data-dir", data_dir,
            *(["--mqtt", mqtt] if mqtt else []), *(extra or [])]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "STREAMVISOR_LOG_LEVEL": "error"})
    out: dict[str, Any] = {"tenants": tenants, "devices": devices, "duration": duration,
                           "first_line_s": None, "lines": 0, "peak_threads": 0, "peak_rss_mb": 0.0,
                           "peak_fds": 0, "broker_connections": 0}
    lines: list[str] = []
    errors: list[str] = []

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if _LINE.match(line) and out["first_line_s"] is None:
                out["first_line_s"] = round(time.monotonic() - started, 2)

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            errors.append(line.rstrip())
            del errors[:-40]

    readers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=read_err, daemon=True)]
    for r in readers:
        r.start()
    port = int(mqtt.rpartition(":")[2]) if mqtt else None
    while proc.poll() is None:
        if time.monotonic() - started > timeout:
            proc.kill()
            out["error"] = f"timed out after {timeout} s"
            break
        sample = proc_sample(proc.pid)
        if sample is not None:
            out["peak_threads"] = max(out["peak_threads"], sample["threads"])
            out["peak_rss_mb"] = max(out["peak_rss_mb"], round(sample["rss_kb"] / 1024, 1))
            out["peak_fds"] = max(out["peak_fds"], sample["fds"])
            if port is not None:
                out["broker_connections"] = max(out["broker_connections"],
                                                _connections(proc.pid, port))
        time.sleep(0.2)
    proc.wait()
    for r in readers:
        r.join(5)
    out["total_s"] = round(time.monotonic() - started, 2)
    out["returncode"] = proc.returncode
    out["lines"] = sum(1 for line in lines if _LINE.match(line))
    summary = next((line for line in lines if line.startswith("summary:")), None)
    if summary is not None:
        counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", summary)}
        out["summary"] = {k: counters.get(k) for k in ("in", "stored", "dead_lettered", "queued",
                                                       "restarts", "tenants")}
    if proc.returncode != 0:
        out["error"] = out.get("error") or (errors[-1] if errors else f"exit {proc.returncode}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks._job")
    parser.add_argument("--tenants", default="1000")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--mqtt", default=None)
    parser.add_argument("--timeout", type=float, default=300.0)
    args, extra = parser.parse_known_args()
    print(json.dumps(job(args.tenants, args.devices, args.duration, mqtt=args.mqtt, extra=extra,
                         timeout=args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
