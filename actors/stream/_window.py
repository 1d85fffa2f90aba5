"""Event-time windows: the ``Window`` node, its windowers and ``WindowJoin``.

    g.add("minute", Window,
          key=lambda r: r["device"],     # windows and watermarks per key (None: one key for all)
          time=lambda r: r["ts"],        # event time, float seconds (None: arrival, runtime clock)
          windows=Tumbling(60.0),        # Tumbling(size, offset) | Sliding(size, step, offset)
                                         # | Session(gap)
          lateness=5.0,                  # event-time seconds a window stays open after its end
          idle=30.0,                     # runtime-clock seconds of silence closing a key's windows
          init=lambda: (0.0, 0),         # acc = init(); acc = fold(acc, item); value = result(acc)
          fold=lambda acc, r: (acc[0] + r["temp"], acc[1] + 1),
          result=lambda acc: acc[0] / acc[1])

Rules (the contract; ``README.md`` in this package tells the same in prose):

- Port ``"out"``: one ``WindowResult(key, start, end, value, count)`` per closed window; for one
  key in order of ``end`` (then ``start``). Without ``fold``, ``value`` is the list of the
  window's items in arrival order (merged sessions: the earlier session's items first).
- Watermark of a key: the largest event time seen for it minus ``lateness``
  (``watermark="global"``: the largest over all keys, applied to every key). A window closes
  when ``end <= watermark``, when its key has had no item for ``idle`` seconds of runtime
  clock, at the end of the stream (every open window, in order), or early when ``max_open``
  windows are open (the one with the smallest end; counted as ``evicted``).
- An item is *late* when every window it belongs to has closed for its key: its window's end is
  ``<=`` the watermark or ``<=`` the end of a window of its key that has already closed
  (Session: ``t + gap <= watermark`` or ``t <`` the end of a closed session). Late items go to
  port ``"late"``, counted, never folded.
- An item whose key or time function raises, whose time is not a finite number, or that
  ``init``/``fold`` raise on goes to port ``"errors"`` as ``BadItem(item, reason)``, counted; the
  node keeps going. (A ``result`` that raises sends ``BadItem((key, start, end), reason)``.)
- ``time=None``: the item's time is its arrival on the runtime clock; a window closes at
  ``end + lateness`` on that clock (a timer), so no item is ever late.
- ``Session(gap)``: per key, items closer than ``gap`` to a neighbour share a window
  ``[first ts, last ts + gap)``; an item can merge two sessions: ``merge(acc_a, acc_b)`` (needed
  with ``fold``; the list of items is concatenated without it).
- State: ``snapshot()``/``restore()`` carry the open windows and watermarks across restarts (a
  plain structure of lists, tuples and numbers: encodable by ``actors.codec`` when keys and
  accumulators are). Every key seen keeps a small record (its watermark), also after its windows
  closed, so that its late items stay late.
"""

from __future__ import annotations

import copy as _copy
import heapq
import math
from typing import Any, Callable, NamedTuple

from .._checks import check_number
from ._node import Node

__all__ = ["Window", "WindowJoin", "Tumbling", "Sliding", "Session", "WindowResult", "BadItem"]

_INF = math.inf


class WindowResult(NamedTuple):
    """One closed window: its key, ``[start, end)``, the aggregate and how many items."""

    key: Any
    start: float
    end: float
    value: Any
    count: int  # type: ignore[assignment]  # the item count; it hides tuple.count on purpose


class BadItem(NamedTuple):
    """An item a ``Window`` node could not place (port ``"errors"``), and why."""

    item: Any
    reason: str


def _number(what: str, value: Any, *, positive: bool = True) -> float:
    if positive:
        return float(check_number(value, what, positive=True, unit="seconds"))
    return float(check_number(value, what, low=0, unit="seconds"))


def _finite(what: str, value: Any) -> float:
    return float(check_number(value, what, unit="seconds"))


class Tumbling:
    """Windows ``[offset + k*size, offset + (k+1)*size)``: each item in exactly one."""

    __slots__ = ("size", "offset")

    def __init__(self, size: float, offset: float = 0.0) -> None:
        self.size = _number("Tumbling(size)", size)
        self.offset = _finite("Tumbling(offset)", offset)

    def __repr__(self) -> str:
        return f"Tumbling({self.size}, offset={self.offset})"


