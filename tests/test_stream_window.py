"""Event-time windows (``Window``): each windower against a brute-force reference on randomised
inputs with bounded disorder, late items within and beyond ``lateness``, idle keys, session
merges, the end of the stream, processing-time windows on timers, bounded open windows, bad
items and bad definitions, and a restart in the middle giving the same results - on the inline
runtime with a ``ManualClock`` (one test on the thread pool)."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import Runtime, codec
from actors.stream import (BadItem, Graph, Session, Sliding, Tumbling, Window, WindowResult)
from actors.testing import ManualClock, Recorder, inline_runtime
from supervisors._streams import GraphSupervision
from supervisors import Strategy
from tests.conftest import settle
from tests.test_stream_kit import Collect, Fed


# -- a harness: a fed source into a Window node, its three outputs recorded -------------------------
class Harness:
    def __init__(self, rt: Runtime, node: type = Window, **options: Any) -> None:
        self.rt = rt
        self.feed: deque[Any] = deque()
        self.out, self.late, self.errors = Recorder(), Recorder(), Recorder()
        g = Graph("w")
        g.add("src", Ending, self.feed)
        g.add("win", node, **options)
        g.add("out", Collect, self.out)
        g.add("late", Collect, self.late)
        g.add("errors", Collect, self.errors)
        g.connect("src", "win")
        g.connect("win.out", "out")
        g.connect("win.late", "late")
        g.connect("win.errors", "errors")
        self.inst = g.instantiate(rt, "acme", supervision=GraphSupervision(
            strategy=Strategy.ONE_FOR_ONE))
        settle(rt)

    def push(self, *items: Any) -> None:
        self.feed.extend(items)
        assert self.inst.wake("src")
        settle(self.rt)

    def end(self) -> None:
        ref = self.inst.ref("src")
        assert ref is not None
        ref.tell(_Finish())
        settle(self.rt)

    def stats(self) -> Any:
        return self.inst.statistics().node("win")


class _Finish:
    pass


class Ending(Fed):
    """A ``Fed`` source that finishes when told ``_Finish``."""

    def on_message(self, message: Any) -> Any:
        if isinstance(message, _Finish):
            self.finish()
            return None
        return super().on_message(message)


def key(r: tuple[Any, ...]) -> Any:
    return r[0]


def ts(r: tuple[Any, ...]) -> Any:
    return r[1]


def total(acc: float, r: tuple[Any, ...]) -> float:
    return acc + r[2]


SUM = dict(init=lambda: 0, fold=total)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def irt(clock: ManualClock) -> Any:
    rt = inline_runtime(clock)
    yield rt
    rt.shutdown()


# -- brute-force references -------------------------------------------------------------------------
def windows_of(t: int, size: int, step: int, offset: int) -> list[tuple[int, int]]:
    """Every [s, s + size) with s = offset + j*step containing t, by trying every j nearby."""
    found = []
    for j in range((t - offset - size) // step - 2, (t - offset) // step + 3):
        s = offset + j * step
        if s <= t < s + size:
            found.append((s, s + size))
    return found


def reference_grid(items: list[tuple[Any, int, int]], size: int, step: int, offset: int,
                   lateness: int, global_wm: bool = False
                   ) -> tuple[dict[Any, list[tuple[float, float, list[int], int]]], list[Any]]:
    """Per key, the results in order of (end, start), and the late items, of Tumbling/Sliding
    windows over ``items`` in arrival order: an item joins its windows whose end is past the
    watermark (largest time seen, for its key or globally, minus lateness) at its arrival."""
    top: dict[Any, float] = defaultdict(lambda: -math.inf)
    groups: dict[tuple[Any, int, int], list[int]] = defaultdict(list)
    late = []
    for item in items:
        k, t, v = item
        wk = "all" if global_wm else k
        top[wk] = max(top[wk], t)
        wm = top[wk] - lateness
        joined = [w for w in windows_of(t, size, step, offset) if w[1] > wm]
        if not joined:
            late.append(item)
        for s, e in joined:
            groups[(k, s, e)].append(v)
    out: dict[Any, list[Any]] = defaultdict(list)
    for (k, s, e), vs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        out[k].append((float(s), float(e), sorted(vs), len(vs)))
    return dict(out), late


def reference_sessions(items: list[tuple[Any, int, int]], gap: int
                       ) -> dict[Any, list[tuple[float, float, list[int], int]]]:
    """Per key: items sorted by time, a new session wherever two neighbours are >= gap apart."""
    by_key: dict[Any, list[tuple[int, int]]] = defaultdict(list)
    for k, t, v in items:
        by_key[k].append((t, v))
    out = {}
    for k, tv in by_key.items():
        tv.sort()
        sessions: list[list[tuple[int, int]]] = []
        for t, v in tv:
            if sessions and t - sessions[-1][-1][0] < gap:
                sessions[-1].append((t, v))
            else:
                sessions.append([(t, v)])
        out[k] = sorted(((float(s[0][0]), float(s[-1][0] + gap), sorted(v for _, v in s), len(s))
                         for s in sessions), key=lambda r: (r[1], r[0]))
    return out


def by_key(results: list[WindowResult]) -> dict[Any, list[tuple[float, float, list[int], int]]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for r in results:
        value = sorted(v for _, _, v in r.value) if isinstance(r.value, list) else r.value
        out[r.key].append((r.start, r.end, value, r.count))
    return dict(out)


@st.composite
def disordered(draw: Any, max_disorder: int) -> list[tuple[int, int, int]]:
    """(key, time, value) with times up to ``max_disorder`` out of order."""
    n = draw(st.integers(0, 60))
    times = sorted(draw(st.lists(st.integers(0, 300), min_size=n, max_size=n)))
    delays = draw(st.lists(st.integers(0, max_disorder), min_size=n, max_size=n))
    keys = draw(st.lists(st.sampled_from(["a", "b", 7]), min_size=n, max_size=n))
    order = sorted(range(n), key=lambda i: (times[i] + delays[i], i))
    return [(keys[i], times[i], i) for i in order]


def run(items: list[Any], chunks: int = 3, **options: Any) -> tuple[list[Any], list[Any], Any]:
    rt = inline_runtime(ManualClock())
    try:
        h = Harness(rt, key=key, time=ts, **options)
        step = max(1, len(items) // chunks)
        for i in range(0, len(items), step):
            h.push(*items[i:i + step])
        h.end()
        return list(h.out.items), list(h.late.items), h.stats()
    finally:
        rt.shutdown()


RANDOM = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


@RANDOM
@given(items=disordered(max_disorder=20), size=st.integers(1, 40), offset=st.integers(-5, 5),
       lateness=st.integers(0, 25))
def test_tumbling_matches_the_brute_force_reference(items: list[Any], size: int, offset: int,
                                                     lateness: int) -> None:
    out, late, s = run(items, windows=Tumbling(size, offset), lateness=lateness)
    expected, expected_late = reference_grid(items, size, size, offset, lateness)
    assert by_key(out) == expected
    assert late == expected_late
    assert (s.late, s.errors, s.open_windows) == (len(late), 0, 0)
    assert sum(r.count for r in out) + len(late) == len(items)


@RANDOM
@given(items=disordered(max_disorder=20), size=st.integers(1, 30), steps=st.integers(1, 4),
       lateness=st.integers(0, 25))
def test_sliding_matches_the_brute_force_reference(items: list[Any], size: int, steps: int,
                                                    lateness: int) -> None:
    step = max(1, size // steps)
    out, late, s = run(items, windows=Sliding(size, step, 1), lateness=lateness)
    expected, expected_late = reference_grid(items, size, step, 1, lateness)
    assert by_key(out) == expected
    assert late == expected_late
    assert s.late == len(late)


@RANDOM
@given(items=disordered(max_disorder=20), size=st.integers(1, 40), lateness=st.integers(0, 25))
def test_a_global_watermark_closes_every_key_on_the_largest_time_seen(
        items: list[Any], size: int, lateness: int) -> None:
    out, late, _ = run(items, windows=Tumbling(size), lateness=lateness, watermark="global")
    expected, expected_late = reference_grid(items, size, size, 0, lateness, global_wm=True)
    assert by_key(out) == expected
    assert late == expected_late


@RANDOM
@given(items=disordered(max_disorder=15), gap=st.integers(1, 30), extra=st.integers(0, 10))
def test_sessions_match_the_brute_force_reference_when_lateness_covers_the_disorder(
        items: list[Any], gap: int, extra: int) -> None:
    out, late, s = run(items, windows=Session(gap), lateness=15 + extra)
    assert late == [] and s.late == 0
    assert by_key(out) == reference_sessions(items, gap)
    # with a fold and a merge: the same sums
    out, _, _ = run(items, windows=Session(gap), lateness=15 + extra, init=lambda: 0,
                    fold=total, merge=lambda a, b: a + b)
    assert {(r.key, r.start, r.end, r.value, r.count) for r in out} == {
        (k, s0, e, sum(vs), n) for k, rs in reference_sessions(items, gap).items()
        for s0, e, vs, n in rs}


# -- the rules one by one --------------------------------------------------------------------------
def test_out_of_order_items_within_lateness_are_folded_and_beyond_it_are_late(irt: Runtime
                                                                              ) -> None:
    h = Harness(irt, key=key, time=ts, windows=Tumbling(10), lateness=5, **SUM)
    h.push(("d", 1, 1), ("d", 12, 2))      # watermark 7: [0, 10) still open
    h.push(("d", 9, 3))                    # out of order, within lateness
    assert h.out.items == []
    h.push(("d", 15, 4))                   # watermark 10: [0, 10) closes
    assert h.out.items == [WindowResult("d", 0.0, 10.0, 4, 2)]
    h.push(("d", 8, 5), ("e", 8, 6))       # beyond lateness for "d"; "e" has its own watermark
    assert h.late.items == [("d", 8, 5)]
    assert h.stats().late == 1 and h.stats().open_windows == 2
    h.end()
    assert h.out.items[1:] == [WindowResult("d", 10.0, 20.0, 6, 2),
                               WindowResult("e", 0.0, 10.0, 6, 1)] or h.out.items[1:] == [
        WindowResult("e", 0.0, 10.0, 6, 1), WindowResult("d", 10.0, 20.0, 6, 2)]
    assert h.stats().open_windows == 0


def test_results_of_one_key_come_in_order_of_end_at_the_end_of_the_stream(irt: Runtime) -> None:
    h = Harness(irt, key=key, time=ts, windows=Sliding(10, 5), lateness=100)
    h.push(("k", 12, "a"), ("k", 3, "b"), ("k", 7, "c"))
    assert h.out.items == []
    h.end()
    assert [(r.start, r.end, r.value) for r in h.out.items] == [
        (-5.0, 5.0, [("k", 3, "b")]), (0.0, 10.0, [("k", 3, "b"), ("k", 7, "c")]),
        (5.0, 15.0, [("k", 12, "a"), ("k", 7, "c")]), (10.0, 20.0, [("k", 12, "a")])]


def test_an_idle_key_closes_on_the_runtime_clock_and_its_stragglers_are_late(
        irt: Runtime, clock: ManualClock) -> None:
    h = Harness(irt, key=key, time=ts, windows=Tumbling(60), idle=30, **SUM)
    h.push(("quiet", 5, 1), ("busy", 5, 1))
    clock.advance(20)
    settle(irt)
    h.push(("busy", 30, 1))
    clock.advance(10)                       # "quiet" silent for 30 s: its window closes
    settle(irt)
    assert h.out.items == [WindowResult("quiet", 0.0, 60.0, 1, 1)]
    clock.advance(19)
    settle(irt)
    assert len(h.out.items) == 1            # "busy" had an item 29 s ago
    clock.advance(1)
    settle(irt)
    assert h.out.items[1] == WindowResult("busy", 0.0, 60.0, 2, 2)
    h.push(("quiet", 50, 1), ("quiet", 70, 1))   # [0, 60) closed for "quiet": late
    assert h.late.items == [("quiet", 50, 1)]
    assert h.stats().open_windows == 1


def test_a_new_item_merges_two_sessions(irt: Runtime) -> None:
    h = Harness(irt, key=key, time=ts, windows=Session(10), lateness=50, init=lambda: 0,
                fold=total, merge=lambda a, b: a + b)
    h.push(("s", 0, 1), ("s", 5, 2), ("s", 20, 4), ("s", 26, 8))
    assert h.stats().open_windows == 2      # [0, 15) and [20, 36)
    h.push(("s", 13, 16))                   # 13 is within 10 of 5 and of 20: one session
    assert h.stats().open_windows == 1
    h.push(("s", 100, 32))                  # watermark 50: [0, 36) closes
    assert h.out.items == [WindowResult("s", 0.0, 36.0, 31, 5)]
    h.push(("s", 30, 64))                   # before the end of a closed session: late
    assert h.late.items == [("s", 30, 64)]
    h.end()
    assert h.out.items[-1] == WindowResult("s", 100.0, 110.0, 32, 1)


def test_sessions_without_fold_concatenate_the_items_of_merged_sessions(irt: Runtime) -> None:
    h = Harness(irt, key=key, time=ts, windows=Session(10), lateness=20)
    h.push(("s", 0, "a"), ("s", 15, "b"), ("s", 8, "c"))
    h.end()
    assert h.out.items == [WindowResult("s", 0.0, 25.0, [("s", 0, "a"), ("s", 15, "b"),
                                                         ("s", 8, "c")], 3)]


def test_processing_time_windows_close_on_timers(irt: Runtime, clock: ManualClock) -> None:
    h = Harness(irt, key=key, time=None, windows=Tumbling(10), lateness=2, **SUM)
    clock.advance(3)
    h.push(("a", None, 1), ("b", None, 2))
    clock.advance(5)                        # t = 8
    h.push(("a", None, 4))
    clock.advance(3)                        # t = 11: [0, 10) closes at 10 + 2
    settle(irt)
    assert h.out.items == []
    clock.advance(1)
    settle(irt)
    assert h.out.items == [WindowResult("a", 0.0, 10.0, 5, 2), WindowResult("b", 0.0, 10.0, 2, 1)]
    h.push(("a", None, 8))                  # t = 12: window [10, 20), closes at 22
    clock.advance(10)
    settle(irt)
    assert h.out.items[-1] == WindowResult("a", 10.0, 20.0, 8, 1)
    assert h.stats().late == 0 and h.stats().open_windows == 0


def test_open_windows_are_bounded_and_the_oldest_is_closed_early_and_counted(
        irt: Runtime) -> None:
    h = Harness(irt, key=key, time=ts, windows=Tumbling(10), lateness=1000, max_open=3, **SUM)
    h.push(("a", 35, 1), ("b", 5, 1), ("c", 15, 1), ("d", 25, 1))
    assert h.out.items == [WindowResult("b", 0.0, 10.0, 1, 1)]
    s = h.stats()
    assert (s.evicted, s.open_windows) == (1, 3)
    h.push(("b", 7, 1))                     # its window was closed early: late
    assert h.late.items == [("b", 7, 1)]


def test_bad_items_go_to_errors_with_the_reason_and_the_node_keeps_going(irt: Runtime) -> None:
    h = Harness(irt, key=lambda r: r["k"], time=lambda r: r["t"], windows=Tumbling(10))
    h.push({"k": "a", "t": 1}, {"t": 2}, {"k": "a", "t": "soon"}, {"k": "a", "t": math.nan},
           {"k": "a", "t": math.inf}, {"k": "a"}, {"k": ["unhashable"], "t": 1},
           {"k": "a", "t": 3})
    reasons = [b.reason for b in h.errors.items]
    assert all(isinstance(b, BadItem) for b in h.errors.items)
    assert reasons[0].startswith("key raised KeyError")
    assert "not a finite number: 'soon'" in reasons[1]
    assert "not a finite number: nan" in reasons[2] and "inf" in reasons[3]
    assert reasons[4].startswith("time raised KeyError")
    assert "hashable" in reasons[5]
    assert h.stats().errors == 6
    h.end()
    assert h.out.items == [WindowResult("a", 0.0, 10.0, [{"k": "a", "t": 1}, {"k": "a", "t": 3}],
                                        2)]


def test_a_fold_that_raises_sends_the_item_to_errors(irt: Runtime) -> None:
    h = Harness(irt, key=key, time=ts, windows=Tumbling(10), init=lambda: 0,
                fold=lambda acc, r: acc + 10 // r[2])
    h.push(("a", 1, 5), ("a", 2, 0), ("a", 3, 1))
    assert [b.reason for b in h.errors.items] == [
        "fold raised ZeroDivisionError: integer division or modulo by zero"]
    h.end()
    assert h.out.items == [WindowResult("a", 0.0, 10.0, 12, 2)]


@pytest.mark.parametrize("options, words", [
    (dict(windows=Tumbling(10), lateness=-1), "lateness must be a number of seconds >= 0"),
    (dict(windows=Tumbling(10), idle=0), "idle must be a positive number"),
    (dict(windows=None), "windows= must be Tumbling"),
    (dict(windows=Tumbling(10), fold=total), "fold= needs init="),
    (dict(windows=Tumbling(10), init=list), "init= needs fold="),
    (dict(windows=Session(5), init=lambda: 0, fold=total), "need merge="),
    (dict(windows=Tumbling(5), merge=lambda a, b: a), "merge= is for Session windows"),
    (dict(windows=Tumbling(5), max_open=0), "max_open must be a positive integer"),
    (dict(windows=Tumbling(5), watermark="local"), "watermark= must be 'key'"),
    (dict(windows=Tumbling(5), key="device"), "key must be a function"),
    (dict(windows=Tumbling(5), size=3), "unexpected keyword argument 'size'"),
])
def test_bad_definitions_raise_value_error_at_add(options: dict[str, Any], words: str) -> None:
    g = Graph("g")
    with pytest.raises(ValueError, match="node 'win'") as info:
        g.add("win", Window, **options)
    assert words in str(info.value)


@pytest.mark.parametrize("make, words", [
    (lambda: Tumbling(0), "Tumbling(size) must be a positive number"),
    (lambda: Tumbling(-5), "Tumbling(size) must be a positive number"),
    (lambda: Tumbling(math.inf), "Tumbling(size) must be a positive number"),
    (lambda: Sliding(10, 20), "Sliding(step) must be <= size"),
    (lambda: Sliding(10, 0), "Sliding(step) must be a positive number"),
    (lambda: Session(0), "Session(gap) must be a positive number"),
    (lambda: Tumbling(10, math.nan), "Tumbling(offset) must be a number of seconds"),
])
def test_bad_windowers_raise_value_error(make: Any, words: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert words in str(info.value)


# -- restarts --------------------------------------------------------------------------------------
class Crashable(Window):
    """A Window whose snapshots go through the codec (msgpack) and that crashes on request."""

    def snapshot(self) -> Any:
        return codec.decode(codec.encode(super().snapshot()))

    def on_message(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash on request")
        return super().on_message(message)


@pytest.mark.parametrize("windows, options", [
    (Tumbling(10), dict(lateness=5)),
    (Sliding(10, 5), dict(lateness=3, watermark="global")),
    (Session(4), dict(lateness=8, init=lambda: 0, fold=total, merge=lambda a, b: a + b)),
])
def test_a_restart_in_the_middle_gives_the_same_results(windows: Any, options: Any) -> None:
    items = [((i * 7) % 3, (i * 13) % 40 + i // 2, i) for i in range(90)]
    items = [(("dev", k) if k else k, t, v) for k, t, v in items]   # tuple and int keys

    def go(crash_at: set[int]) -> tuple[list[Any], list[Any], Any]:
        rt = inline_runtime(ManualClock())
        try:
            h = Harness(rt, Crashable, key=key, time=ts, windows=windows, **options)
            for i in range(0, 90, 10):
                h.push(*items[i:i + 10])
                if i in crash_at:
                    ref = h.inst.ref("win")
                    assert ref is not None
                    ref.tell("crash")
                    settle(rt)
            h.end()
            return list(h.out.items), list(h.late.items), h.stats()
        finally:
            rt.shutdown()

    calm = go(set())
    crashed = go({20, 50, 60})
    assert crashed[2].restarts == 3 and crashed[2].lost == 0
    assert crashed[0] == calm[0] and crashed[1] == calm[1]
    assert crashed[2].late == calm[2].late
    assert calm[0]  # not vacuous


def test_a_restored_node_keeps_closing_idle_keys(clock: ManualClock) -> None:
    rt = inline_runtime(clock)
    try:
        h = Harness(rt, Crashable, key=key, time=ts, windows=Tumbling(60), idle=30, **SUM)
        h.push(("a", 1, 1))
        ref = h.inst.ref("win")
        assert ref is not None
        ref.tell("crash")
        settle(rt)
        assert h.stats().restarts == 1 and h.stats().open_windows == 1
        clock.advance(30)
        settle(rt)
        assert h.out.items == [WindowResult("a", 0.0, 60.0, 1, 1)]
    finally:
        rt.shutdown()


# -- the same graph on the thread pool -------------------------------------------------------------
def test_the_same_windows_on_the_thread_pool() -> None:
    items = [(f"dev{i % 13}", (i * 7919) % 500 + i // 10, i) for i in range(3000)]
    expected, expected_late = reference_grid(items, 30, 30, 0, 40)
    with Runtime(workers=2, clock=ManualClock(), node="test") as rt:
        h = Harness(rt, key=key, time=ts, windows=Tumbling(30), lateness=40)
        for i in range(0, len(items), 500):
            h.push(*items[i:i + 500])
        h.end()
        assert by_key(list(h.out.items)) == expected
        assert list(h.late.items) == expected_late


def test_items_exactly_gap_apart_are_in_different_sessions_in_either_order(irt: Runtime) -> None:
    h = Harness(irt, key=key, time=ts, windows=Session(10), lateness=30)
    h.push(("s", 20, "a"), ("s", 10, "b"), ("s", 30, "c"), ("s", 25, "d"))
    h.end()
    assert [(r.start, r.end, r.count) for r in h.out.items] == [(10.0, 20.0, 1), (20.0, 40.0, 3)]


class Recording(Window):
    """Keeps every snapshot's size: (items in the journal, open windows in the base)."""

    sizes: list[tuple[int, int]] = []

    def snapshot(self) -> Any:
        state = super().snapshot()
        journal = state["journal"][:state["n"]]
        Recording.sizes.append((sum(len(e[3]) for e in journal if e[0] == "i"),
                                sum(len(k[4]) for k in state["base"]["keys"])))
        return state


