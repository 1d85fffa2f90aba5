"""Child process of ``tests/test_queue_faults.py``: meets one fault and reports what happened.

    python _queue_fault_child.py SPEC_JSON

SPEC keys: ``path``; ``fault``: ``"fsize"`` (RLIMIT_FSIZE = ``limit`` bytes, SIGXFSZ ignored:
stands in for a full disk), ``"eio"`` (the LD_PRELOAD shim fails writes/syncs: sets SV_EIO),
``"user"`` (setuid/setgid to ``uid`` first) or None; ``when``: ``"open"`` (the fault is on before
the queue opens) or ``"put"`` (open, put ``before`` records, fault on, one put, fault off, put
``after`` records). Prints one JSON object per line: ``{"acked": [ids]}`` after each put that
returned, ``{"event": ..., "error": class name, "errno": n, "message": text}`` for each refusal.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    from actors.queue import DurableQueue

    fault, when = spec.get("fault"), spec.get("when", "open")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]

    def on() -> None:
        if fault == "fsize":
            resource.setrlimit(resource.RLIMIT_FSIZE, (spec["limit"], hard))
        elif fault == "eio":
            os.environ["SV_EIO"] = "1"

    def off() -> None:
        if fault == "fsize":
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        elif fault == "eio":
            os.environ.pop("SV_EIO", None)

    def refused(event: str, exc: BaseException) -> None:
        say(event=event, error=type(exc).__name__, errno=getattr(exc, "errno", None),
            message=str(exc), oserror=isinstance(exc, OSError))

    if fault == "user":
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
    kwargs = {"busy_timeout": spec.get("busy_timeout", 2.0)}
    if when == "open":
        on()
        try:
            q = DurableQueue(spec["path"], "work", **kwargs)
        except Exception as exc:  # the child's boundary: report whatever it was
            refused("open", exc)
            return
        say(event="opened", corrupt=q.recovery_report.corrupt)
        try:
            say(acked=[q.put({"during": "fault"})])
        except Exception as exc:
            refused("put", exc)
        off()
        q.close()
        return
    q = DurableQueue(spec["path"], "work", **kwargs)
    say(acked=q.put_many([{"before": i, "pad": "b" * 200} for i in range(spec["before"])]))
    on()
    try:
        say(acked=q.put_many([{"during": i, "pad": "d" * 20_000} for i in range(8)]))
    except Exception as exc:  # (same boundary)
        refused("put", exc)
    off()
    say(acked=q.put_many([{"after": i, "pad": "a" * 200} for i in range(spec["after"])]))
    q.close()


if __name__ == "__main__":
    main()