class Sliding:
    """Every ``[offset + k*step, offset + k*step + size)`` containing the item (``step <= size``;
    ``step == size`` is ``Tumbling``)."""

    __slots__ = ("size", "step", "offset")

    def __init__(self, size: float, step: float, offset: float = 0.0) -> None:
        self.size = _number("Sliding(size)", size)
        self.step = _number("Sliding(step)", step)
        if self.step > self.size:
            raise ValueError(f"Sliding(step) must be <= size (a step longer than the window "
                             f"would skip items), got size={size!r}, step={step!r}")
        self.offset = _finite("Sliding(offset)", offset)

    def __repr__(self) -> str:
        return f"Sliding({self.size}, {self.step}, offset={self.offset})"


class Session:
    """Per key, items closer than ``gap`` to a neighbour share a window
    ``[first ts, last ts + gap)``."""

    __slots__ = ("gap",)

    def __init__(self, gap: float) -> None:
        self.gap = _number("Session(gap)", gap)

    def __repr__(self) -> str:
        return f"Session({self.gap})"


def _append(acc: list[Any], item: Any) -> list[Any]:
    acc.append(item)
    return acc


def _concat(a: list[Any], b: list[Any]) -> list[Any]:
    a.extend(b)
    return a


_IMMUTABLE = (int, float, str, bytes, bool, type(None))


def _frozen(fold: Any) -> Callable[[Any], Any]:
    """A copy of an accumulator that later folds cannot change (the snapshot's base)."""
    if fold is _append:
        return list

    def copy(acc: Any) -> Any:
        if isinstance(acc, _IMMUTABLE) or (type(acc) is tuple
                                           and all(isinstance(x, _IMMUTABLE) for x in acc)):
            return acc
        if type(acc) is list and all(isinstance(x, _IMMUTABLE) for x in acc):
            return list(acc)
        return _copy.deepcopy(acc)
    return copy


class _Due:
    """Timer message: processing-time windows are due (``time=None``)."""

    __slots__ = ()


class _Idle:
    """Timer message: look for keys silent for ``idle`` seconds."""

    __slots__ = ()


_DUE = _Due()
_IDLE = _Idle()


class _Key:
    """What a Window node knows about one key: its largest event time, the end of its last
    closed window, when it last had an item (runtime clock), its open windows
    ``start -> [end, acc, count]`` (sessions: ``[end, acc, count, last]``) and the smallest
    end among them."""

    __slots__ = ("top", "closed", "seen", "wins", "next_end", "cur", "cw")

    def __init__(self, seen: float) -> None:
        self.top = -_INF
        self.closed = -_INF
        self.seen = seen
        self.wins: dict[float, list[Any]] = {}
        self.next_end = _INF
        self.cur = _INF     # Tumbling: the start of the window last opened ...
        self.cw: Any = None  # ... and that window, while it is open


class _Config(NamedTuple):
    key: Callable[[Any], Any] | None
    time: Callable[[Any], Any] | None
    windows: Any
    lateness: float
    idle: float | None
    init: Callable[[], Any]
    fold: Callable[[Any, Any], Any]
    result: Callable[[Any], Any] | None
    merge: Callable[[Any, Any], Any] | None
    max_open: int
    global_wm: bool


def _callable(what: str, fn: Any) -> None:
    if fn is not None and not callable(fn):
        raise ValueError(f"{what} must be a function, got {fn!r}")


