"""One percentile definition for the sender, the benchmark and the tests."""

from __future__ import annotations

import math
import random

import pytest

import bench.stats
from bridge.core.stats import percentile


def closest_ranks(values: list[float], pct: float) -> float:
    """The textbook definition: interpolate between the two ranks around (n - 1) * pct."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@pytest.mark.parametrize("pct", [0, 1, 50, 90, 99, 99.9, 99.99, 100])
@pytest.mark.parametrize("size", [2, 3, 10, 101, 1000])
def test_percentile_interpolates_between_closest_ranks(pct: float, size: int) -> None:
    rng = random.Random(size)
    values = [rng.expovariate(1.0) for _ in range(size)]
    assert percentile(values, pct) == pytest.approx(closest_ranks(values, pct))


def test_small_and_empty_samples() -> None:
    assert percentile([], 99) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 100.5)


def test_the_benchmark_uses_the_same_definition() -> None:
    assert bench.stats.percentile is percentile
