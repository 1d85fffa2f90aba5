"""Stream processing graphs: sources, nodes and sinks as actors, joined by credit-based edges,
defined once and instantiated per tenant under supervision (see ``README.md`` here).

    from actors.stream import Graph, Source, Node, Sink, Policy

    class Double(Node):
        def process(self, item, port):
            self.emit(item * 2)

    g = Graph("double")
    g.add("numbers", IterableSource, range(1000))
    g.add("double", Double)
    g.add("print", Printer)
    g.pipe("numbers", "double", "print")
    inst = g.instantiate(rt, "acme", supervision=supervisors.GraphSupervision())
"""

from ._checkpoint import Checkpoints
from ._checkpoint_stores import PostgresCheckpoints, SqliteCheckpoints
from ._enums import Expired, Policy, Trigger
from ._events import ItemsDropped, ItemsLost, StreamEvent
from ._graph import DEFAULT_WINDOW, EdgeDef, Graph, NodeDef, Plan
from ._instance import NodeStart, StreamInstance, Supervision, Unsupervised
from ._kinds import IterableSource, LogReader, Sink, Source
from ._log import LogRead, StreamLog
from ._node import Node
from ._stats import EdgeStatistics, NodeStatistics, StreamStatistics
from ._timers import every, timeout
from ._triggers import Inputs
from ._window import BadItem, Session, Sliding, Tumbling, Window, WindowJoin, WindowResult

__all__ = [
    "Graph", "Source", "Node", "Sink", "Policy", "Trigger", "Expired", "Inputs",
    "every", "timeout", "IterableSource", "LogReader", "StreamLog", "LogRead",
    "StreamInstance", "StreamStatistics", "NodeStatistics", "EdgeStatistics",
    "Supervision", "NodeStart", "Unsupervised", "NodeDef", "EdgeDef", "Plan",
    "StreamEvent", "ItemsDropped", "ItemsLost", "DEFAULT_WINDOW",
    "Window", "WindowJoin", "Tumbling", "Sliding", "Session", "WindowResult", "BadItem",
    "Checkpoints", "SqliteCheckpoints", "PostgresCheckpoints",
]
