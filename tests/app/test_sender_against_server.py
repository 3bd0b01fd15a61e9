"""``send`` against a small ALM-like receiver: signing, statuses, retries, resends, load."""

import asyncio
import hmac
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.cli.sender import (
    BasicUser,
    BatchSize,
    RequestResult,
    SendOptions,
    run_challenge,
    run_send,
)
from bridge.core.alm import Batch, parse_body
from bridge.core.auth import basic_authorization, sign_hmac
from bridge.core.errors import InvalidBatch
from tests.kafka_fixtures import free_ports

SECRET = b"alm-test-signing-secret"
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
Action = int | str


@dataclass
class FakeReceiver:
    """Checks credentials like the bridge, answers on a schedule, remembers events."""

    schedule: Sequence[Action] = (200,)
    secret: bytes = SECRET
    header: str = "X-ALM-Signature"
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: bool = False
    basic: tuple[str, str] | None = None
    slow_seconds: float = 0.0
    delay_seconds: float = 0.0
    echo_challenges: bool = True
    # Hold every request until this many are in flight at once; from then on, none.
    gather: int = 0
    gathered: asyncio.Event = field(default_factory=asyncio.Event)
    requests: int = 0
    unauthorized: int = 0
    inflight: int = 0
    max_inflight: int = 0
    stored: dict[tuple[int, str], int] = field(default_factory=dict)
    content_types: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhooks/alm", self.post)
        app.router.add_get("/webhooks/alm", self.get)
        return app

    def _authorized(self, request: web.Request, body: bytes) -> bool:
        if self.basic is not None:
            expected = basic_authorization(*self.basic)
            return hmac.compare_digest(request.headers.get("Authorization", ""), expected)
        expected = sign_hmac(
            body, self.secret, algorithm=self.algorithm, encoding=self.encoding, prefix=self.prefix
        )
        return hmac.compare_digest(request.headers.get(self.header, ""), expected)

    async def get(self, request: web.Request) -> web.Response:
        value = request.query.get("challenge", "")
        return web.Response(text=value if self.echo_challenges else "nope")

    async def post(self, request: web.Request) -> web.Response:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        if self.inflight >= self.gather:
            self.gathered.set()
        try:
            await self.gathered.wait()
            return await self._post(request)
        finally:
            self.inflight -= 1

    async def _post(self, request: web.Request) -> web.Response:
        action = self.schedule[self.requests % len(self.schedule)]
        self.requests += 1
        self.content_types.add(request.content_type)
        body = await request.read()
        if not self._authorized(request, body):
            self.unauthorized += 1
            return web.json_response({"error": "unauthorized", "detail": "bad"}, status=401)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if action == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif isinstance(action, int) and action >= 300:
            return web.json_response(
                {"error": "kafka_unavailable", "detail": "scheduled"},
                status=action,
                headers={"Retry-After": "1"},
            )
        try:
            parsed = parse_body(body)
        except InvalidBatch as exc:
            return web.json_response({"error": exc.code, "detail": exc.detail}, status=400)
        if not isinstance(parsed, Batch):
            if not self.echo_challenges:
                return web.json_response({"challenge": "nope"})
            return web.json_response({"challenge": parsed.value})
        published = duplicates = 0
        for event in parsed.events:
            key = (parsed.account_id, event.event_id)
            if key in self.stored:
                duplicates += 1
            else:
                published += 1
            self.stored[key] = self.stored.get(key, 0) + 1
        return web.json_response(
            {
                "received": len(parsed.events),
                "published": published,
                "duplicates": duplicates,
                "deadLettered": 0,
            },
            status=action if isinstance(action, int) else 200,
        )


@dataclass
class Running:
    receiver: FakeReceiver
    url: str


