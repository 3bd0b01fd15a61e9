"""The real bridge process under attack, with a legitimate ALM sender measured alongside.

Each attack runs in a process of its own (tests/system/attacks.py) against
``alm-bridge serve`` on the local Kafka, while a correctly signed sender sends its batches
one after the other, as ALM does, each on a new connection. For every attack: each of the
sender's batches got a 2xx within 2 s; nothing of the attacker's reached Kafka (the run's
topics, the catch-all and the dead-letter topic included); and the bridge's log grew by
far less than a line per attacking request, without tracebacks. Durations:
ALM_BRIDGE_ATTACK_SECONDS (default 6).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import pytest

from bridge.config.settings import Settings
from bridge.core.auth import sign_hmac
from bridge.core.routing import KNOWN_EVENT_NAMES, sanitize_topic_part
from bridge.telemetry.logs import RepeatFilter
from tests.system.attacks import (
    ALM_WINDOW_MS,
    ATTACK_MARKER,
    LEGIT_LATENCY_LIMIT_MS,
    LEGIT_WITHIN_LIMIT_SHARE,
    NOSNIFF,
    AttackProcess,
    AttackResult,
    AttackRow,
    LegitSender,
    LogDelta,
    RawAnswer,
    SignatureMode,
    SlowBodyProbe,
    StoredRecord,
    attacker_batch,
    log_delta,
    log_size,
    read_answer,
    read_run,
    report_attack,
    summarize_statuses,
    topics_under,
    wait_closed_by_server,
)
from tests.system.harness import (
    HOST,
    REPO_ROOT,
    SECRET,
    BridgeFactory,
    BridgeProcess,
    env_seconds,
    ready,
    serving,
    unique_prefix,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka]

ATTACK_SECONDS: Final = env_seconds("ALM_BRIDGE_ATTACK_SECONDS", 6.0)
ATTACK_CONNECTIONS: Final = 320
# Enough for the sender to be measured, even on a loaded machine.
MIN_LEGIT_BATCHES: Final = 5
# "The log stays bounded": far less than a line per attacking request...
MAX_LOG_LINES_PER_ATTACK_REQUEST: Final = 0.05
# ...beyond what the sampler lets through whatever the rate: 20 lines per kind of refusal
# in a 10 s window, for the three or four kinds an attack makes. On a loaded machine an
# attack sends few requests, and this floor is then most of its lines.
SAMPLED_LINES_FLOOR: Final = 80


def log_lines_allowed(requests: int) -> float:
    """The log lines an attack of ``requests`` requests may cause."""
    return SAMPLED_LINES_FLOOR + MAX_LOG_LINES_PER_ATTACK_REQUEST * requests


IDLE_TIMEOUT_SECONDS: Final = 3
# A connection with half its headers is closed by the server within this.
IDLE_CLOSE_BOUND_SECONDS: Final = IDLE_TIMEOUT_SECONDS + 3.0
BODY_TIMEOUT_MS: Final = 2000
# A body that never comes is answered within the body timeout and this margin.
BODY_ANSWER_MARGIN_MS: Final = 1500.0
MAX_TOPICS: Final = 20
# The bridge condenses repeated protocol errors into one warning per this window.
REPEAT_WINDOW_SECONDS: Final = RepeatFilter().window_seconds
ACCOUNT: Final = 1234
TEST_TIMEOUT: Final = ATTACK_SECONDS + 90


def _env(prefix: str, **extra: str) -> dict[str, str]:
    return {
        "BRIDGE_CATCHALL_TOPIC": f"{prefix}.other",
        "BRIDGE_ACCOUNT_IDS": str(ACCOUNT),
        "BRIDGE_HTTP_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT_SECONDS),
        "BRIDGE_BODY_TIMEOUT_MS": str(BODY_TIMEOUT_MS),
        **extra,
    }


@pytest.fixture(scope="module")
def attacked(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    """One bridge for the HTTP attacks, each attack read back from the run's topics."""
    prefix = unique_prefix("attacks")
    with serving(
        tmp_path_factory.mktemp("attacks"), kafka_bootstrap, prefix=prefix, env=_env(prefix)
    ) as process:
        yield process


