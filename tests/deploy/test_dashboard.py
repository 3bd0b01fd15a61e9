"""The Grafana dashboard, and the metric names it and the alerts use against a real scrape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.test_alerts import doc_anchors
from tests.deploy.toolbox import ALERTS, DASHBOARD, find_tool, run

pytestmark = pytest.mark.deploy

METRIC_NAME = re.compile(r"\b((?:almbridge|process)_[a-zA-Z0-9_]+)")
DOC_LINK = re.compile(r"docs/operations\.md#([\w-]+)")
# Labels Prometheus attaches to every scraped series, plus the histogram bucket label.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "le"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_METRICS = {
    "almbridge_http_requests_total",
    "almbridge_batches_total",
    "almbridge_events_published_total",
    "almbridge_request_duration_seconds_bucket",
    "almbridge_publish_duration_seconds_bucket",
    "almbridge_inflight_batches",
    "almbridge_kafka_up",
    "almbridge_ready",
    "almbridge_dead_letters_total",
    "almbridge_auth_failures_total",
    "almbridge_duplicates_suppressed_total",
    "almbridge_event_loop_lag_seconds_bucket",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
}
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def _dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[str]:
    dashboard = _dashboard()
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


class Exported:
    """Series names and label names of the bridge's registry, read back from its exposition."""

    def __init__(self) -> None:
        from bridge.telemetry.metrics import Metrics

        registry = CollectorRegistry()
        Metrics(registry=registry, receivers=["prod"])
        text = generate_latest(registry).decode()
        self.series: set[str] = set()
        self.labels: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            for suffix in SERIES_SUFFIXES.get(family.type, ("",)):
                self.series.add(family.name + suffix)
            for sample in family.samples:
                self.series.add(sample.name)
                names = set(sample.labels) - {"le", "quantile"}
                for series in [family.name + s for s in SERIES_SUFFIXES.get(family.type, ("",))]:
                    self.labels.setdefault(series, set()).update(names)


@pytest.fixture(scope="module")
def exported() -> Exported:
    try:
        return Exported()
    except ImportError as exc:
        pytest.fail(f"bridge.telemetry.metrics.Metrics is not importable: {exc}")


def test_dashboard_shape() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "alm-kafka-bridge"
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_dashboard_covers_the_bridge_metrics() -> None:
    used = {name for expr in dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    assert used >= REQUIRED_METRICS, REQUIRED_METRICS - used


def test_process_panels_show_cpu_memory_files_and_loop_lag() -> None:
    exprs = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in _panels(_dashboard())}
    assert any("rate(process_cpu_seconds_total" in e for e in exprs["CPU (cores)"])
    assert any("process_resident_memory_bytes" in e for e in exprs["Memory (resident)"])
    assert any("process_open_fds" in e for e in exprs["Open files"])
    assert any(
        e.startswith("histogram_quantile(0.99,") and "almbridge_event_loop_lag_seconds_bucket" in e
        for e in exprs["Event-loop lag p99"]
    )


def test_links_to_the_operations_guide_resolve() -> None:
    links = DOC_LINK.findall(DASHBOARD.read_text())
    assert links
    assert not set(links) - doc_anchors(), f"broken: {sorted(set(links) - doc_anchors())}"


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_metric_names_exist_in_a_real_scrape(source: str, exported: Exported) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else alert_exprs()
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert used
    missing = used - exported.series
    assert not missing, f"{source} uses series the bridge does not export: {sorted(missing)}"


def _labels_in(expr: str) -> set[str]:
    labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"", expr))
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels.update(part.strip() for part in clause.split(",") if part.strip())
    for call in re.findall(r"label_values\([^,()]*(?:\{[^}]*\})?\s*,\s*(\w+)\)", expr):
        labels.add(call)
    return labels


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_label_names_exist_on_the_metrics_used(source: str, exported: Exported) -> None:
    problems = []
    for expr in dashboard_exprs() if source == "dashboard" else alert_exprs():
        metrics = set(METRIC_NAME.findall(expr))
        if not metrics or any(m not in exported.labels for m in metrics):
            # A family without samples yet (labels created on first use) cannot be checked.
            continue
        known = set().union(*(exported.labels[m] for m in metrics)) | TARGET_LABELS
        unknown = _labels_in(expr) - known
        if unknown:
            problems.append(f"{sorted(unknown)} in {expr}")
    assert not problems, "\n".join(problems)


def _as_promql(expr: str) -> str:
    """A Grafana expression with its variables replaced, so that promtool can parse it."""
    if expr.startswith("label_values("):
        inner = expr[len("label_values(") : -1]
        selector = inner.rsplit(",", 1)[0].strip()
        expr = f"count({selector})"
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    return re.sub(r"\$\w+", ".*", expr)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{number}:check", "expr": _as_promql(expr)}
        for number, expr in enumerate(dashboard_exprs())
    ]
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([find_tool("promtool"), "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr
