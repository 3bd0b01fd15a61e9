"""``alm-bridge tail`` against the session's real broker: what the bridge published, printed."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from bridge.cli.main import app
from tests.app.conftest import MakeBridge, sample

pytestmark = pytest.mark.kafka


def _tail(bootstrap: str, *args: str, **env: str) -> Any:
    environment = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, **env}
    return CliRunner().invoke(app, ["tail", *args], env=environment)


async def test_tail_prints_what_the_bridge_published_as_json_lines(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    body = sample("mixed-realtime")
    response = await bridge.post(body)
    assert response.status == 200, await response.text()
    expected = len(orjson.loads(body)["events"])

    result = await asyncio.to_thread(
        _tail,
        bridge.bootstrap,
        "--pattern",
        f"^{bridge.prefix}\\.",
        "--from-beginning",
        "--json",
        "--timeout",
        "5",
        BRIDGE_TOPIC_TEMPLATE=f"{bridge.prefix}.{{event}}",
    )
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == expected
    event_ids = {str(e["eventId"]) for e in orjson.loads(body)["events"]}
    assert {line["topic"].split(".", 1)[0] for line in lines} == {bridge.prefix}
    assert {line["headers"]["ce_id"] for line in lines} == event_ids
    assert all(line["key"] for line in lines)
    assert all(isinstance(line["value"], dict) for line in lines)


async def test_tail_reads_the_bridges_topics_by_default_and_stops_at_max_records(
    make_bridge: MakeBridge,
) -> None:
    bridge = await make_bridge()
    response = await bridge.post(sample("enrollment-batch"))
    assert response.status == 200, await response.text()

    result = await asyncio.to_thread(
        _tail,
        bridge.bootstrap,
        "--from-beginning",
        "--max-records",
        "1",
        "--timeout",
        "20",
        BRIDGE_TOPIC_TEMPLATE=f"{bridge.prefix}.{{event}}",
        BRIDGE_CATCHALL_TOPIC=f"{bridge.prefix}.other",
        BRIDGE_DEAD_LETTER_TOPIC=f"{bridge.prefix}.deadletter",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"--- {bridge.prefix}.")
    assert result.stdout.count("\n--- ") == 0


async def test_tail_by_topic_name_with_a_group_commits_what_it_printed(
    make_bridge: MakeBridge,
) -> None:
    bridge = await make_bridge()
    response = await bridge.post(sample("enrollment-batch"))
    assert response.status == 200, await response.text()
    first = await asyncio.to_thread(
        _tail,
        bridge.bootstrap,
        "--pattern",
        f"^{bridge.prefix}\\.",
        "--from-beginning",
        "--json",
        "--timeout",
        "5",
    )
    topic = orjson.loads(first.stdout.splitlines()[0])["topic"]
    total = sum(1 for line in first.stdout.splitlines() if orjson.loads(line)["topic"] == topic)
    group = f"{bridge.prefix}-readers"

    once = await asyncio.to_thread(
        _tail,
        bridge.bootstrap,
        topic,
        "--group",
        group,
        "--from-beginning",
        "--json",
        "--timeout",
        "5",
    )
    again = await asyncio.to_thread(
        _tail,
        bridge.bootstrap,
        topic,
        "--group",
        group,
        "--from-beginning",
        "--json",
        "--timeout",
        "3",
    )
    assert once.exit_code == 0, once.output
    assert again.exit_code == 0, again.output
    assert len(once.stdout.splitlines()) == total
    assert again.stdout == ""


def test_tail_names_an_unreachable_broker_in_one_line() -> None:
    from deploy.ports import free_ports

    (port,) = free_ports(1)
    result = _tail(f"127.0.0.1:{port}", "--timeout", "1", BRIDGE_KAFKA_REQUEST_TIMEOUT_MS="500")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"alm-bridge: cannot read Kafka at 127.0.0.1:{port}:")
    assert len(result.stderr.strip().splitlines()) == 1
