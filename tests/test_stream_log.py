"""Consumability: a retained output is a bounded log with offsets; a late reader replays it from
an offset, a restarted ``LogReader`` resumes from its snapshot offset."""

from __future__ import annotations

from typing import Any

import pytest

from actors import Runtime
from actors.stream import Graph, LogReader, StreamLog
from actors.testing import Faults, Recorder
from supervisors import Strategy
from tests.conftest import settle
from tests.test_stream_kit import Collect, Numbers, supervised


def test_a_stream_log_keeps_the_newest_items_with_offsets_and_reports_what_was_missed() -> None:
    log = StreamLog("x.out", 100)
    assert log.extend(range(250)) == 250
    assert (log.first_offset, log.next_offset, len(log), log.evicted) == (150, 250, 100, 150)
    read = log.read(0)
    assert (read.offset, read.next_offset, read.missed) == (150, 250, 150)
    assert read.items == tuple(range(150, 250))
    assert log.read(200, limit=10).items == tuple(range(200, 210))
    assert log.read(200, limit=10).next_offset == 210
    assert log.read(-5).items == (245, 246, 247, 248, 249)
    assert log.read(250) == (tuple(), 250, 250, 0)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        StreamLog("y", 0)
    with pytest.raises(ValueError, match="read limit"):
        log.read(0, limit=-1)


def test_a_retained_output_is_readable_from_any_offset_while_the_graph_runs(rt: Runtime) -> None:
    g = Graph("g")
    g.add("numbers", Numbers, 300, max_items=32)
    g.add("sink", Collect, Recorder())
    g.pipe("numbers", "sink")
    g.retain("numbers", size=100)
    inst = g.instantiate(rt, "acme")
    assert inst.wait_complete(5)
    log = inst.log("numbers")
    assert log is inst.log("numbers.out")
    assert log.read(250).items == tuple(range(250, 300))
    assert log.read(0).missed == 200
    with pytest.raises(KeyError, match="not retained"):
        inst.log("sink")


def test_a_late_reader_replays_a_retained_output_from_an_offset(rt: Runtime) -> None:
    g = Graph("live")
    g.add("numbers", Numbers, 500, max_items=50)
    g.add("sink", Collect, Recorder())
    g.pipe("numbers", "sink")
    g.retain("numbers", size=1000)
    live = g.instantiate(rt, "acme")
    assert live.wait_complete(5)
    late = Recorder()
    g2 = Graph("late")
    g2.add("replay", LogReader, live.log("numbers"), 120, follow=False)
    g2.add("sink", Collect, late)
    g2.pipe("replay", "sink")
    replay = g2.instantiate(rt, "acme")
    assert replay.wait_complete(5)
    assert late.items == list(range(120, 500))


def test_a_log_reader_follows_new_items_of_its_own_instance(rt: Runtime) -> None:
    seen = Recorder()
    g = Graph("g")
    g.add("numbers", Numbers, 200, max_items=20)
    g.add("sink", Collect, Recorder())
    g.add("follower", LogReader, "numbers.out", 0)
    g.add("late", Collect, seen)
    g.pipe("numbers", "sink")
    g.pipe("follower", "late")
    g.retain("numbers", size=1000)
    g.instantiate(rt, None)
    settle(rt)
    for _ in range(50):             # it polls the log on the clock
        if len(seen) == 200:
            break
        rt.clock.advance(0.01)  # type: ignore[attr-defined]  # a ManualClock here
        settle(rt)
    assert seen.items == list(range(200))


class Gate(Collect):
    """A sink that takes ``limit`` items, then pauses (the test releases it)."""

    def __init__(self, into: Recorder, limit: int) -> None:
        super().__init__(into)
        self.limit = limit

    def process(self, item: Any, port: str) -> None:
        super().process(item, port)
        if len(self.into) >= self.limit:
            self.pause()

    def on_message(self, message: Any) -> Any:
        self.limit = 10**9
        self.resume()


def test_a_restarted_log_reader_resumes_from_its_snapshot_offset(rt: Runtime) -> None:
    log = StreamLog("external", 10_000)
    log.extend(range(1000))
    out = Recorder()
    g = Graph("g")
    g.add("reader", LogReader, log, 0, follow=False, max_items=16)
    g.add("sink", Gate, out, 100)
    g.connect("reader", "sink", window=32)
    inst = g.instantiate(rt, "acme", supervision=supervised(strategy=Strategy.ONE_FOR_ONE))
    settle(rt)
    reader = inst.ref("reader")
    assert reader is not None
    Faults(rt).crash(reader)
    settle(rt)
    assert inst.statistics().node("reader").restarts == 1
    sink = inst.ref("sink")
    assert sink is not None
    sink.tell("release")
    assert inst.wait_complete(5)
    assert out.items == list(range(1000))   # resumed at its offset: nothing twice, no gap
    assert inst.statistics().node("reader").restored == 1
