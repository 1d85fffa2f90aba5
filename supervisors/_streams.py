"""Supervised stream graphs: each tenant's graph instance is one supervision subtree.

    from actors.stream import Graph
    from supervisors._streams import GraphSupervision  # to be re-exported from supervisors

    inst = graph.instantiate(rt, "acme", supervision=GraphSupervision())
    # or once, for every instance: Graph("sensors", supervision=GraphSupervision(intensity=5))

``GraphSupervision`` is the ``actors.stream.Supervision`` that ``Graph.instantiate`` calls: it
spawns one ``Supervisor`` through the tenant's scope (registered as ``<tenant>/<graph>``), whose
children are the graph's nodes in pipeline order (sources first; each child's id is the node's
name). The default strategy is REST_FOR_ONE along that order: a crashed node restarts together
with every node downstream of it, whose state derived from its output; upstream nodes keep
running, buffer within their credit, and re-wire when the restarted nodes attach. ONE_FOR_ONE
restarts only the crashed node; ONE_FOR_ALL the whole instance. Another tenant's instance is
another supervisor: a crash loop here exhausts this supervisor's intensity (it then stops this
instance and exits ``"shutdown"``) and never touches any other tenant.

The layering rule holds: ``actors.stream`` does not import this module, and this module imports
only ``actors``' public names - ``NodeStart`` values are read by attribute.
"""

from __future__ import annotations

from typing import Any, Sequence

from actors import ActorRef
from supervisors._backoff import Backoff
from supervisors._spec import (ChildSpec, Restart, Strategy, SupervisorFlags,
                               check_shutdown)
from supervisors._supervisor import Supervisor

__all__ = ["GraphSupervision", "start_graph"]


class GraphSupervision:
    """Supervise each node of a graph instance (see the module docstring).

    ``strategy`` (default REST_FOR_ONE), ``intensity`` restarts per ``period`` seconds (default
    3 per 5 s), per-node ``backoff`` (a ``Backoff``, or None), ``shutdown`` per node (seconds,
    ``"brutal_kill"`` or ``"infinity"``), ``restart`` type of the nodes (PERMANENT), and the
    supervisor's ``seed``/``retry_delay``. Raises ``ValueError`` naming the field.
    """

    def __init__(self, strategy: Strategy = Strategy.REST_FOR_ONE, intensity: int = 3,
                 period: float = 5.0, *, backoff: Backoff | None = None,
                 shutdown: float | str = 5.0, restart: Restart = Restart.PERMANENT,
                 seed: Any = None, retry_delay: float = 0.0) -> None:
        if strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            raise ValueError("graph supervision: strategy SIMPLE_ONE_FOR_ONE cannot run a graph "
                             "(its nodes are distinct children)")
        self.flags = SupervisorFlags(strategy, intensity, period)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ValueError(f"graph supervision: backoff must be a Backoff or None, "
                             f"got {backoff!r}")
        if not isinstance(restart, Restart):
            raise ValueError(f"graph supervision: restart must be a Restart, got {restart!r}")
        self.backoff = backoff
        self.shutdown = check_shutdown(shutdown, "graph supervision")
        self.restart = restart
        self.seed = seed
        self.retry_delay = retry_delay

    def child_specs(self, nodes: Sequence[Any]) -> list[ChildSpec]:
        """One child per node, in the order given (pipeline order)."""
        return [ChildSpec(n.id, n.cls, args=n.args, kwargs={**n.kwargs, **n.spawn_options},
                          restart=self.restart, shutdown=self.shutdown, backoff=self.backoff)
                for n in nodes]

    def start(self, scope: Any, name: str, nodes: Sequence[Any]) -> ActorRef:
        """Spawn the instance's supervisor through ``scope`` (a tenant, or the runtime)."""
        f = self.flags
        ref: ActorRef = scope.spawn(Supervisor, strategy=f.strategy, intensity=f.intensity,
                                    period=f.period, children=self.child_specs(nodes), name=name,
                                    seed=self.seed, retry_delay=self.retry_delay)
        return ref

    def __repr__(self) -> str:
        f = self.flags
        return (f"GraphSupervision({f.strategy.name}, intensity={f.intensity}, "
                f"period={f.period})")


def start_graph(graph: Any, rt: Any, tenant: Any, *, name: str | None = None,
                **options: Any) -> Any:
    """``graph.instantiate(rt, tenant, supervision=GraphSupervision(**options))``."""
    return graph.instantiate(rt, tenant, supervision=GraphSupervision(**options), name=name)
