"""Values waiting in a multi-input node's trigger are part of its checkpoint: a BARRIER round
waiting for its partner and LATEST's latest value of each input survive a crash, with their
ages (runtime clock, relative to the restore), so the firings after a recovery equal those of an
uninterrupted run - on the inline runtime and on threads, with a ManualClock."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from actors import Runtime, codec
from actors.stream import Checkpoints, Graph, Inputs, Node, SqliteCheckpoints, Trigger
from actors.testing import ManualClock, inline_runtime
from tests.conftest import settle
from tests.test_stream_checkpoints import Drop, Feed
from tests.test_stream_kit import ledger

EVERY = 1.0


class Pairs(Node):
    """BARRIER on ``a`` and ``b``; its state (exactly once) is the list of firings."""

    inputs = ("a", "b")
    trigger = Trigger.BARRIER

    def __init__(self) -> None:
        self.fired: list[tuple[Any, Any]] = []
        self.ages: list[dict[str, float]] = []

    def fire(self, inputs: Inputs) -> None:
        self.fired.append((inputs.get("a"), inputs.get("b")))
        self.ages.append({p: round(inputs.age(p), 6) for p in inputs})
        self.emit_many([inputs[p] for p in inputs])  # one item out per item in: the ledger

    def snapshot(self) -> Any:
        return {"fired": list(self.fired), "ages": list(self.ages)}

    def restore(self, state: Any) -> None:
        self.fired, self.ages = list(state["fired"]), list(state["ages"])


class Latest(Pairs):
    trigger = Trigger.LATEST

    def fire(self, inputs: Inputs) -> None:
        self.fired.append((inputs.get("a"), inputs.get("b")))
        self.ages.append({p: round(inputs.age(p), 6) for p in inputs})


def graph(cls: type, a: list[Any], b: list[Any], store: Any, *args: Any,
          window: int | None = None, **options: Any) -> Graph:
    g = Graph("pairs", checkpoint=Checkpoints(store, every=EVERY))
    g.add("a", Feed, a)
    g.add("b", Feed, b)
    g.add("join", cls, *args, **options)
    g.add("out", Drop)
    g.connect("a", "join.a", window=window)
    g.connect("b", "join.b", window=window)
    g.connect("join", "out")
    return g


@pytest.fixture(params=["inline", "threads"])
def make_rt(request: pytest.FixtureRequest) -> Iterator[Callable[[ManualClock], Runtime]]:
    made: list[Runtime] = []

    def make(clock: ManualClock) -> Runtime:
        rt = (inline_runtime(clock) if request.param == "inline"
              else Runtime(workers=2, clock=clock, node="test"))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.shutdown(timeout=5.0)


@pytest.fixture
def store(tmp_path: Any) -> Iterator[SqliteCheckpoints]:
    s = SqliteCheckpoints(tmp_path / "checkpoints.db")
    yield s
    s.close()


class Life:
    """One process's life of a graph instance: ``crash()`` ends it without a stop (and without
    a last checkpoint) and starts the next life on a fresh runtime and clock."""

    def __init__(self, make_rt: Callable[[ManualClock], Runtime], g: Graph, tenant: str) -> None:
        self.make_rt, self.graph, self.tenant = make_rt, g, tenant
        self.start()

    def start(self) -> None:
        self.clock = ManualClock()
        self.rt = self.make_rt(self.clock)
        self.inst = self.graph.instantiate(self.rt, self.tenant)
        self.settle()

    def settle(self) -> None:
        """Idle, with every checkpoint handed to the store's group writer committed and told
        (on worker threads a commit lands after the turn that asked for it)."""
        settle(self.rt)
        store = self.graph.checkpoint.store
        if hasattr(store, "flush"):
            store.flush()
            settle(self.rt)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def crash(self) -> None:
        self.rt.shutdown()
        self.start()

    def state(self, node: str = "join") -> Any:
        return self.inst._shared.snapshots[self.inst.plan.index[node]]

    def stats(self, node: str = "join") -> Any:
        return self.inst.statistics().node(node)

    def end(self) -> None:
        self.inst.stop()
        self.rt.shutdown()


def node_ledger_holds(life: Life) -> None:
    s = life.inst.statistics()
    delivered = sum(e.delivered for e in s.edges if e.name.split(" -> ")[1].startswith("join."))
    n = s.node("join")
    assert delivered + n.carried == (n.processed + n.expired + n.discarded + n.custody
                                     + n.lost), n


# -- BARRIER -----------------------------------------------------------------------------------------
def barrier_run(make_rt: Any, store: Any, tenant: str, crash: bool) -> Life:
    a, b = [1, 2, 3], ["x"]
    life = Life(make_rt, graph(Pairs, a, b, store), tenant)
    assert life.state()["fired"] == [(1, "x")]            # 2 and 3 wait for their partners
    life.advance(EVERY)                                    # checkpoint 1: 2 and 3 still wait
    assert life.inst.checkpoints()["committed"] == 1
    b.append("y")
    life.advance(0.1)                                      # (2, y): after the checkpoint
    assert life.state()["fired"] == [(1, "x"), (2, "y")]
    if crash:
        life.crash()                                       # 2 and 3 come back from the checkpoint,
        assert life.inst.checkpoints()["restored"] == 1    # b replays y: (2, y) again
        assert life.state()["fired"] == [(1, "x"), (2, "y")]
        assert life.state()["ages"][-1] == {"a": EVERY, "b": 0.0}  # 2's age at the checkpoint
    b.append("z")
    life.advance(0.1)
    return life


def test_barrier_values_waiting_at_a_checkpoint_fire_after_a_recovery_exactly_once(
        make_rt: Any, store: Any) -> None:
    reference = barrier_run(make_rt, store, "ref", crash=False)
    expected = reference.state()["fired"]
    reference.end()
    assert expected == [(1, "x"), (2, "y"), (3, "z")]
    life = barrier_run(make_rt, store, "crash", crash=True)
    assert life.state()["fired"] == expected
    s = life.stats()
    assert (s.carried, s.custody, s.fired) == (2, 0, 2)
    # the ledger of this life: the carried values count beside what the sources produced
    led = ledger(life.inst)
    assert led["produced"] == 2 and led["sunk"] == 4
    assert led["produced"] + s.carried == (led["sunk"] + led["dropped"] + led["lost"]
                                           + led["expired"] + led["discarded"]
                                           + led["in_flight"] + led["custody"]), led
    assert life.inst.statistics().carried == 2
    node_ledger_holds(life)
    life.end()


def test_the_checkpoint_holds_the_waiting_values_in_order_with_their_ages(store: Any) -> None:
    life = Life(lambda clock: inline_runtime(clock), graph(Pairs, [1, 2, 3], [], store), "doc")
    life.advance(0.25)
    life.advance(EVERY - 0.25)
    _, data = store.load("doc", "pairs")
    doc = codec.decode(data)
    assert sorted(doc["nodes"]) == ["a", "b", "join", "out"]
    assert set(doc["triggers"]) == {"join"}  # only a node with values waiting has an entry
    assert codec.decode(doc["triggers"]["join"]) == {
        "trigger": "BARRIER", "values": {"a": [[1, EVERY], [2, EVERY], [3, EVERY]]}}
    life.end()


def test_a_restored_barrier_value_expires_max_age_after_its_arrival_less_the_downtime(
        make_rt: Any, store: Any) -> None:
    a: list[Any] = [1]
    b: list[Any] = []
    life = Life(make_rt, graph(Pairs, a, b, store, max_age=1.5), "expire")
    life.advance(EVERY)          # checkpoint 1: 1 waits, 1.0 s old
    life.crash()                 # restored 1.0 s old: it expires 0.5 s after the restore
    assert (life.stats().carried, life.stats().custody) == (1, 1)
    life.advance(0.4)
    assert (life.stats().expired, life.stats().custody) == (0, 1)
    life.advance(0.1)            # the expiry timer, armed at the restore, discards it
    assert (life.stats().expired, life.stats().custody) == (1, 0)
    b.append("x")
    a.append(2)
    life.advance(0.1)
    assert life.state()["fired"] == [(2, "x")]
    node_ledger_holds(life)
    life.end()


# -- LATEST ------------------------------------------------------------------------------------------
def latest_run(make_rt: Any, store: Any, tenant: str, crash: bool) -> Life:
    a, b = [1], ["x"]
    life = Life(make_rt, graph(Latest, a, b, store, max_age={"b": 1.5}), tenant)
    assert life.state()["fired"] == [(1, "x")]
    life.advance(EVERY)                                    # checkpoint 1: latest a=1, b=x
    a.append(2)
    life.advance(0.1)                                      # (2, x): after the checkpoint
    if crash:
        life.crash()                                       # a replays 2: (2, x) again, with x
        assert life.state()["fired"] == [(1, "x"), (2, "x")]  # restored 1.0 s old
        assert life.state()["ages"][-1] == {"a": 0.0, "b": EVERY}
    life.advance(0.6)
    a.append(3)                  # x is more than 1.5 s old now (less the downtime): no firing
    life.advance(0.1)
    b.append("y")
    life.advance(0.1)
    return life


def test_latest_values_at_a_checkpoint_survive_a_recovery_and_keep_their_age(
        make_rt: Any, store: Any) -> None:
    reference = latest_run(make_rt, store, "ref", crash=False)
    expected = reference.state()["fired"]
    reference.end()
    assert expected == [(1, "x"), (2, "x"), (3, "y")]
    life = latest_run(make_rt, store, "crash", crash=True)
    assert life.state()["fired"] == expected
    s = life.stats()
    assert (s.carried, s.custody, s.suppressed) == (0, 0, 1)  # 3 came while x was too old
    node_ledger_holds(life)
    life.end()


# -- the format --------------------------------------------------------------------------------------
def old_checkpoint(store: Any, tenant: str, triggers: Any = None) -> None:
    nodes = {"a": codec.encode(3), "b": codec.encode(1), "out": codec.encode(None),
             "join": codec.encode({"fired": [(1, "x")], "ages": [{"a": 0.0, "b": 0.0}]})}
    doc: dict[str, Any] = {"id": 4, "graph": "pairs", "nodes": nodes}
    if triggers is not None:
        doc["triggers"] = triggers
    store.commit(tenant, "pairs", 4, codec.encode(doc))


def test_a_checkpoint_written_before_trigger_state_restores_with_an_empty_trigger(
        store: Any) -> None:
    old_checkpoint(store, "old")
    life = Life(lambda clock: inline_runtime(clock), graph(Pairs, [1, 2, 3], ["x", "y"], store),
                "old")
    assert life.inst.checkpoints()["restored"] == 4
    s = life.stats()
    assert (s.carried, s.custody) == (0, 1)  # b replays y, which waits: nothing was restored
    assert life.state()["fired"] == [(1, "x")]
    life.end()


def test_restored_values_hold_their_input_credit_and_those_that_no_longer_fit_are_counted(
        store: Any) -> None:
    old_checkpoint(store, "fit", {"join": codec.encode({"trigger": "BARRIER", "values": {
        "a": [[10, 0.0], [11, 0.0], [12, 0.0]], "gone": [["?", 0.0]]}})})
    a = list(range(100))
    b: list[Any] = []
    life = Life(lambda clock: inline_runtime(clock), graph(Pairs, a, b, store, window=4), "fit")
    s = life.stats()
    assert (s.carried, s.discarded, s.custody) == (4, 1, 4)  # "gone" is no input any more
    assert life.stats("a").emitted == 1  # the restored values hold 3 of a's window of 4
    b.extend(["x", "y", "z", "w"])
    life.advance(0.1)
    assert life.state()["fired"] == [(1, "x"), (10, "y"), (11, "z"), (12, "w")]
    node_ledger_holds(life)
    life.end()


def test_a_damaged_trigger_entry_is_refused_at_start(store: Any) -> None:
    old_checkpoint(store, "bad", {"join": codec.encode({"trigger": "BARRIER", "values": 7})})
    rt = inline_runtime(ManualClock())
    with pytest.raises(ValueError, match="checkpoint 4 .* damaged"):
        graph(Pairs, [], [], store).instantiate(rt, "bad")
    rt.shutdown()


def test_a_waiting_value_that_cannot_be_encoded_fails_the_checkpoint_with_the_reason(
        store: Any) -> None:
    life = Life(lambda clock: inline_runtime(clock), graph(Pairs, [{1, 2}], [], store), "set")
    reasons: list[str] = []
    coord = life.inst._shared.checkpoint
    fail = coord.fail
    coord.fail = lambda reason: (reasons.append(reason), fail(reason))[1]
    life.advance(EVERY)
    assert len(reasons) == 1 and "'join'" in reasons[0] and "trigger" in reasons[0]
    assert "set" in reasons[0]
    assert store.load("set", "pairs") is None  # nothing committed
    life.end()


# -- a node crash: the instance restarts from its last checkpoint ------------------------------------
class CrashOnZ(Pairs):
    """Crashes once on the value ``"z"`` (its supervisor restarts it: the instance recovers)."""

    def __init__(self, crashed: list[bool]) -> None:
        super().__init__()
        self.crashed = crashed

    def fire(self, inputs: Inputs) -> None:
        if inputs["b"] == "z" and not self.crashed:
            self.crashed.append(True)
            raise RuntimeError("injected crash")
        super().fire(inputs)


def test_an_instance_recovered_after_a_node_crash_gets_its_waiting_values_back(
        make_rt: Any, store: Any) -> None:
    from supervisors import GraphSupervision
    a, b = [1, 2, 3], ["x"]
    crashed: list[bool] = []
    g = graph(CrashOnZ, a, b, store, crashed)
    g.supervision = GraphSupervision()
    life = Life(make_rt, g, "recover")
    life.advance(EVERY)                      # checkpoint 1: 2 and 3 wait
    b.extend(["y", "z"])                     # (2, y), then the crash on (3, z)
    for _ in range(40):                      # bounded: the recovery runs in an actor
        life.advance(0.05)
        if life.inst.checkpoints()["recoveries"] == 1 and life.state()["fired"][-1:] == [
                (3, "z")]:
            break
    assert crashed == [True]
    status = life.inst.checkpoints()
    assert status["recoveries"] == 1 and status["restored"] == 1 and status["failed"] is None
    assert life.state()["fired"] == [(1, "x"), (2, "y"), (3, "z")]  # from the checkpoint:
    assert life.stats().carried == 2                                 # 2 and 3 carried over
    node_ledger_holds(life)
    life.end()
