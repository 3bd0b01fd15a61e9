"""The event-lag histogram takes an observation with its count and is exposed exactly as
prometheus_client's own Histogram of the same observations."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bridge.telemetry.metrics import EVENT_LAG_BUCKETS, CountedHistogram, Metrics


def test_counted_observations_are_exposed_as_the_same_single_observations() -> None:
    Metrics(registry=CollectorRegistry())  # its set-up: no _created series
    single, counted = CollectorRegistry(), CollectorRegistry()
    labels = ["receiver", "family"]
    reference = Histogram("lag", "doc", labels, buckets=EVENT_LAG_BUCKETS, registry=single)
    histogram = CountedHistogram("lag", "doc", labels, EVENT_LAG_BUCKETS, counted)
    reference.labels("alm", "other")
    histogram.labels("alm", "other")
    rng = random.Random(7)
    for _ in range(300):
        # Whole seconds, so that the sums are exact either way; the bounds themselves too.
        value = float(rng.choice([0, 1, 5, 59, 60, 61, 86_400, 10**6, rng.randrange(4000)]))
        count = rng.randint(1, 9)
        for _ in range(count):
            reference.labels("alm", "enrollment").observe(value)
        histogram.observe(("alm", "enrollment"), value, count)

    exposed = generate_latest(counted).decode()
    assert exposed == generate_latest(single).decode()
    assert 'lag_bucket{family="other",le="+Inf",receiver="alm"} 0.0' in exposed
