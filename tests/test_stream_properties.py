"""Property: whatever the windows, batch sizes, edge policy, crash points and restart strategy,
a completed instance's ledger balances exactly - every item produced was delivered once, or
counted as dropped or lost - and the delivered ids are unique and in order (RELIABILITY 2, 3).
Deterministic (inline runtime, manual clock); bounded examples."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.stream import Graph, Policy
from actors.testing import Recorder, inline_runtime
from supervisors import Strategy
from tests.test_stream_kit import (Crashy, Numbers, Passthrough, SlowSink, advance, ledger,
                                   supervised)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 600), window=st.integers(1, 64), batch=st.integers(1, 40),
       policy=st.sampled_from(list(Policy)), capacity=st.integers(1, 50),
       bad=st.sets(st.integers(0, 599), max_size=4),
       strategy=st.sampled_from([Strategy.REST_FOR_ONE, Strategy.ONE_FOR_ONE,
                                 Strategy.ONE_FOR_ALL]),
       tick=st.sampled_from([0.01, 0.1]))
def test_the_ledger_balances_and_ids_stay_unique_whatever_happens(
        n: int, window: int, batch: int, policy: Policy, capacity: int, bad: set[int],
        strategy: Strategy, tick: float) -> None:
    out = Recorder()
    with inline_runtime() as rt:
        g = Graph("g")
        g.add("numbers", Numbers, n, max_items=batch)
        g.add("crashy", Crashy, bad)
        g.add("pass", Passthrough)
        g.add("slow", SlowSink, out, tick)
        g.connect("numbers", "crashy", window=window)
        if policy is Policy.LATEST:
            g.connect("crashy", "pass", policy=policy)
        else:
            g.connect("crashy", "pass", policy=policy, window=window, capacity=capacity)
        g.connect("pass", "slow", window=window)
        inst = g.instantiate(rt, "acme",
                             supervision=supervised(strategy=strategy, intensity=100,
                                                    period=1e9))
        for _ in range(20_000):
            if inst.completed:
                break
            advance(rt, tick)
        assert inst.completed
        led = ledger(inst)
        ids = out.items
        assert ids == sorted(set(ids))
        assert led["in_flight"] == led["custody"] == 0
        assert led["produced"] == n == len(ids) + led["dropped"] + led["lost"], led
        assert not set(ids) & bad