@pytest.fixture
async def bridge(attacked: BridgeProcess) -> BridgeProcess:
    return await ready(attacked)


# Every legitimate sender of the module: together, all that may be in the run's topics.
_SENDERS: list[LegitSender] = []


def _sender(bridge: BridgeProcess, label: str) -> LegitSender:
    # Whether ALM keeps its connection alive between batches is not documented: a new
    # connection for every batch is the harder case, queued with the attacker's.
    sender = LegitSender(bridge.webhook_url, SECRET.encode(), label, new_connections=True)
    _SENDERS.append(sender)
    return sender


async def _warm(sender: LegitSender) -> None:
    answer = await sender.warm_up()
    assert answer.ok, f"the warm-up batch was never acknowledged: {answer.status} {answer.error}"


async def _under_attack(
    bridge: BridgeProcess,
    sender: LegitSender,
    argv: Sequence[str],
    probe: SlowBodyProbe | None = None,
) -> tuple[AttackResult, LogDelta]:
    """Runs the attacker and, while it attacks, the legitimate sender (and the probe)."""
    await _warm(sender)
    since = log_size(bridge.log_path)
    attacker = AttackProcess(
        [*argv, "--port", str(bridge.port), "--seconds", str(ATTACK_SECONDS)], REPO_ROOT
    )
    await attacker.start()
    try:
        if probe is None:
            await sender.run_for(ATTACK_SECONDS)
        else:
            await asyncio.gather(sender.run_for(ATTACK_SECONDS), probe.run_for(ATTACK_SECONDS))
        result = await attacker.result(ATTACK_SECONDS + 60)
    finally:
        attacker.kill()
    return result, log_delta(bridge.log_path, since)


def _assert_legit_unharmed(sender: LegitSender) -> None:
    answers = sender.answers
    assert len(answers) >= MIN_LEGIT_BATCHES, (
        f"the legitimate sender got only {len(answers)} batches through in "
        f"{ATTACK_SECONDS:g}s: {answers}"
    )
    failures = sender.failures()
    assert not failures, (
        f"{len(failures)} of {len(answers)} legitimate batches not acknowledged: "
        f"{[(a.status, a.error) for a in failures[:5]]}"
    )
    late = sender.slow(ALM_WINDOW_MS)
    assert not late, (
        f"{len(late)} of {len(answers)} legitimate batches past ALM's {ALM_WINDOW_MS:g} ms"
    )
    slow = sender.slow()
    assert len(slow) <= len(answers) * (1 - LEGIT_WITHIN_LIMIT_SHARE), (
        f"{len(slow)} of {len(answers)} legitimate batches slower than "
        f"{LEGIT_LATENCY_LIMIT_MS:g} ms; the slowest {sender.max_latency_ms:.0f} ms"
    )
    assert all(a.nosniff for a in answers), "an answer without X-Content-Type-Options: nosniff"


async def _assert_kafka_clean(
    bridge: BridgeProcess, senders: Sequence[LegitSender]
) -> list[StoredRecord]:
    records = await read_run(bridge.bootstrap, bridge.prefix)
    hostile = [r for r in records if r.hostile()]
    assert not hostile, (
        f"{len(hostile)} records from the attacker reached Kafka, in "
        f"{sorted({r.topic for r in hostile})}"
    )
    legit = {i for s in _SENDERS if s.url == bridge.webhook_url for i in s.sent_ids}
    unexpected = [r for r in records if r.event_id not in legit]
    assert not unexpected, (
        f"{len(unexpected)} records no legitimate sender sent, in "
        f"{sorted({r.topic for r in unexpected})}"
    )
    stored = {r.event_id for r in records}
    for sender in senders:
        lost = sender.acknowledged_ids - stored
        assert not lost, f"{len(lost)} acknowledged legitimate events are not in Kafka"
    return records


