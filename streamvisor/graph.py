"""``streamvisor graph APP --format dot|mermaid``: an app's processing graph and the supervision
subtree each tenant's instance runs under, as a picture description (Graphviz dot or Mermaid).

The app exposes its graph definition with ``graph() -> actors.stream.Graph`` (arguments that
only matter at run time - a queue, a database - may be placeholders). Nothing is started.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from actors.stream import Graph, Policy

__all__ = ["render_dot", "render_mermaid", "add_graph_command", "run_graph"]


def _flags(graph: Graph) -> tuple[str, str]:
    """(strategy, intensity text) of the graph's supervision, or ("none", "")."""
    flags = getattr(graph.supervision, "flags", None)
    if flags is None:
        return "unsupervised", ""
    return flags.strategy.name.lower(), f"{flags.intensity} restarts / {flags.period:g} s"


def _edge_label(edge: Any) -> str:
    ports = "" if (edge.source_port, edge.target_port) == ("out", "in") else \
        f"{edge.source_port} -> {edge.target_port}, "
    if edge.policy is Policy.BACKPRESSURE:
        return f"{ports}credit {edge.window}"
    return f"{ports}{edge.policy.name.lower()} (cap {edge.capacity})"


def _kind(node: Any) -> str:
    return str(node.kind)  # "source" | "node" | "sink"


def render_dot(graph: Graph) -> str:
    plan = graph.plan()
    strategy, intensity = _flags(graph)
    lines = [f'digraph "{plan.name}" {{', "  rankdir=LR;", '  node [fontname="Helvetica"];',
             f'  subgraph "cluster_graph" {{ label="graph {plan.name} (one instance per tenant)";']
    shapes = {"source": "invhouse", "node": "box", "sink": "house"}
    for node in plan.nodes:
        lines.append(f'    "{node.name}" [shape={shapes[_kind(node)]}, '
                     f'label="{node.name}\\n{node.cls.__name__}"];')
    for edge in plan.edges:
        lines.append(f'    "{edge.source}" -> "{edge.target}" [label="{_edge_label(edge)}"];')
    lines.append("  }")
    lines.append('  subgraph "cluster_supervision" { label="supervision of each tenant";')
    lines.append(f'    "sup" [shape=ellipse, label="/tenants/<tenant>/{plan.name}\\n{strategy}'
                 f'{chr(92) + "n" + intensity if intensity else ""}"];')
    for i, node in enumerate(plan.nodes):
        lines.append(f'    "sup" -> "child:{node.name}" [label="{i + 1}"];')
        lines.append(f'    "child:{node.name}" [shape=box, style=rounded, label="{node.name}"];')
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_mermaid(graph: Graph) -> str:
    plan = graph.plan()
    strategy, intensity = _flags(graph)
    shapes = {"source": ('[/', '/]'), "node": ("[", "]"), "sink": ('[\\', '\\]')}
    lines = ["flowchart LR", f'  subgraph pipeline ["graph {plan.name} (one instance per tenant)"]']
    for node in plan.nodes:
        left, right = shapes[_kind(node)]
        lines.append(f'    {node.name}{left}"{node.name}<br/>{node.cls.__name__}"{right}')
    for edge in plan.edges:
        lines.append(f'    {edge.source} -- "{_edge_label(edge)}" --> {edge.target}')
    lines.append("  end")
    label = f"{strategy}, {intensity}" if intensity else strategy
    lines.append('  subgraph supervision ["supervision of each tenant"]')
    lines.append(f'    sup(("/tenants/&lt;tenant&gt;/{plan.name}<br/>{label}"))')
    for i, node in enumerate(plan.nodes):
        lines.append(f'    sup -- "{i + 1}" --> sup_{node.name}("{node.name}")')
    lines.append("  end")
    return "\n".join(lines) + "\n"


def add_graph_command(subparsers: Any) -> None:
    parser = subparsers.add_parser("graph", help="print an app's processing graph and supervision "
                                                 "tree as Graphviz dot or Mermaid")
    parser.add_argument("app", help="a .py file or module defining graph() -> Graph")
    parser.add_argument("--format", choices=["dot", "mermaid"], default="mermaid")
    parser.set_defaults(run_graph=run_graph)


def run_graph(args: argparse.Namespace, load_app: Any) -> int:
    module = load_app(args.app, needs="graph")
    graph = module.graph()
    if not isinstance(graph, Graph):
        raise SystemExit(f"streamvisor graph: {args.app}'s graph() returned "
                         f"{type(graph).__name__}, not an actors.stream.Graph")
    sys.stdout.write(render_dot(graph) if args.format == "dot" else render_mermaid(graph))
    return 0
