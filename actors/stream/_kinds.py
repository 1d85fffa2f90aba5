"""The node kinds without inputs or outputs - ``Source`` and ``Sink`` - and ready-made nodes:
``IterableSource`` (an iterable, pulled by demand) and ``LogReader`` (replays a retained output
from an offset, then follows it)."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

from ._log import StreamLog
from ._node import Node

__all__ = ["Source", "Sink", "IterableSource", "LogReader"]


class Sink(Node):
    """A node without outputs: the end of a pipeline (``process`` / ``process_batch``)."""

    outputs: tuple[str, ...] = ()


class Source(Node):
    """A node without inputs, pulled by its consumers: ``produce(demand)`` is called only when
    every backpressure output has credit, with ``demand`` = the items it may produce now (at
    most ``max_items``). Return an iterable of items for ``"out"`` (or ``emit`` them), fewer is
    fine; nothing (``None`` or empty) means "no data now": ``produce`` is called again after
    ``poll_interval`` seconds, or at once when ``StreamInstance.wake(node)`` is called. An
    external feed (a queue, an MQTT subscription, a device) therefore pauses instead of
    buffering without bound. Call ``finish()`` at the end of a finite stream."""

    inputs: tuple[str, ...] = ()
    max_items: int | None = 256
    poll_interval: float = 0.05
    pumps_per_turn: int = 8

    def produce(self, demand: int) -> Iterable[Any] | None:
        raise NotImplementedError(f"{type(self).__name__} must define produce(self, demand)")

    def finish(self) -> None:
        """No more items: each output ends once what was produced has been sent."""
        self._wiring.finish_source()

    @property
    def demand(self) -> int:
        """How many items ``produce`` may return now."""
        return self._wiring.demand()


class IterableSource(Source):
    """Produces the items of ``items``, as fast as its consumers take them, then finishes.

    Its snapshot is how many items it has produced: after a restart it continues from there
    if ``items`` can be iterated again (a list, a range), and where the iterator stands
    otherwise (a generator cannot go back)."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items
        self.position = 0

    def on_start(self) -> None:
        self._it = iter(self._items)
        self.position = 0

    def produce(self, demand: int) -> list[Any]:
        batch = list(itertools.islice(self._it, demand))
        self.position += len(batch)
        if len(batch) < demand:
            self.finish()
        return batch

    def snapshot(self) -> int:
        return self.position

    def restore(self, position: int) -> None:
        if self._it is not self._items:  # iterable again: skip what was produced already
            for _ in itertools.islice(self._it, position):
                pass
        self.position = position


class LogReader(Source):
    """Replays a retained output (``"node.port"`` of the same instance, or a ``StreamLog``) from
    ``offset`` (negative: from the end), then follows new items (``follow=False``: finishes at
    the end). Its snapshot is its offset, so a restarted reader resumes where it stood. Items
    evicted before it read them are counted in ``missed``."""

    poll_interval = 0.01

    def __init__(self, log: str | StreamLog, offset: int = 0, follow: bool = True) -> None:
        self._source = log
        self.offset = offset
        self.follow = follow
        self.missed = 0

    def on_start(self) -> None:
        src = self._source
        self._log = src if isinstance(src, StreamLog) else self.instance.log(src)
        if self.offset < 0:
            self.offset = max(self._log.first_offset, self._log.next_offset + self.offset)

    def produce(self, demand: int) -> tuple[Any, ...]:
        read = self._log.read(self.offset, demand)
        self.offset = read.next_offset
        self.missed += read.missed
        if not read.items and not self.follow:
            self.finish()
        return read.items

    def snapshot(self) -> tuple[int, int]:
        return self.offset, self.missed

    def restore(self, state: tuple[int, int]) -> None:
        self.offset, self.missed = state
