"""Per-node batching (``Trigger.EACH`` nodes with ``max_items`` and/or ``max_delay``).

Items arriving on an input port join that port's batch; ``process_batch(items, port)`` gets it
as soon as it has ``max_items`` items, or once its oldest item has waited ``max_delay`` seconds
on the runtime clock - whichever comes first, never an empty batch. ``max_delay=0`` hands over
what is there at the end of every arriving message (batches are then capped, not padded);
``max_delay=None`` waits for a full batch (or the end of the stream). ``max_items`` defaults to
1024 when only ``max_delay`` is given. Items in a batch are in the node's hands: their credit
goes back when they join it (the batch is bounded by ``max_items``), and a crash counts them as
lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._messages import FlushBatch

if TYPE_CHECKING:
    from ._edges import In
    from ._node import Node

__all__ = ["batch_take", "on_flush_batch", "flush_all_batches"]


def _run(node: "Node", chunk: list[Any], port: str) -> None:
    node.process_batch(chunk, port)
    c = node._sv_c
    c.custody -= len(chunk)
    c.processed += len(chunk)


def batch_take(node: "Node", inp: "In", items: Any, now: float) -> None:
    port = inp.port
    buf = node._sv_bbuf[port]
    buf.extend(items)
    node._sv_grant(inp, len(items))
    size = node._sv_bmax
    fired = False
    while len(buf) >= size:
        chunk = buf[:size]
        del buf[:size]
        _run(node, chunk, port)
        fired = True
    delay = node._sv_bdelay
    if buf and delay == 0:
        chunk = buf[:]
        buf.clear()
        _run(node, chunk, port)
    armed = node._sv_barmed
    if not buf:
        if armed[port]:
            armed[port] = False
            node.cancel_timer(("sv-batch", port))
    elif delay is not None and (fired or not armed[port]):
        # every item now waiting arrived in this message (a full batch took the older ones)
        armed[port] = True
        node.send_after(delay, FlushBatch(port), key=("sv-batch", port))


def on_flush_batch(node: "Node", port: str) -> None:
    node._sv_barmed[port] = False
    if node._sv_paused:  # taken items wait with the node; look again after another delay
        if node._sv_bbuf.get(port):
            node._sv_barmed[port] = True
            node.send_after(node._sv_bdelay or 0.0, FlushBatch(port), key=("sv-batch", port))
        return
    buf = node._sv_bbuf.get(port)
    if buf:
        chunk = buf[:]
        buf.clear()
        _run(node, chunk, port)
        node._sv_epilogue()


def flush_all_batches(node: "Node") -> None:
    for port, buf in node._sv_bbuf.items():
        if buf:
            chunk = buf[:]
            buf.clear()
            _run(node, chunk, port)
            if node._sv_barmed.get(port):
                node._sv_barmed[port] = False
                node.cancel_timer(("sv-batch", port))
