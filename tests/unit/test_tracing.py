"""W3C trace context: which request headers are continued, and what every record carries."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from bridge.core.tracing import MAX_TRACESTATE_CHARS, trace_context

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_a_valid_traceparent_is_continued_with_a_span_of_the_bridge() -> None:
    context = trace_context({"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=x"})

    assert context.trace_id == TRACE
    assert context.parent_id == PARENT
    assert context.span_id != PARENT
    assert len(context.span_id) == 16
    assert context.flags == "01"
    assert context.headers() == (
        ("traceparent", f"00-{TRACE}-{context.span_id}-01".encode()),
        ("tracestate", b"vendor=x"),
    )


def test_a_later_version_with_more_fields_is_read_as_version_00() -> None:
    context = trace_context({"traceparent": f"cc-{TRACE}-{PARENT}-00-something-new"})

    assert context.trace_id == TRACE
    assert context.traceparent.startswith("00-")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"ff-{TRACE}-{PARENT}-01",  # version ff is invalid
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{PARENT}-01",  # upper case is not allowed
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{PARENT}-01",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace_and_drops_tracestate(value: str) -> None:
    context = trace_context({"traceparent": value, "tracestate": "vendor=x"})

    assert context.trace_id != TRACE
    assert len(context.trace_id) == 32
    assert context.parent_id is None
    assert context.flags == "00"
    assert context.state is None


def test_without_a_traceparent_each_request_starts_its_own_trace() -> None:
    first, second = trace_context({}), trace_context({})

    assert first.trace_id != second.trace_id
    assert first.headers() == (("traceparent", first.traceparent.encode()),)


def test_two_traceparent_headers_are_not_continued() -> None:
    headers = CIMultiDict(
        [("traceparent", f"00-{TRACE}-{PARENT}-01"), ("traceparent", f"00-{TRACE}-{PARENT}-01")]
    )

    assert trace_context(headers).trace_id != TRACE


@pytest.mark.parametrize("state", ["x" * (MAX_TRACESTATE_CHARS + 1), "bad=\x01", "  "])
def test_a_tracestate_too_long_or_not_printable_is_dropped(state: str) -> None:
    context = trace_context({"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": state})

    assert context.trace_id == TRACE
    assert context.state is None
