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
    from ._wiring import Wiring

__all__ = ["batch_take", "on_flush_batch", "flush_all_batches"]


def _run(w: "Wiring", chunk: list[Any], port: str) -> None:
    w.node.process_batch(chunk, port)
    c = w.counters
    c.custody -= len(chunk)
    c.processed += len(chunk)


def batch_take(w: "Wiring", inp: "In", items: Any, now: float) -> None:
    port = inp.port
    buf = w.batches[port]
    buf.extend(items)
    w.grant(inp, len(items))
    size = w.batch_max
    fired = False
    while len(buf) >= size:
        chunk = buf[:size]
        del buf[:size]
        _run(w, chunk, port)
        fired = True
    delay = w.batch_delay
    if buf and delay == 0:
        chunk = buf[:]
        buf.clear()
        _run(w, chunk, port)
    armed = w.batch_armed
    if not buf:
        if armed[port]:
            armed[port] = False
            w.node.cancel_timer(("sv-batch", port))
    elif delay is not None and (fired or not armed[port]):
        # every item now waiting arrived in this message (a full batch took the older ones)
        armed[port] = True
        w.node.send_after(delay, FlushBatch(port), key=("sv-batch", port))


def on_flush_batch(w: "Wiring", port: str) -> None:
    w.batch_armed[port] = False
    if w.paused:  # taken items wait with the node; look again after another delay
        if w.batches.get(port):
            w.batch_armed[port] = True
            w.node.send_after(w.batch_delay or 0.0, FlushBatch(port), key=("sv-batch", port))
        return
    buf = w.batches.get(port)
    if buf:
        chunk = buf[:]
        buf.clear()
        _run(w, chunk, port)
        w.epilogue()


def flush_all_batches(w: "Wiring") -> None:
    for port, buf in w.batches.items():
        if buf:
            chunk = buf[:]
            buf.clear()
            _run(w, chunk, port)
            if w.batch_armed.get(port):
                w.batch_armed[port] = False
                w.node.cancel_timer(("sv-batch", port))
