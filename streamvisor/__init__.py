"""streamvisor: the command and what people look at.

- ``streamvisor.cli``: the ``streamvisor`` command (``run``, ``graph``, ``top``, ``cluster``, ``bench``);
- ``streamvisor.top``: the live view, ``/status.json`` and the node's HTTP status server;
- ``streamvisor.metrics``: Prometheus metrics of a node;
- ``streamvisor.graph``: the graph printer (text, Mermaid, Graphviz).

The runtime itself is ``actors`` (what runs) and ``supervisors`` (what keeps it running and where);
docs/ARCHITECTURE.md draws the layers.
"""
