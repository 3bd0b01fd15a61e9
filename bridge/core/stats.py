"""Percentiles: one definition for the sender's summary, the benchmark and the tests."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear interpolation between closest ranks; None when there are no values.

    The same as numpy's default and ``statistics.quantiles(method="inclusive")``: the
    minimum at 0, the maximum at 100. Percentiles with up to two decimals (99.9) are exact.
    """
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile {pct} is outside 0..100")
    if not values:
        return None
    if len(values) == 1 or pct == 0.0:
        return float(min(values))
    if pct == 100.0:
        return float(max(values))
    cuts = 100 if pct == int(pct) else 10_000
    index = round(pct * cuts / 100.0)
    return float(statistics.quantiles(values, n=cuts, method="inclusive")[index - 1])
