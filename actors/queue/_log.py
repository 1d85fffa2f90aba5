"""The queue's structlog logger, imported lazily.

structlog (with rich installed) costs ~0.2 s to import; the queue only logs on rare paths
(recovery, disk full), so it pays that price only when it has something to say.
"""

from __future__ import annotations

from typing import Any

__all__ = ["logger"]


def logger() -> Any:
    """``structlog.get_logger("streamvisor.queue")`` after the project's logging setup."""
    import structlog

    from .._log import configure_logging

    configure_logging()
    return structlog.get_logger("streamvisor.queue")
