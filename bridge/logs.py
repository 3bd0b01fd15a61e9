"""structlog set-up: JSON lines in production, console rendering on a terminal.

The stdlib loggers of aiohttp and aiokafka go through the same processors, so every
line has one shape.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class ClientErrorFilter(logging.Filter):
    """aiohttp's reports of malformed requests are the client's mistake, not the server's.

    aiohttp logs each one as an error with a traceback (two ``Content-Length`` headers,
    a bad request line, ...); anyone can send them by the thousand. They become a warning
    with the error in one line, and :class:`RepeatFilter` condenses the repeats.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiohttp.server" or not record.exc_info:
            return True
        error = record.exc_info[1]
        if not isinstance(error, HttpProcessingError):
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "http_protocol_error (%s)"
        record.args = (f"{type(error).__name__}: {error.message}"[:200],)
        record.exc_info, record.exc_text = None, None
        return True


class RepeatFilter(logging.Filter):
    """Lets a repeated message through once per window, then says how often it repeated.

    While Kafka is down, aiokafka logs the same connection error for every metadata
    attempt, thousands of lines a second under load; one line per window says as much.
    Malformed requests (aiohttp.server) are condensed the same way.
    """

    def __init__(
        self,
        prefix: str | tuple[str, ...] = ("aiokafka", "aiohttp.server"),
        window_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.window_seconds = window_seconds
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        first, suppressed = self._seen.get(key, (-1.0, 0))
        if first >= 0 and now - first < self.window_seconds:
            self._seen[key] = (first, suppressed + 1)
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} (repeated {suppressed} times in {self.window_seconds:.0f}s)"
        return True


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and stdlib logging to stdout in one format."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log duplicates the canonical request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    kafka_logger = logging.getLogger("aiokafka")
    kafka_logger.setLevel(max(numeric, logging.INFO))
    for existing in [f for f in handler.filters if isinstance(f, RepeatFilter | ClientErrorFilter)]:
        handler.removeFilter(existing)
    handler.addFilter(ClientErrorFilter())
    handler.addFilter(RepeatFilter())


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``name``."""
    return structlog.stdlib.get_logger(name)
