"""``Choice``: the base of the runtime's option enums (``Overflow``, and the stream layer's
``Policy``, ``Trigger``, ``Expired``). Choices are enums, never bare strings, but a caller may
name one by its name or value in any case; anything else is a ``ValueError`` listing them."""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = ["Choice"]

C = TypeVar("C", bound="Choice")


class Choice(enum.Enum):
    @classmethod
    def parse(cls: type[C], value: object) -> C:
        """Accept a member, its name or value (any case), or a member of another ``Choice``
        with the same name (``Overflow.DROP_OLDEST`` -> ``Policy.DROP_OLDEST``)."""
        if isinstance(value, cls):
            return value
        key = getattr(value, "name", value)
        if isinstance(key, str):
            key = key.strip().lower()
            for member in cls:
                if key in (member.value, member.name.lower()):
                    return member
        raise ValueError(f"unknown {cls.__name__} {value!r}; choose one of "
                         f"{', '.join(m.name for m in cls)}")
