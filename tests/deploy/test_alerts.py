"""Prometheus alerting rules: promtool accepts and unit-tests them; every alert has a runbook."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.toolbox import ALERT_TESTS, ALERTS, CHART_ALERTS, OPERATIONS_DOC, find_tool, run

pytestmark = pytest.mark.deploy

EXPECTED_ALERTS = {
    "AlmBridgeDown",
    "AlmBridgeNotReady",
    "AlmBridgeHigh5xxRatio",
    "AlmBridgeUnavailable",
    "AlmBridgePublishLatencyHigh",
    "AlmBridgeEventLoopLagHigh",
    "AlmBridgeDeadLetters",
    "AlmBridgeAuthFailuresSpike",
    "AlmBridgeNoEvents",
    "AlmBridgeTopicFallbacks",
    "AlmBridgeConfigReloadFailed",
    "AlmBridgeAccountSilent",
    "AlmBridgeReceiverOnlyRefusing",
    "AlmBridgeEventsLate",
    "AlmBridgeCanaryFailing",
}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    """The anchor GitHub derives from a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def doc_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", OPERATIONS_DOC.read_text(), flags=re.MULTILINE)
    return {github_anchor(heading) for heading in headings}


@pytest.mark.parametrize("rules_file", [ALERTS, CHART_ALERTS], ids=["deploy", "chart"])
def test_promtool_check_rules(rules_file: object) -> None:
    result = run([find_tool("promtool"), "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run([find_tool("promtool"), "test", "rules", str(ALERT_TESTS)], cwd=ALERTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_chart_ships_the_same_rules() -> None:
    assert CHART_ALERTS.read_bytes() == ALERTS.read_bytes(), (
        "copy deploy/prometheus/alerts.yml to helm/alm-kafka-bridge/files/alerts.yml"
    )


def test_the_expected_alerts_exist() -> None:
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_ALERTS


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    anchors = doc_anchors()
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        doc, _, anchor = annotations["runbook_url"].partition("#")
        assert doc == "docs/operations.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/operations.md has no heading for #{anchor}"


def test_no_events_alert_explains_alm_disabling_the_webhook() -> None:
    [rule] = [r for r in _rules() if r["alert"] == "AlmBridgeNoEvents"]
    assert "7 days" in rule["annotations"]["description"]
    assert "[6h]" in rule["expr"]


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fired: set[str] = set()
    silent: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    assert fired == EXPECTED_ALERTS, f"never fired: {EXPECTED_ALERTS - fired}"
    assert silent == EXPECTED_ALERTS, f"never checked silent: {EXPECTED_ALERTS - silent}"