def _parse(key: Any = None, time: Any = None, windows: Any = None, lateness: Any = 0.0,
           idle: Any = None, init: Any = None, fold: Any = None, result: Any = None,
           merge: Any = None, max_open: Any = 100_000, watermark: Any = "key") -> _Config:
    if not isinstance(windows, (Tumbling, Sliding, Session)):
        raise ValueError(f"windows= must be Tumbling(size), Sliding(size, step) or "
                         f"Session(gap), got {windows!r}")
    for what, fn in (("key", key), ("time", time), ("init", init), ("fold", fold),
                     ("result", result), ("merge", merge)):
        _callable(what, fn)
    late = _number("lateness", lateness, positive=False)
    if idle is not None:
        idle = _number("idle", idle)
    if fold is not None and init is None:
        raise ValueError("fold= needs init= (the empty accumulator: acc = init())")
    if init is not None and fold is None:
        raise ValueError("init= needs fold= (acc = fold(acc, item))")
    if merge is not None and not isinstance(windows, Session):
        raise ValueError(f"merge= is for Session windows (merging sessions), not {windows!r}")
    if isinstance(windows, Session) and fold is not None and merge is None:
        raise ValueError("Session windows with fold= need merge=(acc_a, acc_b) -> acc: a new "
                         "item can join two sessions into one")
    check_number(max_open, "max_open", integer=True, positive=True)
    if watermark not in ("key", "global"):
        raise ValueError(f"watermark= must be 'key' (per key) or 'global' (one for all keys), "
                         f"got {watermark!r}")
    if fold is None:
        init, fold, merge = list, _append, _concat
    return _Config(key, time, windows, late, idle, init, fold, result, merge, max_open,
                   watermark == "global" or time is None)


