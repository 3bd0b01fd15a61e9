"""The fleet's writer queue and its settings, without Kafka."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from bridge.config.settings import Settings, load_settings
from bridge.core.dedupe import SeenWindow, digest
from bridge.core.errors import ConfigError
from bridge.kafka.fleet import MAX_QUEUED_KEYS, Fleet
from bridge.telemetry.metrics import Metrics


def make_fleet() -> tuple[Fleet, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = Settings(dedupe_fleet_topic="alm.dedupe")
    fleet = Fleet(
        settings=settings, windows={"alm": SeenWindow()}, metrics=Metrics(registry=registry)
    )
    return fleet, registry


def dropped(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value(
        "almbridge_dedupe_fleet_writes_failed_total", {"reason": "dropped"}
    )
    return value or 0.0


def test_the_queue_is_bounded_and_what_does_not_fit_is_counted() -> None:
    fleet, registry = make_fleet()
    keys = [digest(1, str(n)) for n in range(MAX_QUEUED_KEYS - 1)]

    fleet.share("alm", keys)
    fleet.share("alm", [digest(2, "a"), None, digest(2, "b")])
    fleet.share("alm", [digest(3, "a")])

    assert dropped(registry) == 2
    assert not fleet.ready  # not started: never ready


def test_nothing_is_queued_once_the_topic_was_refused() -> None:
    fleet, registry = make_fleet()
    fleet.status = "refused"
    fleet.share("alm", [digest(1, "a")])
    assert dropped(registry) == 1


def test_the_fleet_topic_is_off_by_default_and_must_be_a_topic_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().dedupe_fleet_topic == ""
    monkeypatch.setenv("BRIDGE_DEDUPE_FLEET_TOPIC", "alm dedupe")
    with pytest.raises(ConfigError) as problems:
        load_settings(None)
    assert any("BRIDGE_DEDUPE_FLEET_TOPIC" in p for p in problems.value.problems)
    monkeypatch.setenv("BRIDGE_DEDUPE_FLEET_TOPIC", "alm.dedupe_seen-1")
    assert load_settings(None).dedupe_fleet_topic == "alm.dedupe_seen-1"
