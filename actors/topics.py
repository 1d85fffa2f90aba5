"""MQTT 3.1.1 / 5.0 topic names, topic filters and filter matching (pure functions, no state).

===================  ==============================================================================
Rule                 Meaning
===================  ==============================================================================
levels               the string split on ``/``; empty levels are real (``a//b`` has 3, ``/a`` has 2)
``+``                occupies a whole level; matches exactly one level, an empty one included
``#``                occupies a whole level and is the last one; matches the parent level and any
                     number of child levels (``sport/#`` matches ``sport`` and ``sport/a/b``)
``$`` topics         a filter starting with ``+`` or ``#`` never matches a topic starting with ``$``
                     (``#`` does not match ``$SYS/x``; ``$SYS/#`` does)        [MQTT-4.7.2-1]
topic names          contain no ``+`` and no ``#`` at all                       [MQTT-4.7.1-1]
names and filters    at least 1 character, no U+0000, well-formed UTF-8 (no lone surrogates),
                     at most 65,535 bytes in UTF-8            [MQTT-4.7.3-1..3, MQTT-1.5.3-1]
``$share/G/F``       a shared subscription; matches exactly like ``F``. ``G`` is non-empty and has
                     no ``/``, ``+`` or ``#``; ``F`` is a valid filter, and a ``$share/...`` inside
                     ``F`` is an ordinary filter                          [MQTT-4.8.2-1/2, v5]
invalid input        never matches; ``matches`` and ``is_valid_*`` never raise, even for non-str
===================  ==============================================================================

Levels are compared exactly: case-sensitive, spaces significant. No regular expressions are used;
``matches`` is on the routing hot path and compares level by level over ``str.split("/")``, with a
plain string comparison when the filter has no wildcard. Every function here is pure: it never
blocks and is safe to call from any thread.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "is_valid_filter",
    "is_valid_topic",
    "levels",
    "matches",
    "split_shared",
    "validate_filter",
    "validate_topic",
]

_MAX_BYTES: Final = 65_535
_SHARE: Final = "$share/"
_SHARE_LEN: Final = len(_SHARE)
_NO_WILDCARDS: Final = "wildcards '+' and '#' are not allowed in topic names"


def matches(filter: object, topic: object) -> bool:
    """True if the topic filter ``filter`` matches the topic name ``topic`` (rules: module table).

    An invalid filter or topic name, or a non-str argument, gives False. Never raises; pure.
    """
    if type(filter) is str and type(topic) is str:
        f, t = filter, topic
    else:
        maybe_f, maybe_t = _as_str(filter), _as_str(topic)
        if maybe_f is None or maybe_t is None:
            return False
        f, t = maybe_f, maybe_t
    if not t or "+" in t or "#" in t or "\x00" in t:
        return False
    if not (t.isascii() and len(t) <= _MAX_BYTES or _fits(t)):
        return False
    if f.startswith(_SHARE):
        # Check the share name here; the inner filter is checked by the matching below.
        slash = f.find("/", _SHARE_LEN)
        if slash <= _SHARE_LEN or slash == len(f) - 1 or not _fits(f):
            return False
        for bad in "+#\x00":
            if f.find(bad, _SHARE_LEN, slash) >= 0:
                return False
        f = f[slash + 1 :]
    if "+" not in f and "#" not in f:
        return f == t  # equal to a valid topic name, so itself valid
    if t[0] == "$" and f[0] in "+#":
        return False
    filter_levels = f.split("/")
    topic_levels = t.split("/")
    depth = len(filter_levels)
    if filter_levels[-1] == "#":  # matches the parent level too: compare one level less
        depth -= 1
        if len(topic_levels) < depth:
            return False
    elif depth != len(topic_levels):
        return False
    for i in range(depth):
        level = filter_levels[i]
        # A topic level has no wildcard, so a literal equal to it is valid, and a misplaced '#'
        # or a '+' inside a level never equals it: invalid filters fall out as mismatches.
        if level != "+" and level != topic_levels[i]:
            return False
    return f.isascii() and len(f) <= _MAX_BYTES or _fits(f)


def is_valid_filter(filter: object) -> bool:
    """True if ``filter`` is a valid SUBSCRIBE filter (``$share/...`` included). Never raises."""
    f = _as_str(filter)
    return f is not None and _filter_problem(f) is None


def is_valid_topic(topic: object) -> bool:
    """True if ``topic`` is a valid PUBLISH topic name (no wildcards). Never raises."""
    t = _as_str(topic)
    return t is not None and _topic_problem(t) is None


def validate_filter(filter: str) -> None:
    """Check a topic filter; pure.

    Raises ``ValueError`` naming the problem (e.g. ``topic filter 'a/#/b': '#' must be the last
    level``), ``TypeError`` if ``filter`` is not a str.
    """
    f = _require_str(filter, "topic filter")
    problem = _filter_problem(f)
    if problem is not None:
        raise ValueError(f"topic filter {_show(f)}: {problem}")


def validate_topic(topic: str) -> None:
    """Check a topic name; pure.

    Raises ``ValueError`` naming the problem (e.g. ``topic name 'a/+': wildcards ...``),
    ``TypeError`` if ``topic`` is not a str.
    """
    t = _require_str(topic, "topic name")
    problem = _topic_problem(t)
    if problem is not None:
        raise ValueError(f"topic name {_show(t)}: {problem}")


def split_shared(filter: str) -> tuple[str | None, str]:
    """Split ``$share/<group>/<filter>`` into ``(group, filter)``; others give ``(None, filter)``.

    The inner filter of a shared subscription is returned as is, so a nested ``$share/...`` in it
    stays an ordinary filter. Pure. Raises ``ValueError`` naming the problem if the filter is
    invalid (shared or not), ``TypeError`` if it is not a str.
    """
    f = _require_str(filter, "topic filter")
    validate_filter(f)
    if not f.startswith(_SHARE):
        return None, f
    slash = f.index("/", _SHARE_LEN)
    return f[_SHARE_LEN:slash], f[slash + 1 :]


def levels(topic: str) -> list[str]:
    """The levels of a topic name or filter: ``"/a//b"`` gives ``["", "a", "", "b"]``.

    Does not validate (call ``validate_topic`` or ``validate_filter`` first) and does not strip a
    ``$share/<group>/`` prefix (use ``split_shared``). Pure. Raises ``TypeError`` for a non-str.
    """
    return str.split(topic, "/")


# -- internals ---------------------------------------------------------------------------------


def _as_str(value: object) -> str | None:
    """``value`` as an exact ``str`` (a str subclass is copied), or None if it is not a string."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    return None


