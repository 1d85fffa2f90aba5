"""The pure part of supervision, tested with tables: specs, flags, restart decisions, intensity, backoff.

No threads, no actors, no clock: every function under test maps values to values. Behaviour numbers
(#7, B1, ...) refer to tests/data/supervisor_behaviours.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
import random
import re
import types
from pathlib import Path
from typing import Any

import pytest

import supervisors
from actors import Actor
from supervisors import _backoff, _plan, _spec
from supervisors._backoff import (
    OVERFLOW_GUARD,
    Backoff,
    BackoffStep,
    backoff_delay,
    effective_reset_after,
    next_backoff,
    reset_restart_count,
)
from supervisors._plan import (
    ExitAction,
    IntensityWindow,
    RestartPlan,
    add_restart,
    auto_shutdown_triggered,
    exit_action,
    is_normal_exit,
    plan_restart,
    should_restart,
)
from supervisors._spec import (
    AutoShutdown,
    ChildKind,
    ChildSpec,
    Restart,
    Shutdown,
    Strategy,
    SupervisorFlags,
    is_actor_class,
    validate_child,
    validate_children,
)


PERMANENT, TRANSIENT, TEMPORARY = Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY
NEVER = AutoShutdown.NEVER
ANY = AutoShutdown.ANY_SIGNIFICANT
ALL = AutoShutdown.ALL_SIGNIFICANT
ONE_FOR_ONE = Strategy.ONE_FOR_ONE
ONE_FOR_ALL = Strategy.ONE_FOR_ALL
REST_FOR_ONE = Strategy.REST_FOR_ONE
SIMPLE = Strategy.SIMPLE_ONE_FOR_ONE
CHECKLIST = Path(__file__).parent / "data" / "supervisor_behaviours.md"
# Property checks below are exhaustive or seeded, not hypothesis-driven: hypothesis writes a
# .hypothesis/ directory into the working tree on every run.
SEED = 20240601


class Reader(Actor):
    """A worker start class (module level, so that specs holding it pickle)."""


class Store(Actor):
    """Another worker start class."""


class FakeSupervisor(Actor):
    """Stands in for ``supervisors.Supervisor`` where a test installs it."""


class SubSupervisor(FakeSupervisor):
    """A Supervisor subclass: its children default to shutdown 'infinity'."""


@pytest.fixture
def fake_supervisor_class(monkeypatch: pytest.MonkeyPatch) -> type:
    monkeypatch.setattr(supervisors, "Supervisor", FakeSupervisor, raising=False)
    return FakeSupervisor


# --------------------------------------------------------------------------------------------
# Module surface
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [_spec, _plan, _backoff], ids=lambda m: m.__name__)
def test_every_name_in_a_modules_all_exists_and_is_listed_once(module: types.ModuleType) -> None:
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.mark.parametrize("enum", [Strategy, Restart, AutoShutdown], ids=lambda e: e.__name__)
def test_choice_enums_are_not_equal_to_their_strings(enum: type) -> None:
    for member in enum:
        assert member != member.value


def test_the_behaviour_checklist_lists_40_otp_and_12_akka_behaviours() -> None:
    text = CHECKLIST.read_text(encoding="utf-8")
    otp = [int(n) for n in re.findall(r"^(\d+)\. \*\*", text, flags=re.MULTILINE)]
    akka = [int(n) for n in re.findall(r"^B(\d+)\. \*\*", text, flags=re.MULTILINE)]
    assert otp == list(range(1, 41))
    assert akka == list(range(1, 13))


# --------------------------------------------------------------------------------------------
# ChildSpec: OTP defaults (#34)
# --------------------------------------------------------------------------------------------


def test_child_spec_defaults_to_a_permanent_worker_with_a_five_second_shutdown() -> None:
    spec = ChildSpec("reader", Reader)
    assert spec.args == ()
    assert dict(spec.kwargs) == {}
    assert spec.restart is PERMANENT
    assert spec.shutdown == 5.0
    assert spec.significant is False
    assert spec.backoff is None
    assert spec.kind is ChildKind.WORKER
    assert spec.kind == "worker"


def test_supervisor_child_defaults_to_shutdown_infinity(fake_supervisor_class: type) -> None:
    spec = ChildSpec("sub", SubSupervisor)
    assert spec.kind is ChildKind.SUPERVISOR
    assert spec.kind == "supervisor"
    assert spec.shutdown is Shutdown.INFINITY
    assert spec.shutdown == "infinity"


def test_child_declared_as_supervisor_kind_defaults_to_shutdown_infinity() -> None:
    spec = ChildSpec("sub", Reader, kind=ChildKind.SUPERVISOR)
    assert spec.shutdown is Shutdown.INFINITY


def test_explicit_shutdown_overrides_the_supervisor_default(fake_supervisor_class: type) -> None:
    assert ChildSpec("sub", SubSupervisor, shutdown=30).shutdown == 30.0


def test_explicit_worker_kind_overrides_inference(fake_supervisor_class: type) -> None:
    spec = ChildSpec("sub", SubSupervisor, kind=ChildKind.WORKER)
    assert spec.kind is ChildKind.WORKER
    assert spec.shutdown == 5.0


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("brutal_kill", Shutdown.BRUTAL_KILL),
        ("infinity", Shutdown.INFINITY),
        (Shutdown.BRUTAL_KILL, Shutdown.BRUTAL_KILL),
        (Shutdown.INFINITY, Shutdown.INFINITY),
        (10, 10.0),
        (0.25, 0.25),
    ],
    ids=["brutal_kill-string", "infinity-string", "brutal_kill-member", "infinity-member",
         "int-seconds", "float-seconds"],
)
def test_valid_shutdown_values_are_stored_normalised(given: Any, stored: Any) -> None:
    spec = ChildSpec("db", Store, shutdown=given)
    assert spec.shutdown == stored
    assert type(spec.shutdown) is type(stored)


def test_infinity_shutdown_is_allowed_for_workers_too() -> None:  # 25
    assert ChildSpec("db", Store, shutdown="infinity").shutdown is Shutdown.INFINITY


def test_kwargs_are_copied_into_a_read_only_mapping() -> None:
    given = {"limit": 40.0}
    spec = ChildSpec("filter", Reader, kwargs=given)
    given["limit"] = 0.0
    assert spec.kwargs["limit"] == 40.0
    with pytest.raises(TypeError):
        spec.kwargs["limit"] = 1.0  # type: ignore[index]  # read-only on purpose: the test


def test_args_given_as_a_list_are_stored_as_a_tuple() -> None:
    assert ChildSpec("reader", Reader, args=["plant/1", 3]).args == ("plant/1", 3)


def test_child_spec_is_frozen() -> None:
    spec = ChildSpec("reader", Reader)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.restart = TEMPORARY  # type: ignore[misc]  # frozen on purpose: the test


def test_equal_specs_compare_and_hash_equal() -> None:
    one = ChildSpec("db", Store, args=(1,), kwargs={"a": 1}, backoff=Backoff())
    two = ChildSpec("db", Store, args=(1,), kwargs={"a": 1}, backoff=Backoff())
    assert one == two
    assert hash(one) == hash(two)
    assert one != dataclasses.replace(one, restart=TRANSIENT)


def test_child_spec_survives_pickling_for_the_cluster() -> None:
    spec = ChildSpec(
        "db", Store, args=("x",), kwargs={"k": 2}, restart=TRANSIENT, shutdown="brutal_kill",
        significant=True, backoff=Backoff(min=0.5), kind=ChildKind.WORKER,
    )
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec
    assert copy.shutdown is Shutdown.BRUTAL_KILL


@pytest.mark.parametrize("restart", [TRANSIENT, TEMPORARY], ids=lambda r: r.name)
def test_significant_is_valid_with_transient_and_temporary_children(restart: Restart) -> None:
    assert ChildSpec("job", Reader, restart=restart, significant=True).significant is True


# --------------------------------------------------------------------------------------------
# ChildSpec: the is_actor_class hook
# --------------------------------------------------------------------------------------------


def test_start_must_subclass_actor() -> None:
    class Sensor(Actor):
        pass

    assert is_actor_class(Sensor)
    assert not is_actor_class(int) and not is_actor_class(Sensor())
    assert ChildSpec("sensor", Sensor).start is Sensor
    with pytest.raises(ValueError, match=r"^child 'plain': start must be an Actor subclass"):
        ChildSpec("plain", int)


@pytest.mark.parametrize("start", [lambda: None, object(), "Reader", None], ids=[
    "function", "instance", "string", "none"])
def test_start_that_is_not_a_class_is_rejected(start: Any) -> None:
    with pytest.raises(ValueError, match=r"^child 'x': start must be an Actor subclass, got "):
        ChildSpec("x", start)


# --------------------------------------------------------------------------------------------
# ChildSpec: errors name the child and the field (#34)
# --------------------------------------------------------------------------------------------

SPEC_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("empty-id", {"id": ""}, "child '': id must be a non-empty string, got ''"),
    ("int-id", {"id": 42}, "child 42: id must be a non-empty string, got 42"),
    ("string-args", {"args": "plant/1"}, "child 'db': args must be a tuple or list"),
    ("list-kwargs", {"kwargs": [("a", 1)]}, "child 'db': kwargs must be a mapping"),
    ("int-key-kwargs", {"kwargs": {1: "a"}}, "child 'db': kwargs must be a mapping with string keys"),
    ("string-restart", {"restart": "permanent"},
     "child 'db': restart must be a Restart (PERMANENT, TRANSIENT or TEMPORARY), got 'permanent'"),
    ("none-restart", {"restart": None}, "child 'db': restart must be a Restart"),
    ("negative-shutdown", {"shutdown": -1},
     "child 'db': shutdown must be a positive number of seconds, 'brutal_kill' or 'infinity', got -1"),
    ("zero-shutdown", {"shutdown": 0}, "child 'db': shutdown must be a positive number of seconds"),
    ("nan-shutdown", {"shutdown": math.nan}, "child 'db': shutdown must be"),
    ("inf-shutdown", {"shutdown": math.inf}, "child 'db': shutdown must be"),
    ("bool-shutdown", {"shutdown": True}, "child 'db': shutdown must be"),
    ("unknown-word-shutdown", {"shutdown": "forever"}, "child 'db': shutdown must be"),
    ("none-shutdown", {"shutdown": None}, "child 'db': shutdown must be"),
    ("int-significant", {"significant": 1}, "child 'db': significant must be True or False, got 1"),
    ("significant-permanent", {"significant": True},
     "child 'db': significant=True is invalid with restart PERMANENT"),
    ("dict-backoff", {"backoff": {"min": 1.0}}, "child 'db': backoff must be a Backoff or None"),
    ("string-kind", {"kind": "worker"}, "child 'db': kind must be a ChildKind (WORKER or SUPERVISOR)"),
]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(o, m) for _, o, m in SPEC_ERRORS],
    ids=[name for name, _, _ in SPEC_ERRORS],
)
def test_invalid_child_spec_field_is_a_value_error_naming_child_and_field(
    overrides: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {"id": "db", "start": Store, **overrides}
    with pytest.raises(ValueError) as caught:
        ChildSpec(**fields)
    assert str(caught.value).startswith(message)


# --------------------------------------------------------------------------------------------
# SupervisorFlags and validate_children (#34)
# --------------------------------------------------------------------------------------------


def test_supervisor_flags_default_to_one_for_one_intensity_1_period_5_never() -> None:
    flags = SupervisorFlags()
    assert flags == SupervisorFlags(ONE_FOR_ONE, 1, 5.0, NEVER)


def test_intensity_zero_is_valid_and_integer_period_is_stored_as_float() -> None:
    flags = SupervisorFlags(REST_FOR_ONE, intensity=0, period=3600)
    assert flags.intensity == 0
    assert flags.period == 3600.0 and isinstance(flags.period, float)


FLAG_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("string-strategy", {"strategy": "one_for_one"},
     "supervisor flags: strategy must be a Strategy (ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE or "
     "SIMPLE_ONE_FOR_ONE), got 'one_for_one'"),
    ("negative-intensity", {"intensity": -1},
     "supervisor flags: intensity must be an integer >= 0, got -1"),
    ("float-intensity", {"intensity": 1.5}, "supervisor flags: intensity must be an integer"),
    ("infinite-intensity", {"intensity": math.inf}, "supervisor flags: intensity must be"),
    ("word-infinity-intensity", {"intensity": "infinity"}, "supervisor flags: intensity must be"),
    ("bool-intensity", {"intensity": True}, "supervisor flags: intensity must be"),
    ("zero-period", {"period": 0},
     "supervisor flags: period must be a positive number of seconds, got 0"),
    ("negative-period", {"period": -5.0}, "supervisor flags: period must be"),
    ("infinite-period", {"period": math.inf}, "supervisor flags: period must be"),
    ("nan-period", {"period": math.nan}, "supervisor flags: period must be"),
    ("string-period", {"period": "5"}, "supervisor flags: period must be"),
    ("string-auto-shutdown", {"auto_shutdown": "never"},
     "supervisor flags: auto_shutdown must be an AutoShutdown"),
    ("simple-any-significant", {"strategy": SIMPLE, "auto_shutdown": ANY},
     "supervisor flags: auto_shutdown ANY_SIGNIFICANT is invalid with strategy SIMPLE_ONE_FOR_ONE"),
    ("simple-all-significant", {"strategy": SIMPLE, "auto_shutdown": ALL},
     "supervisor flags: auto_shutdown ALL_SIGNIFICANT is invalid with strategy SIMPLE_ONE_FOR_ONE"),
]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(o, m) for _, o, m in FLAG_ERRORS],
    ids=[name for name, _, _ in FLAG_ERRORS],
)
def test_invalid_supervisor_flag_is_a_value_error_naming_the_field(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        SupervisorFlags(**overrides)
    assert str(caught.value).startswith(message)


def test_valid_children_are_returned_as_a_tuple_in_start_order() -> None:
    specs = [ChildSpec("reader", Reader), ChildSpec("store", Store)]
    assert validate_children(iter(specs), REST_FOR_ONE, NEVER) == tuple(specs)


@pytest.mark.parametrize("strategy", [ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE], ids=lambda s: s.name)
def test_a_static_supervisor_may_start_without_children(strategy: Strategy) -> None:
    assert validate_children([], strategy, NEVER) == ()


def test_duplicate_child_id_is_rejected() -> None:
    specs = [ChildSpec("db", Store), ChildSpec("reader", Reader), ChildSpec("db", Reader)]
    with pytest.raises(ValueError, match=r"^duplicate child id 'db'$"):
        validate_children(specs, ONE_FOR_ONE, NEVER)


def test_a_child_that_is_not_a_child_spec_is_rejected_by_position() -> None:
    with pytest.raises(ValueError, match=r"^children\[1\] must be a ChildSpec, got \('db', "):
        validate_children([ChildSpec("reader", Reader), ("db", Store)], ONE_FOR_ONE, NEVER)


def test_significant_child_is_rejected_when_auto_shutdown_is_never() -> None:
    job = ChildSpec("job", Reader, restart=TEMPORARY, significant=True)
    with pytest.raises(ValueError, match=r"^child 'job': significant=True needs auto_shutdown "):
        validate_children([job], ONE_FOR_ONE, NEVER)
    with pytest.raises(ValueError, match=r"^child 'job': significant=True needs auto_shutdown "):
        validate_child(job, NEVER)


@pytest.mark.parametrize("auto_shutdown", [ANY, ALL], ids=lambda a: a.name)
def test_significant_child_is_accepted_with_auto_shutdown(auto_shutdown: AutoShutdown) -> None:
    job = ChildSpec("job", Reader, restart=TRANSIENT, significant=True)
    assert validate_children([job], ONE_FOR_ALL, auto_shutdown) == (job,)
    assert validate_child(job, auto_shutdown) is job


def test_validate_child_rejects_a_value_that_is_not_a_child_spec() -> None:
    with pytest.raises(ValueError, match=r"^child spec must be a ChildSpec, got 'db'"):
        validate_child("db", NEVER)


@pytest.mark.parametrize("count", [0, 2, 3])
def test_simple_one_for_one_needs_exactly_one_child_spec(count: int) -> None:
    specs = [ChildSpec(f"w{i}", Reader) for i in range(count)]
    with pytest.raises(
        ValueError,
        match=rf"^children: SIMPLE_ONE_FOR_ONE needs exactly one child spec, got {count}$",
    ):
        validate_children(specs, SIMPLE, NEVER)


def test_simple_one_for_one_with_one_child_spec_is_valid() -> None:
    spec = ChildSpec("conn", Reader, restart=TEMPORARY)
    assert validate_children([spec], SIMPLE, NEVER) == (spec,)


def test_simple_one_for_one_refuses_auto_shutdown_in_validate_children_too() -> None:  # 40
    spec = ChildSpec("conn", Reader, restart=TEMPORARY, significant=True)
    with pytest.raises(ValueError, match=r"invalid with strategy SIMPLE_ONE_FOR_ONE"):
        validate_children([spec], SIMPLE, ANY)


# --------------------------------------------------------------------------------------------
# Restart type x exit reason (#7, #8, #9, #10)
# --------------------------------------------------------------------------------------------

REASONS: list[tuple[str, Any, bool]] = [  # (id, reason, is a normal exit)
    ("normal", "normal", True),
    ("shutdown", "shutdown", True),
    ("shutdown-term", ("shutdown", "tcp_closed"), True),
    ("killed", "killed", False),
    ("died", "died", False),
    ("exception", RuntimeError("boom"), False),
    ("exception-saying-normal", ValueError("normal"), False),
    ("other-tuple", ("error", "shutdown"), False),
    ("shutdown-1-tuple", ("shutdown",), False),
]
RESTARTED_AFTER_ABNORMAL = {PERMANENT: True, TRANSIENT: True, TEMPORARY: False}
RESTARTED_AFTER_NORMAL = {PERMANENT: True, TRANSIENT: False, TEMPORARY: False}


@pytest.mark.parametrize(
    ("restart", "reason", "restarted"),
    [
        (restart, reason, (RESTARTED_AFTER_NORMAL if normal else RESTARTED_AFTER_ABNORMAL)[restart])
        for restart in Restart
        for _, reason, normal in REASONS
    ],
    ids=[f"{restart.name}-{name}" for restart in Restart for name, _, _ in REASONS],
)
def test_restart_type_and_exit_reason_decide_whether_a_child_is_restarted(
    restart: Restart, reason: Any, restarted: bool
) -> None:
    assert should_restart(restart, reason) is restarted


@pytest.mark.parametrize(
    ("reason", "normal"),
    [(reason, normal) for _, reason, normal in REASONS],
    ids=[name for name, _, _ in REASONS],
)
def test_normal_exits_are_normal_shutdown_and_shutdown_with_a_term(reason: Any, normal: bool) -> None:
    assert is_normal_exit(reason) is normal


def test_permanent_child_is_restarted_after_every_reason() -> None:  # 7
    assert all(should_restart(PERMANENT, reason) for _, reason, _ in REASONS)


def test_temporary_child_is_never_restarted() -> None:  # 10
    assert not any(should_restart(TEMPORARY, reason) for _, reason, _ in REASONS)


def test_should_restart_rejects_a_restart_type_given_as_a_string() -> None:
    with pytest.raises(ValueError, match="restart must be a Restart"):
        should_restart("permanent", "normal")  # type: ignore[arg-type]  # the wrong type is the test


# --------------------------------------------------------------------------------------------
# What happens to a child that exits on its own (#8, #10, #12, #21, #39)
# --------------------------------------------------------------------------------------------

EXITS: list[tuple[str, dict[str, Any], ExitAction]] = [
    ("permanent-normal-is-restarted",
     {"restart": PERMANENT, "reason": "normal"}, ExitAction.RESTART),
    ("permanent-killed-is-restarted",
     {"restart": PERMANENT, "reason": "killed"}, ExitAction.RESTART),
    ("transient-normal-keeps-its-spec",
     {"restart": TRANSIENT, "reason": "normal"}, ExitAction.KEEP),
    ("transient-shutdown-term-keeps-its-spec",
     {"restart": TRANSIENT, "reason": ("shutdown", "done")}, ExitAction.KEEP),
    ("transient-crash-is-restarted",
     {"restart": TRANSIENT, "reason": RuntimeError("x")}, ExitAction.RESTART),
    ("temporary-normal-is-removed",
     {"restart": TEMPORARY, "reason": "normal"}, ExitAction.REMOVE),
    ("temporary-crash-is-removed",
     {"restart": TEMPORARY, "reason": RuntimeError("x")}, ExitAction.REMOVE),
    ("dynamic-transient-normal-is-removed",
     {"strategy": SIMPLE, "restart": TRANSIENT, "reason": "normal"}, ExitAction.REMOVE),
    ("dynamic-permanent-crash-is-restarted",
     {"strategy": SIMPLE, "restart": PERMANENT, "reason": "died"}, ExitAction.RESTART),
    ("significant-temporary-normal-shuts-down-under-any",
     {"auto_shutdown": ANY, "restart": TEMPORARY, "significant": True, "reason": "normal"},
     ExitAction.AUTO_SHUTDOWN),
    ("significant-temporary-crash-shuts-down-under-any",
     {"auto_shutdown": ANY, "restart": TEMPORARY, "significant": True, "reason": RuntimeError()},
     ExitAction.AUTO_SHUTDOWN),
    ("significant-temporary-killed-shuts-down-under-any",
     {"auto_shutdown": ANY, "restart": TEMPORARY, "significant": True, "reason": "killed"},
     ExitAction.AUTO_SHUTDOWN),
    ("significant-transient-normal-shuts-down-under-any",
     {"auto_shutdown": ANY, "restart": TRANSIENT, "significant": True, "reason": "normal"},
     ExitAction.AUTO_SHUTDOWN),
    ("significant-transient-killed-is-restarted-under-any",
     {"auto_shutdown": ANY, "restart": TRANSIENT, "significant": True, "reason": "killed"},
     ExitAction.RESTART),
    ("significant-transient-crash-is-restarted-under-any",
     {"auto_shutdown": ANY, "restart": TRANSIENT, "significant": True, "reason": RuntimeError()},
     ExitAction.RESTART),
    ("nonsignificant-temporary-is-removed-under-any",
     {"auto_shutdown": ANY, "restart": TEMPORARY, "reason": "normal"}, ExitAction.REMOVE),
    ("nonsignificant-transient-normal-is-kept-under-all",
     {"auto_shutdown": ALL, "restart": TRANSIENT, "reason": "normal"}, ExitAction.KEEP),
    ("significant-temporary-with-others-left-is-removed-under-all",
     {"auto_shutdown": ALL, "restart": TEMPORARY, "significant": True, "reason": "normal",
      "remaining_significant": 1}, ExitAction.REMOVE),
    ("significant-transient-with-others-left-is-kept-under-all",
     {"auto_shutdown": ALL, "restart": TRANSIENT, "significant": True, "reason": "shutdown",
      "remaining_significant": 2}, ExitAction.KEEP),
    ("last-significant-temporary-shuts-down-under-all",
     {"auto_shutdown": ALL, "restart": TEMPORARY, "significant": True, "reason": "normal",
      "remaining_significant": 0}, ExitAction.AUTO_SHUTDOWN),
]


@pytest.mark.parametrize(
    ("given", "action"),
    [(given, action) for _, given, action in EXITS],
    ids=[name for name, _, _ in EXITS],
)
def test_exit_of_a_child_is_restarted_kept_removed_or_shuts_the_supervisor_down(
    given: dict[str, Any], action: ExitAction
) -> None:
    fields: dict[str, Any] = {
        "strategy": ONE_FOR_ONE,
        "auto_shutdown": NEVER,
        "significant": False,
        "remaining_significant": 0,
        **given,
    }
    assert exit_action(**fields) is action


AUTO_SHUTDOWN_CASES = [
    (NEVER, True, 0, False),
    (NEVER, False, 0, False),
    (NEVER, True, 3, False),
    (ANY, True, 0, True),
    (ANY, True, 2, True),
    (ANY, False, 0, False),
    (ALL, True, 0, True),
    (ALL, True, 1, False),
    (ALL, False, 0, False),
]


@pytest.mark.parametrize(
    ("auto_shutdown", "significant_exited", "remaining", "triggered"),
    AUTO_SHUTDOWN_CASES,
    ids=[f"{a.name}-{'significant' if s else 'other'}-{r}-left" for a, s, r, _ in AUTO_SHUTDOWN_CASES],
)
def test_auto_shutdown_is_triggered_only_by_significant_exits_per_mode(
    auto_shutdown: AutoShutdown, significant_exited: bool, remaining: int, triggered: bool
) -> None:  # 39
    assert auto_shutdown_triggered(auto_shutdown, significant_exited, remaining) is triggered


def test_auto_shutdown_rejects_a_negative_remaining_count() -> None:
    with pytest.raises(ValueError, match="remaining_significant must be >= 0"):
        auto_shutdown_triggered(ALL, True, -1)


# --------------------------------------------------------------------------------------------
# Strategy x failed position (#14, #15, #16, #17, #20)
# --------------------------------------------------------------------------------------------

ORDER = ("reader", "filter", "store")
PLANS: list[tuple[Strategy, str, tuple[str, ...], tuple[str, ...]]] = [
    (ONE_FOR_ONE, "reader", (), ("reader",)),
    (ONE_FOR_ONE, "filter", (), ("filter",)),
    (ONE_FOR_ONE, "store", (), ("store",)),
    (ONE_FOR_ALL, "reader", ("store", "filter"), ORDER),
    (ONE_FOR_ALL, "filter", ("store", "reader"), ORDER),
    (ONE_FOR_ALL, "store", ("filter", "reader"), ORDER),
    (REST_FOR_ONE, "reader", ("store", "filter"), ORDER),
    (REST_FOR_ONE, "filter", ("store",), ("filter", "store")),
    (REST_FOR_ONE, "store", (), ("store",)),
    (SIMPLE, "reader", (), ("reader",)),
    (SIMPLE, "filter", (), ("filter",)),
    (SIMPLE, "store", (), ("store",)),
]


@pytest.mark.parametrize(
    ("strategy", "failed", "terminate", "restart"),
    PLANS,
    ids=[f"{s.name}-{f}-fails" for s, f, _, _ in PLANS],
)
def test_strategy_decides_which_children_are_terminated_and_restarted(
    strategy: Strategy, failed: str, terminate: tuple[str, ...], restart: tuple[str, ...]
) -> None:
    assert plan_restart(strategy, ORDER, failed) == RestartPlan(terminate, restart, ())


def test_rest_for_one_terminates_later_children_in_reverse_and_restarts_in_order() -> None:  # 17
    order = ["zeta", "alpha", "mu", "beta", "kappa"]
    plan = plan_restart(REST_FOR_ONE, order, "mu")
    assert plan.terminate == ("kappa", "beta")
    assert plan.restart == ("mu", "beta", "kappa")
    assert "zeta" not in plan.restart + plan.terminate
    assert "alpha" not in plan.restart + plan.terminate


@pytest.mark.parametrize("strategy", [ONE_FOR_ALL, REST_FOR_ONE], ids=lambda s: s.name)
def test_temporary_bystander_is_terminated_but_not_restarted(strategy: Strategy) -> None:  # 11
    plan = plan_restart(strategy, ["permanent", "temporary"], "permanent", temporary={"temporary"})
    assert plan == RestartPlan(terminate=("temporary",), restart=("permanent",), remove=("temporary",))


def test_one_for_all_retry_after_a_failed_start_terminates_the_freshly_restarted_children() -> None:
    # 18: child1 was restarted, child2 failed to start: plan again from child2.
    order = ["child1", "child2", "child3"]
    retry = plan_restart(ONE_FOR_ALL, order, "child2")
    assert retry.terminate == ("child3", "child1")
    assert retry.restart == tuple(order)


def test_rest_for_one_retry_after_a_failed_start_resumes_from_the_child_that_failed() -> None:
    # 19: child1 died, child1 restarted, child2 failed to start: retry from child2 only.
    order = ["child1", "child2", "child3"]
    assert plan_restart(REST_FOR_ONE, order, "child1").restart == ("child1", "child2", "child3")
    retry = plan_restart(REST_FOR_ONE, order, "child2")
    assert retry.restart == ("child2", "child3")
    assert "child1" not in retry.terminate


PLAN_ERRORS: list[tuple[str, Any, Any, str, Any, str]] = [
    ("repeated-id", ONE_FOR_ONE, ["a", "a"], "a", frozenset(), "must not repeat a child id"),
    ("unknown-failed", ONE_FOR_ONE, ["a", "b"], "c", frozenset(), "failed child 'c' is not in order"),
    ("temporary-failed", ONE_FOR_ALL, ["a", "b"], "a", {"a"}, "child 'a' is temporary"),
    ("string-strategy", "one_for_one", ["a"], "a", frozenset(), "strategy must be a Strategy"),
]


@pytest.mark.parametrize(
    ("strategy", "order", "failed", "temporary", "message"),
    [row[1:] for row in PLAN_ERRORS],
    ids=[row[0] for row in PLAN_ERRORS],
)
def test_plan_restart_rejects_inconsistent_input(
    strategy: Any, order: Any, failed: str, temporary: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan_restart(strategy, order, failed, temporary=temporary)


def _all_plan_inputs() -> list[tuple[Strategy, tuple[str, ...], str, frozenset[str]]]:
    """Every strategy, order of up to 5 children, failed child and set of temporary others."""
    cases = []
    for size in range(1, 6):
        order = tuple("edcba"[:size])  # not alphabetical: order must come from the list
        for strategy, failed in itertools.product(Strategy, order):
            others = [child for child in order if child != failed]
            for count in range(len(others) + 1):
                for temporary in itertools.combinations(others, count):
                    cases.append((strategy, order, failed, frozenset(temporary)))
    return cases


def test_every_plan_restarts_in_start_order_and_terminates_the_rest_of_its_group_in_reverse() -> None:
    cases = _all_plan_inputs()
    assert len(cases) == 4 * (1 + 4 + 12 + 32 + 80)
    for strategy, order, failed, temporary in cases:
        plan = plan_restart(strategy, order, failed, temporary=temporary)
        position = order.index(failed)
        group = {
            ONE_FOR_ONE: {failed},
            SIMPLE: {failed},
            ONE_FOR_ALL: set(order),
            REST_FOR_ONE: set(order[position:]),
        }[strategy]
        assert plan.restart == tuple(c for c in order if c in group - temporary)
        assert plan.terminate == tuple(c for c in reversed(order) if c in group - {failed})
        assert plan.remove == tuple(c for c in plan.terminate if c in temporary)


# --------------------------------------------------------------------------------------------
# Restart intensity: supervisor.erl add_restart/1 (#1, #2, #3, #4)
# --------------------------------------------------------------------------------------------

INTENSITY: list[tuple[str, int, float, tuple[float, ...], float, bool, tuple[float, ...]]] = [
    ("first-restart-is-allowed", 1, 5.0, (), 0.0, True, (0.0,)),
    ("restart-counts-itself-so-intensity-0-allows-none", 0, 5.0, (), 0.0, False, (0.0,)),
    ("second-within-period-exceeds-intensity-1", 1, 5.0, (0.0,), 4.0, False, (0.0, 4.0)),
    ("restart-exactly-period-old-still-counts", 1, 5.0, (0.0,), 5.0, False, (0.0, 5.0)),
    ("restart-older-than-period-is-dropped", 1, 5.0, (0.0,), 5.5, True, (5.5,)),
    ("second-of-intensity-2-is-allowed", 2, 3600.0, (0.0,), 1.0, True, (0.0, 1.0)),
    ("third-of-intensity-2-terminates", 2, 3600.0, (0.0, 1.0), 2.0, False, (0.0, 1.0, 2.0)),
    ("boundary-timestamp-kept-and-within-limit", 3, 10.0, (0.0, 5.0, 9.0), 15.0, True,
     (5.0, 9.0, 15.0)),
    ("boundary-timestamp-kept-and-over-limit", 2, 10.0, (0.0, 5.0, 9.0), 15.0, False,
     (5.0, 9.0, 15.0)),
    ("restart-at-the-same-instant-counts", 1, 5.0, (3.0,), 3.0, False, (3.0, 3.0)),
    ("fractional-period-boundary", 1, 0.5, (0.25,), 0.75, False, (0.25, 0.75)),
    ("fractional-period-just-past", 1, 0.5, (0.25,), 0.875, True, (0.875,)),
]


@pytest.mark.parametrize(
    ("intensity", "period", "restarts", "now", "allowed", "window"),
    [row[1:] for row in INTENSITY],
    ids=[row[0] for row in INTENSITY],
)
def test_restart_intensity_is_a_sliding_window_counting_the_restart_being_made(
    intensity: int,
    period: float,
    restarts: tuple[float, ...],
    now: float,
    allowed: bool,
    window: tuple[float, ...],
) -> None:
    assert add_restart(restarts, now, intensity, period) == (allowed, window)
    assert IntensityWindow(intensity, period, restarts).add_restart(now) == (
        allowed,
        IntensityWindow(intensity, period, window),
    )


def test_restarts_spaced_further_apart_than_the_period_never_trip_the_limit() -> None:  # 3
    window = IntensityWindow(intensity=1, period=1.0)
    for crash in range(4):
        allowed, window = window.add_restart(crash * 2.1)
        assert allowed
    assert len(window.restarts) == 1


def test_third_abnormal_exit_within_the_period_exceeds_intensity_two() -> None:  # 2
    window = IntensityWindow(intensity=2, period=3600.0)
    outcomes = []
    for now in (10.0, 20.0, 30.0):
        allowed, window = window.add_restart(now)
        outcomes.append(allowed)
    assert outcomes == [True, True, False]


def test_failed_restart_attempts_count_until_the_budget_is_gone() -> None:  # 4
    window = IntensityWindow(intensity=4, period=5.0)
    outcomes = []
    for attempt in range(5):  # one crash, then four retries of a start that keeps failing
        allowed, window = window.add_restart(100.0 + attempt * 0.01)
        outcomes.append(allowed)
    assert outcomes == [True, True, True, True, False]


def test_intensity_window_is_immutable_and_defaults_to_otps_1_in_5_seconds() -> None:
    window = IntensityWindow()
    assert (window.intensity, window.period, window.restarts) == (1, 5.0, ())
    _, after = window.add_restart(1.0)
    assert window.restarts == ()
    assert after.restarts == (1.0,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        window.restarts = (2.0,)  # type: ignore[misc]  # frozen on purpose: the test


def test_intensity_window_equals_all_restarts_of_the_last_period_counted_from_scratch() -> None:
    rng = random.Random(SEED)
    for _ in range(500):
        intensity, period = rng.randint(0, 5), float(rng.randint(1, 20))
        history: list[float] = []
        window: tuple[float, ...] = ()
        now = 0.0
        for _ in range(rng.randint(1, 30)):
            now += rng.choice([0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0])
            history.append(now)
            allowed, window = add_restart(window, now, intensity, period)
            expected = tuple(t for t in history if t >= now - period)
            assert window == expected
            assert allowed is (len(expected) <= intensity)


# --------------------------------------------------------------------------------------------
# Backoff: Akka BackoffSupervisor (B1, B2, B3, B7)
# --------------------------------------------------------------------------------------------

MINUTE, DAY = 60.0, 86_400.0


def test_backoff_defaults_and_default_reset_is_the_average_of_min_and_max() -> None:  # B3
    backoff = Backoff()
    assert (backoff.min, backoff.max, backoff.jitter) == (0.1, 5.0, 0.2)
    assert backoff.reset_after is None and backoff.stash_size == 1000
    assert effective_reset_after(backoff) == pytest.approx(2.55)
    assert effective_reset_after(Backoff(min=1.0, max=3.0)) == 2.0
    assert effective_reset_after(Backoff(reset_after=0.1)) == 0.1


AKKA_DELAYS: list[tuple[str, int, float, float, float]] = [
    ("count-0-gives-min", 0, 5 * MINUTE, 7 * MINUTE, 5 * MINUTE),
    ("count-2-capped-at-max", 2, 5.0, 7.0, 7.0),
    ("count-2-below-max", 2, 5.0, 7 * DAY, 20.0),
    ("count-29-capped", 29, 5 * MINUTE, 10 * MINUTE, 10 * MINUTE),
    ("int-max-gives-max", 2**31 - 1, 5 * MINUTE, 10 * MINUTE, 10 * MINUTE),
]


@pytest.mark.parametrize(
    ("restart_count", "minimum", "maximum", "delay"),
    [row[1:] for row in AKKA_DELAYS],
    ids=[row[0] for row in AKKA_DELAYS],
)
def test_backoff_delay_matches_akkas_table_without_jitter(
    restart_count: int, minimum: float, maximum: float, delay: float
) -> None:  # B1
    backoff = Backoff(min=minimum, max=maximum, jitter=0.0)
    assert backoff_delay(backoff, restart_count, rand=0.5) == delay


JITTERED: list[tuple[str, int, float, float, float]] = [  # (count, jitter, rand, delay), min .1 max 5
    ("no-jitter-when-rand-is-0", 3, 0.2, 0.0, 0.8),
    ("jitter-scales-the-delay", 0, 0.5, 0.5, 0.125),
    ("full-jitter-almost-doubles", 1, 1.0, 0.5, 0.3),
    ("jitter-after-the-cap-exceeds-max", 10, 0.2, 0.5, 5.5),
    ("count-29-is-capped-then-jittered", 29, 0.2, 0.5, 5.5),
    ("count-30-is-max-without-jitter", OVERFLOW_GUARD, 0.2, 0.5, 5.0),
    ("huge-count-is-max-without-jitter", 10**9, 1.0, 0.999, 5.0),
]


@pytest.mark.parametrize(
    ("restart_count", "jitter", "rand", "delay"),
    [row[1:] for row in JITTERED],
    ids=[row[0] for row in JITTERED],
)
def test_backoff_jitter_multiplies_the_capped_delay_by_one_plus_rand_times_jitter(
    restart_count: int, jitter: float, rand: float, delay: float
) -> None:  # B1
    backoff = Backoff(min=0.1, max=5.0, jitter=jitter)
    assert backoff_delay(backoff, restart_count, rand) == pytest.approx(delay)


def test_backoff_delays_double_with_each_failure_of_an_unstable_child() -> None:  # B2
    backoff = Backoff(min=0.2, max=5.0, jitter=0.0)
    count, delays = 0, []
    for _ in range(3):
        step = next_backoff(backoff, count, uptime=0.01, rand=0.0)
        delays.append(step.delay)
        count = step.restart_count
    assert delays == pytest.approx([0.2, 0.4, 0.8])
    assert count == 3


RESETS: list[tuple[str, float | None, float, int]] = [  # (reset_after, uptime, count used)
    ("short-run-keeps-the-count", 0.1, 0.05, 3),
    ("run-of-exactly-reset-after-resets", 0.1, 0.1, 0),
    ("long-run-resets", 0.1, 0.2, 0),
    ("default-reset-not-yet-reached", None, 1.99, 3),
    ("default-reset-reached", None, 2.0, 0),
]


@pytest.mark.parametrize(
    ("reset_after", "uptime", "count"),
    [row[1:] for row in RESETS],
    ids=[row[0] for row in RESETS],
)
def test_restart_count_resets_after_the_child_ran_stably_for_reset_after(
    reset_after: float | None, uptime: float, count: int
) -> None:  # B3
    backoff = Backoff(min=1.0, max=3.0, jitter=0.0, reset_after=reset_after)
    assert reset_restart_count(backoff, 3, uptime) == count


def test_failure_after_a_stable_period_waits_min_again_not_double() -> None:  # B3
    backoff = Backoff(min=1.0, max=60.0, jitter=0.0, reset_after=0.1)
    assert next_backoff(backoff, 1, uptime=0.05, rand=0.0) == BackoffStep(2.0, 2)
    assert next_backoff(backoff, 1, uptime=0.5, rand=0.0) == BackoffStep(1.0, 1)


BACKOFF_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("zero-min", {"min": 0}, "backoff: min must be a positive number of seconds, got 0"),
    ("negative-min", {"min": -1.0}, "backoff: min must be a positive number of seconds"),
    ("nan-min", {"min": math.nan}, "backoff: min must be"),
    ("string-min", {"min": "1"}, "backoff: min must be"),
    ("bool-min", {"min": True}, "backoff: min must be"),
    ("max-below-min", {"min": 1.0, "max": 0.5},
     "backoff: max must be a number of seconds >= 1.0, got 0.5"),
    ("infinite-max", {"max": math.inf}, "backoff: max must be"),
    ("negative-jitter", {"jitter": -0.1}, "backoff: jitter must be a number between 0 and 1"),
    ("jitter-above-1", {"jitter": 1.5}, "backoff: jitter must be a number between 0 and 1"),
    ("zero-reset-after", {"reset_after": 0},
     "backoff: reset_after must be a positive number of seconds or None, got 0"),
    ("negative-reset-after", {"reset_after": -2.0}, "backoff: reset_after must be"),
    ("negative-stash", {"stash_size": -1}, "backoff: stash_size must be an integer >= 0, got -1"),
    ("float-stash", {"stash_size": 1.5}, "backoff: stash_size must be an integer"),
    ("bool-stash", {"stash_size": True}, "backoff: stash_size must be an integer"),
]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(o, m) for _, o, m in BACKOFF_ERRORS],
    ids=[name for name, _, _ in BACKOFF_ERRORS],
)
def test_invalid_backoff_field_is_a_value_error_naming_the_field(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        Backoff(**overrides)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "fields",
    [{"jitter": 0.0}, {"jitter": 1.0}, {"min": 2.0, "max": 2.0}, {"stash_size": 0},
     {"min": 1, "max": 3, "reset_after": 1}],
    ids=["jitter-0", "jitter-1", "max-equals-min", "stash-0-drops-everything", "int-seconds"],
)
def test_boundary_backoff_values_are_valid(fields: dict[str, Any]) -> None:  # B7 for stash 0
    backoff = Backoff(**fields)
    assert all(isinstance(getattr(backoff, f), float) for f in ("min", "max", "jitter"))


@pytest.mark.parametrize(
    ("restart_count", "rand", "message"),
    [(-1, 0.0, "restart_count must be an integer >= 0"),
     (1.0, 0.0, "restart_count must be an integer >= 0"),
     (True, 0.0, "restart_count must be an integer >= 0"),
     (0, 1.0, r"rand must be a number in \[0, 1\)"),
     (0, -0.1, r"rand must be a number in \[0, 1\)"),
     (0, math.nan, r"rand must be a number in \[0, 1\)")],
    ids=["negative-count", "float-count", "bool-count", "rand-1", "negative-rand", "nan-rand"],
)
def test_backoff_delay_rejects_out_of_range_inputs(restart_count: Any, rand: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delay(Backoff(), restart_count, rand)


def test_child_spec_carries_its_backoff() -> None:
    backoff = Backoff(min=0.1, max=5.0, jitter=0.2)
    assert ChildSpec("store", Store, shutdown=10.0, backoff=backoff).backoff is backoff


def test_backoff_delay_stays_between_min_and_max_times_one_plus_jitter() -> None:
    rng = random.Random(SEED)
    for _ in range(2000):
        minimum = rng.uniform(1e-3, 10.0)
        backoff = Backoff(min=minimum, max=minimum * rng.uniform(1.0, 100.0), jitter=rng.random())
        count = rng.choice([0, 1, 2, 5, 10, 29, 30, 31, 1000])
        rand = rng.random()
        delay = backoff_delay(backoff, count, rand)
        assert backoff.min <= delay <= backoff.max * (1 + backoff.jitter)
        if count < OVERFLOW_GUARD:
            undisturbed = min(backoff.max, backoff.min * 2**count)
            assert delay == pytest.approx(undisturbed * (1 + rand * backoff.jitter))
