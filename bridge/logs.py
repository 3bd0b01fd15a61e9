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

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class RepeatFilter(logging.Filter):
    """Lets a repeated message through once per window, then says how often it repeated.

    While Kafka is down, aiokafka logs the same connection error for every metadata
    attempt, thousands of lines a second under load; one line per window says as much.
    """

    def __init__(
        self,
        prefix: str = "aiokafka",
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


def compact_config(
    _logger: Any, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
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
            *([] if use_json else [compact_config]),
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
    for existing in [f for f in handler.filters if isinstance(f, RepeatFilter)]:
        handler.removeFilter(existing)
    handler.addFilter(RepeatFilter())


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``name``."""
    return structlog.stdlib.get_logger(name)
