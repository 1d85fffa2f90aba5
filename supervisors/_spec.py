"""Child specs and supervisor flags, validated once, up front (OTP ``check_childspec``/``check_flags``).

What the strategies and restart types mean: the tables in ``supervisors._supervisor``'s
docstring (the one place they are written).

Defaults are OTP's: restart PERMANENT; shutdown 5 s for workers and ``"infinity"`` for supervisors;
intensity 1 restart per period of 5 s; auto-shutdown NEVER. Shutdown is a positive number of
seconds, ``"brutal_kill"`` or ``"infinity"`` (``Shutdown`` members, which equal those strings).

Rules checked here (OTP ``validSignificant``, ``validAutoShutdownForStrategy``): ``significant=True``
is invalid with PERMANENT and with auto-shutdown NEVER; SIMPLE_ONE_FOR_ONE takes exactly one spec
and no auto-shutdown; child ids are unique. Every error is a ``ValueError`` whose message names the
child and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any, Final

from actors import Actor
from actors.lowlevel import check_number
from supervisors._backoff import Backoff

__all__ = [
    "DEFAULT_WORKER_SHUTDOWN",
    "AutoShutdown",
    "ChildKind",
    "ChildSpec",
    "Restart",
    "Shutdown",
    "Strategy",
    "SupervisorFlags",
    "check_shutdown",
    "is_actor_class",
    "is_supervisor_class",
    "validate_child",
    "validate_children",
]


class Strategy(Enum):
    """Restart strategy of a supervisor (see the module table)."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"


class Restart(Enum):
    """Restart type of a child (see the module table)."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class AutoShutdown(Enum):
    """When the exit of significant children shuts the supervisor down (OTP 24+)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class Shutdown(StrEnum):
    """The non-numeric shutdown values; each member equals its string (the contract's spelling)."""

    BRUTAL_KILL = "brutal_kill"
    INFINITY = "infinity"


class ChildKind(StrEnum):
    """``"supervisor"`` when the start is a Supervisor (sub)class, else ``"worker"``."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


DEFAULT_WORKER_SHUTDOWN: Final = 5.0
"""OTP's 5000 ms default shutdown for workers, in seconds."""


class _Unset(Enum):
    """Sentinel for a field the caller did not give; resolved in ``__post_init__``."""

    SHUTDOWN = "shutdown not given"


_SHUTDOWN_NOT_GIVEN: Any = _Unset.SHUTDOWN
_SHUTDOWN_WORDS: Final = frozenset(member.value for member in Shutdown)


def is_actor_class(obj: object) -> bool:
    """May ``obj`` be a child's ``start``? True for subclasses of ``actors.Actor``. Never raises."""
    return isinstance(obj, type) and issubclass(obj, Actor)


def is_supervisor_class(obj: object) -> bool:
    """Is ``obj`` a ``supervisors.Supervisor`` (sub)class? Never raises. (Looked up at call time:
    the supervisor module imports this one.)"""
    import supervisors

    return isinstance(obj, type) and issubclass(obj, supervisors.Supervisor)


