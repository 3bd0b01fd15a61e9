"""The real bridge process under faults: start it, play ALM against it, read Kafka back.

A :class:`BridgeProcess` is ``python -m bridge serve`` (or the ``alm-bridge`` script) with
its settings in the environment, its output in a log file, and it is only ever signalled
through the pid of the process we started (a :class:`deploy.supervisor.Process`).
:class:`Load` drives :func:`bridge.cli.sender.run_send` in the test's event loop and keeps
every answer, the response headers included. :func:`read_prefix` reads every topic of a
run from the beginning, and :func:`tally` compares what was acknowledged with what Kafka
holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, TopicPartition

from bench import processes
from bridge.cli.sender import (
    DEFAULT_MIX,
    BatchSize,
    RequestResult,
    SendOptions,
    SendSummary,
    generate_batch,
    run_send,
)
from bridge.cli.sender.engine import client_context
from bridge.config.settings import Settings
from bridge.core.auth import sign_hmac
from deploy.supervisor import Exited, NotReady, Process, wait_until_async
from tests.contract import Contract, contract_for
from tests.kafka_fixtures import free_ports

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SECRET: Final = "system-test-secret-0123456789"
HOST: Final = "127.0.0.1"
RECEIVER: Final = "alm"
# ALM waits 5 s for an answer; a slower one counts as a failure and is sent again.
ALM_RESPONSE_LIMIT_MS: Final = 5000.0
SEED: Final = 20260821
# Generated events get their times from this instant, so a seed always gives the same bytes.
FIXED_NOW: Final = datetime(2026, 8, 21, 10, 15, tzinfo=UTC)


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment, or ``default``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    value = float(text)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


BROKER_DOWN_SECONDS: Final = env_seconds("ALM_BRIDGE_FAULT_BROKER_DOWN_SECONDS", 30.0)
LOAD_SECONDS: Final = env_seconds("ALM_BRIDGE_FAULT_LOAD_SECONDS", 12.0)


def unique_prefix(label: str) -> str:
    """A topic prefix of its own for one run (letters, digits, '.', '-' only)."""
    slug = "".join(c if c.isalnum() else "-" for c in label.lower())
    return f"sys.{slug}.{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- the process


def serve_command(*, script: bool = False) -> list[str]:
    """``python -m bridge serve``, or the virtualenv's ``alm-bridge serve``."""
    if script:
        path = Path(sys.executable).with_name("alm-bridge")
        if path.is_file():
            return [str(path), "serve"]
    return [sys.executable, "-m", "bridge", "serve"]


