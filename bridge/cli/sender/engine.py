"""The async engine of ``send``: ALM-like senders, retries, rate limit, the challenge.

Each sender waits for the answer to one batch before sending the next, like ALM; with
``retry_until_acknowledged`` a batch is re-sent with exponential backoff until a 2xx, unless
the answer is one no re-send can change (:data:`NOT_RETRIED`). ``max_run_seconds`` bounds the
whole run: no request starts after it.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import aiohttp
import orjson
from yarl import URL

from bridge.cli.sender.options import SendOptions, auth_headers
from bridge.cli.sender.results import (
    ChallengeAnswer,
    ChallengeReport,
    Phase,
    RequestError,
    RequestResult,
    SendSummary,
    post_echoed,
    response_fields,
    summarize,
)
from bridge.cli.sender.sources import SourcePlan

# Answers a re-send of the same bytes cannot change: wrong credentials, an unknown receiver,
# a body too large, a content type refused. ALM's own retry would hit them again too.
NOT_RETRIED: Final = frozenset({401, 403, 404, 413, 415})


class _RateLimiter:
    """Spaces request starts evenly at ``rate`` per second over every sender."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None
    body: bytes
    error: RequestError | None
    error_detail: str | None
    latency_ms: float


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    timeout_seconds: float,
) -> _Answer:
    started = time.perf_counter()
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            status = response.status
    except TimeoutError:
        # aiohttp's own timeout errors are TimeoutError subclasses as well.
        detail = f"no answer within {timeout_seconds:g} s"
        return _Answer(None, b"", "timeout", detail, _elapsed_ms(started))
    except aiohttp.ClientConnectionError as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return _Answer(None, b"", "connection_error", detail, _elapsed_ms(started))
    except aiohttp.ClientError as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return _Answer(None, b"", "client_error", detail, _elapsed_ms(started))
    return _Answer(status, payload, None, None, _elapsed_ms(started))


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class _Run:
    def __init__(
        self,
        options: SendOptions,
        session: aiohttp.ClientSession,
        plan: SourcePlan,
        record: Callable[[RequestResult], None],
    ) -> None:
        self.options = options
        self.session = session
        self.plan = plan
        self.record = record
        self.limiter = _RateLimiter(options.rate)
        self.started = time.perf_counter()
        loop = asyncio.get_running_loop()
        self.deadline = (
            loop.time() + options.max_run_seconds if options.max_run_seconds > 0 else None
        )
        # Batches never sent because the run's time was up.
        self.unsent = 0

    def time_is_up(self, after: float = 0.0) -> bool:
        """True when the run's time is up now, or would be ``after`` seconds from now."""
        if self.deadline is None:
            return False
        return asyncio.get_running_loop().time() + after >= self.deadline

    async def phase(self, phase: Phase, indices: Sequence[int]) -> None:
        pending: Iterator[int] = iter(indices)
        workers = min(self.options.concurrency, len(indices))
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._sender(phase, pending))

    async def _sender(self, phase: Phase, pending: Iterator[int]) -> None:
        # Like ALM, each sender waits for the answer to a batch before the next one.
        for index in pending:
            if self.time_is_up():
                self.unsent += 1
                continue
            await self._deliver(phase, index)

    async def _deliver(self, phase: Phase, index: int) -> None:
        options = self.options
        batch = self.plan.body(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.max_batch_retry_seconds
        delay = options.retry_backoff_base_seconds
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.wait()
            sent_at = time.perf_counter() - self.started
            answer = await _request(
                self.session,
                "POST",
                options.url,
                body=batch.body,
                headers=auth_headers(options, batch.body),
                timeout_seconds=options.timeout_seconds,
            )
            acknowledged = answer.status is not None and 200 <= answer.status < 300
            retry = (
                options.retry_until_acknowledged
                and not acknowledged
                and answer.status not in NOT_RETRIED
                and loop.time() + delay <= deadline
                and not self.time_is_up(after=delay)
            )
            fields = response_fields(answer.body)
            self.record(
                RequestResult(
                    index=index,
                    phase=phase,
                    attempt=attempt,
                    final=not retry,
                    source=batch.source,
                    account_id=batch.account_id,
                    event_ids=batch.event_ids,
                    status=answer.status,
                    error=answer.error,
                    error_detail=answer.error_detail,
                    latency_ms=answer.latency_ms,
                    sent_at_seconds=sent_at,
                    response_counts=fields.counts,
                    response_error=fields.error,
                    response_detail=fields.detail,
                    dead_letter_reasons=fields.dead_letter_reasons,
                )
            )
            if not retry:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, options.retry_backoff_max_seconds)