def test_the_snapshot_stays_bounded_however_long_the_stream(irt: Runtime) -> None:
    Recording.sizes = []
    h = Harness(irt, Recording, key=key, time=ts, windows=Tumbling(10), **SUM)
    for i in range(0, 40_000, 500):
        h.push(*[(j % 5, j * 0.01, 1) for j in range(i, i + 500)])
    journal = [n for n, _ in Recording.sizes]
    assert len(journal) > 50 and max(journal) <= 16 * (5 + 5) + 4096 + 500
    assert journal.count(0) >= 5       # the base was rebuilt again and again
    h.end()
    assert sum(r.value for r in h.out.items) == 40_000


def test_sliding_windows_with_a_fractional_step_are_the_same_window_for_every_item(
        irt: Runtime) -> None:
    h = Harness(irt, key=key, time=ts, windows=Sliding(0.3, 0.1), lateness=10)
    h.push(*[("k", i * 0.05, i) for i in range(20)])
    h.end()
    starts = [r.start for r in h.out.items]
    assert len({round(s, 9) for s in starts}) == len(starts) == 12   # [-0.2, 0.1) .. [0.9, 1.2)
    for r in h.out.items:
        assert all(r.start <= t < r.end for _, t, _ in r.value)
    assert sum(r.count for r in h.out.items) >= 3 * 20 - 3           # ~3 windows per item


def test_a_restart_keeps_the_idle_clock_of_a_key_and_never_reopens_a_closed_window(
        clock: ManualClock) -> None:
    rt = inline_runtime(clock)
    try:
        h = Harness(rt, Crashable, key=key, time=ts, windows=Tumbling(60), idle=30, **SUM)
        h.push(("a", 1, 1))
        clock.advance(20)
        settle(rt)
        ref = h.inst.ref("win")
        assert ref is not None
        ref.tell("crash")                   # restored at t=20: "a" has been silent for 20 s
        settle(rt)
        clock.advance(10)
        settle(rt)                          # ... and for 30 s now: its window closes
        assert h.out.items == [WindowResult("a", 0.0, 60.0, 1, 1)]
        ref = h.inst.ref("win")
        assert ref is not None
        ref.tell("crash")                   # the closed window stays closed after a restart
        settle(rt)
        assert h.stats().restarts == 2 and h.stats().open_windows == 0
        h.push(("a", 2, 1))
        h.end()
        assert h.out.items == [WindowResult("a", 0.0, 60.0, 1, 1)]
        assert h.late.items == [("a", 2, 1)]
    finally:
        rt.shutdown()
