"""``streamvisor graph``: the processing graph and supervision tree as dot or Mermaid."""

from __future__ import annotations

import pytest

from streamvisor.cli import main

APP = "examples/iot_cloud.py"
NODES = ["queue", "categorise", "validate", "sanity", "store"]


def test_mermaid_shows_every_node_edge_and_the_supervision_order(capsys):
    assert main(["graph", APP, "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR\n")
    for a, b in zip(NODES, NODES[1:]):
        assert f'{a} -- "credit 1024" --> {b}' in out
    for i, name in enumerate(NODES, 1):
        assert f'sup -- "{i}" --> sup_{name}("{name}")' in out
    assert "rest_for_one, 10 restarts / 10 s" in out
    assert "subgraph graph " not in out  # "graph" is a Mermaid keyword


def test_dot_is_a_balanced_digraph_with_every_edge(capsys):
    assert main(["graph", APP, "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "ingest" {') and out.count("{") == out.count("}")
    for a, b in zip(NODES, NODES[1:]):
        assert f'"{a}" -> "{b}" [label="credit 1024"];' in out


def test_an_app_without_a_graph_is_told_what_to_define():
    with pytest.raises(SystemExit, match=r"must define graph\(\) -> Graph"):
        main(["graph", "examples/sensors.py"])