Serve = Callable[[FakeReceiver], Awaitable[Running]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    async def start(receiver: FakeReceiver) -> Running:
        server = TestServer(receiver.app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Running(receiver, str(server.make_url("/webhooks/alm")))

    yield start
    for server in servers:
        await server.close()


def _options(url: str, **overrides: object) -> SendOptions:
    values: dict[str, object] = {
        "url": url,
        "auth": "hmac",
        "hmac_secret": SECRET,
        "seed": 11,
        "now": NOW,
        "batch_size": BatchSize(1, 6),
        "timeout_seconds": 2.0,
        "retry_backoff_base_seconds": 0.01,
        "retry_backoff_max_seconds": 0.05,
    }
    values.update(overrides)
    return SendOptions(**values)  # type: ignore[arg-type]


async def test_signs_every_request_and_counts_statuses(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver(schedule=(200, 503, 202, 500)))

    summary = await run_send(_options(running.url, count=8))

    assert running.receiver.requests == 8
    assert running.receiver.unauthorized == 0
    assert running.receiver.content_types == {"application/json"}
    assert summary.requests == summary.batches == 8
    assert summary.statuses == {200: 2, 202: 2, 500: 2, 503: 2}
    assert summary.status_classes == {"2xx": 4, "5xx": 4}
    assert summary.batches_acknowledged == 4
    assert summary.batches_failed == 4
    assert summary.exit_code == 1
    assert summary.latency.count == 8
    assert summary.latency.max is not None
    assert summary.latency.p50 is not None
    assert 0 < summary.latency.p50 <= summary.latency.max
    acknowledged = summary.acknowledged_event_ids()
    assert summary.events_acknowledged == len(acknowledged) > 0
    assert set(acknowledged) == set(running.receiver.stored)
    assert summary.reported["published"] == len(acknowledged)


async def test_a_wrong_secret_is_refused_everywhere(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver())

    summary = await run_send(_options(running.url, count=3, hmac_secret=b"wrong"))

    assert summary.statuses == {401: 3}
    assert running.receiver.unauthorized == 3
    assert running.receiver.stored == {}
    assert summary.exit_code == 1
    assert {r.response_error for r in summary.results} == {"unauthorized"}
    assert summary.reasons == {401: {"unauthorized": 3}}


@pytest.mark.parametrize(
    ("algorithm", "encoding", "prefix", "header"),
    [("sha1", "base64", False, "X-Sig"), ("sha512", "hex", True, "X-ALM-Signature")],
)
async def test_signature_variants(
    serve: Serve,
    algorithm: str,
    encoding: str,
    prefix: bool,
    header: str,
) -> None:
    receiver = FakeReceiver(algorithm=algorithm, encoding=encoding, prefix=prefix, header=header)
    running = await serve(receiver)

    summary = await run_send(
        _options(
            running.url,
            count=2,
            hmac_algorithm=algorithm,
            hmac_encoding=encoding,
            hmac_prefix=prefix,
            hmac_header=header,
        )
    )

    assert summary.statuses == {200: 2}
    assert summary.exit_code == 0


async def test_basic_auth(serve: Serve) -> None:
    running = await serve(FakeReceiver(basic=("alm", "pa:ss")))

    good = await run_send(
        _options(running.url, auth="basic", basic_user=BasicUser("alm", "pa:ss"), count=2)
    )
    bad = await run_send(
        _options(running.url, auth="basic", basic_user=BasicUser("alm", "x"), count=1)
    )

    assert good.statuses == {200: 2}
    assert bad.statuses == {401: 1}


async def test_retry_until_acknowledged_ends_with_every_batch_acknowledged(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver(schedule=(503, 500, 200, 429, 200)))
    seen: list[RequestResult] = []

    summary = await run_send(
        _options(running.url, count=6, concurrency=2, retry_until_acknowledged=True),
        on_result=seen.append,
    )

    assert summary.exit_code == 0
    assert summary.batches == summary.batches_acknowledged == 6
    assert summary.requests == len(seen) > 6
    assert summary.status_classes["2xx"] == 6
    finals = [r for r in seen if r.final]
    assert sorted(r.index for r in finals) == list(range(6))
    assert all(r.acknowledged for r in finals)
    assert all(not r.acknowledged for r in seen if not r.final)
    assert max(r.attempt for r in seen) >= 2
    # Every event acknowledged with a 2xx reached the receiver, exactly once.
    acknowledged = summary.acknowledged_event_ids()
    assert set(acknowledged) == set(running.receiver.stored)
    assert set(running.receiver.stored.values()) == {1}
    assert summary.events_acknowledged == len(acknowledged)


async def test_retries_stop_when_the_time_is_up(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver(schedule=(503,)))

    summary = await run_send(
        _options(
            running.url,
            count=1,
            retry_until_acknowledged=True,
            max_batch_retry_seconds=0.2,
            retry_backoff_base_seconds=0.02,
            retry_backoff_max_seconds=0.04,
        )
    )

    assert summary.exit_code == 1
    assert summary.batches_failed == 1
    assert 3 <= summary.requests <= 12
    assert summary.results[-1].final


async def test_a_slow_answer_is_a_timeout_and_is_sent_again(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver(schedule=("slow", 200, 200), slow_seconds=1.0))

    summary = await run_send(
        _options(running.url, count=2, timeout_seconds=0.2, retry_until_acknowledged=True)
    )

    assert summary.timeouts == 1
    assert summary.exit_code == 0
    assert summary.requests == 3
    first = summary.results[0]
    assert first.error == "timeout"
    assert first.status is None
    assert not first.final
    assert 150 < first.latency_ms < 1000


async def test_connection_errors_are_counted() -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}/webhooks/alm"

    summary = await run_send(_options(url, count=3))

    assert summary.connection_errors == 3
    assert summary.statuses == {}
    assert summary.latency.count == 0
    assert summary.exit_code == 1


async def test_resend_reports_duplicates_and_publishes_nothing_new(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver())

    summary = await run_send(_options(running.url, count=5, resend=2))

    resent = [r for r in summary.results if r.phase == "resend"]
    assert summary.resent_batches == summary.resent_acknowledged == 2
    assert len(resent) == 2
    assert summary.resend_duplicates_reported == sum(r.event_count for r in resent) > 0
    assert summary.duplicates_reported == summary.resend_duplicates_reported
    assert {r.index for r in resent} <= set(range(5))
    assert sum(running.receiver.stored.values()) == len(running.receiver.stored) + sum(
        r.event_count for r in resent
    )
    assert summary.exit_code == 0


async def test_concurrency_is_the_number_of_batches_in_flight(
    serve: Serve,
) -> None:
    one = await serve(FakeReceiver(delay_seconds=0.03))  # slow: any overlap would show
    three = await serve(FakeReceiver(gather=3))  # answers once three are in flight

    await run_send(_options(one.url, count=6, concurrency=1))
    await run_send(_options(three.url, count=9, concurrency=3))

    assert one.receiver.max_inflight == 1
    assert three.receiver.max_inflight == 3


async def test_rate_caps_requests_per_second(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver())

    summary = await run_send(_options(running.url, count=6, concurrency=3, rate=20))

    starts = sorted(r.sent_at_seconds for r in summary.results)
    assert starts[-1] - starts[0] >= 5 / 20 * 0.9
    assert summary.exit_code == 0


async def test_samples_in_both_dialects_and_a_broken_file(serve: Serve, tmp_path: Path) -> None:
    running = await serve(FakeReceiver())
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"accountId": 1234, "events": [')

    summary = await run_send(_options(running.url, samples=("all",), files=(broken,)))

    by_source = {r.source: r for r in summary.results}
    assert set(by_source) == {
        "sample:enrollment-batch",
        "sample:mixed-realtime",
        "sample:setup-guide-dialect",
        f"file:{broken}",
    }
    assert by_source[f"file:{broken}"].status == 400
    assert all(r.status == 200 for s, r in by_source.items() if s.startswith("sample:"))
    assert (1234, "user-group-sync-2026-11-02-0001") in running.receiver.stored
    assert summary.events_acknowledged == 2 + 5 + 1


async def test_generated_batches_in_both_dialects_are_accepted(
    serve: Serve,
) -> None:
    running = await serve(FakeReceiver())

    summary = await run_send(
        _options(
            running.url,
            count=20,
            dialect="mixed",
            batch_size=BatchSize(20),
            concurrency=4,
        )
    )

    assert summary.statuses == {200: 20}
    assert summary.events_acknowledged == 400 == len(running.receiver.stored)
    assert {r.source for r in summary.results} == {"generated:guide", "generated:setup"}


async def test_challenge_both_forms(
    serve: Serve,
) -> None:
    echoing = await serve(FakeReceiver())
    silent = await serve(FakeReceiver(echo_challenges=False))

    good = await run_challenge(_options(echoing.url), "abc-123")
    bad = await run_challenge(_options(silent.url), "abc-123")

    assert good.ok
    assert good.get.status == good.post.status == 200
    assert good.get.body == "abc-123"
    assert json.loads(good.post.body) == {"challenge": "abc-123"}
    assert not bad.ok
    assert not bad.get.echoed
    assert not bad.post.echoed


async def _cli(*args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli.sender",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_cli_writes_json_records_and_exits_by_final_answers(
    serve: Serve, tmp_path: Path
) -> None:
    running = await serve(FakeReceiver(schedule=(503, 200)))
    secret_file = tmp_path / "alm-secret.json"
    secret_file.write_text(json.dumps({"signingSecret": SECRET.decode(), "name": "hook"}))
    out = tmp_path / "run.json"

    failing, _ = await _cli(running.url, "--secret-file", str(secret_file), "--count", "2")
    code, output = await _cli(
        running.url,
        "--secret-file",
        str(secret_file),
        "--count",
        "4",
        "--seed",
        "5",
        "--retry-until-acknowledged",
        "--retry-backoff-base",
        "0.01",
        "--resend",
        "1",
        "--no-progress",
        "--json",
        str(out),
    )

    assert failing == 1
    assert code == 0, output
    assert "events acknowledged" in output
    doc = json.loads(out.read_text())
    assert doc["summary"]["seed"] == 5
    assert doc["summary"]["batches_acknowledged"] == 4
    assert doc["summary"]["statuses"]["503"] >= 1
    acknowledged = {
        (r["account_id"], event_id)
        for r in doc["requests"]
        if r["status"] is not None and 200 <= r["status"] < 300
        for event_id in r["event_ids"]
    }
    assert acknowledged
    assert acknowledged <= set(running.receiver.stored)
    (resent,) = [r for r in doc["requests"] if r["phase"] == "resend" and r["final"]]
    assert resent["status"] == 200
    assert resent["response"]["duplicates"] == resent["event_count"] > 0


async def test_cli_challenge(serve: Serve) -> None:
    running = await serve(FakeReceiver())

    code, output = await _cli(running.url, "--secret", SECRET.decode(), "--challenge", "hello")

    assert code == 0, output
    assert "hello" in output


@pytest.mark.parametrize("status", [401, 403, 404, 413, 415])
async def test_answers_no_resend_can_fix_are_not_resent(serve: Serve, status: int) -> None:
    running = await serve(FakeReceiver(schedule=(status,)))
    secret = b"wrong" if status == 401 else SECRET

    summary = await run_send(
        _options(running.url, count=3, hmac_secret=secret, retry_until_acknowledged=True)
    )

    assert summary.requests == 3
    assert summary.batches_failed == 3
    assert all(r.final and r.attempt == 1 for r in summary.results)


async def test_the_run_is_bounded_as_a_whole(serve: Serve) -> None:
    # Every answer takes 50 ms: 50 batches one after the other cannot all start in 0.3 s.
    running = await serve(FakeReceiver(schedule=(503,), delay_seconds=0.05))

    summary = await run_send(
        _options(
            running.url,
            count=50,
            retry_until_acknowledged=True,
            max_batch_retry_seconds=60,
            max_run_seconds=0.3,
            retry_backoff_base_seconds=0.02,
            retry_backoff_max_seconds=0.04,
        )
    )

    assert summary.elapsed_seconds < 2.0
    assert summary.unsent > 0
    assert summary.batches_failed + summary.unsent == 50
    assert summary.exit_code == 1
    assert summary.summary_dict()["batches_not_sent"] == summary.unsent


async def test_connection_errors_keep_their_reason() -> None:
    (port,) = free_ports(1)
    summary = await run_send(_options(f"http://127.0.0.1:{port}/webhooks/alm", count=2))

    assert summary.connection_errors == 2
    [(reason, count)] = summary.error_reasons["connection_error"].items()
    assert count == 2
    assert reason.startswith("ClientConnectorError: Cannot connect to host 127.0.0.1")
    assert summary.summary_dict()["error_reasons"] == {"connection_error": {reason: 2}}


async def test_timeouts_say_how_long_was_waited(serve: Serve) -> None:
    running = await serve(FakeReceiver(schedule=("slow",), slow_seconds=1.0))

    summary = await run_send(_options(running.url, count=1, timeout_seconds=0.1))

    assert summary.error_reasons == {"timeout": {"no answer within 0.1 s": 1}}


async def test_json_keeps_the_refusal_detail_and_dead_letter_reasons(
    serve: Serve, tmp_path: Path
) -> None:
    async def dead_lettering(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "received": 3,
                "published": 1,
                "duplicates": 0,
                "deadLettered": 2,
                "deadLetterReasons": {"unlisted_event": 2},
            }
        )

    app = web.Application()
    app.router.add_post("/webhooks/alm", dead_lettering)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        summary = await run_send(_options(str(server.make_url("/webhooks/alm")), count=2))
    finally:
        await server.close()
    refused = await run_send(
        _options((await serve(FakeReceiver())).url, count=1, hmac_secret=b"wrong")
    )

    data = summary.to_dict()
    assert data["summary"]["dead_letter_reasons"] == {"unlisted_event": 4}
    assert data["requests"][0]["dead_letter_reasons"] == {"unlisted_event": 2}
    assert refused.to_dict()["requests"][0]["response_detail"] == "bad"
    assert refused.to_dict()["requests"][0]["response_error"] == "unauthorized"
