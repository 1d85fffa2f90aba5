"""``open_queue(url_or_path, name, **options)``: the durable queue on the store a URL names.

- ``postgresql://...`` or ``postgres://...``: ``DurableQueue.postgres(url, name, **options)``;
- ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` (SQLAlchemy's spelling), or
  a plain path (``str`` or ``os.PathLike``): ``DurableQueue(path, name, **options)``.

Any other scheme, an empty string or ``sqlite://`` without a path raises ``ValueError`` naming
what was given (the password of a URL is never repeated). ``options`` go to the backend as they
are, so one that the chosen backend does not take raises its ``TypeError``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ._queue import DurableQueue

__all__ = ["open_queue", "redact"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def redact(url: str) -> str:
    """``url`` with the password of its user-info replaced by ``***``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


def open_queue(url_or_path: str | os.PathLike[str], name: str = "default",
               **options: Any) -> DurableQueue:
    """Open queue ``name`` on the store ``url_or_path`` names; see the module docstring."""
    if isinstance(url_or_path, os.PathLike):
        return DurableQueue(url_or_path, name, **options)
    if type(url_or_path) is not str or not url_or_path:
        raise ValueError("a queue store must be a postgresql:// URL, a sqlite:/// URL or a "
                         f"file path, got {url_or_path!r}")
    match = _SCHEME.match(url_or_path)
    if match is None:
        return DurableQueue(url_or_path, name, **options)
    scheme = match.group(1).lower()
    if scheme in POSTGRES_SCHEMES:
        return DurableQueue.postgres(url_or_path, name, **options)
    if scheme == "sqlite":
        path = url_or_path[len("sqlite://"):]
        if not path.startswith("/") or len(path) < 2:
            raise ValueError(f"a sqlite URL needs a path: sqlite:///relative.db or "
                             f"sqlite:////absolute.db, got {url_or_path!r}")
        return DurableQueue(path[1:], name, **options)
    raise ValueError(f"unknown queue store scheme {scheme!r} in {redact(url_or_path)!r}: use "
                     "postgresql://, sqlite:/// or a file path")
