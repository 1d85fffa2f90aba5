"""One checker for numeric arguments, so that every bad number gets the same clear error.

    check_number(timeout, "ask timeout", positive=True, unit="seconds")
    -> ValueError: ask timeout must be a positive number of seconds, got -1

A bool is never a number here, NaN and infinities never pass, and ``integer=True`` takes only
``int``. Public as ``actors.lowlevel.check_number`` for the packages built on the core.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, overload

__all__ = ["check_number"]


@overload
def check_number(value: object, name: str, *, integer: Literal[True], low: float | None = ...,
                 high: float | None = ..., positive: bool = ..., unit: str | None = ...,
                 or_none: Literal[False] = ...) -> int: ...


@overload
def check_number(value: object, name: str, *, integer: Literal[True], low: float | None = ...,
                 high: float | None = ..., positive: bool = ..., unit: str | None = ...,
                 or_none: Literal[True]) -> int | None: ...


@overload
def check_number(value: object, name: str, *, integer: Literal[False] = ...,
                 low: float | None = ..., high: float | None = ..., positive: bool = ...,
                 unit: str | None = ..., or_none: Literal[False] = ...) -> float: ...


@overload
def check_number(value: object, name: str, *, integer: Literal[False] = ...,
                 low: float | None = ..., high: float | None = ..., positive: bool = ...,
                 unit: str | None = ..., or_none: Literal[True]) -> float | None: ...


def check_number(value: object, name: str, *, integer: bool = False, low: float | None = None,
                 high: float | None = None, positive: bool = False, unit: str | None = None,
                 or_none: bool = False) -> Any:
    """Return ``value`` if it is a finite real number (an ``int`` with ``integer``), ``> 0`` with
    ``positive``, ``>= low`` and ``<= high`` when given, or None with ``or_none``. Otherwise
    raise ``ValueError("<name> must be <what>, got <value>")``; ``unit`` names what the number
    counts (``"seconds"``). Pure; never raises anything else."""
    if value is None and or_none:
        return None
    cls = value.__class__
    if cls is int or (cls is float and not integer):
        number: Any = value
    elif isinstance(value, bool) or not isinstance(value, int if integer else numbers.Real):
        raise ValueError(_message(value, name, integer, low, high, positive, unit, or_none))
    else:
        number = value
    if (math.isfinite(number) and (not positive or number > 0)
            and (low is None or number >= low) and (high is None or number <= high)):
        return value
    raise ValueError(_message(value, name, integer, low, high, positive, unit, or_none))


def _message(value: object, name: str, integer: bool, low: float | None, high: float | None,
             positive: bool, unit: str | None, or_none: bool) -> str:
    what = "an integer" if integer else "a number"
    if positive:
        what = "a positive integer" if integer else "a positive number"
    if unit:
        what += f" of {unit}"
    if low is not None and high is not None:
        what += f" in {low}..{high}" if integer else f" between {low} and {high}"
    elif low is not None:
        what += f" >= {low}"
    elif high is not None:
        what += f" <= {high}"
    if or_none:
        what += " or None"
    return f"{name} must be {what}, got {value!r}"
