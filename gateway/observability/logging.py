"""Logging for every gateway process, configured once per process (`configure`): structlog renders the
events of the stdlib loggers the code uses (`logging.getLogger("gateway...")`) and of structlog loggers
alike, through one `structlog.stdlib.ProcessorFormatter` on the `gateway` logger.

- JSON lines (one event per line: `timestamp`, `level`, `logger`, `pid`, `event` and the event's fields)
  when LOG_FORMAT=json, or when LOG_FORMAT=auto (the default) and the stream is not a terminal.
- Human console lines when LOG_FORMAT=console, or auto on a terminal (`gateway up` in a shell).

LiteLLM's and uvicorn's own loggers are left as they configure them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

LOGGER = "gateway"
_MARK = "_gateway_structlog"  # set on the handler this module installed


def _pid(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event["pid"] = os.getpid()
    return event


def wants_json(log_format: str, stream: TextIO) -> bool:
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure(log_format: str = "auto", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send the `gateway` loggers' events to `stream` (stderr) as JSON lines or console lines. Idempotent:
    a second call replaces the first's handler."""
    stream = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _pid,
    ]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Processor
    if wants_json(log_format, stream):
        renderer = structlog.processors.JSONRenderer()
        tail: list[Processor] = [structlog.processors.dict_tracebacks]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        tail = []
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # LiteLLM and uvicorn configure the root logger their own way


def get_logger(name: str) -> Any:
    """A structlog logger writing through the `gateway` stdlib logger `name` (see `configure`)."""
    return structlog.stdlib.get_logger(name)
