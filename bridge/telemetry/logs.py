"""structlog set-up: JSON lines in production, console rendering on a terminal.

JSON lines take structlog's fast path: a level-filtering bound logger (calls below the
level cost one no-op method call), orjson rendering straight to bytes, and a bytes logger
writing to stdout, with no stdlib logging and no str round trip on the way. The stdlib
loggers of aiohttp and aiokafka are forwarded into the same structlog pipeline, so every
line has one shape (``timestamp``, ``level``, ``logger``, ``event``, the bound context).

Rendering never raises, whatever a value holds: aiohttp decodes header bytes that are not
UTF-8 into lone surrogates (``"\\udcff"``), which orjson refuses; such a line is rendered
again with every string made valid (:func:`valid_text`), and the console's text is
encoded with escapes. A logging call can therefore never turn a request into a 500.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, Final

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


class NewLeaderFilter(logging.Filter):
    """aiokafka's warning for a produce answer "no leader here yet", the first time, at INFO.

    A topic the bridge has just created has no elected leader for a moment, so the first
    batch to it is answered ``NotLeaderForPartitionError`` (or ``LeaderNotAvailableError``)
    and aiokafka retries it, logging a WARNING that needs no action. The first such answer
    for a partition becomes an INFO line; a partition that keeps answering it (a leader
    that stays away) keeps its WARNING.
    """

    _MSG: Final = "Got error produce response on topic-partition %s, retrying. Error: %s"
    _TRANSIENT: Final = frozenset({"NotLeaderForPartitionError", "LeaderNotAvailableError"})

    def __init__(self, max_partitions: int = 10_000) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._max = max_partitions

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self._MSG or not isinstance(record.args, tuple) or len(record.args) != 2:
            return True
        partition, error = record.args
        name = error.__name__ if isinstance(error, type) else type(error).__name__
        key = str(partition)
        if name not in self._TRANSIENT or key in self._seen:
            return True
        if len(self._seen) >= self._max:
            self._seen.clear()
        self._seen.add(key)
        record.msg = (
            "partition %s has no leader yet (%s): a new topic's leader is being elected; retrying"
        )
        record.args = (partition, name)
        record.levelno, record.levelname = logging.INFO, "INFO"
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

    The canonical request lines of requests that anyone can send without credentials (the
    refusals, the probes and challenges) are sampled: strangers can send thousands of them,
    and a log line each would let them fill the log.
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


class CompactConfig:
    """On a terminal, ``config`` shrinks to the settings that differ from ``defaults``.

    The JSON line keeps the whole masked configuration for log collectors; a person at a
    terminal gets one readable line (``alm-bridge check-config`` prints the rest). The
    defaults are given by the caller: logging knows nothing of the settings.
    """

    def __init__(self, defaults: Mapping[str, object]) -> None:
        self._defaults = dict(defaults)

    def __call__(self, _logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        config = event_dict.get("config")
        if not isinstance(config, dict):
            return event_dict
        defaults = self._defaults
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


def _utf8(value: str) -> bytes:
    """``value``'s bytes: a surrogate that aiohttp made of a byte is that byte again."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no decoder made: its three bytes
        return value.encode("utf-8", "surrogatepass")


