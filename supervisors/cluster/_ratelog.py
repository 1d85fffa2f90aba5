"""Rate-limited warnings: input from the network must not be able to flood the log.

``RateLimitedLog(log, per_interval=5, interval=10.0)``; ``warning(key, event, **fields)`` logs at
most ``per_interval`` lines per ``key`` in each ``interval`` seconds. The rest are counted; the
next line logged for that key carries ``suppressed=N`` (how many were not written since).
The caller keeps its own counters of what was rejected: this class only decides what is written.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    def __init__(self, log: Any, *, per_interval: int = 5, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 64) -> None:
        self._log = log
        self._per = per_interval
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._windows: dict[str, list[float | int]] = {}   # key -> [window start, written, suppressed]
        self.suppressed = 0

    def warning(self, key: str, event: str, **fields: Any) -> bool:
        """Log ``event`` unless ``key`` is over its budget; True if it was written."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self._interval:
                if window is None and len(self._windows) >= self._max_keys:
                    self._windows.clear()   # bounded: many keys is itself a flood
                suppressed = int(window[2]) if window is not None else 0
                window = [now, 0, 0]
                self._windows[key] = window
                if suppressed:
                    fields["suppressed"] = suppressed
            if window[1] >= self._per:
                window[2] += 1
                self.suppressed += 1
                return False
            window[1] += 1
        self._log.warning(event, **fields)
        return True