def _assert_log_bounded(delta: LogDelta, requests: int) -> None:
    assert delta.tracebacks == 0, "a traceback in the log:\n" + "\n".join(delta.new_lines[:5])
    assert delta.lines <= log_lines_allowed(requests), (
        f"{delta.lines} log lines ({delta.bytes} bytes) for {requests} attacking requests; "
        f"the first: {delta.new_lines[:3]}"
    )


def _row(name: str, result: AttackResult, sender: LegitSender, delta: LogDelta) -> None:
    report_attack(
        AttackRow(
            attack=name,
            attacker_requests=result.requests,
            attacker_answers=summarize_statuses(result.statuses),
            legit_sent=len(sender.answers),
            legit_ok=sum(a.ok for a in sender.answers),
            legit_max_ms=sender.max_latency_ms,
            log_lines=delta.lines,
        )
    )


# ------------------------------------------------------------------------ slow bodies


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize("signature", ["bogus", "none"])
async def test_slow_bodies_do_not_starve_alm(
    bridge: BridgeProcess, signature: SignatureMode
) -> None:
    sender = _sender(bridge, f"slow-body-{signature}")
    probe = SlowBodyProbe(HOST, bridge.port, signature)
    result, delta = await _under_attack(
        bridge,
        sender,
        ["slow-body", "--connections", str(ATTACK_CONNECTIONS), "--signature", signature],
        probe,
    )
    _row(f"slow bodies, signature {signature}", result, sender, delta)

    assert result.connections >= 300, result
    _assert_legit_unharmed(sender)
    await _assert_kafka_clean(bridge, [sender])
    assert not [s for s in result.statuses if s.startswith("2")], result.statuses
    assert result.without_nosniff == 0
    assert result.statuses["held_at_end"] == 0, (
        f"{result.statuses['held_at_end']} connections without a body still had no answer "
        "seconds after the attack"
    )
    assert probe.answers, "the probe was never answered"
    if signature == "none":
        # Headers that fail authentication are answered at once, without waiting for a body:
        # waiting would take the body timeout, or end in a 408.
        assert result.statuses["401"] >= 300, result.statuses
        assert {status for status, _ in probe.answers} == {"401"}, probe.answers
        assert probe.slowest_ms < BODY_TIMEOUT_MS, probe.answers
    else:
        # A body that never comes is cut short, and never takes a publishing slot.
        assert "429" not in result.statuses, result.statuses
        assert result.statuses["408"] + result.statuses["closed"] > 0, result.statuses
        assert {status for status, _ in probe.answers} <= {"408", "503"}, probe.answers
        assert probe.slowest_ms <= BODY_TIMEOUT_MS + BODY_ANSWER_MARGIN_MS, probe.answers
    _assert_log_bounded(delta, result.requests)


# ------------------------------------------------------------------------- full speed


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize("signature", ["none", "bogus"])
async def test_unauthenticated_flood_does_not_starve_alm(
    bridge: BridgeProcess, signature: str
) -> None:
    sender = _sender(bridge, f"flood-{signature}")
    result, delta = await _under_attack(
        bridge, sender, ["flood", "--connections", "100", "--signature", signature]
    )
    _row(f"full-speed flood, signature {signature}", result, sender, delta)

    assert result.requests >= 300, result.statuses
    assert set(result.statuses) == {"401"}, result.statuses
    assert result.without_nosniff == 0
    _assert_legit_unharmed(sender)
    await _assert_kafka_clean(bridge, [sender])
    _assert_log_bounded(delta, result.requests)


# ----------------------------------------------------------------- slow and malformed


def test_idle_timeout_default_is_below_a_minute() -> None:
    assert Settings().http_idle_timeout_seconds < 60


