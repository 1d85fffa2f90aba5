"""Control messages between the launcher and node actors (thespian pickles these).

They carry configuration and status only - names, ports, paths, counters - never user
payloads, which travel on the data plane as msgpack.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Configure", "Ready", "StatusRequest", "StatusReply", "global_name"]


def global_name(cluster: str, node_id: str) -> str:
    """The thespian global name of a node actor (unique per admin)."""
    return f"streamvisor/{cluster}/{node_id}"


@dataclass(frozen=True)
class Configure:
    """Turn a fresh node actor into node ``node_id`` of ``cluster``."""

    cluster: str
    node_id: str
    cookie: str
    bind: str
    port: int
    heartbeat_port: int
    admin: str                          # "host:port" of the thespian admin that hosts it
    state_dir: str
    app: str | None = None              # a .py path or a module name
    app_options: dict[str, Any] = field(default_factory=dict)
    tenants: tuple[str, ...] = ()
    members: tuple[dict[str, Any], ...] = ()   # MemberInfo of the other nodes
    seeds: tuple[tuple[str, int], ...] = ()
    incarnation: int = 1
    workers: int = 2
    restart: str = "always"             # "always" | "never": restart killed nodes of this admin
    heartbeat_interval: float = 0.2
    heartbeat_timeout: float = 1.5
    tls: tuple[str, str, str] | None = None   # (cert, key, ca) PEM paths: mutual TLS 1.3
    log_max_bytes: int = 10 << 20       # cluster.log is rotated at this size ...
    log_keep: int = 3                   # ... keeping this many older parts
    leases: tuple[str, float, float, str] | None = None   # (postgresql URL, ttl, grace, table)

    def for_node(self, node_id: str, port: int, heartbeat_port: int, incarnation: int,
                 members: tuple[dict[str, Any], ...]) -> "Configure":
        return replace(self, node_id=node_id, port=port, heartbeat_port=heartbeat_port,
                       incarnation=incarnation, members=members, seeds=())


@dataclass(frozen=True)
class Ready:
    node_id: str
    pid: int
    ppid: int
    info: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class StatusRequest:
    pass


@dataclass(frozen=True)
class StatusReply:
    node_id: str
    status: dict[str, Any]
