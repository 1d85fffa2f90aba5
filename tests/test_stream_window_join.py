"""``WindowJoin``: two inputs joined per key within the same window (temperature and humidity
of one device per minute), against a brute-force reference; the rule for a side that never
arrives (port ``"unmatched"`` when the window closes: by watermark, idle key, end of stream);
late items of either side; a restart in the middle - inline, on a ``ManualClock``."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import Runtime, codec
from actors.stream import Graph, Session, Tumbling, WindowJoin, WindowResult
from actors.testing import ManualClock, Recorder, inline_runtime
from supervisors import Strategy
from supervisors._streams import GraphSupervision
from tests.conftest import settle
from tests.test_stream_kit import Collect
from tests.test_stream_window import Ending


def device(r: dict[str, Any]) -> Any:
    return r["device"]


def ts(r: dict[str, Any]) -> Any:
    return r["ts"]


MEAN = dict(init=lambda: (0.0, 0), fold=lambda a, r: (a[0] + r["v"], a[1] + 1),
            result=lambda a: a[0] / a[1])


class JoinHarness:
    def __init__(self, rt: Runtime, node: type = WindowJoin, **options: Any) -> None:
        self.rt = rt
        self.feeds = {"left": deque(), "right": deque()}  # type: dict[str, deque[Any]]
        self.rec = {p: Recorder() for p in ("out", "unmatched", "late", "errors")}
        g = Graph("j")
        g.add("temp", Ending, self.feeds["left"])
        g.add("hum", Ending, self.feeds["right"])
        g.add("join", node, **options)
        for port, rec in self.rec.items():
            g.add(f"c_{port}", Collect, rec)
            g.connect(f"join.{port}", f"c_{port}")
        g.connect("temp", "join.left")
        g.connect("hum", "join.right")
        self.inst = g.instantiate(rt, "acme", supervision=GraphSupervision(
            strategy=Strategy.ONE_FOR_ONE))
        settle(rt)

    def push(self, side: str, *items: Any) -> None:
        self.feeds[side].extend(items)
        assert self.inst.wake("temp" if side == "left" else "hum")
        settle(self.rt)

    def end(self) -> None:
        from tests.test_stream_window import _Finish
        for name in ("temp", "hum"):
            ref = self.inst.ref(name)
            assert ref is not None
            ref.tell(_Finish())
        settle(self.rt)

    def items(self, port: str) -> list[Any]:
        return list(self.rec[port].items)


def r(dev: str, t: float, v: float) -> dict[str, Any]:
    return {"device": dev, "ts": t, "v": v}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def irt(clock: ManualClock) -> Any:
    rt = inline_runtime(clock)
    yield rt
    rt.shutdown()


def test_temperature_and_humidity_of_one_device_are_joined_per_minute(irt: Runtime) -> None:
    h = JoinHarness(irt, key=device, time=ts, windows=Tumbling(60), lateness=10, **MEAN)
    h.push("left", r("d1", 5, 20.0), r("d1", 30, 22.0), r("d2", 10, 30.0))
    h.push("right", r("d1", 12, 40.0), r("d2", 50, 60.0), r("d2", 55, 70.0))
    assert h.items("out") == []
    h.push("left", r("d1", 75, 21.0), r("d2", 71, 31.0))     # watermarks pass 60
    assert h.items("out") == [WindowResult("d1", 0.0, 60.0, (21.0, 40.0), 3),
                              WindowResult("d2", 0.0, 60.0, (30.0, 65.0), 3)]
    assert h.items("unmatched") == []


def test_a_side_that_never_arrives_is_emitted_on_unmatched_when_the_window_closes(
        irt: Runtime, clock: ManualClock) -> None:
    h = JoinHarness(irt, key=device, time=ts, windows=Tumbling(60), idle=30, **MEAN)
    h.push("left", r("d1", 5, 20.0))
    h.push("right", r("d2", 5, 50.0))
    h.push("left", r("d1", 65, 21.0))                       # by watermark: d1 [0, 60)
    assert h.items("unmatched") == [WindowResult("d1", 0.0, 60.0, (20.0, None), 1)]
    clock.advance(30)                                       # by idle: both keys silent
    settle(irt)
    assert h.items("unmatched")[1:] == [WindowResult("d1", 60.0, 120.0, (21.0, None), 1),
                                        WindowResult("d2", 0.0, 60.0, (None, 50.0), 1)]
    h.push("right", r("d3", 1, 1.0))
    h.end()                                                 # by the end of the stream
    assert h.items("unmatched")[-1] == WindowResult("d3", 0.0, 60.0, (None, 1.0), 1)
    assert h.items("out") == []
    s = h.inst.statistics().node("join")
    assert s.open_windows == 0 and s.emitted == 4


def test_late_items_of_either_side_go_to_late(irt: Runtime) -> None:
    h = JoinHarness(irt, key=device, time=ts, windows=Tumbling(10))
    h.push("left", r("d", 1, 1), r("d", 25, 2))
    h.push("right", r("d", 3, 3), r("d", 21, 4))
    assert h.items("late") == [r("d", 3, 3)]
    assert h.items("unmatched") == [WindowResult("d", 0.0, 10.0, ([r("d", 1, 1)], None), 1)]
    h.end()
    assert h.items("out") == [WindowResult("d", 20.0, 30.0, ([r("d", 25, 2)], [r("d", 21, 4)]),
                                           2)]
    assert h.inst.statistics().node("join").late == 1


def test_joined_sessions_merge_each_side(irt: Runtime) -> None:
    h = JoinHarness(irt, key=device, time=ts, windows=Session(5), lateness=20,
                    init=lambda: 0, fold=lambda a, x: a + x["v"], merge=lambda a, b: a + b)
    h.push("left", r("d", 0, 1), r("d", 8, 2))
    h.push("right", r("d", 4, 10))                          # bridges [0, 5) and [8, 13)
    h.end()
    assert h.items("out") == [WindowResult("d", 0.0, 13.0, (3, 10), 3)]


@st.composite
def two_sides(draw: Any) -> list[tuple[str, dict[str, Any]]]:
    n = draw(st.integers(0, 50))
    return [(draw(st.sampled_from(["left", "right"])),
             r(draw(st.sampled_from(["a", "b", "c"])), draw(st.integers(0, 200)), i))
            for i in range(n)]


@settings(max_examples=40, deadline=None)
@given(items=two_sides(), size=st.integers(1, 50))
def test_joins_match_the_brute_force_reference(items: list[Any], size: int) -> None:
    rt = inline_runtime(ManualClock())
    try:
        # lateness beyond any disorder: every item is folded, windows close at the end
        h = JoinHarness(rt, key=device, time=ts, windows=Tumbling(size), lateness=1000)
        for side, item in items:
            h.push(side, item)
        h.end()
        got = {(x.key, x.start, x.end, tuple(None if v is None else tuple(sorted(i["v"] for i in v))
                                             for v in x.value), x.count, port)
               for port in ("out", "unmatched") for x in h.items(port)}
    finally:
        rt.shutdown()
    groups: dict[tuple[Any, ...], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for side, item in items:
        start = (item["ts"] // size) * size
        groups[(item["device"], float(start), float(start + size))][side].append(item["v"])
    expected = set()
    for (k, s, e), sides in groups.items():
        left, right = sides.get("left"), sides.get("right")
        port = "out" if left and right else "unmatched"
        expected.add((k, s, e, (tuple(sorted(left)) if left else None,
                            tuple(sorted(right)) if right else None),
                      len(left or ()) + len(right or ()), port))
    assert got == expected


class CrashableJoin(WindowJoin):
    def snapshot(self) -> Any:
        return codec.decode(codec.encode(super().snapshot()))

    def on_message(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash on request")
        return super().on_message(message)


def test_a_restart_in_the_middle_gives_the_same_joins() -> None:
    items = [("left" if i % 3 else "right", r(f"d{i % 4}", (i * 17) % 50 + i, float(i)))
             for i in range(80)]

    def go(crash: bool) -> tuple[list[Any], list[Any]]:
        rt = inline_runtime(ManualClock())
        try:
            h = JoinHarness(rt, CrashableJoin, key=device, time=ts, windows=Tumbling(20),
                            lateness=15, **MEAN)
            for i, (side, item) in enumerate(items):
                h.push(side, item)
                if crash and i in (20, 45):
                    ref = h.inst.ref("join")
                    assert ref is not None
                    ref.tell("crash")
                    settle(rt)
            h.end()
            assert h.inst.statistics().node("join").restarts == (2 if crash else 0)
            return h.items("out"), h.items("unmatched")
        finally:
            rt.shutdown()

    calm = go(False)
    assert calm[0] and calm[1]
    assert go(True) == calm
