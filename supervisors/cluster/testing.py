"""Test support: several cluster nodes in one process, on loopback, without thespian.

    from supervisors.cluster.testing import local_cluster

    with local_cluster(2) as (a, b):
        b.runtime.spawn(Echo, name="echo")
        assert a.whereis("echo").ask("hi") == "hi"

Each node has its own ``Runtime`` and its own sockets; they meet, connect and heart-beat as
separate processes would. ``local_cluster`` returns once every node sees every other alive and
connected, and stops them all on exit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from actors.testing import wait_until

from ._node import ClusterNode

__all__ = ["local_cluster", "wait_connected"]


def wait_connected(nodes: Sequence[ClusterNode], timeout: float = 5.0) -> None:
    """Block until every node sees every other alive and connected (``TimeoutError``)."""
    ids = sorted(n.id for n in nodes)

    def ready() -> bool:
        for node in nodes:
            rows = [m for m in node.members() if m["self"] or (m["alive"] and m["connected"])]
            if sorted(m["id"] for m in rows) != ids:
                return False
        return True

    wait_until(ready, timeout, f"nodes {ids} to connect")


@contextmanager
def local_cluster(count: int = 2, *, cookie: str = "test-cookie", heartbeat_interval: float = 0.1,
                  heartbeat_timeout: float = 1.0, tenants: Sequence[str] = (),
                  app: Any = None, app_options: dict[str, Any] | None = None,
                  **options: Any) -> Iterator[list[ClusterNode]]:
    """``count`` started, connected nodes ``n1``..``nN``; stopped on exit."""
    nodes = [ClusterNode(f"n{i + 1}", cookie=cookie, heartbeat_interval=heartbeat_interval,
                         heartbeat_timeout=heartbeat_timeout, tenants=tenants, app=app,
                         app_options=app_options, **options) for i in range(count)]
    started: list[ClusterNode] = []
    try:
        for node in nodes:
            node.start(start_app=False)
            started.append(node)
        for node in nodes:
            node.add_members([other.info for other in nodes if other is not node])
        wait_connected(nodes)
        for node in nodes:
            node.start_app()
        yield nodes
    finally:
        for node in reversed(started):
            node.stop()