@pytest.mark.timeout(TEST_TIMEOUT + IDLE_CLOSE_BOUND_SECONDS)
async def test_partial_headers_are_closed_by_the_server(bridge: BridgeProcess) -> None:
    sender = _sender(bridge, "partial-headers")
    result, delta = await _under_attack(
        bridge,
        sender,
        [
            "partial-headers",
            "--connections",
            str(ATTACK_CONNECTIONS),
            "--close-grace",
            str(IDLE_CLOSE_BOUND_SECONDS),
        ],
    )
    _row("partial headers, then idle", result, sender, delta)

    assert result.connections >= 300, result
    closed = result.closed_after_s
    assert result.statuses["still_open"] == 0, (
        f"{result.statuses['still_open']} connections with half their headers were still "
        f"open {IDLE_CLOSE_BOUND_SECONDS:g}s after their last byte"
    )
    assert closed, result.statuses
    assert max(closed) <= IDLE_CLOSE_BOUND_SECONDS, f"closed after {max(closed):.1f}s"
    _assert_legit_unharmed(sender)
    await _assert_kafka_clean(bridge, [sender])
    _assert_log_bounded(delta, result.requests)


@pytest.mark.timeout(30)
async def test_idle_keep_alive_connection_is_closed(bridge: BridgeProcess) -> None:
    reader, writer = await asyncio.open_connection(HOST, bridge.port)
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        answer = await read_answer(reader, 5.0)
        assert answer.status == "200"
        started = time.monotonic()
        assert await wait_closed_by_server(reader, IDLE_CLOSE_BOUND_SECONDS + 1), (
            f"an idle keep-alive connection was still open after {IDLE_CLOSE_BOUND_SECONDS + 1:g}s"
        )
        assert time.monotonic() - started <= IDLE_CLOSE_BOUND_SECONDS
    finally:
        writer.close()


async def _malformed_request(port: int) -> RawAnswer:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(
            f"POST /webhooks/alm HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}".encode()
        )
        return await read_answer(reader, 5.0)
    finally:
        writer.close()


@pytest.mark.timeout(TEST_TIMEOUT + REPEAT_WINDOW_SECONDS)
async def test_malformed_http_is_condensed_in_the_log(bridge: BridgeProcess) -> None:
    sender = _sender(bridge, "malformed")
    result, delta = await _under_attack(
        bridge,
        sender,
        ["malformed", "--connections", "20", "--max-requests", "300"],
    )
    _row("two Content-Length headers", result, sender, delta)

    assert result.requests == 300, result
    assert result.statuses["400"] == 300, result.statuses
    _assert_legit_unharmed(sender)
    await _assert_kafka_clean(bridge, [sender])
    _assert_log_bounded(delta, result.requests)
    warnings = [e for e in delta.events() if str(e.get("logger", "")).startswith("aiohttp")]
    assert warnings, "the protocol errors were not logged at all"
    assert all(e.get("level") == "warning" for e in warnings), warnings[:3]
    # The count of the condensed repeats is told once the window has ended: with the first
    # protocol error past it, or by the periodic summary line if that runs first.
    since = log_size(bridge.log_path)
    first = datetime.fromisoformat(str(warnings[0]["timestamp"]))
    window_left = (first - datetime.now(UTC)).total_seconds() + REPEAT_WINDOW_SECONDS
    await asyncio.sleep(max(0.0, window_left + 0.5))
    assert (await _malformed_request(bridge.port)).status == "400"
    counts: list[int] = []
    for _ in range(50):
        later = log_delta(bridge.log_path, since)
        counts = [int(n) for n in re.findall(r"repeated (\d+) times", "\n".join(later.new_lines))]
        counts += [
            int(e["count"])
            for e in later.events()
            if e.get("event") == "log_lines_repeated"
            and str(e.get("source", "")).startswith("aiohttp.server")
        ]
        if counts:
            break
        await asyncio.sleep(0.1)
    assert counts, f"no condensed warning with a count: {later.new_lines}"
    assert max(counts) >= result.requests - len(warnings), counts
    assert result.without_nosniff == 0, f"{result.without_nosniff} 400s without nosniff"