class BridgeProcess:
    """One ``alm-bridge serve`` process on 127.0.0.1, configured through BRIDGE_* variables."""

    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        port: int,
        log_path: Path,
        env: Mapping[str, str | None] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.port = port
        self.log_path = log_path
        self.command = list(command or serve_command())
        # A variable given as None in ``env`` is left unset.
        settings: dict[str, str | None] = {
            "BRIDGE_HOST": HOST,
            "BRIDGE_PORT": str(port),
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "BRIDGE_RECEIVER_NAME": RECEIVER,
            "BRIDGE_AUTH_METHOD": "hmac",
            "BRIDGE_HMAC_SECRET": SECRET,
            "BRIDGE_TOPIC_TEMPLATE": f"{prefix}.{{event}}",
            "BRIDGE_DEAD_LETTER_TOPIC": f"{prefix}.deadletter",
            "BRIDGE_LOG_FORMAT": "json",
            "BRIDGE_LOG_LEVEL": "info",
            "BRIDGE_KAFKA_TOPIC_PARTITIONS": "1",
            "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS": "6",
            **(env or {}),
        }
        self.settings = {name: value for name, value in settings.items() if value is not None}
        self._process = Process("the bridge", log=log_path)
        self._pid: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/{RECEIVER}"

    @property
    def shutdown_timeout_seconds(self) -> float:
        return float(self.settings["BRIDGE_SHUTDOWN_TIMEOUT_SECONDS"])

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise RuntimeError("the bridge was not started")
        return self._pid

    def start(self) -> None:
        if self._pid is not None:
            raise RuntimeError("a BridgeProcess is started once; make a new one to restart")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(self.settings)
        env["PYTHONUNBUFFERED"] = "1"
        # Its own session: a Ctrl-C on pytest must not reach it; we signal it ourselves.
        self._pid = self._process.start(self.command, env=env, cwd=REPO_ROOT)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def running(self) -> bool:
        return self._process.running()

    def send_signal(self, sig: signal.Signals) -> None:
        self._process.signal(sig)

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code, or None if the process is still running after ``timeout_s``."""
        return await self._process.wait_exit_async(timeout_s)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait, SIGKILL; blocking, idempotent."""
        return self._process.stop(timeout_s)

    async def _get(
        self, session: aiohttp.ClientSession, path: str
    ) -> tuple[int, dict[str, Any]] | None:
        try:
            async with session.get(
                f"{self.base_url}{path}", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                body = await response.json(content_type=None)
                return response.status, body if isinstance(body, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def readyz(self, session: aiohttp.ClientSession) -> tuple[int, dict[str, Any]] | None:
        return await self._get(session, "/readyz")

    async def _wait_for(self, path: str, timeout_s: float, *, want_ready: bool) -> None:
        async with aiohttp.ClientSession() as session:

            async def answered() -> bool:
                answer = await self._get(session, path)
                return answer is not None and (answer[0] == 200 or not want_ready)

            try:
                await wait_until_async(
                    answered, what=path, timeout_s=timeout_s, watch=[self._process]
                )
            except Exited:
                raise AssertionError(
                    f"the bridge exited with {self.returncode} while we waited for "
                    f"{path}:\n{self.log_tail()}"
                ) from None
            except NotReady:
                raise AssertionError(
                    f"{path} was not 200 within {timeout_s:g}s:\n{self.log_tail()}"
                ) from None

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until GET /readyz answers 200."""
        await self._wait_for("/readyz", timeout_s, want_ready=True)

    async def wait_listening(self, timeout_s: float = 30.0) -> None:
        """Until GET /healthz answers at all."""
        await self._wait_for("/healthz", timeout_s, want_ready=False)

    async def inflight(self, session: aiohttp.ClientSession) -> float | None:
        """The almbridge_inflight_batches gauge, read from /metrics."""
        return await self.metric(session, "almbridge_inflight_batches")

    async def metric(self, session: aiohttp.ClientSession, series: str) -> float | None:
        """One series of /metrics, as exposed (``name{label="value"}``), or None."""
        try:
            async with session.get(
                f"{self.base_url}/metrics", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        for line in text.splitlines():
            if line.startswith(f"{series} "):
                return float(line.split()[-1])
        return None

    def rss_kib(self) -> int | None:
        """The process's resident memory in KiB."""
        if not self.running():
            return None
        rss_mb, _ = processes.memory_mb(self.pid)
        return None if rss_mb is None else round(rss_mb * 1024)

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time of the process so far."""
        return processes.cpu_seconds(self.pid) if self.running() else None

    def log_lines(self) -> int:
        try:
            with self.log_path.open("rb") as fh:
                return sum(1 for _ in fh)
        except OSError:
            return 0

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines of the process, in order; other lines are left out."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        events: list[dict[str, Any]] = []
        for line in lines:
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    events.append(doc)
        return events

    def unavailable_reasons(self, top: int = 3) -> list[tuple[str, int]]:
        """The most frequent reasons the bridge logged for its 5xx answers."""
        reasons: Counter[str] = Counter()
        for event in self.log_events():
            if event.get("event") == "request" and int(event.get("status", 0)) >= 500:
                reasons[str(event.get("error", "?"))[:100]] += 1
        return reasons.most_common(top)

    def frequent_log_events(self, top: int = 3) -> list[tuple[str, int]]:
        """The most frequent log lines (logger: event) of the process."""
        counts = Counter(
            f"{e.get('logger', '?')}: {str(e.get('event', '?'))[:80]}" for e in self.log_events()
        )
        return counts.most_common(top)

    def event_names(self) -> list[str]:
        return [str(e.get("event")) for e in self.log_events()]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return f"--- {self.log_path} ---\n" + "\n".join(text.splitlines()[-lines:])


class BridgeFactory:
    """Makes bridge processes for one test and stops every one of them afterwards."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[BridgeProcess] = []

    def spawn(
        self,
        bootstrap: str,
        *,
        prefix: str,
        port: int | None = None,
        env: Mapping[str, str | None] | None = None,
        command: Sequence[str] | None = None,
    ) -> BridgeProcess:
        process = BridgeProcess(
            bootstrap=bootstrap,
            prefix=prefix,
            port=port or free_ports(1)[0],
            log_path=self.log_dir / f"bridge-{len(self.processes) + 1}.log",
            env=env,
            command=command,
        )
        self.processes.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()


@contextlib.contextmanager
def serving(
    folder: Path, bootstrap: str, *, prefix: str, env: Mapping[str, str]
) -> Iterator[BridgeProcess]:
    """One bridge for the life of the block (a module's fixture), stopped by its pid."""
    factory = BridgeFactory(folder)
    try:
        yield factory.spawn(bootstrap, prefix=prefix, env=env)
    finally:
        factory.stop_all()


async def ready(process: BridgeProcess) -> BridgeProcess:
    """``process``, still running and ready (for each test of a module's bridge)."""
    assert process.running(), f"the bridge exited:\n{process.log_tail()}"
    await process.wait_ready()
    return process


# ------------------------------------------------------------------------------ the load


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One HTTP answer as the client saw it (retries included)."""

    at: float
    status: int
    retry_after: str | None


@dataclass
class Load:
    """One :func:`run_send` run; every result and every answer's status and Retry-After."""

    options: SendOptions
    seed: int = SEED
    results: list[RequestResult] = field(default_factory=list)
    answers: list[HttpAnswer] = field(default_factory=list)
    timed_out: bool = False
    # When each result arrived (time.monotonic()), in the order of ``results``.
    result_times: list[float] = field(default_factory=list)

    async def run_for(self, timeout_s: float) -> SendSummary | None:
        """:meth:`run`, cut off after ``timeout_s``: then None, and ``timed_out`` is set."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.run()
        except TimeoutError:
            self.timed_out = True
            return None

    async def run(self) -> SendSummary:
        trace = aiohttp.TraceConfig()

        async def on_request_end(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            response = params.response
            self.answers.append(
                HttpAnswer(time.monotonic(), response.status, response.headers.get("Retry-After"))
            )

        trace.on_request_end.append(on_request_end)

        def keep(result: RequestResult) -> None:
            self.results.append(result)
            self.result_times.append(time.monotonic())

        connector = aiohttp.TCPConnector(
            limit=self.options.concurrency, ssl=client_context(self.options.ca_file)
        )
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
            return await run_send(self.options, session=session, on_result=keep, seed=self.seed)

    def statuses(self) -> Counter[int | str]:
        counts: Counter[int | str] = Counter()
        for result in self.results:
            counts[result.status if result.status is not None else result.error or "none"] += 1
        return counts

    def without_retry_after(self) -> list[HttpAnswer]:
        return [a for a in self.answers if a.status in (429, 503) and not a.retry_after]

    def slow(self, limit_ms: float = ALM_RESPONSE_LIMIT_MS) -> list[RequestResult]:
        """Requests answered (or given up) no faster than ALM's response timeout."""
        return [r for r in self.results if r.latency_ms >= limit_ms]


def load_options(
    url: str,
    *,
    count: int,
    concurrency: int = 4,
    rate: float = 0.0,
    retry: bool = True,
    max_retry_seconds: float = 60.0,
    timeout_seconds: float = 10.0,
) -> SendOptions:
    """Generated batches of 1-20 events in both dialects, signed, with a fixed seed."""
    return SendOptions(
        url=url,
        generate=True,
        count=count,
        batch_size=BatchSize(1, 20),
        dialect="mixed",
        seed=SEED,
        now=FIXED_NOW,
        auth="hmac",
        hmac_secret=SECRET.encode(),
        concurrency=concurrency,
        rate=rate,
        # Longer than ALM's 5 s, so that a slow answer is measured rather than cut off.
        timeout_seconds=timeout_seconds,
        retry_until_acknowledged=retry,
        max_batch_retry_seconds=max_retry_seconds,
        retry_backoff_base_seconds=0.5,
        retry_backoff_max_seconds=5.0,
    )


def signed_batch(size: int, *, seed: int) -> tuple[bytes, dict[str, str]]:
    """One generated batch and the headers that authenticate it."""
    body = generate_batch(
        account_id=1234,
        size=size,
        mix=DEFAULT_MIX,
        rng=random.Random(seed),
        dialect="guide",
        now=FIXED_NOW,
    )
    return body, signed(body)


def signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-ALM-Signature": sign_hmac(body, SECRET.encode())}


def with_new_ids(body: bytes, suffix: str) -> bytes:
    """The same batch (same event names, so the same topics) under other event ids."""
    doc = json.loads(body)
    for event in doc["events"]:
        event["eventId"] = f"{event['eventId']}-{suffix}"
    return json.dumps(doc).encode()


def event_ids_of(body: bytes) -> list[str]:
    doc = json.loads(body)
    return [str(event["eventId"]) for event in doc["events"]]


# --------------------------------------------------------------------------- side probes


@dataclass
class ReadyzProbe:
    """Polls GET /readyz until cancelled: (time, status or None, body)."""

    bridge: BridgeProcess
    interval_s: float = 0.2
    samples: list[tuple[float, int | None, dict[str, Any]]] = field(default_factory=list)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                answer = await self.bridge.readyz(session)
                now = time.monotonic()
                if answer is None:
                    self.samples.append((now, None, {}))
                else:
                    self.samples.append((now, answer[0], answer[1]))
                await asyncio.sleep(self.interval_s)

    def statuses_between(self, start: float, end: float) -> list[int | None]:
        return [status for at, status, _ in self.samples if start <= at <= end]


@dataclass
class RssProbe:
    """The largest VmRSS seen while running, in KiB."""

    bridge: BridgeProcess
    interval_s: float = 0.05
    peak_kib: int = 0
    samples: int = 0

    async def run(self) -> None:
        while True:
            value = self.bridge.rss_kib()
            if value is not None:
                self.peak_kib = max(self.peak_kib, value)
                self.samples += 1
            await asyncio.sleep(self.interval_s)


@contextlib.asynccontextmanager
async def background(
    *coros: Coroutine[Any, Any, None],
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Runs probes while the block runs; cancels them afterwards."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ------------------------------------------------------------------------ reading Kafka


@dataclass(frozen=True)
class KafkaContents:
    """What the topics of one run hold: how many records carry each event id."""

    topics: tuple[str, ...]
    records: int
    event_ids: Counter[str]
    without_id: int


def run_contract(prefix: str) -> Contract:
    """The AsyncAPI contract of a :class:`BridgeProcess`'s routing settings for ``prefix``."""
    return contract_for(
        Settings(
            receiver_name=RECEIVER,
            topic_template=f"{prefix}.{{event}}",
            dead_letter_topic=f"{prefix}.deadletter",
            kafka_topic_partitions=1,
        )
    )


async def read_prefix(bootstrap: str, prefix: str, *, timeout_s: float = 60.0) -> KafkaContents:
    """Every record of every topic named ``<prefix>.*``, from the beginning to the end.

    Each record must match the bridge's AsyncAPI document (:mod:`tests.contract`).
    """
    contract = run_contract(prefix)
    read: list[ConsumerRecord[bytes, bytes]] = []
    partitions = await _partitions_of(bootstrap, prefix)
    topics = tuple(sorted({tp.topic for tp in partitions}))
    ids: Counter[str] = Counter()
    records = 0
    without_id = 0
    if not partitions:
        return KafkaContents(topics, 0, ids, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        while True:
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= end[tp] for tp in partitions):
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"could not read {prefix}.* to the end within {timeout_s:g}s: "
                    f"at {positions}, end {end}"
                )
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for batch in batches.values():
                read.extend(batch)
                for record in batch:
                    records += 1
                    headers = dict(record.headers)
                    ce_id = headers.get("ce_id")
                    if ce_id is None:
                        without_id += 1
                    else:
                        ids[ce_id.decode()] += 1
    finally:
        await consumer.stop()
    # After reading, so that the check does not eat into the time allowed for reading.
    contract.check_records(read)
    return KafkaContents(topics, records, ids, without_id)


async def _partitions_of(bootstrap: str, prefix: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(f"{prefix}."))
        if not topics:
            return []
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [
        TopicPartition(entry["topic"], part["partition"])
        for entry in described
        for part in entry["partitions"]
    ]


# ------------------------------------------------------------------------------ verdict


COLUMNS: Final = (
    ("scenario", 26),
    ("requests", 9),
    ("events", 7),
    ("2xx", 6),
    ("503/429", 8),
    ("other", 6),
    ("in kafka", 9),
    ("lost", 5),
    ("dups", 5),
)


@dataclass(frozen=True)
class Row:
    """One line of the fault table."""

    scenario: str
    requests: int
    events_sent: int
    ok: int
    unavailable: int
    other: int
    in_kafka: int
    lost: int
    duplicates: int
    lost_ids: tuple[str, ...] = ()

    def cells(self) -> list[str]:
        return [
            self.scenario,
            str(self.requests),
            str(self.events_sent),
            str(self.ok),
            str(self.unavailable),
            str(self.other),
            str(self.in_kafka),
            str(self.lost),
            str(self.duplicates),
        ]


def tally(scenario: str, results: Sequence[RequestResult], contents: KafkaContents) -> Row:
    """Lost = events of a 2xx batch that Kafka does not hold; duplicates = extra copies."""
    sent: set[str] = set()
    acknowledged: set[str] = set()
    ok = unavailable = other = 0
    for result in results:
        sent.update(result.event_ids)
        if result.acknowledged:
            ok += 1
            acknowledged.update(result.event_ids)
        elif result.status in (429, 503):
            unavailable += 1
        else:
            other += 1
    in_kafka = set(contents.event_ids)
    lost = sorted(acknowledged - in_kafka)
    duplicates = sum(n - 1 for n in contents.event_ids.values())
    return Row(
        scenario=scenario,
        requests=len(results),
        events_sent=len(sent),
        ok=ok,
        unavailable=unavailable,
        other=other,
        in_kafka=len(in_kafka),
        lost=len(lost),
        duplicates=duplicates,
        lost_ids=tuple(lost[:10]),
    )


def fixed_width_lines(
    columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[str]]
) -> list[str]:
    """A header, a rule and one line per row: the first column left, the others right."""

    def line(cells: Sequence[str]) -> str:
        return " ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, (_, width)) in enumerate(zip(cells, columns, strict=True))
        )

    header = line([name for name, _ in columns])
    return [header, "-" * len(header), *(line(cells) for cells in rows)]


