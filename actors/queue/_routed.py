"""``put_each``: records for several queues at once, one transaction per database file.

A node-wide ingest (``actors.connectors.MqttIngest``) splits each batch by tenant and puts each
part into its tenant's queue. Queues of one file share one committer; calling ``put_many`` per
queue would make one group commit (and one fsync) per tenant, one after the other. ``put_each``
submits one operation per file that inserts every queue's records in the same transaction, and
reports each queue's outcome separately: a queue over its ``max_bytes`` is refused on its own
(``QueueFull``, nothing of it written) while the others are stored. Queues in different files
(or on different clocks) get one transaction each.

A producer that counts what it puts can wrap a queue and still share the transaction: an object
with ``wrapped_queue`` (the ``DurableQueue``), ``before_put(n)`` and ``after_put(outcome, n)``
is put through its queue, with ``before_put`` called before the transaction and ``after_put``
after it (``outcome``: the ids, or the exception that refused them).
"""

from __future__ import annotations

from typing import Any, Sequence

from . import _ops
from ._ops import Group, Refused
from ._queue import MAX_BATCH, DurableQueue
from ._schema import RECORD_OVERHEAD
from ._types import QueueClosed, QueueError, QueueFull

__all__ = ["put_each"]


def _put_all(group: Group, parts: list[tuple[int, DurableQueue, list[Any], int]]) -> list[Any]:
    results: list[Any] = []
    for _index, q, items, size in parts:
        try:
            results.append(_ops.put(group, q._key, items, q.ttl, q.max_bytes, size))
        except Refused as refused:  # wrote nothing for this queue; the others go on
            results.append(refused.error)
    return results


def put_each(batches: Sequence[tuple[Any, Sequence[Any]]]) -> list[Any]:
    """``[(queue, payloads), ...]`` -> for each entry, the ids of its records (on disk when this
    returns) or the exception that refused them (``QueueFull``, ``QueueClosed``, an encoding
    error; nothing of that entry was written). Blocks for one group commit per file. Counting
    wrappers (module docstring) share their queue's transaction; other objects that are not a
    ``DurableQueue`` but have ``put_many`` are called one by one. A shared transaction that
    failed (``QueueUnavailable``, ``QueueError``, an I/O error) is each of its entries' outcome:
    nothing of that file's (or server's) entries was written, while entries of other files keep
    theirs - so nothing is reported refused that was stored."""
    wrappers = [(i, q, len(p)) for i, (q, p) in enumerate(batches)
                if hasattr(q, "wrapped_queue") and hasattr(q, "before_put")]
    if wrappers:
        batches = list(batches)
        for index, wrapper, n in wrappers:
            wrapper.before_put(n)
            batches[index] = (wrapper.wrapped_queue, batches[index][1])
    try:
        out = _put_each(batches)
    except BaseException as exc:  # the shared transaction failed: nothing of it was written
        for _index, wrapper, n in wrappers:
            wrapper.after_put(exc, n)
        raise
    for index, wrapper, n in wrappers:
        wrapper.after_put(out[index], n)
    return out


def _put_each(batches: Sequence[tuple[Any, Sequence[Any]]]) -> list[Any]:
    out: list[Any] = [None] * len(batches)
    by_file: dict[tuple[int, int], list[tuple[int, DurableQueue, list[Any], int]]] = {}
    other: dict[int, list[tuple[int, Any, Sequence[Any]]]] = {}  # another backend's engines
    for index, (queue, payloads) in enumerate(batches):
        if hasattr(queue, "_put_each") and payloads and len(payloads) <= MAX_BATCH:
            other.setdefault(id(queue._engine), []).append((index, queue, payloads))
            continue
        if (not isinstance(queue, DurableQueue) or len(payloads) > MAX_BATCH
                or not payloads):
            try:
                out[index] = queue.put_many(payloads)
            except (OSError, ValueError, TypeError, RuntimeError) as exc:
                out[index] = exc
            continue
        if queue._closed:
            out[index] = QueueClosed(f"the queue {queue.name!r} is closed")
            continue
        try:
            items = [queue._encode(p, None) for p in payloads]
        except (ValueError, TypeError) as exc:
            out[index] = exc
            continue
        size = sum(len(p) for p, _k, _c in items) + RECORD_OVERHEAD * len(items)
        key = (id(queue._committer), id(queue._clock))
        by_file.setdefault(key, []).append((index, queue, items, size))
    for parts in by_file.values():
        first = parts[0][1]
        try:
            results = first._committer.submit("put", _put_all, parts,
                                              weight=sum(len(p[2]) for p in parts),
                                              clock=first._clock)
        except (OSError, QueueError) as exc:  # this file's transaction: none of its entries
            results = [exc] * len(parts)      # written; other files' outcomes stand
        for (index, queue, items, _size), result in zip(parts, results):
            if isinstance(result, QueueFull):
                queue.refused_full += len(items)
            out[index] = result
    for entries in other.values():  # PostgreSQL: one transaction per engine, its own way
        try:
            done = entries[0][1]._put_each(entries)
        except (OSError, QueueError) as exc:
            done = [(index, exc) for index, _q, _p in entries]
        for index, result in done:
            out[index] = result
    return out
