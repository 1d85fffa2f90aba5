"""Structured logging: structlog, console renderer for people, JSON for machines.

``configure_logging(json=None, level=None)`` is idempotent and reads ``STREAMVISOR_LOG``
(``console`` | ``json``) and ``STREAMVISOR_LOG_LEVEL`` (``debug`` ... ``error``; default
``warning`` so that a busy runtime is quiet) when the arguments are None. Loggers are bound with
``node``, ``actor`` (the path), ``name`` and ``tenant``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import structlog

__all__ = ["configure_logging", "get_logger"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}
_configured = False
_lock = threading.Lock()


def configure_logging(json: bool | None = None, level: str | int | None = None, *,
                      force: bool = False) -> None:
    """Configure structlog for the process (safe to call many times; only the first one counts
    unless ``force``). Raises ``ValueError`` for an unknown level or ``STREAMVISOR_LOG`` value."""
    global _configured
    with _lock:
        if _configured and not force:
            return
        if json is None:
            mode = os.environ.get("STREAMVISOR_LOG", "console").strip().lower()
            if mode not in ("console", "json"):
                raise ValueError(f"STREAMVISOR_LOG must be 'console' or 'json', got {mode!r}")
            json = mode == "json"
        if level is None:
            level = os.environ.get("STREAMVISOR_LOG_LEVEL", "warning")
        if isinstance(level, str):
            if level.strip().lower() not in _LEVELS:
                raise ValueError(f"log level must be one of {sorted(_LEVELS)}, got {level!r}")
            level = _LEVELS[level.strip().lower()]
        # Plain tracebacks: the rich formatter costs ~50 ms per crash, inside the actor's turn.
        renderer = (structlog.processors.JSONRenderer() if json
                    else structlog.dev.ConsoleRenderer(
                        colors=sys.stderr.isatty(),
                        exception_formatter=structlog.dev.plain_traceback))
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info if json else structlog.dev.set_exc_info,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=False,
        )
        _configured = True


def get_logger(**bound: object) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger with ``bound`` key-values (configures logging on first use)."""
    if not _configured:
        configure_logging()
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("streamvisor").bind(**bound)
    return logger