def format_table(rows: Sequence[Row]) -> list[str]:
    """The rows as fixed-width text lines, with a header."""
    return fixed_width_lines(COLUMNS, [row.cells() for row in rows])


REPORT: list[Row] = []


def report(row: Row) -> None:
    """Keeps the row for the end-of-session table and prints it now (seen with -s)."""
    REPORT.append(row)
    print()
    for line in format_table([row]):
        print(line)


# ------------------------------------------------- the replicated cluster's fault table


FLEET_COLUMNS: Final = (
    ("scenario", 30),
    ("requests", 9),
    ("2xx", 6),
    ("503", 5),
    ("acknowledged", 13),
    ("lost", 5),
    ("1 copy", 7),
    ("2 copies", 9),
    ("3+", 4),
    ("slowest ms", 11),
    ("no 2xx for s", 13),
)


@dataclass(frozen=True)
class FleetRow:
    """One scenario against the replicated cluster: what was acknowledged and what Kafka holds.

    ``copies`` counts the events of the run by how many records carry their id (1, 2, 3
    or more); ``longest_without_ok_s`` is the longest stretch of the run in which no batch
    was answered 2xx.
    """

    scenario: str
    requests: int
    ok: int
    unavailable: int
    acknowledged_events: int
    lost: int
    copies: tuple[int, int, int]
    slowest_ms: float
    longest_without_ok_s: float

    def cells(self) -> list[str]:
        return [
            self.scenario,
            str(self.requests),
            str(self.ok),
            str(self.unavailable),
            str(self.acknowledged_events),
            str(self.lost),
            *(str(n) for n in self.copies),
            f"{self.slowest_ms:.0f}",
            f"{self.longest_without_ok_s:.1f}",
        ]

    def markdown(self) -> str:
        return "| " + " | ".join(self.cells()) + " |"


FLEET_REPORT: list[FleetRow] = []


def format_fleet_table(rows: Sequence[FleetRow]) -> list[str]:
    return fixed_width_lines(FLEET_COLUMNS, [row.cells() for row in rows])