def _resend_indices(results: Sequence[RequestResult], count: int, seed: int) -> list[int]:
    acknowledged = sorted(
        {r.index for r in results if r.phase == "send" and r.final and r.acknowledged}
    )
    if count >= len(acknowledged):
        return acknowledged
    return sorted(random.Random(f"{seed}:resend").sample(acknowledged, count))


def _own_session(options: SendOptions) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max(options.concurrency, 1), ssl=client_context(options.ca_file)
        ),
        raise_for_status=False,
    )


def client_context(ca_file: Path | None) -> ssl.SSLContext | bool:
    """Verified HTTPS: the system's CAs, plus ``ca_file``'s when given."""
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(ca_file))
    return context


def resolve_seed(options: SendOptions) -> int:
    return options.seed if options.seed is not None else secrets.randbits(32)


async def run_send(
    options: SendOptions,
    *,
    session: aiohttp.ClientSession | None = None,
    on_result: Callable[[RequestResult], None] | None = None,
    seed: int | None = None,
) -> SendSummary:
    """Sends the batches ``options`` describe and summarizes every answer.

    ``on_result`` is called after every request (each retry attempt too; ``final`` tells
    whether the batch is settled). A ``session`` passed in is used and left open.
    Raises ``ValueError`` for an unknown sample and ``OSError`` for an unreadable file.
    """
    chosen_seed = seed if seed is not None else resolve_seed(options)
    now = options.now or datetime.now(UTC)
    plan = SourcePlan(options, seed=chosen_seed, now=now)
    count = options.count if options.count is not None else plan.default_count
    results: list[RequestResult] = []

    def record(result: RequestResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    client = session if session is not None else _own_session(options)
    run = _Run(options, client, plan, record)
    try:
        await run.phase("send", range(count))
        if options.resend:
            await run.phase("resend", _resend_indices(results, options.resend, chosen_seed))
    finally:
        if session is None:
            await client.close()
    return summarize(
        results,
        url=options.url,
        seed=chosen_seed,
        elapsed_seconds=time.perf_counter() - run.started,
        unsent=run.unsent,
    )


async def run_challenge(
    options: SendOptions, value: str, *, session: aiohttp.ClientSession | None = None
) -> ChallengeReport:
    """``GET ?challenge=VALUE`` and ``POST {"challenge": VALUE}``, both with credentials."""
    client = session if session is not None else _own_session(options)
    try:
        get_url = str(URL(options.url).update_query(challenge=value))
        got = await _request(
            client,
            "GET",
            get_url,
            body=None,
            headers=auth_headers(options, b""),
            timeout_seconds=options.timeout_seconds,
        )
        post_body = orjson.dumps({"challenge": value})
        posted = await _request(
            client,
            "POST",
            options.url,
            body=post_body,
            headers=auth_headers(options, post_body),
            timeout_seconds=options.timeout_seconds,
        )
    finally:
        if session is None:
            await client.close()
    return ChallengeReport(
        value=value,
        get=ChallengeAnswer(
            "GET",
            got.status,
            got.body.decode("utf-8", "replace"),
            got.error,
            got.latency_ms,
            got.status == 200 and got.body.decode("utf-8", "replace") == value,
        ),
        post=ChallengeAnswer(
            "POST",
            posted.status,
            posted.body.decode("utf-8", "replace"),
            posted.error,
            posted.latency_ms,
            posted.status == 200 and post_echoed(posted.body, value),
        ),
    )