class Window(Node):
    """Event-time (or processing-time) windows per key; see the module docstring."""

    inputs: tuple[str, ...] = ("in",)
    outputs: tuple[str, ...] = ("out", "late", "errors")

    def __init__(self, *, key: Callable[[Any], Any] | None = None,
                 time: Callable[[Any], Any] | None = None, windows: Any = None,
                 lateness: float = 0.0, idle: float | None = None,
                 init: Callable[[], Any] | None = None,
                 fold: Callable[[Any, Any], Any] | None = None,
                 result: Callable[[Any], Any] | None = None,
                 merge: Callable[[Any, Any], Any] | None = None,
                 max_open: int = 100_000, watermark: str = "key") -> None:
        self._cfg = _parse(key, time, windows, lateness, idle, init, fold, result, merge,
                           max_open, watermark)
        self._freeze = _frozen(self._cfg.fold)

    @classmethod
    def check_arguments(cls, *args: Any, **kwargs: Any) -> None:
        if args:
            raise ValueError(f"{cls.__name__} takes keyword arguments only, got {args!r}")
        try:
            _parse(**kwargs)
        except TypeError as e:  # an unknown keyword
            raise ValueError(f"{cls.__name__}: {e}") from None

    # -- life cycle ------------------------------------------------------------------------------
    def on_start(self) -> None:
        cfg = self._cfg
        self._keys: dict[Any, _Key] = {}
        self._heap: list[tuple[float, float, int, Any]] = []  # (end, start, seq, key), lazy
        self._seq = 0
        self._open = 0
        self._gtop = -_INF          # largest event time over all keys
        self._due_at = _INF         # time=None: when the armed timer fires
        self._idle_armed = False
        self._base: Any = None     # snapshot: the state at some point ...
        self._journal: list[Any] = []  # ... and what was handled since
        self._jn = 0
        self._replaying = False
        self._ended = False
        w = cfg.windows
        self._session = isinstance(w, Session)
        if isinstance(w, Tumbling):
            self._size, self._step, self._offset = w.size, w.size, w.offset
        elif isinstance(w, Sliding):
            self._size, self._step, self._offset = w.size, w.step, w.offset
        else:
            self._size = self._step = w.gap
            self._offset = 0.0
        self.counters.open_windows = 0

    def snapshot(self) -> Any:
        """The open windows as a base (rebuilt once the journal outgrows it, so that the cost
        per item stays constant) plus the journal of what the node handled since: batches of
        items with their arrival time, timer closings and the end."""
        if self._base is None or self._jn > 16 * (self._open + len(self._keys)) + 4096:
            keys = []
            frozen = self._freeze
            for k, st in self._keys.items():
                keys.append([k, st.top, st.closed, st.seen,
                             [[start, w[0], frozen(w[1]), *w[2:]] for start, w in st.wins.items()]])
            self._base = {"gtop": self._gtop, "ended": self._ended, "keys": keys}
            self._journal = []
            self._jn = 0
        # the journal only grows until the next base (a new list): its first n entries, as
        # the snapshot names them, never change - no copy needed
        return {"v": 1, "base": self._base, "journal": self._journal, "n": len(self._journal)}

    def restore(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("v") != 1:
            raise ValueError(f"{self.node_name}: not a Window snapshot: {state!r:.200}")
        base = state["base"]
        now = self.now
        self._gtop = base["gtop"]
        self._ended = base["ended"]
        for k, top, closed, seen, wins in base["keys"]:
            st = _Key(min(seen, now))  # (another process's clock may be ahead of this one)
            st.top, st.closed = top, closed
            for start, *w in wins:
                st.wins[start] = list(w)
                if w[0] < st.next_end:
                    st.next_end = w[0]
                self._push(w[0], start, k)
            self._open += len(wins)
            self._keys[k] = st
        self._replaying = True
        try:
            for entry in state["journal"][:state["n"]]:
                what = entry[0]
                if what == "i":
                    self._fold_batch(entry[3], entry[1], entry[2])
                elif what == "due":
                    self._close_global(entry[1] - self._cfg.lateness)
                elif what == "idle":
                    self._close_idle(entry[1])
                elif what == "end":
                    self.on_end()
        finally:
            self._replaying = False
        self._base = None  # the next snapshot starts from this state
        self._journal = []
        self._jn = 0
        self._after()

    def on_end(self) -> None:
        self._journal.append(("end",))
        self._ended = True
        live: list[tuple[Any, float, int, Any]] = []
        for k, st in self._keys.items():
            for start, w in st.wins.items():
                live.append((w[0], start, len(live), k))
        live.sort()
        for _end, start, _, k in live:
            st = self._keys[k]
            self._close(k, st, start, st.wins.pop(start))
        for st in self._keys.values():
            st.next_end = _INF
        self._heap.clear()
        self._after()

    def on_message(self, message: Any) -> Any:
        if message is _DUE or message.__class__ is _Due:
            self._due_at = _INF
            now = self.now
            self._journal.append(("due", now))
            self._close_global(now - self._cfg.lateness)
            self._after()
            return None
        if message is _IDLE or message.__class__ is _Idle:
            self._idle_armed = False
            now = self.now
            self._journal.append(("idle", now))
            self._close_idle(now)
            self._after()
            return None
        return super().on_message(message)

    # -- items -----------------------------------------------------------------------------------
    def process_batch(self, items: Any, port: str) -> None:
        now = self.now
        self._fold_batch(items, port, now)
        self._journal.append(("i", port, now, items))
        self._jn += len(items)
        self._after()

    def process(self, item: Any, port: str) -> None:
        self.process_batch((item,), port)

    def _fold(self, port: str) -> Callable[[Any, Any], Any]:
        return self._cfg.fold

    def _fold_batch(self, items: Any, port: str, now: float) -> None:
        cfg = self._cfg
        if self._ended:
            raise RuntimeError(f"{self.node_name}: an item after the end of the stream")
        fold = self._fold(port)
        if cfg.time is None:
            self._close_global(now - cfg.lateness)
        if self._session:
            self._sessions(items, fold, now)
        elif (cfg.windows.__class__ is Tumbling and not cfg.global_wm and cfg.key is not None
              and cfg.time is not None):
            self._tumbling_keyed(items, fold, now)
        else:
            self._generic(items, fold, now)

    def _bad(self, item: Any, reason: str) -> None:
        if self._replaying:
            return
        self.counters.errors += 1
        self.emit(BadItem(item, reason), port="errors")

    def _late(self, item: Any) -> None:
        if self._replaying:
            return
        self.counters.late += 1
        self.emit(item, port="late")

    def _tumbling_keyed(self, items: Any, fold: Callable[[Any, Any], Any], now: float) -> None:
        """The common case, kept tight: Tumbling, per-key watermarks, event time, a key."""
        cfg = self._cfg
        keyf, timef, init = cfg.key, cfg.time, cfg.init
        size, offset, lateness = self._size, self._offset, cfg.lateness
        keys = self._keys
        track = cfg.idle is not None
        for item in items:
            try:
                k = keyf(item)  # type: ignore[misc]  # a callable stored as an attribute
            except Exception as e:
                self._bad(item, f"key raised {type(e).__name__}: {e}")
                continue
            try:
                t = timef(item)  # type: ignore[misc]  # a callable stored as an attribute
            except Exception as e:
                self._bad(item, f"time raised {type(e).__name__}: {e}")
                continue
            try:
                start = offset + ((t - offset) // size) * size
                if start - start != 0.0:
                    raise ValueError
            except Exception:
                self._bad(item, f"time is not a finite number: {t!r}")
                continue
            try:
                st = keys[k]
            except KeyError:
                st = keys[k] = _Key(now)
            except TypeError as e:
                self._bad(item, f"key is not hashable: {e}")
                continue
            if track:
                st.seen = now
            if t > st.top:
                st.top = t
                if t - lateness >= st.next_end:
                    self._close_key(k, st, t - lateness)
            if start == st.cur:
                w = st.cw
            else:
                w = st.wins.get(start)
            if w is None:
                end = start + size
                if end <= st.top - lateness or end <= st.closed:
                    self._late(item)
                    continue
                try:
                    acc = fold(init(), item)
                except Exception as e:
                    self._bad(item, f"init/fold raised {type(e).__name__}: {e}")
                    continue
                st.wins[start] = st.cw = [end, acc, 1]
                st.cur = start
                if end < st.next_end:
                    st.next_end = end
                self._opened(end, start, k)
            else:
                try:
                    w[1] = fold(w[1], item)
                except Exception as e:
                    self._bad(item, f"fold raised {type(e).__name__}: {e}")
                    continue
                w[2] += 1

    def _stamp(self, item: Any, now: float) -> tuple[Any, Any] | None:
        """(key, time) of an item, or None after sending it to "errors"."""
        cfg = self._cfg
        if cfg.key is None:
            k = None
        else:
            try:
                k = cfg.key(item)
                hash(k)
            except Exception as e:
                self._bad(item, f"key raised {type(e).__name__}: {e}")
                return None
        if cfg.time is None:
            return k, now
        try:
            t = cfg.time(item)
        except Exception as e:
            self._bad(item, f"time raised {type(e).__name__}: {e}")
            return None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            self._bad(item, f"time is not a finite number: {t!r}")
            return None
        return k, float(t)

    def _observe(self, k: Any, t: float, now: float) -> tuple[_Key, float]:
        """Note an item of key ``k`` at ``t``: advance the watermark (closing what it passes);
        return the key's record and its watermark."""
        cfg = self._cfg
        st = self._keys.get(k)
        if st is None:
            st = self._keys[k] = _Key(now)
        st.seen = now
        if cfg.global_wm:
            if t > self._gtop:
                self._gtop = t
                if cfg.time is not None:
                    self._close_global(t - cfg.lateness)
            if t > st.top:
                st.top = t
            return st, self._gtop - cfg.lateness
        if t > st.top:
            st.top = t
            if t - cfg.lateness >= st.next_end:
                self._close_key(k, st, t - cfg.lateness)
        return st, st.top - cfg.lateness

    def _generic(self, items: Any, fold: Callable[[Any, Any], Any], now: float) -> None:
        """Tumbling or Sliding, any watermark, event or processing time."""
        cfg = self._cfg
        size, step, offset, init = self._size, self._step, self._offset, cfg.init
        for item in items:
            kt = self._stamp(item, now)
            if kt is None:
                continue
            k, t = kt
            st, wm = self._observe(k, t, now)
            limit = max(wm, st.closed)
            j = (t - offset) // step        # the latest window starting at or before t
            starts = []
            s = offset + j * step           # (each start computed the same way, never by
            while s + size > t:             # repeated subtraction: equal floats for equal j)
                if s + size > limit:
                    starts.append(s)
                j -= 1
                s = offset + j * step
            if not starts:
                self._late(item)
                continue
            try:
                for s in reversed(starts):  # oldest window first
                    w = st.wins.get(s)
                    if w is None:
                        end = s + size
                        st.wins[s] = [end, fold(init(), item), 1]
                        if end < st.next_end:
                            st.next_end = end
                        self._opened(end, s, k)
                    else:
                        w[1] = fold(w[1], item)
                        w[2] += 1
            except Exception as e:
                self._bad(item, f"init/fold raised {type(e).__name__}: {e}")

    def _sessions(self, items: Any, fold: Callable[[Any, Any], Any], now: float) -> None:
        cfg = self._cfg
        gap, init, merge = self._size, cfg.init, cfg.merge
        for item in items:
            kt = self._stamp(item, now)
            if kt is None:
                continue
            k, t = kt
            st, wm = self._observe(k, t, now)
            if t + gap <= wm or t < st.closed:
                self._late(item)
                continue
            wins = st.wins
            touching = sorted(s for s, w in wins.items() if s - gap < t < w[3] + gap)
            try:
                if not touching:
                    start, acc, count, last = t, fold(init(), item), 1, t
                else:
                    first = wins[touching[0]]
                    start, acc, count, last = touching[0], first[1], first[2], first[3]
                    for s in touching[1:]:
                        w = wins[s]
                        acc = merge(acc, w[1])  # type: ignore[misc]  # a callable stored as an attribute
                        count += w[2]
                        last = max(last, w[3])
                    acc = fold(acc, item)
                    count += 1
                    start, last = min(start, t), max(last, t)
            except Exception as e:
                self._bad(item, f"init/fold/merge raised {type(e).__name__}: {e}")
                continue
            for s in touching:
                del wins[s]
            self._open -= len(touching)
            end = last + gap
            wins[start] = [end, acc, count, last]
            st.next_end = min(w[0] for w in wins.values())
            self._opened(end, start, k)

    # -- closing ---------------------------------------------------------------------------------
    def _push(self, end: float, start: float, k: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (end, start, self._seq, k))

    def _opened(self, end: float, start: float, k: Any) -> None:
        self._open += 1
        self._push(end, start, k)
        if self._open > self._cfg.max_open:
            self._evict()
        elif len(self._heap) > 2 * self._open + 1024:
            self._compact()

    def _compact(self) -> None:
        heap = []
        for k, st in self._keys.items():
            for start, w in st.wins.items():
                self._seq += 1
                heap.append((w[0], start, self._seq, k))
        heapq.heapify(heap)
        self._heap = heap

    def _valid(self, entry: tuple[float, float, int, Any]) -> tuple[_Key, list[Any]] | None:
        end, start, _, k = entry
        st = self._keys.get(k)
        if st is None:
            return None
        w = st.wins.get(start)
        if w is None or w[0] != end:
            return None
        return st, w

    def _evict(self) -> None:
        heap = self._heap
        while self._open > self._cfg.max_open and heap:
            entry = heapq.heappop(heap)
            found = self._valid(entry)
            if found is None:
                continue
            st, w = found
            end, start, _, k = entry
            del st.wins[start]
            if not self._replaying:
                self.counters.evicted += 1
            self._close(k, st, start, w)
            st.next_end = min((x[0] for x in st.wins.values()), default=_INF)

    def _close(self, k: Any, st: _Key, start: float, w: list[Any]) -> None:
        """Emit a window already taken out of ``st.wins``."""
        if st.cur == start:
            st.cur, st.cw = _INF, None
        self._open -= 1
        end = w[0]
        if end > st.closed:
            st.closed = end
        if not self._replaying:
            self._finish(k, start, end, w[1], w[2])

    def _finish(self, k: Any, start: float, end: float, acc: Any, count: int) -> None:
        result = self._cfg.result
        if result is None:
            self.emit(WindowResult(k, start, end, acc, count))
            return
        try:
            value = result(acc)
        except Exception as e:
            self._bad((k, start, end), f"result raised {type(e).__name__}: {e}")
            return
        self.emit(WindowResult(k, start, end, value, count))

    def _close_key(self, k: Any, st: _Key, wm: float) -> None:
        """Close the windows of one key whose end is <= ``wm``, in order of (end, start)."""
        wins = st.wins
        due = sorted((w[0], s) for s, w in wins.items() if w[0] <= wm)
        for _end, s in due:
            self._close(k, st, s, wins.pop(s))
        st.next_end = min((w[0] for w in wins.values()), default=_INF)

    def _close_global(self, wm: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= wm:
            entry = heapq.heappop(heap)
            found = self._valid(entry)
            if found is None:
                continue
            st, w = found
            end, start, _, k = entry
            del st.wins[start]
            self._close(k, st, start, w)
            st.next_end = min((x[0] for x in st.wins.values()), default=_INF)

    def _close_idle(self, now: float) -> None:
        idle = self._cfg.idle
        if idle is None:
            return
        for k, st in self._keys.items():
            if st.wins and now - st.seen >= idle:
                self._close_key(k, st, _INF)

    def _after(self) -> None:
        """After a handler: publish the gauge, arm the timers that are needed."""
        self.counters.open_windows = self._open
        if not self._replaying:
            self._arm()

    def _arm(self) -> None:
        cfg = self._cfg
        if self._ended or not self._open:
            return
        if cfg.time is None:
            heap = self._heap
            while heap and self._valid(heap[0]) is None:
                heapq.heappop(heap)
            if heap:
                due = heap[0][0] + cfg.lateness
                if due != self._due_at:
                    self._due_at = due
                    self.send_after(max(0.0, due - self.now), _DUE, key="sv-window-due")
        if cfg.idle is not None and not self._idle_armed:
            now = self.now
            first = min((st.seen for st in self._keys.values() if st.wins), default=None)
            if first is not None:
                self._idle_armed = True
                self.send_after(max(0.0, first + cfg.idle - now), _IDLE, key="sv-window-idle")


class WindowJoin(Window):
    """Two inputs, ``"left"`` and ``"right"``, joined per key within the same window (for
    example the temperature and the humidity readings of one device per minute).

    ``key``/``time``/``windows``/``lateness``/``idle``/``max_open``/``watermark`` are those of
    ``Window``, applied to the items of both inputs (one watermark per key over both sides);
    ``init``/``fold``/``result`` aggregate each side on its own (default: the list of its
    items), ``merge`` merges one side's accumulators (Session).

    A window that closes with items on both sides emits
    ``WindowResult(key, start, end, (left_value, right_value), count)`` on ``"out"``
    (``count`` = items of both sides). **A side that never arrives**: a window that closes with
    items on one side only - by its watermark, by ``idle``, at ``max_open`` or at the end of
    the stream - emits the same ``WindowResult`` with ``None`` for the missing side on port
    ``"unmatched"`` instead, never on ``"out"``; nothing waits for it beyond the window's close.
    """

    inputs: tuple[str, ...] = ("left", "right")
    outputs: tuple[str, ...] = ("out", "unmatched", "late", "errors")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        cfg = self._cfg
        init, fold, merge = cfg.init, cfg.fold, cfg.merge

        def init2() -> list[Any]:
            return [None, None, 0, 0]

        def side(i: int) -> Callable[[Any, Any], Any]:
            def fold2(acc: list[Any], item: Any) -> list[Any]:
                if acc[2 + i] == 0:
                    acc[i] = fold(init(), item)
                else:
                    acc[i] = fold(acc[i], item)
                acc[2 + i] += 1
                return acc
            return fold2

        def merge2(a: list[Any], b: list[Any]) -> list[Any]:
            for i in (0, 1):
                if b[2 + i]:
                    a[i] = b[i] if not a[2 + i] else merge(a[i], b[i])  # type: ignore[misc]  # a callable stored as an attribute
                    a[2 + i] += b[2 + i]
            return a

        inner = self._freeze
        self._freeze = lambda acc: [None if acc[2] == 0 else inner(acc[0]),
                                    None if acc[3] == 0 else inner(acc[1]), acc[2], acc[3]]
        self._side_result = cfg.result
        self._folds = {"left": side(0), "right": side(1)}
        self._cfg = cfg._replace(init=init2, fold=side(0), merge=merge2, result=None)

    def _fold(self, port: str) -> Callable[[Any, Any], Any]:
        return self._folds[port]

    def _finish(self, k: Any, start: float, end: float, acc: Any, count: int) -> None:
        result = self._side_result
        values: list[Any] = []
        for i in (0, 1):
            if not acc[2 + i]:
                values.append(None)
                continue
            if result is None:
                values.append(acc[i])
                continue
            try:
                values.append(result(acc[i]))
            except Exception as e:
                self._bad((k, start, end), f"result raised {type(e).__name__}: {e}")
                return
        port = "out" if acc[2] and acc[3] else "unmatched"
        self.emit(WindowResult(k, start, end, tuple(values), count), port=port)
