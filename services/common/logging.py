"""structlog set-up: JSON lines in production, a readable console on a TTY.

Log lines carry ids (event, correlation, client pseudonym), outcomes and
counts — never names, contact details or health values: the allowlist processor
(log_allowlist.py) drops every other key, and exception messages, before a line is
rendered. Records of other libraries' stdlib loggers (warnings and up) go through
the same allowlist. Per-message ids are bound with contextvars so every line of
one batch carries them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .log_allowlist import allowlist

_HANDLER_MARK = "_rehabgate_allowlist"


def configure_logging(json: bool | None = None, level: str = "INFO") -> None:
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
        allowlist,  # last before rendering: it also reduces exceptions to type + frames
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(renderer, timestamper, level)


def _route_stdlib_logging(renderer: Any, timestamper: Any, level: str) -> None:
    """Other libraries' warnings and errors (uvicorn, asyncio) through the allowlist too,
    instead of Python's last-resort handler printing them raw."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[allowlist, renderer],
        )
    )
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
