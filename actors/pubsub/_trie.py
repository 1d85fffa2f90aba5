"""Two tries over topic levels, pure data structures (the registry's lock guards them):

- ``FilterTrie`` holds subscription filters (``+`` and ``#`` are child keys of their own) and
  answers "which entries match this topic name" visiting only the branches that can match: the
  cost grows with the topic's depth and the matching filters, never with the number of stored
  filters. ``match`` returns the count of nodes it visited so that this is testable.
- ``TopicTrie`` holds retained messages by topic name and answers "which stored topics does this
  filter match" (the reverse walk, used at subscribe time).

Both follow ``actors.topics``: ``+`` matches exactly one level (an empty one too), ``#`` matches
the parent level and any number of child levels, and a filter starting with a wildcard never
matches a topic starting with ``$``. Walks are iterative (topics may have 30,000 levels).
Callers pass validated levels (``actors.topics.validate_*`` first).
"""

from __future__ import annotations

from typing import Any, Hashable, Iterator

__all__ = ["FilterTrie", "TopicTrie"]


class _Node:
    __slots__ = ("children", "entries")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.entries: dict[Hashable, Any] = {}   # insertion-ordered: delivery order is stable


def _exact(root: Any, levels: list[str]) -> Any:
    """The node at exactly ``levels`` below ``root`` (no wildcards), or None."""
    node = root
    for level in levels:
        node = node.children.get(level)
        if node is None:
            return None
    return node


def _path(root: Any, levels: list[str]) -> list[Any] | None:
    """The nodes from ``root`` down to exactly ``levels``, root first; None if absent."""
    path = [root]
    for level in levels:
        child = path[-1].children.get(level)
        if child is None:
            return None
        path.append(child)
    return path


def _prune(path: list[Any], levels: list[str], empty: Any) -> int:
    """Delete the nodes at the end of ``path`` that ``empty(node)`` says hold nothing and that
    have no children, deepest first; returns how many."""
    pruned = 0
    for depth in range(len(levels), 0, -1):
        node = path[depth]
        if node.children or not empty(node):
            break
        del path[depth - 1].children[levels[depth - 1]]
        pruned += 1
    return pruned


class FilterTrie:
    """Subscription filters by level; each filter's node holds entries by key."""

    def __init__(self) -> None:
        self._root = _Node()
        self._entries = 0
        self._nodes = 1

    def __len__(self) -> int:
        return self._entries

    @property
    def nodes(self) -> int:
        return self._nodes

    def add(self, levels: list[str], key: Hashable, entry: Any) -> None:
        """Store ``entry`` under ``key`` at the filter's node (replacing one with that key)."""
        node = self._root
        for level in levels:
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
                self._nodes += 1
            node = child
        if key not in node.entries:
            self._entries += 1
        node.entries[key] = entry

    def get(self, levels: list[str], key: Hashable) -> Any:
        node = _exact(self._root, levels)
        return None if node is None else node.entries.get(key)

    def remove(self, levels: list[str], key: Hashable) -> Any:
        """Remove and return the entry (None if absent); prunes nodes left empty."""
        path = _path(self._root, levels)
        if path is None:
            return None
        entry = path[-1].entries.pop(key, None)
        if entry is None:
            return None
        self._entries -= 1
        self._nodes -= _prune(path, levels, lambda node: not node.entries)
        return entry

    def match(self, topic: list[str]) -> tuple[list[Any], int]:
        """The entries of every filter matching the topic name ``topic``, and the number of
        nodes visited. Pure (reads only)."""
        out: list[Any] = []
        n = len(topic)
        dollar = topic[0].startswith("$")
        visited = 0
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            visited += 1
            children = node.children
            if i == n:
                if node.entries:
                    out.extend(node.entries.values())
                hash_ = children.get("#")
                if hash_ is not None:
                    visited += 1
                    out.extend(hash_.entries.values())
                continue
            if not children:
                continue
            wild = not (i == 0 and dollar)
            if wild:
                hash_ = children.get("#")
                if hash_ is not None:
                    visited += 1
                    out.extend(hash_.entries.values())
                plus = children.get("+")
                if plus is not None:
                    stack.append((plus, i + 1))
            child = children.get(topic[i])
            if child is not None:
                stack.append((child, i + 1))
        return out, visited


class _TNode:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[str, _TNode] = {}
        self.value: Any = None


class TopicTrie:
    """Values (retained messages) by topic name; ``matching(filter_levels)`` walks a filter."""

    def __init__(self) -> None:
        self._root = _TNode()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, levels: list[str]) -> Any:
        node = _exact(self._root, levels)
        return None if node is None else node.value

    def put(self, levels: list[str], value: Any) -> None:
        node = self._root
        for level in levels:
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _TNode()
            node = child
        if node.value is None:
            self._size += 1
        node.value = value

    def pop(self, levels: list[str]) -> Any:
        path = _path(self._root, levels)
        if path is None:
            return None
        value, path[-1].value = path[-1].value, None
        if value is None:
            return None
        self._size -= 1
        _prune(path, levels, lambda node: node.value is None)
        return value

    def matching(self, filter_levels: list[str]) -> Iterator[Any]:
        """Every stored value whose topic the filter matches (depth first)."""
        n = len(filter_levels)
        stack: list[tuple[_TNode, int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                if node.value is not None:
                    yield node.value
                continue
            level = filter_levels[i]
            if level == "#":
                if node.value is not None and i > 0:
                    yield node.value           # '#' matches the parent level too
                yield from self._subtree(node, skip_dollar=i == 0)
            elif level == "+":
                for key, child in reversed(node.children.items()):
                    if not (i == 0 and key.startswith("$")):
                        stack.append((child, i + 1))
            else:
                found = node.children.get(level)
                if found is not None:
                    stack.append((found, i + 1))

    @staticmethod
    def _subtree(top: _TNode, skip_dollar: bool) -> Iterator[Any]:
        stack = [child for key, child in reversed(top.children.items())
                 if not (skip_dollar and key.startswith("$"))]
        while stack:
            node = stack.pop()
            if node.value is not None:
                yield node.value
            stack.extend(reversed(node.children.values()))