# ------------------------------------------------------------------ the allow-list


def _hostile_account_bodies() -> dict[str, bytes]:
    """Signed-looking batches whose account is not provably 1234, one per way of trying."""
    good = json.loads(attacker_batch(ACCOUNT))
    events = good["events"]
    broken = [*events, {"eventName": 7, "eventId": f"{ATTACK_MARKER}broken"}]

    def body(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc).encode()

    events_json = json.dumps(events)
    return {
        "account 999, one malformed event": body({"accountId": 999, "events": broken}),
        "account 999": body({"accountId": 999, "events": events}),
        'account "1234"': body({"accountId": "1234", "events": broken}),
        "account 1234.0": f'{{"accountId": 1234.0, "events": {events_json}}}'.encode(),
        "no account": body({"events": broken}),
        "duplicate accountId": (
            f'{{"accountId": 999, "accountId": 1234, "events": {events_json}}}'.encode()
        ),
        "invalid JSON, account 999": f'{{"accountId": 999, "events": {events_json}'.encode(),
    }


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_allow_list_cannot_be_bypassed(bridge: BridgeProcess) -> None:
    sender = _sender(bridge, "allow-list")
    await _warm(sender)
    since = log_size(bridge.log_path)
    bodies = _hostile_account_bodies()
    answers: dict[str, list[int]] = {name: [] for name in bodies}

    async def attack() -> None:
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            end = loop.time() + ATTACK_SECONDS
            while loop.time() < end:
                for name, body in bodies.items():
                    headers = {
                        "Content-Type": "application/json",
                        "X-ALM-Signature": sign_hmac(body, SECRET.encode()),
                    }
                    async with session.post(bridge.webhook_url, data=body, headers=headers) as r:
                        await r.read()
                        answers[name].append(r.status)
                        assert r.headers.get("X-Content-Type-Options") == NOSNIFF
                await asyncio.sleep(0.05)

    await asyncio.gather(attack(), sender.run_for(ATTACK_SECONDS))
    delta = log_delta(bridge.log_path, since)
    requests = sum(len(v) for v in answers.values())
    statuses = AttackResult(kind="allow-list").statuses
    for codes in answers.values():
        statuses.update(str(c) for c in codes)
    _row(
        "allow-list bypass (signed)",
        AttackResult(kind="allow-list", requests=requests, statuses=statuses),
        sender,
        delta,
    )

    wrong = {name: sorted(set(codes)) for name, codes in answers.items() if set(codes) != {403}}
    assert not wrong, f"not answered 403: {wrong}"
    _assert_legit_unharmed(sender)
    records = await _assert_kafka_clean(bridge, [sender])
    dead = [r for r in records if r.topic == f"{bridge.prefix}.deadletter"]
    assert not dead, f"{len(dead)} records in the dead-letter topic"
    assert delta.tracebacks == 0


# -------------------------------------------------------------------- every response


