"""structlog set-up: JSON lines in production, console rendering on a terminal.

JSON lines take structlog's fast path: a level-filtering bound logger (calls below the
level cost one no-op method call), orjson rendering straight to bytes, and a bytes logger
writing to stdout, with no stdlib logging and no str round trip on the way. The stdlib
loggers of aiohttp and aiokafka are forwarded into the same structlog pipeline, so every
line has one shape (``timestamp``, ``level``, ``logger``, ``event``, the bound context).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import EventDict, FilteringBoundLogger, Processor

Logger = FilteringBoundLogger

_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    # The bytes logger keeps the name it was created with (get_logger's argument).
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
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

    def drain(self) -> list[tuple[str, str, int]]:
        """``(logger, message, count)`` of repeats not yet told, in windows that have ended.

        Called periodically, so that the count of a burst that stopped is told too, rather
        than waiting for the next repeat.
        """
        now = self._clock()
        told: list[tuple[str, str, int]] = []
        for key, (first, suppressed) in list(self._seen.items()):
            if suppressed and now - first >= self.window_seconds:
                told.append((key[0], key[2], suppressed))
                self._seen[key] = (first, 0)
        return told


class Sampler:
    """At most ``burst`` lines per key and window; the rest are counted, to be told later.

    The canonical request line of a request that was refused (4xx) is sampled: anyone can
    send thousands of them, and a log line each would let strangers fill the log.
    """

    def __init__(
        self,
        burst: int = 20,
        window_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_seconds = window_seconds
        self._clock = clock
        # key -> [window start, lines let through, lines held back]
        self._windows: dict[tuple[str, ...], list[float]] = {}
        self._ended: list[tuple[tuple[str, ...], int]] = []

    def allow(self, key: tuple[str, ...]) -> bool:
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.window_seconds:
            if window is not None and window[2]:
                self._ended.append((key, int(window[2])))
            if len(self._windows) >= 1000:
                self._ended.extend((k, int(w[2])) for k, w in self._windows.items() if w[2])
                self._windows.clear()
            window = self._windows[key] = [now, 0, 0]
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False

    def drain(self) -> list[tuple[tuple[str, ...], int]]:
        """``(key, count)`` of lines held back in windows that have ended."""
        now = self._clock()
        told, self._ended = self._ended, []
        for key, window in list(self._windows.items()):
            if now - window[0] >= self.window_seconds:
                if window[2]:
                    told.append((key, int(window[2])))
                del self._windows[key]
        return told


_REPEATS: list[RepeatFilter] = []


def drain_repeats() -> list[tuple[str, str, int]]:
    """What the installed :class:`RepeatFilter` held back, in windows that have ended."""
    return [told for repeat in _REPEATS for told in repeat.drain()]


class StdlibForwarder(logging.Handler):
    """Hands stdlib records (aiohttp, aiokafka) to structlog, whose processors render them."""

    def __init__(self) -> None:
        super().__init__()
        self._loggers: dict[str, Logger] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = self._loggers.get(record.name)
            if log is None:
                log = self._loggers[record.name] = get_logger(record.name)
            # structlog knows the five standard levels; anything between rounds down.
            level = min(max(record.levelno // 10 * 10, logging.DEBUG), logging.CRITICAL)
            if record.exc_info:
                log.log(level, record.getMessage(), exc_info=record.exc_info)
            else:
                log.log(level, record.getMessage())
        except Exception:
            self.handleError(record)


def compact_config(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """On a terminal, ``config`` shrinks to the settings that differ from their defaults.

    The JSON line keeps the whole masked configuration for log collectors; a person at a
    terminal gets one readable line (``alm-bridge check-config`` prints the rest).
    """
    config = event_dict.get("config")
    if not isinstance(config, dict):
        return event_dict
    from bridge.settings import Settings  # settings needs no logging; imported when used

    defaults = Settings.model_construct().model_dump(mode="json")
    event_dict["config"] = {
        key: value
        for key, value in config.items()
        if key != "receivers" and key in defaults and value != defaults[key]
    }
    receivers = config.get("receivers")
    if isinstance(receivers, list):
        event_dict["receivers"] = [
            f"{r.get('name')} ({(r.get('auth') or {}).get('method', '?')} auth)"
            for r in receivers
            if isinstance(r, dict)
        ]
    return event_dict


def _encode(_: object, __: str, rendered: Any) -> bytes:
    """The console renderer's text as bytes, for the bytes logger (the last processor)."""
    return str(rendered).encode()


def configure(level: str = "info", fmt: str = "auto", *, stream: BinaryIO | None = None) -> None:
    """Route structlog and stdlib logging to stdout (or ``stream``) in one format."""
    out = stream or sys.stdout.buffer
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    processors: list[Processor] = [*_SHARED]
    if use_json:
        processors.append(structlog.processors.format_exc_info)
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps, default=str))
    else:
        processors.append(compact_config)
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
        processors.append(_encode)
    structlog.configure(
        processors=processors,
        logger_factory=structlog.BytesLoggerFactory(file=out),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = StdlibForwarder()
    repeat = RepeatFilter()
    _REPEATS[:] = [repeat]
    handler.addFilter(ClientErrorFilter())
    handler.addFilter(repeat)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log duplicates the canonical request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(max(numeric, logging.INFO))


def get_logger(name: str) -> Logger:
    """A structlog logger whose lines carry ``logger=name``; typed, so mypy checks calls."""
    logger: Logger = structlog.get_logger(name)
    return logger
