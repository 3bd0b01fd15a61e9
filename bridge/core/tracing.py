"""W3C trace context: the request's trace continued into every record it publishes.

A ``traceparent`` sent with the batch is continued (its trace id and flags kept, with a span
id of the bridge's own as the new parent), and ``tracestate`` with it; without one, or with
one that is not valid, a new trace is started. Each record of the batch carries the result
as its ``traceparent`` (and ``tracestate``) header, so that a consumer continues the trace
of the request that brought the event. Sans-I/O: headers in, header values out.

https://www.w3.org/TR/trace-context/
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Final, Protocol

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
# Version 00 is exactly this; a later version may append fields after a dash.
_PARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
# The specification's limit; a longer list may be cut, here it is dropped whole.
MAX_TRACESTATE_CHARS: Final = 512
_PRINTABLE: Final = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The bridge's span of one request: its trace, its own id, and the caller's span."""

    trace_id: str
    span_id: str
    flags: str
    parent_id: str | None = None
    state: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        """The record headers that carry this context to consumers."""
        parent = ((TRACEPARENT, self.traceparent.encode()),)
        if self.state is None:
            return parent
        return (*parent, (TRACESTATE, self.state.encode()))


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid ``traceparent``, else None."""
    match = _PARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags


def incoming(headers: Mapping[str, str]) -> tuple[tuple[str, str, str] | None, str | None]:
    """The request's valid (trace id, parent id, flags) and its tracestate, or (None, None)."""
    # aiohttp's headers are a multidict: two traceparent headers make neither valid.
    getall = getattr(headers, "getall", None)
    found = getall(TRACEPARENT, []) if getall is not None else [headers.get(TRACEPARENT)]
    values: list[str] = [v for v in found if isinstance(v, str)]
    parsed = parse_traceparent(values[0]) if len(values) == 1 else None
    if parsed is None:
        return None, None
    state = headers.get(TRACESTATE)
    if state is not None:
        state = state.strip()
        if not state or len(state) > MAX_TRACESTATE_CHARS or not _PRINTABLE.fullmatch(state):
            state = None
    return parsed, state


def trace_context(headers: Mapping[str, str]) -> TraceContext:
    """Continue the request's trace, or start one (not sampled: nothing records it)."""
    span_id = os.urandom(8).hex()
    parsed, state = incoming(headers)
    if parsed is None:
        return TraceContext(os.urandom(16).hex(), span_id, "00")
    trace_id, parent_id, flags = parsed
    return TraceContext(trace_id, span_id, flags, parent_id, state)


class Span(Protocol):
    """The bridge's span of one authenticated request, as the request path sees it."""

    @property
    def context(self) -> TraceContext: ...

    def record(self, name: str, start_ns: int, end_ns: int) -> None:
        """A child span that already happened (the signature check)."""

    def child(self, name: str, **attributes: str | int) -> AbstractContextManager[None]:
        """A child span around a block (publishing, dead-lettering)."""

    def end(self, status: int, **attributes: str | int) -> None:
        """Close the span with the HTTP status answered."""


class Tracer(Protocol):
    def begin(self, headers: Mapping[str, str], start_ns: int, **attributes: str | int) -> Span: ...


@dataclass(frozen=True, slots=True)
class _Untraced:
    """A span nobody records: its context still goes into the records."""

    context: TraceContext

    def record(self, name: str, start_ns: int, end_ns: int) -> None:
        return None

    def child(self, name: str, **attributes: str | int) -> AbstractContextManager[None]:
        return nullcontext()

    def end(self, status: int, **attributes: str | int) -> None:
        return None


class NoTracer:
    """Tracing off (the default): trace context continued into records, nothing exported."""

    def begin(self, headers: Mapping[str, str], start_ns: int, **attributes: str | int) -> Span:
        return _Untraced(trace_context(headers))


# The span of work done outside a request (tests, replay): records nothing.
NO_SPAN: Final[Span] = _Untraced(TraceContext("0" * 32, "0" * 16, "00"))
