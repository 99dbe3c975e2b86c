"""Logging for every gateway process, configured once per process (`configure`): structlog renders the
events of the stdlib loggers the code uses (`logging.getLogger("gateway...")`), through one
`structlog.stdlib.ProcessorFormatter` on the `gateway` logger, and the per-call events (`get_logger`) alike.

- JSON lines (one event per line: `timestamp`, `level`, `logger`, `pid`, `event` and the event's fields)
  when LOG_FORMAT=json, or when LOG_FORMAT=auto (the default) and the stream is not a terminal.
- Human console lines when LOG_FORMAT=console, or auto on a terminal (`gateway up` in a shell).
- The one line per billed call (`get_logger`, an `EventLog`) is rendered by the same processors straight to
  the same stream, without a stdlib LogRecord: it is on every call's path.

LiteLLM's and uvicorn's own loggers are left as they configure them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import orjson
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


def _dumps(obj: Any, **kw: Any) -> str:
    return orjson.dumps(obj, **kw).decode()


def configure(log_format: str = "auto", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send the `gateway` loggers' events to `stream` (stderr) as JSON lines or console lines. Idempotent:
    a second call replaces the first's handler (and the event loggers' stream)."""
    global _events
    stream = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _pid,
    ]
    renderer = _renderer(log_format, stream)
    tail: list[Processor] = [structlog.processors.dict_tracebacks] if wants_json(log_format, stream) else []
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
    _events = _event_sink(stream, renderer, level)


def _renderer(log_format: str, stream: TextIO) -> Processor:
    if wants_json(log_format, stream):
        return structlog.processors.JSONRenderer(serializer=_dumps)
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def _event_sink(stream: TextIO, renderer: Processor, level: int) -> Any:
    return structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _pid,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )


class EventLog:
    """A structured logger of one name (`logger` in its lines) for the events the gateway logs per call: they
    go straight to the configured stream through structlog, in the same format as every other line, without a
    stdlib LogRecord, its caller lookup and a second rendering pass (a few times cheaper per line)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def info(self, event: str, **fields: Any) -> None:
        _events.info(event, logger=self.name, **fields)


def get_logger(name: str) -> EventLog:
    """An event logger writing JSON or console lines beside the `gateway` stdlib loggers (see `configure`)."""
    return EventLog(name)


# until the process configures its logging: stderr, in the format it would get by default
_events: Any = _event_sink(sys.stderr, _renderer("auto", sys.stderr), logging.INFO)
