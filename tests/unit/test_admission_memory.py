"""A batch is admitted by what it will hold: the estimate is an upper bound, measured.

``bridge.core.alm.estimated_memory`` counts bytes and JSON values of the raw body; here the
memory that parsing a body and planning its records really allocates at its peak
(tracemalloc) is measured for the shapes a sender can choose, and must stay below it.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from bridge.cli.sender import expand_mix, generate_events
from bridge.core.alm import Batch, Limits, estimated_memory, leading_account_id, parse_body
from bridge.core.routing import Router, RoutingPolicy

LIMITS = Limits(max_events=5000, max_depth=32, max_string_chars=65_536)
MIX = expand_mix({"enrollment": 3, "completion": 2, "progress": 4, "learning_object": 1})


def _batch(events: list[dict[str, object]]) -> bytes:
    return json.dumps({"accountId": 1234, "events": events}).encode()


def realistic(count: int) -> bytes:
    rng = random.Random(count)
    now = datetime(2026, 8, 21, tzinfo=UTC)
    return _batch(generate_events(size=count, mix=MIX, rng=rng, dialect="guide", now=now))


def many_small_objects() -> bytes:
    """About 2 MB of ``{}``: the shape that costs the most per byte."""
    return _batch(
        [
            {"eventId": str(i), "eventName": "COURSE_COMPLETED", "data": {"a": [{}] * 128}}
            for i in range(5000)
        ]
    )


def long_strings() -> bytes:
    return _batch(
        [
            {"eventId": str(i), "eventName": "COURSE_ENROLLMENT", "data": {"note": "x" * 60_000}}
            for i in range(80)
        ]
    )


def wide_numbers() -> bytes:
    return _batch(
        [
            {"eventId": str(i), "eventName": "CI_STATS", "data": {"v": list(range(200))}}
            for i in range(2000)
        ]
    )


SHAPES: dict[str, Callable[[], bytes]] = {
    "10 realistic events": lambda: realistic(10),
    "5000 realistic events": lambda: realistic(5000),
    "many small objects": many_small_objects,
    "long strings": long_strings,
    "wide arrays of numbers": wide_numbers,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_parsing_and_planning_stay_below_the_estimate(shape: str) -> None:
    body = SHAPES[shape]()
    router = Router(RoutingPolicy(receiver="prod"))
    tracemalloc.start()
    try:
        parsed = parse_body(body, LIMITS)
        assert isinstance(parsed, Batch)
        plan = router.plan(parsed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert plan.records
    assert peak <= estimated_memory(body), (
        f"{shape}: {len(body)} bytes held {peak / 2**20:.1f} MiB at the peak, estimated "
        f"{estimated_memory(body) / 2**20:.1f} MiB"
    )


def test_the_estimate_of_an_ordinary_batch_is_a_small_multiple_of_its_size() -> None:
    body = realistic(10)
    assert estimated_memory(body) < 256 * 1024


def test_the_leading_account_is_read_without_parsing() -> None:
    assert leading_account_id(b'{"accountId": 1234, "events": []}') == 1234
    assert leading_account_id(b' {\n "accountId":7}') == 7
    assert leading_account_id(b'{"events": [], "accountId": 1234}') is None
    assert leading_account_id(b'{"accountId": "1234", "events": []}') is None
    assert leading_account_id(b'{"accountId": 12.5, "events": []}') is None
