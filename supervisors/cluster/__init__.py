"""streamvisor clusters: node processes on thespian, remote refs, heartbeats, tenant placement.

    streamvisor cluster start --nodes 3 examples/cluster_app.py     # see cli.py and README.md
    streamvisor cluster status --json
    streamvisor cluster stop

    from supervisors.cluster import ClusterNode, RemoteRef
    ref = options.cluster.whereis("acme/store")      # in an app: a RemoteRef or a local ActorRef
    ref.tell(("reading", 21.5)); ref.ask("mean")

Only ``_thespian`` imports thespian (lifecycle, control, status, restarts); the data plane is
TCP with ``actors.codec`` frames, heartbeats are UDP; proxies, remote asks and mirrored links use
the core's hooks in ``actors.lowlevel`` (nothing here imports ``actors``' private modules). The
design and its limits: ``supervisors/cluster/README.md``.
"""

from ._lease import (Lease, LeaseKeeper, LeaseStore, LeaseUnavailable, StaleEpoch,
                     fenced_commit)
from ._launcher import ClusterError, cluster_status, start_cluster, stop_cluster
from ._node import ClusterNode
from ._placement import Detector, owner, place
from ._pubsub import ClusterPubSub
from ._remote import NOCONNECTION, RemoteRef
from ._wire import RemoteError

__all__ = ["ClusterNode", "RemoteRef", "RemoteError", "NOCONNECTION", "ClusterPubSub",
           "place", "owner", "Detector",
           "start_cluster", "cluster_status", "stop_cluster", "ClusterError",
           "Lease", "LeaseKeeper", "LeaseStore", "LeaseUnavailable", "StaleEpoch",
           "fenced_commit"]