@pytest.mark.timeout(60)
async def test_every_response_says_nosniff(bridge: BridgeProcess) -> None:
    url = bridge.webhook_url
    body = json.dumps({"accountId": ACCOUNT, "events": []}).encode()
    signed = {
        "Content-Type": "application/json",
        "X-ALM-Signature": sign_hmac(body, SECRET.encode()),
    }
    requests: list[tuple[str, str, str, bytes, dict[str, str]]] = [
        ("challenge echo (GET)", "GET", f"{url}?challenge=abc123", b"", {}),
        (
            "challenge echo (POST)",
            "POST",
            url,
            b'{"challenge": "abc123"}',
            {"Content-Type": "application/json"},
        ),
        ("signed empty batch", "POST", url, body, signed),
        ("no signature", "POST", url, body, {"Content-Type": "application/json"}),
        ("unknown receiver", "POST", f"{bridge.base_url}/webhooks/nobody", body, signed),
        ("not JSON", "POST", url, b"x", {**signed, "Content-Type": "text/plain"}),
        ("healthz", "GET", f"{bridge.base_url}/healthz", b"", {}),
        ("readyz", "GET", f"{bridge.base_url}/readyz", b"", {}),
        ("metrics", "GET", f"{bridge.base_url}/metrics", b"", {}),
        ("no such path", "GET", f"{bridge.base_url}/nothing", b"", {}),
    ]
    missing: list[str] = []
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        for name, method, target, data, headers in requests:
            async with session.request(method, target, data=data, headers=headers) as response:
                text = await response.text()
                statuses[name] = response.status
                if response.headers.get("X-Content-Type-Options") != NOSNIFF:
                    missing.append(f"{name} ({response.status})")
                if name.startswith("challenge echo"):
                    assert response.status == 200, (name, text)
                    assert "abc123" in text, (name, text)
    # A body too large, refused from its headers alone.
    reader, writer = await asyncio.open_connection(HOST, bridge.port)
    try:
        writer.write(
            (
                f"POST /webhooks/alm HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
            ).encode()
        )
        answer = await read_answer(reader, 5.0)
    finally:
        writer.close()
    statuses["too large"] = int(answer.status) if answer.status.isdigit() else -1
    if not answer.nosniff:
        missing.append(f"too large ({answer.status})")
    assert statuses["signed empty batch"] == 200, statuses
    assert statuses["no signature"] == 401, statuses
    assert statuses["unknown receiver"] == 404, statuses
    assert statuses["not JSON"] == 415, statuses
    assert statuses["too large"] == 413, statuses
    assert not missing, f"without X-Content-Type-Options: nosniff: {missing}"


# ------------------------------------------------------------------ odd event names


@pytest.fixture
async def topic_bound_bridge(kafka_bootstrap: str, bridges: BridgeFactory) -> BridgeProcess:
    prefix = unique_prefix("names")
    process = bridges.spawn(
        kafka_bootstrap, prefix=prefix, env=_env(prefix, BRIDGE_KAFKA_MAX_TOPICS=str(MAX_TOPICS))
    )
    await process.wait_ready()
    return process


def _event(name: str, event_id: str, user: int = 501) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventName": name,
        "timestamp": 1755771300000,
        "eventInfo": "",
        "data": {
            "userId": user,
            "loId": "course:123",
            "loInstanceId": "course:123_456",
            "loType": "course",
            "enrollmentSource": "ADMIN_ENROLL",
        },
    }


async def _post_signed(
    session: aiohttp.ClientSession, url: str, doc: dict[str, Any]
) -> tuple[int, dict[str, Any], float]:
    body = json.dumps(doc).encode()
    headers = {
        "Content-Type": "application/json",
        "X-ALM-Signature": sign_hmac(body, SECRET.encode()),
    }
    started = time.monotonic()
    async with session.post(url, data=body, headers=headers) as response:
        answer = await response.json(content_type=None)
        return (
            response.status,
            answer if isinstance(answer, dict) else {},
            (time.monotonic() - started) * 1000,
        )


