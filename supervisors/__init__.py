"""Supervision trees with OTP's semantics and Akka's restart backoff.

    from supervisors import Supervisor, ChildSpec, Strategy, Restart, Backoff
    import supervisors

    sup = rt.spawn(Supervisor, strategy=Strategy.REST_FOR_ONE, intensity=3, period=5.0, children=[
        ChildSpec("reader", SensorReader, args=("plant/1",)),
        ChildSpec("store", Store, shutdown=10.0, backoff=Backoff(min=0.1, max=5.0, jitter=0.2)),
    ])
    supervisors.which_children(sup)           # [ChildInfo(id, ref | None | "restarting", ...)]
    supervisors.peek_children(sup)            # the same, as published at its last turn's end
    supervisors.child(sup, "store").tell(msg)  # reaches the current incarnation, stashes meanwhile

The rules: ``supervisors._supervisor`` (strategies, restart types, intensity, shutdown); the
management calls: ``supervisors._api``; the child handle: ``supervisors._handle``.
"""

from supervisors._api import (child, count_children, delete_child, peek_children, reset_backoff,
                              restart_child, start_child, terminate_child, which_children)
from supervisors._backoff import Backoff
from supervisors._events import (ChildExited, ChildInfo, ChildRestarted, ChildStarted, Ignore,
                                 SupervisionEvent, SupervisorError, SupervisorGaveUp)
from supervisors._handle import ChildHandle
from supervisors._spec import AutoShutdown, ChildSpec, Restart, Shutdown, Strategy
from supervisors._streams import GraphSupervision, start_graph
from supervisors._supervisor import Supervisor
from supervisors import _moved

_moved.install()  # supervisors.cli/top/metrics/graph -> streamvisor.*, for one release

__all__ = [
    "Supervisor", "ChildSpec", "ChildInfo", "Strategy", "Restart", "Shutdown", "Backoff",
    "AutoShutdown", "SupervisorError", "Ignore",
    "which_children", "peek_children", "count_children", "start_child", "terminate_child",
    "restart_child", "delete_child", "child", "ChildHandle", "reset_backoff",
    "SupervisionEvent", "ChildStarted", "ChildExited", "ChildRestarted", "SupervisorGaveUp",
    "GraphSupervision", "start_graph",
]
