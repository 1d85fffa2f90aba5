"""What a benchmark subprocess measures: a timed window and an idle-actor memory probe.

Context switches come from ``getrusage(RUSAGE_SELF)`` (``ru_nvcsw + ru_nivcsw``). On Linux that
is the whole thread group *including threads that already exited*: the kernel folds a dying
thread's counters into the process totals. ``/proc/self/status`` holds only the main thread's
counters and ``/proc/self/task/*/status`` loses every thread that exited (checked on this
machine: 4 threads doing 2,000 ``sleep(0)`` each, after they joined getrusage said 9,135 while the
task files summed to 49). Every measurement runs in a fresh subprocess, and the window covers only
the timed section, so interpreter start-up and imports are not counted.

Memory per idle actor: resident set size from ``/proc/self/statm`` (field 2, pages) before and
after spawning, ``gc.collect()`` first each time; with ``tracemalloc=True`` the figure is the
growth of the Python heap as tracemalloc sees it (thread stacks and C allocations outside the
Python allocator are invisible to it, so it is the smaller of the two figures).
"""

from __future__ import annotations

import gc
import os
import resource
import time
import tracemalloc
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["Window", "Probe", "context_switches", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


def context_switches() -> tuple[int, int]:
    """(voluntary, involuntary) context switches of this process, dead threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw, usage.ru_nivcsw


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


@dataclass
class Window:
    """Times a section and counts the context switches inside it.

    ``with Window() as w: ...`` then ``w.result(n)``: the dict a pipeline run reports.
    """

    elapsed_s: float = 0.0
    voluntary: int = 0
    involuntary: int = 0
    _t0: float = field(default=0.0, repr=False)
    _c0: tuple[int, int] = field(default=(0, 0), repr=False)

    def __enter__(self) -> "Window":
        self._c0 = context_switches()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.elapsed_s = time.perf_counter() - self._t0
        voluntary, involuntary = context_switches()
        self.voluntary, self.involuntary = voluntary - self._c0[0], involuntary - self._c0[1]

    def result(self, n: int, **extra: object) -> dict[str, object]:
        return {"n": n, "elapsed_s": self.elapsed_s, "msg_per_s": n / self.elapsed_s,
                "ctx_switches": self.voluntary + self.involuntary,
                "ctx_voluntary": self.voluntary, "ctx_involuntary": self.involuntary, **extra}


@dataclass
class Probe:
    """Measures what spawning ``count`` idle actors costs (memory, and time when not tracing).

    A peer calls ``with probe.spawning(): <spawn count idle actors and let them start>`` while
    keeping every actor alive; the probe reads memory on both sides of the block.
    """

    count: int
    tracemalloc: bool = False
    elapsed_s: float = 0.0
    rss_delta: int = 0
    heap_delta: int = 0
    _t0: float = field(default=0.0, repr=False)
    _rss0: int = field(default=0, repr=False)
    _heap0: int = field(default=0, repr=False)

    def spawning(self) -> "Probe":
        return self

    def __enter__(self) -> "Probe":
        gc.collect()
        if self.tracemalloc:
            tracemalloc.start()
            self._heap0 = tracemalloc.get_traced_memory()[0]
        self._rss0 = rss_bytes()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.elapsed_s = time.perf_counter() - self._t0
        gc.collect()
        self.rss_delta = rss_bytes() - self._rss0
        if self.tracemalloc:
            self.heap_delta = tracemalloc.get_traced_memory()[0] - self._heap0
            tracemalloc.stop()

    def result(self) -> dict[str, object]:
        if self.tracemalloc:
            return {"count": self.count, "heap_per_actor": self.heap_delta / self.count}
        return {"count": self.count, "rss_per_actor": self.rss_delta / self.count,
                "spawn_per_s": self.count / self.elapsed_s}