@pytest.mark.timeout(TEST_TIMEOUT + 30)
async def test_odd_event_names_never_stall_or_flood(topic_bound_bridge: BridgeProcess) -> None:
    bridge = topic_bound_bridge
    prefix = bridge.prefix
    sender = _sender(bridge, "odd-names")
    await _warm(sender)
    since = log_size(bridge.log_path)
    odd: dict[str, tuple[int, dict[str, Any], float]] = {}
    many_names = [f"NEW_EVENT_NAME_{i:04d}" for i in range(1000)]

    async def odd_operator() -> None:
        async with aiohttp.ClientSession() as session:
            pair = {
                "accountId": ACCOUNT,
                "events": [
                    _event("COURSE_UNENROLLMENT", "odd-unenrollment-1"),
                    _event("Course.Enrollment", "odd-dotted-1"),
                ],
            }
            odd["collision 1st"] = await _post_signed(session, bridge.webhook_url, pair)
            odd["collision 2nd"] = await _post_signed(session, bridge.webhook_url, pair)
            reserved = {
                "accountId": ACCOUNT,
                "events": [
                    _event("DEADLETTER", "odd-deadletter-1"),
                    _event("OTHER", "odd-other-1"),
                ],
            }
            odd["reserved names"] = await _post_signed(session, bridge.webhook_url, reserved)
            many = {
                "accountId": ACCOUNT,
                "events": [_event(n, f"odd-many-{i}", i) for i, n in enumerate(many_names)],
            }
            odd["1000 new names"] = await _post_signed(session, bridge.webhook_url, many)

    await asyncio.gather(odd_operator(), sender.run_for(ATTACK_SECONDS))
    delta = log_delta(bridge.log_path, since)
    statuses = AttackResult(kind="odd-names").statuses
    statuses.update(str(status) for status, _, _ in odd.values())
    report_attack(
        AttackRow(
            attack="odd event names (signed)",
            attacker_requests=len(odd),
            attacker_answers=summarize_statuses(statuses),
            legit_sent=len(sender.answers),
            legit_ok=sum(a.ok for a in sender.answers),
            legit_max_ms=max(sender.max_latency_ms, *(ms for _, _, ms in odd.values())),
            log_lines=delta.lines,
        )
    )

    for name, (status, answer, ms) in odd.items():
        assert status == 200, f"{name}: {status} {answer}"
        assert ms <= LEGIT_LATENCY_LIMIT_MS, f"{name}: answered after {ms:.0f} ms"
    assert odd["collision 2nd"][1].get("duplicates") == 2, odd["collision 2nd"][1]
    _assert_legit_unharmed(sender)
    assert delta.tracebacks == 0

    records = await read_run(bridge.bootstrap, prefix)
    by_id: dict[str, list[StoredRecord]] = {}
    for record in records:
        if record.event_id is not None:
            by_id.setdefault(record.event_id, []).append(record)
    unenrollment = by_id.get("odd-unenrollment-1", [])
    assert [r.topic for r in unenrollment] == [f"{prefix}.course_unenrollment"], unenrollment
    dotted = by_id.get("odd-dotted-1", [])
    assert [r.topic for r in dotted] == [f"{prefix}.other"], dotted
    dead_letter = f"{prefix}.deadletter"
    for event_id in ("odd-deadletter-1", "odd-other-1"):
        topics = [r.topic for r in by_id.get(event_id, [])]
        assert topics == [f"{prefix}.other"], (event_id, topics)
    assert not [r for r in records if r.topic == dead_letter], "records in the dead-letter topic"
    many_ids = {f"odd-many-{i}" for i in range(1000)}
    assert many_ids <= set(by_id), f"{len(many_ids - set(by_id))} of the 1000 events missing"
    assert all(len(by_id[i]) == 1 for i in many_ids)
    lost = sender.acknowledged_ids - set(by_id)
    assert not lost, f"{len(lost)} acknowledged legitimate events are not in Kafka"

    topics = await topics_under(bridge.bootstrap, prefix)
    # ALM's documented names have their topics reserved; the budget bounds the others.
    documented = {f"{prefix}.{sanitize_topic_part(n)}" for n in KNOWN_EVENT_NAMES}
    derived = [t for t in topics if t not in {dead_letter, f"{prefix}.other", *documented}]
    assert len(derived) <= MAX_TOPICS, f"{len(derived)} topics from the template: {derived}"