def valid_text(value: str) -> str:
    """``value`` as valid Unicode: each byte that is not UTF-8 becomes ``\\xNN``.

    aiohttp decodes header bytes with ``surrogateescape``: a byte that is not UTF-8 becomes
    a lone surrogate, which cannot be encoded (orjson refuses it, ``str.encode`` raises).
    The valid characters are kept as they are.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _utf8(value).decode("utf-8", "backslashreplace")
    return value


def escaped(value: str, limit: int = 64) -> str:
    """``value``'s first ``limit`` bytes in printable ASCII, the others backslash-escaped.

    For values that came from a stranger and are logged to be looked at: every byte that
    is not printable ASCII is written ``\\xNN`` (a UTF-8 ``é`` is ``\\xc3\\xa9``, a byte
    that was not UTF-8 ``\\xff``), a backslash ``\\\\``, tab and newline ``\\t`` and
    ``\\n``; ``...`` follows when the value was longer.
    """
    raw = _utf8(value)
    text = raw[:limit].decode("latin-1").encode("unicode_escape").decode("ascii")
    return text + "..." if len(raw) > limit else text


_MAX_DEPTH: Final = 32
_INT_RANGE: Final = range(-(2**63), 2**64)


def _as_text(value: object) -> str:
    try:
        return valid_text(str(value))
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"


def _renderable(value: object, depth: int = 0) -> object:
    """``value`` with nothing orjson refuses: valid strings and keys, 64-bit integers,
    bounded nesting; any other object as its text."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, int):
        return value if value in _INT_RANGE else str(value)
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            return {_as_text(key): _renderable(item, depth + 1) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [_renderable(item, depth + 1) for item in value]
    return _as_text(value)


def render_json(_logger: object, _method: str, event_dict: EventDict) -> bytes:
    """The line as JSON bytes; never raises.

    The fast path is orjson over the event as it is. A line orjson refuses (a lone
    surrogate from a header, a key that is not a string, an integer past 64 bits) is
    rendered again with every value made renderable (:func:`_renderable`); should even
    that fail, a line that says so takes its place.
    """
    try:
        return orjson.dumps(event_dict, default=str)
    except Exception:
        return _render_made_renderable(event_dict)


def _render_made_renderable(event_dict: EventDict) -> bytes:
    try:
        return orjson.dumps(_renderable(event_dict))
    except Exception as exc:
        return orjson.dumps(
            {
                "timestamp": _as_text(event_dict.get("timestamp", "")),
                "level": _as_text(event_dict.get("level", "error")),
                "logger": _as_text(event_dict.get("logger", "")),
                "event": "log_line_not_rendered",
                "original_event": _as_text(event_dict.get("event", ""))[:200],
                "error": _as_text(exc)[:200],
            }
        )


# Kept as they are on a terminal: multi-line texts the console renderer writes itself.
_CONSOLE_MULTILINE: Final = frozenset({"exception", "stack"})


def printable_values(_logger: object, _method: str, event_dict: EventDict) -> EventDict:
    """On a terminal, strings that are not printable are escaped (``\\x1b``, ``\\n``).

    The console renderer writes string values as they are: a control character from a
    request (an ANSI escape in a path, say) would reach the terminal. Other values are
    written with ``repr``, which escapes them already.
    """
    for key, value in event_dict.items():
        if isinstance(value, str) and key not in _CONSOLE_MULTILINE and not value.isprintable():
            event_dict[key] = "".join(
                char if char.isprintable() else escaped(char, limit=8) for char in value
            )
    return event_dict


def _encode(_: object, __: str, rendered: Any) -> bytes:
    """The console renderer's text as bytes, for the bytes logger (the last processor).

    A byte that is not UTF-8 (a lone surrogate) is written escaped instead of raising.
    """
    text = str(rendered)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _utf8(text).decode("utf-8", "backslashreplace").encode()


def configure(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: BinaryIO | None = None,
    config_defaults: Mapping[str, object] | None = None,
) -> RepeatFilter:
    """Route structlog and stdlib logging to stdout (or ``stream``) in one format.

    The process's logging is global by nature (structlog's configuration, the root
    logger), so the command line calls this once, before anything logs. Handlers that
    others added to the root logger stay; a forwarder installed by an earlier call is
    replaced. Returns the filter that condenses repeated stdlib lines, whose counts the
    caller tells periodically (:meth:`RepeatFilter.drain`). On a terminal, a ``config``
    value shrinks to what differs from ``config_defaults``.
    """
    out = stream or sys.stdout.buffer
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    processors: list[Processor] = [*_SHARED]
    if use_json:
        processors.append(structlog.processors.format_exc_info)
        processors.append(render_json)
    else:
        processors.append(CompactConfig(config_defaults or {}))
        processors.append(printable_values)
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
    handler.addFilter(ClientErrorFilter())
    handler.addFilter(NewLeaderFilter())
    handler.addFilter(repeat)
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, StdlibForwarder)]
    root.addHandler(handler)
    root.setLevel(numeric)
    # aiohttp's access log duplicates the canonical request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(max(numeric, logging.INFO))
    return repeat


def get_logger(name: str) -> Logger:
    """A structlog logger whose lines carry ``logger=name``; typed, so mypy checks calls."""
    logger: Logger = structlog.get_logger(name)
    return logger
