"""Memory under attack: no stranger and no other receiver can exhaust the bridge's.

The real ``alm-bridge serve`` at its default limits, on the local Kafka, while a signed
ALM sender sends its batches one after the other and the process's resident memory is
sampled. For every attack: the peak stays below the Helm chart's default memory limit,
every legitimate batch is acknowledged within 2 s, and nothing of the attacker's is stored.
Durations: ALM_BRIDGE_ATTACK_SECONDS (default 6).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

import aiohttp
import pytest
import yaml

from bridge.cli.sender import expand_mix, generate_events
from tests.system.attacks import (
    AttackProcess,
    AttackRow,
    LegitSender,
    log_delta,
    log_size,
    read_run,
    report_attack,
    summarize_statuses,
)
from tests.system.harness import (
    HOST,
    REPO_ROOT,
    SECRET,
    BridgeProcess,
    RssProbe,
    background,
    env_seconds,
    ready,
    serving,
    unique_prefix,
)
from tests.system.test_attacks import (
    ACCOUNT,
    _assert_kafka_clean,
    _assert_legit_unharmed,
    _row,
    _sender,
    _warm,
    log_lines_allowed,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka]

ATTACK_SECONDS: Final = env_seconds("ALM_BRIDGE_ATTACK_SECONDS", 6.0)
TEST_TIMEOUT: Final = ATTACK_SECONDS + 120
CHART_VALUES: Final = REPO_ROOT / "helm" / "alm-kafka-bridge" / "values.yaml"
PARTNER_USER: Final = "partner"
PARTNER_PASSWORD: Final = "partner-password"
PARTNER_AUTH: Final = {
    "Authorization": "Basic "
    + base64.b64encode(f"{PARTNER_USER}:{PARTNER_PASSWORD}".encode()).decode()
}
# Headers must be complete this long after their first byte (the default), plus a margin.
HEADER_CLOSE_BOUND_SECONDS: Final = 5.0 + 3.0


def chart_memory_limit_mib() -> float:
    values = yaml.safe_load(CHART_VALUES.read_text())
    limit = str(values["resources"]["limits"]["memory"])
    assert limit.endswith("Mi"), limit
    return float(limit.removesuffix("Mi"))


@pytest.fixture(scope="module")
def defaults(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    """One bridge with every limit at its default."""
    prefix = unique_prefix("memory")
    env = {"BRIDGE_CATCHALL_TOPIC": f"{prefix}.other", "BRIDGE_ACCOUNT_IDS": str(ACCOUNT)}
    with serving(
        tmp_path_factory.mktemp("memory"), kafka_bootstrap, prefix=prefix, env=env
    ) as process:
        yield process


@pytest.fixture
async def bridge(defaults: BridgeProcess) -> BridgeProcess:
    return await ready(defaults)


async def _attack_measured(
    bridge: BridgeProcess, sender: LegitSender, argv: list[str]
) -> tuple[RssProbe, dict[str, int], int, int]:
    """The attacker, the signed sender and the memory sampler side by side."""
    await _warm(sender)
    since = log_size(bridge.log_path)
    rss = RssProbe(bridge, interval_s=0.02)
    attacker = AttackProcess(
        [*argv, "--port", str(bridge.port), "--seconds", str(ATTACK_SECONDS)], REPO_ROOT
    )
    await attacker.start()
    try:
        async with background(rss.run()):
            await sender.run_for(ATTACK_SECONDS)
            result = await attacker.result(ATTACK_SECONDS + 60)
    finally:
        attacker.kill()
    delta = log_delta(bridge.log_path, since)
    _row(f"{argv[0]} (peak RSS {_mib(rss)} MiB)", result, sender, delta)
    assert delta.tracebacks == 0, "\n".join(delta.new_lines[:5])
    assert delta.lines <= log_lines_allowed(result.requests), (
        f"{delta.lines} log lines for {result.requests} attacking requests"
    )
    return rss, dict(result.statuses), result.requests, result.connections


def _mib(rss: RssProbe) -> str:
    return f"{rss.peak_kib / 1024:.0f}"


def _assert_memory_bounded(rss: RssProbe) -> None:
    limit = chart_memory_limit_mib()
    assert rss.samples, "the bridge's memory was never sampled"
    assert rss.peak_kib / 1024 < limit, (
        f"peak RSS {_mib(rss)} MiB, the chart's memory limit is {limit:.0f} MiB"
    )


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_nearly_whole_bodies_with_a_wrong_signature_cannot_exhaust_memory(
    bridge: BridgeProcess,
) -> None:
    sender = _sender(bridge, "nearly-whole-body")
    rss, statuses, _requests, connections = await _attack_measured(
        bridge, sender, ["nearly-whole-body", "--connections", "256"]
    )

    assert connections >= 256, statuses
    _assert_memory_bounded(rss)
    _assert_legit_unharmed(sender)
    await _assert_kafka_clean(bridge, [sender])
    assert not [s for s in statuses if s.startswith("2")], statuses


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_stalled_compressed_bodies_are_refused_at_once(bridge: BridgeProcess) -> None:
    sender = _sender(bridge, "gzip-stall")
    rss, statuses, requests, _ = await _attack_measured(
        bridge, sender, ["gzip-stall", "--connections", "200"]
    )

    assert requests >= 200, statuses
    assert statuses.get("415", 0) >= requests * 0.9, statuses
    _assert_memory_bounded(rss)
    _assert_legit_unharmed(sender)
    await _assert_kafka_clean(bridge, [sender])


@pytest.mark.timeout(TEST_TIMEOUT + HEADER_CLOSE_BOUND_SECONDS)
async def test_large_unfinished_headers_are_bounded_and_closed(bridge: BridgeProcess) -> None:
    sender = _sender(bridge, "big-headers")
    rss, statuses, _requests, connections = await _attack_measured(
        bridge,
        sender,
        [
            "big-headers",
            "--connections",
            "300",
            "--close-grace",
            str(HEADER_CLOSE_BOUND_SECONDS),
        ],
    )

    assert connections >= 300, statuses
    assert statuses.get("still_open", 0) == 0, statuses
    _assert_memory_bounded(rss)
    _assert_legit_unharmed(sender)
    await _assert_kafka_clean(bridge, [sender])


# ------------------------------------------------------------------ two receivers


@pytest.fixture(scope="module")
def two_receivers(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    """``prod`` (HMAC, the ALM sender) and ``partner`` (Basic), every limit at its default."""
    folder = tmp_path_factory.mktemp("tenants")
    prefix = unique_prefix("tenants")
    config = folder / "bridge.yaml"
    routing = {"topic_template": f"{prefix}.{{event}}", "catchall_topic": f"{prefix}.other"}
    dead_letter = {"topic": f"{prefix}.deadletter"}
    config.write_text(
        yaml.safe_dump(
            {
                "receivers": [
                    {
                        "name": "alm",
                        "accounts": [ACCOUNT],
                        "auth": {"method": "hmac", "secret_envs": ["PROD_SECRET"]},
                        "routing": routing,
                        "dead_letter": dead_letter,
                    },
                    {
                        "name": "partner",
                        "auth": {"method": "basic", "credential_envs": ["PARTNER_CREDENTIALS"]},
                        "routing": routing,
                        "dead_letter": dead_letter,
                    },
                ]
            }
        )
    )
    env = {
        "BRIDGE_CONFIG_FILE": str(config),
        "PROD_SECRET": SECRET,
        "PARTNER_CREDENTIALS": f"{PARTNER_USER}:{PARTNER_PASSWORD}",
    }
    with serving(folder, kafka_bootstrap, prefix=prefix, env=env) as process:
        yield process


@pytest.fixture
async def tenants(two_receivers: BridgeProcess) -> BridgeProcess:
    return await ready(two_receivers)


def _large_batches(count: int, events: int) -> list[bytes]:
    mix = expand_mix({"enrollment": 3, "completion": 2, "progress": 4})
    now = datetime(2026, 8, 21, tzinfo=UTC)
    bodies = []
    for index in range(count):
        rng = random.Random(f"partner-{index}")
        batch = generate_events(size=events, mix=mix, rng=rng, dialect="guide", now=now)
        for event in batch:
            event["eventId"] = f"partner-{index}-{event['eventId']}"
            event["eventInfo"] = "x" * 600  # about 4.6 MiB for 5,000 events
        bodies.append(json.dumps({"accountId": 777, "events": batch}).encode())
    return bodies


async def _partner_flood(
    url: str, bodies: list[bytes], senders: int, seconds: float
) -> Counter[str]:
    """``senders`` Basic-authenticated senders posting ``bodies`` in turn, as fast as answered."""
    statuses: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async with aiohttp.ClientSession(headers=PARTNER_AUTH) as session:

        async def one(offset: int) -> None:
            index = offset
            while loop.time() < end:
                body = bodies[index % len(bodies)]
                index += 1
                try:
                    async with session.post(
                        url,
                        data=io.BytesIO(body),
                        headers={"Content-Type": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as response:
                        await response.read()
                        statuses[str(response.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1

        await asyncio.gather(*(one(i) for i in range(senders)))
    return statuses


@pytest.mark.timeout(TEST_TIMEOUT + 60)
async def test_a_receivers_large_batches_never_throttle_another(tenants: BridgeProcess) -> None:
    sender = _sender(tenants, "tenant-prod")
    await _warm(sender)
    bodies = _large_batches(4, 5000)
    assert min(map(len, bodies)) > 4_500_000
    rss = RssProbe(tenants, interval_s=0.02)
    partner_url = f"http://{HOST}:{tenants.port}/webhooks/partner"
    async with background(rss.run()):
        statuses, _ = await asyncio.gather(
            _partner_flood(partner_url, bodies, 24, ATTACK_SECONDS),
            sender.run_for(ATTACK_SECONDS),
        )

    report_attack(
        AttackRow(
            attack=f"another receiver's 4.6 MiB batches (peak RSS {_mib(rss)} MiB)",
            attacker_requests=sum(statuses.values()),
            attacker_answers=summarize_statuses(statuses),
            legit_sent=len(sender.answers),
            legit_ok=sum(a.ok for a in sender.answers),
            legit_max_ms=sender.max_latency_ms,
            log_lines=0,
        )
    )
    # The partner is served too (its batches enter, within its share), not locked out.
    assert sum(n for status, n in statuses.items() if status != "429") >= 1, statuses
    _assert_legit_unharmed(sender)
    _assert_memory_bounded(rss)


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_a_batch_too_costly_to_parse_is_dead_lettered_unparsed(
    tenants: BridgeProcess,
) -> None:
    sender = _sender(tenants, "tenant-complex")
    await _warm(sender)
    events = [
        {"eventId": f"complex-{i}", "eventName": "COURSE_COMPLETED", "data": {"a": [{}] * 300}}
        for i in range(5000)
    ]
    body = json.dumps({"accountId": 777, "events": events}, separators=(",", ":")).encode()
    partner_url = f"http://{HOST}:{tenants.port}/webhooks/partner"
    rss = RssProbe(tenants, interval_s=0.02)

    async def post() -> tuple[int, dict[str, object]]:
        async with (
            aiohttp.ClientSession(headers=PARTNER_AUTH) as session,
            session.post(
                partner_url,
                data=io.BytesIO(body),
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            return response.status, await response.json()

    async with background(rss.run()):
        (status, answer), _ = await asyncio.gather(post(), sender.run_for(3.0))

    report_attack(
        AttackRow(
            attack=f"a batch too costly to parse (peak RSS {_mib(rss)} MiB)",
            attacker_requests=1,
            attacker_answers=f"{status}:{answer.get('deadLetterReason')}",
            legit_sent=len(sender.answers),
            legit_ok=sum(a.ok for a in sender.answers),
            legit_max_ms=sender.max_latency_ms,
            log_lines=0,
        )
    )
    assert status == 200, answer
    assert answer["deadLettered"] == 1
    assert answer["deadLetterReason"] == "batch_too_complex"
    _assert_legit_unharmed(sender)
    _assert_memory_bounded(rss)
    letters = [
        r
        for r in await read_run(tenants.bootstrap, tenants.prefix)
        if r.topic.endswith("deadletter")
    ]
    assert any(r.headers.get("dlq_reason") == b"batch_too_complex" for r in letters)


def test_the_chart_limit_is_read() -> None:
    assert chart_memory_limit_mib() >= 128