def _names(enum: type[Enum]) -> str:
    members = [member.name for member in enum]
    return ", ".join(members[:-1]) + " or " + members[-1]


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child. Immutable; validated at construction.

    ``start`` is an Actor subclass started with ``args``/``kwargs`` (kept as a read-only mapping).
    ``kind`` None means: SUPERVISOR if ``start`` is a Supervisor subclass, else WORKER. ``shutdown``
    not given means 5.0 s for a worker and ``Shutdown.INFINITY`` for a supervisor. Raises
    ``ValueError`` naming the child and the field.
    """

    id: str
    start: type
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    restart: Restart = Restart.PERMANENT
    shutdown: float | str = _SHUTDOWN_NOT_GIVEN
    significant: bool = False
    backoff: Backoff | None = None
    kind: ChildKind | None = None

    def __post_init__(self) -> None:
        child = f"child {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"{child}: id must be a non-empty string, got {self.id!r}")
        if not is_actor_class(self.start):
            raise ValueError(f"{child}: start must be an Actor subclass, got {self.start!r}")
        if not isinstance(self.args, (tuple, list)):
            raise ValueError(
                f"{child}: args must be a tuple or list of positional arguments, "
                f"got {self.args!r}"
            )
        if not isinstance(self.kwargs, Mapping) or not all(
            isinstance(key, str) for key in self.kwargs
        ):
            raise ValueError(
                f"{child}: kwargs must be a mapping with string keys, got {self.kwargs!r}"
            )
        if not isinstance(self.restart, Restart):
            raise ValueError(
                f"{child}: restart must be a Restart ({_names(Restart)}), got {self.restart!r}"
            )
        if not isinstance(self.significant, bool):
            raise ValueError(
                f"{child}: significant must be True or False, got {self.significant!r}"
            )
        if self.significant and self.restart is Restart.PERMANENT:
            raise ValueError(
                f"{child}: significant=True is invalid with restart PERMANENT "
                "(use TRANSIENT or TEMPORARY)"
            )
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise ValueError(f"{child}: backoff must be a Backoff or None, got {self.backoff!r}")
        kind = self.kind
        if kind is None:
            kind = ChildKind.SUPERVISOR if is_supervisor_class(self.start) else ChildKind.WORKER
        elif not isinstance(kind, ChildKind):
            raise ValueError(
                f"{child}: kind must be a ChildKind ({_names(ChildKind)}) or None, "
                f"got {kind!r}"
            )
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "shutdown", _resolve_shutdown(child, self.shutdown, kind))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only kwargs view cannot be pickled; rebuild from a plain dict instead.
        return (
            type(self),
            (
                self.id,
                self.start,
                self.args,
                dict(self.kwargs),
                self.restart,
                self.shutdown,
                self.significant,
                self.backoff,
                self.kind,
            ),
        )


def _resolve_shutdown(child: str, shutdown: object, kind: ChildKind) -> float | Shutdown:
    if shutdown is _SHUTDOWN_NOT_GIVEN:
        if kind is ChildKind.SUPERVISOR:
            return Shutdown.INFINITY
        return DEFAULT_WORKER_SHUTDOWN
    return check_shutdown(shutdown, child)


def check_shutdown(shutdown: object, what: str) -> float | Shutdown:
    """``shutdown`` as a ``Shutdown`` word or float seconds; ``ValueError`` starting with
    ``what`` unless it is ``"brutal_kill"``, ``"infinity"`` or a positive number of seconds."""
    if isinstance(shutdown, str):
        if shutdown in _SHUTDOWN_WORDS:
            return Shutdown(shutdown)
    elif shutdown is not None:
        try:
            return float(check_number(shutdown, "shutdown", positive=True))
        except ValueError:
            pass
    raise ValueError(
        f"{what}: shutdown must be a positive number of seconds, 'brutal_kill' or "
        f"'infinity', got {shutdown!r}"
    )


@dataclass(frozen=True)
class SupervisorFlags:
    """Strategy and restart intensity of a supervisor (OTP ``sup_flags``). Validated; immutable.

    At most ``intensity`` restarts (an integer >= 0) within any ``period`` seconds (> 0, finite);
    one more and the supervisor terminates its children and exits ``"shutdown"``. Raises
    ``ValueError`` naming the field.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 1
    period: float = 5.0
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER

    def __post_init__(self) -> None:
        _check_strategy_and_auto_shutdown(self.strategy, self.auto_shutdown)
        check_number(self.intensity, "supervisor flags: intensity", integer=True, low=0)
        check_number(self.period, "supervisor flags: period", positive=True, unit="seconds")
        object.__setattr__(self, "period", float(self.period))


def _check_strategy_and_auto_shutdown(strategy: object, auto_shutdown: object) -> None:
    if not isinstance(strategy, Strategy):
        raise ValueError(
            f"supervisor flags: strategy must be a Strategy ({_names(Strategy)}), "
            f"got {strategy!r}"
        )
    if not isinstance(auto_shutdown, AutoShutdown):
        raise ValueError(
            "supervisor flags: auto_shutdown must be an AutoShutdown "
            f"({_names(AutoShutdown)}), got {auto_shutdown!r}"
        )
    if strategy is Strategy.SIMPLE_ONE_FOR_ONE and auto_shutdown is not AutoShutdown.NEVER:
        raise ValueError(
            f"supervisor flags: auto_shutdown {auto_shutdown.name} is invalid with strategy "
            "SIMPLE_ONE_FOR_ONE (it must be NEVER)"
        )


def validate_child(spec: object, auto_shutdown: AutoShutdown) -> ChildSpec:
    """Check one spec against the supervisor's auto-shutdown mode (also for ``start_child``).

    Raises ``ValueError`` if ``spec`` is not a ``ChildSpec`` or is significant under NEVER.
    """
    if not isinstance(spec, ChildSpec):
        raise ValueError(f"child spec must be a ChildSpec, got {spec!r}")
    if spec.significant and auto_shutdown is AutoShutdown.NEVER:
        raise ValueError(
            f"child {spec.id!r}: significant=True needs auto_shutdown ANY_SIGNIFICANT or "
            "ALL_SIGNIFICANT, not NEVER"
        )
    return spec


def validate_children(
    specs: Iterable[ChildSpec],
    strategy: Strategy,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
) -> tuple[ChildSpec, ...]:
    """Validate a supervisor's static children, in start order (OTP ``check_startspec``).

    Returns them as a tuple. Raises ``ValueError`` for a non-spec, a significant child under
    NEVER, a duplicate id (``"duplicate child id 'db'"``), a SIMPLE_ONE_FOR_ONE supervisor with
    other than exactly one spec, or a bad strategy/auto-shutdown combination.
    """
    _check_strategy_and_auto_shutdown(strategy, auto_shutdown)
    checked: list[ChildSpec] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if not isinstance(spec, ChildSpec):
            raise ValueError(f"children[{index}] must be a ChildSpec, got {spec!r}")
        validate_child(spec, auto_shutdown)
        if spec.id in seen:
            raise ValueError(f"duplicate child id {spec.id!r}")
        seen.add(spec.id)
        checked.append(spec)
    if strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(checked) != 1:
        raise ValueError(
            "children: SIMPLE_ONE_FOR_ONE needs exactly one child spec, "
            f"got {len(checked)}"
        )
    return tuple(checked)
