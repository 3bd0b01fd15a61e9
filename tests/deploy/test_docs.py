"""docs/operations.md covers what operators need: every metric, every alert, the runbooks."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.toolbox import OPERATIONS_DOC

pytestmark = pytest.mark.deploy


def _doc() -> str:
    return OPERATIONS_DOC.read_text()


def test_every_exported_metric_is_documented() -> None:
    from bridge.telemetry.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry=registry)
    families = text_string_to_metric_families(generate_latest(registry).decode())
    doc = _doc()
    missing = []
    for family in families:
        if family.name.endswith("_created"):
            # prometheus_client's creation timestamps, exposed as gauges of their own.
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        if f"`{name}`" not in doc:
            missing.append(name)
    assert not missing, f"docs/operations.md does not describe {missing}"


def test_troubleshooting_covers_the_usual_incidents() -> None:
    doc = _doc()
    headings = re.findall(r"^#{2,4} (.+)$", doc, flags=re.MULTILINE)
    for heading in (
        "Install with Helm",
        "Receivers and secrets",
        "Kafka: TLS and SASL",
        "Metrics",
        "Alerts",
        "401s after a secret rotation",
        "503s while Kafka is down",
        "Dead letters: inspect and replay",
    ):
        assert heading in headings, heading
    for tool in (
        "alm-bridge tail",
        "alm-bridge diagnose",
        "helm upgrade --install",
        "alm-bridge send",
    ):
        assert tool in doc, tool


def test_internal_links_resolve() -> None:
    doc = _doc()
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", doc, flags=re.MULTILINE)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", doc))
    assert links
    assert not links - anchors, f"broken links: {sorted(links - anchors)}"
