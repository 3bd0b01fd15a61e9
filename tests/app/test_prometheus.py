"""Metrics as Prometheus sees them: a real Prometheus scrapes the real app."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import Bridge, MakeBridge, sample
from tests.deploy.toolbox import find_tool
from tests.kafka_fixtures import free_ports
from tests.prometheus import running_prometheus

pytestmark = pytest.mark.kafka

_NAME = re.compile(r"almbridge_[a-z0-9_]+")
_ID_LIKE = re.compile(
    r"^\d{3,}$|^[0-9a-f]{8}-[0-9a-f]{4}-|^(course|learningProgram|certification):"
)


@pytest.fixture
def prometheus() -> tuple[Path, int]:
    """A Prometheus binary and a free port; the test writes the config and starts it."""
    return Path(find_tool("prometheus")), free_ports(1)[0]


@pytest.fixture
async def scraped_bridge(
    make_bridge: MakeBridge, prometheus: tuple[Path, int], tmp_path: Path
) -> AsyncIterator[tuple[Bridge, str]]:
    bridge = await make_bridge()
    binary, port = prometheus
    target = f"127.0.0.1:{bridge.client.server.port}"
    async with running_prometheus(binary, port, tmp_path, target) as url:
        yield bridge, url


async def _query(session: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = orjson.loads(await response.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _wait_for(
    session: aiohttp.ClientSession, base: str, expr: str, want: float, timeout_s: float = 30
) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: float | None = None
    while loop.time() < deadline:
        try:
            result = await _query(session, base, expr)
        except (aiohttp.ClientError, orjson.JSONDecodeError):
            # Not up yet, or still starting ("Service Unavailable" in plain text).
            result = []
        if result:
            last = float(result[0]["value"][1])
            if last == want:
                return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{expr} was {last}, expected {want}")


async def test_prometheus_scrapes_counters_and_a_latency_quantile(
    scraped_bridge: tuple[Bridge, str],
) -> None:
    bridge, prometheus_url = scraped_bridge
    for name in ("enrollment-batch", "mixed-realtime", "setup-guide-dialect"):
        assert (await bridge.post(sample(name))).status == 200
    assert (await bridge.post(sample("enrollment-batch"))).status == 200  # duplicates
    assert (await bridge.post(b"{}", signed=False)).status == 401

    async with aiohttp.ClientSession() as session:
        published = await _wait_for(
            session, prometheus_url, 'sum(almbridge_events_published_total{receiver="alm"})', 8
        )
        duplicates = await _wait_for(
            session, prometheus_url, "sum(almbridge_duplicates_suppressed_total)", 2
        )
        await _wait_for(
            session,
            prometheus_url,
            'sum(almbridge_http_requests_total{receiver="alm",status_class="2xx"})',
            4,
        )
        await _wait_for(
            session,
            prometheus_url,
            'almbridge_auth_failures_total{receiver="alm",reason="missing"}',
            1,
        )
        await _wait_for(session, prometheus_url, "almbridge_kafka_up", 1)
        quantile = await _query(
            session,
            prometheus_url,
            "histogram_quantile(0.99, sum by (le) "
            "(almbridge_request_duration_seconds_bucket{receiver='alm'}))",
        )
        up = await _query(session, prometheus_url, 'up{job="alm-kafka-bridge"}')

    assert published == 8
    assert duplicates == 2
    assert up
    assert up[0]["value"][1] == "1"
    p99 = float(quantile[0]["value"][1])
    assert 0 < p99 < 5


async def test_scrape_follows_naming_rules_and_never_labels_an_id(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    assert (await bridge.post(sample("mixed-realtime"))).status == 200
    assert (await bridge.post(b'{"accountId": "x"}')).status == 200  # dead-lettered
    assert (await bridge.post(sample("mixed-realtime"), receiver="other")).status == 404

    text = await (await bridge.client.get("/metrics")).text()
    families = list(text_string_to_metric_families(text))
    ours = [f for f in families if f.name.startswith("almbridge_")]

    assert {f.name for f in ours} >= {
        "almbridge_http_requests",
        "almbridge_batches",
        "almbridge_events_published",
        "almbridge_auth_failures",
        "almbridge_request_duration_seconds",
        "almbridge_publish_duration_seconds",
        "almbridge_batch_events",
        "almbridge_inflight_batches",
        "almbridge_kafka_up",
        "almbridge_ready",
        "almbridge_duplicates_suppressed",
        "almbridge_dead_letters",
        "almbridge_last_publish_timestamp_seconds",
        "almbridge_build_info",
    }
    for family in ours:
        assert _NAME.fullmatch(family.name), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_events")), family.name
        for sample_ in family.samples:
            for label, value in sample_.labels.items():
                if label in {"le", "version", "python_version"}:
                    continue
                assert not _ID_LIKE.search(value), (family.name, label, value)
    receivers = {s.labels["receiver"] for f in ours for s in f.samples if "receiver" in s.labels}
    assert receivers == {"alm", "unknown"}


async def test_scrape_has_process_metrics_and_no_created_series(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    assert (await bridge.post(sample("mixed-realtime"))).status == 200

    text = await (await bridge.client.get("/metrics")).text()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["process_cpu_seconds_total"] > 0
    assert values["process_resident_memory_bytes"] > 10 * 1024 * 1024
    assert values["process_open_fds"] >= 3  # at least the standard streams and a socket
    assert values["process_max_fds"] >= values["process_open_fds"]
    assert 0 < time.time() - values["process_start_time_seconds"] < 3600
    assert values["python_info"] == 1
    assert not [name for name in values if name.endswith("_created")]