def _require_str(value: object, what: str) -> str:
    s = _as_str(value)
    if s is None:
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return s


def _fits(s: str) -> bool:
    """True if ``s`` is well-formed UTF-8 (no lone surrogates) of at most 65,535 bytes."""
    if s.isascii():
        return len(s) <= _MAX_BYTES
    if len(s) > _MAX_BYTES:
        return False
    try:
        return len(s.encode("utf-8")) <= _MAX_BYTES
    except UnicodeEncodeError:
        return False


def _string_problem(s: str) -> str | None:
    """What makes ``s`` unusable as an MQTT topic string of either kind, or None."""
    if not s:
        return "must be at least one character"
    if "\x00" in s:
        return "must not contain U+0000 (NUL)"
    if not _fits(s):
        try:
            size = len(s.encode("utf-8"))
        except UnicodeEncodeError:
            return "must be well-formed UTF-8 (contains a lone surrogate)"
        return f"is {size:,} bytes in UTF-8, more than the {_MAX_BYTES:,} allowed"
    return None


def _topic_problem(t: str) -> str | None:
    problem = _string_problem(t)
    if problem is None and ("+" in t or "#" in t):
        problem = _NO_WILDCARDS
    return problem


def _filter_problem(f: str) -> str | None:
    problem = _string_problem(f)
    if problem is not None:
        return problem
    if not f.startswith(_SHARE):
        return _levels_problem(f)
    slash = f.find("/", _SHARE_LEN)
    group = f[_SHARE_LEN:] if slash < 0 else f[_SHARE_LEN:slash]
    if not group:
        return "the share name after '$share/' must not be empty"
    if "+" in group or "#" in group:
        return f"the share name {_show(group)} must not contain '+' or '#'"
    if slash < 0 or slash == len(f) - 1:
        return f"the share name {_show(group)} must be followed by '/' and a non-empty filter"
    inner = f[slash + 1 :]
    problem = _levels_problem(inner)
    return None if problem is None else f"in the shared filter {_show(inner)}: {problem}"


def _levels_problem(f: str) -> str | None:
    """What is wrong with the wildcards of a non-empty, non-shared filter, or None."""
    if "+" not in f and "#" not in f:
        return None
    parts = f.split("/")
    last = len(parts) - 1
    for i, level in enumerate(parts):
        if level == "+":
            continue
        if level == "#":
            if i != last:
                return "'#' must be the last level"
        elif "#" in level:
            return f"'#' must occupy an entire level, not be part of {_show(level)}"
        elif "+" in level:
            return f"'+' must occupy an entire level, not be part of {_show(level)}"
    return None


def _show(s: str) -> str:
    """``repr`` of ``s`` for an error message, shortened when long."""
    if len(s) <= 80:
        return repr(s)
    return f"{s[:40]!r}... ({len(s):,} characters)"
