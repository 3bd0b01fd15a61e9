"""Hostile clients for the adversarial suite, and the legitimate ALM sender measured beside them.

An attack runs in a process of its own (``python -m tests.system.attacks KIND ...``), so
that its event loop never slows the legitimate sender's: the test measures what ALM would
see, not how busy its own loop is. The attacker prints ``ready`` once it has started and a
JSON :class:`AttackResult` at the end.

Attacks:

- ``slow-body``: many connections send ``POST`` headers with a large ``Content-Length``
  (and a well-formed but bogus signature, or none) and never the body; each connection is
  opened again as soon as the server closes it.
- ``flood``: complete requests at full speed, without a signature or with a wrong one.
- ``partial-headers``: connections that send half their request headers and go idle; the
  time until the server closes each one is kept.
- ``malformed``: requests with two ``Content-Length`` headers.

Every attacking body is a batch that would be published if it were authenticated: its
event ids start with :data:`ATTACK_MARKER`, so that any of it in Kafka is found.

Beside them, in the test's process: :class:`LegitSender` (signed batches one after the
other, as ALM sends them), :class:`SlowBodyProbe` (one body-less request at a time, timed),
:func:`read_run` (every record of a run's topics) and :func:`log_delta` (what the bridge
logged meanwhile, the legitimate requests' own lines apart).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gzip
import json
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from bridge.cli.sender import expand_mix, generate_events
from bridge.core.auth import sign_hmac
from tests.system.harness import fixed_width_lines

ATTACK_MARKER: Final = "attacker-"
NOSNIFF: Final = "nosniff"
# ALM's own timeout: a later answer is a failed delivery, whatever the host's load.
ALM_WINDOW_MS: Final = 5000.0
# The bound set for legitimate batches while under attack, held by 19 in 20 of them: on a
# shared 2-core host (other builds running) one batch can wait behind other processes.
LEGIT_LATENCY_LIMIT_MS: Final = 2000.0
LEGIT_WITHIN_LIMIT_SHARE: Final = 0.95
# Learner activity, as a busy account sends it; a closed set of event names (and topics).
LEGIT_MIX: Final = expand_mix({"enrollment": 3, "completion": 2, "progress": 4})
LEGIT_REQUEST_ID_PREFIX: Final = "legit-"
FIXED_NOW: Final = datetime(2026, 8, 21, 10, 15, tzinfo=UTC)
# How long an attacking client waits for any answer before giving up on a connection.
READ_LIMIT_S: Final = 30.0

AttackKind = Literal["slow-body", "flood", "partial-headers", "malformed"]
SignatureMode = Literal["bogus", "none"]


# ------------------------------------------------------------------------------ bodies


def attacker_batch(account_id: int = 1234, size: int = 3) -> bytes:
    """A well-formed batch an authenticated sender would get published, marked as hostile."""
    rng = random.Random(secrets.randbits(32))
    events = generate_events(size=size, mix=LEGIT_MIX, rng=rng, dialect="guide", now=FIXED_NOW)
    for event in events:
        event["eventId"] = f"{ATTACK_MARKER}{secrets.token_hex(8)}"
    return json.dumps({"accountId": account_id, "events": events}).encode()


def bogus_signature() -> str:
    """A well-formed HMAC-SHA256 hex digest that matches nothing."""
    return secrets.token_hex(32)


def legit_batch(label: str, index: int, *, account_id: int = 1234) -> bytes:
    """Batch ``index`` of a sender: 1-20 events, the same bytes for the same arguments."""
    rng = random.Random(f"{label}-{index}")
    events = generate_events(
        size=rng.randint(1, 20), mix=LEGIT_MIX, rng=rng, dialect="guide", now=FIXED_NOW
    )
    return json.dumps({"accountId": account_id, "events": events}).encode()


def warm_up_batch(*, account_id: int = 1234) -> bytes:
    """One event of every name the legitimate sender uses, so that its topics exist."""
    rng = random.Random("warm-up")
    events = generate_events(size=3000, mix=LEGIT_MIX, rng=rng, dialect="guide", now=FIXED_NOW)
    by_name: dict[str, dict[str, Any]] = {}
    for event in events:
        by_name.setdefault(str(event["eventName"]), event)
    return json.dumps({"accountId": account_id, "events": list(by_name.values())}).encode()


def event_ids(body: bytes) -> list[str]:
    return [str(event["eventId"]) for event in json.loads(body)["events"]]


# ---------------------------------------------------------------------- the legitimate ALM


@dataclass(frozen=True, slots=True)
class LegitAnswer:
    """One batch of the legitimate sender: its answer and how long it took."""

    index: int
    status: int | None
    latency_ms: float
    event_ids: tuple[str, ...]
    nosniff: bool
    # None for a 2xx; else the body of the answer, or the error of the client.
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class LegitSender:
    """Signed batches one after the other, as ALM sends the batches of one webhook."""

    url: str
    secret: bytes
    label: str
    account_id: int = 1234
    timeout_s: float = 10.0
    # A new connection for every batch instead of one kept alive between them.
    new_connections: bool = False
    answers: list[LegitAnswer] = field(default_factory=list)
    # Every event id it ever sent, the warm-up's included.
    sent_ids: set[str] = field(default_factory=set)

    async def send(self, session: aiohttp.ClientSession, index: int, body: bytes) -> LegitAnswer:
        headers = {
            "Content-Type": "application/json",
            "X-ALM-Signature": sign_hmac(body, self.secret),
            "X-Request-Id": f"{LEGIT_REQUEST_ID_PREFIX}{self.label}-{index}",
        }
        self.sent_ids.update(event_ids(body))
        started = time.monotonic()
        try:
            async with session.post(
                self.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(self.timeout_s)
            ) as response:
                text = await response.text(errors="replace")
                answer = LegitAnswer(
                    index,
                    response.status,
                    (time.monotonic() - started) * 1000,
                    tuple(event_ids(body)),
                    response.headers.get("X-Content-Type-Options") == NOSNIFF,
                    None if response.status < 300 else text[:200],
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            answer = LegitAnswer(
                index,
                None,
                (time.monotonic() - started) * 1000,
                tuple(event_ids(body)),
                False,
                f"{type(exc).__name__}: {exc}"[:200],
            )
        self.answers.append(answer)
        return answer

    async def warm_up(self, timeout_s: float = 60.0) -> LegitAnswer:
        """Creates the sender's topics before anything is measured; not counted.

        Sent again until acknowledged, as ALM would: creating a dozen topics on a busy
        broker may take longer than one publishing deadline.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        body = warm_up_batch(account_id=self.account_id)
        async with aiohttp.ClientSession() as session:
            while True:
                answer = await self.send(session, -1, body)
                self.answers.remove(answer)
                if answer.ok or loop.time() >= deadline:
                    return answer
                await asyncio.sleep(1.0)

    async def run_for(self, seconds: float) -> None:
        """Sends until ``seconds`` have passed; the last batch is always waited for."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        # One connection, kept alive between batches when the server allows it, or a new one
        # for each batch.
        connector = aiohttp.TCPConnector(limit=1, force_close=self.new_connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            index = len(self.answers)
            while loop.time() < end:
                await self.send(
                    session, index, legit_batch(self.label, index, account_id=self.account_id)
                )
                index += 1

    @property
    def acknowledged_ids(self) -> set[str]:
        return {i for a in self.answers if a.ok for i in a.event_ids}

    def failures(self) -> list[LegitAnswer]:
        return [a for a in self.answers if not a.ok]

    def slow(self, limit_ms: float = LEGIT_LATENCY_LIMIT_MS) -> list[LegitAnswer]:
        return [a for a in self.answers if a.latency_ms > limit_ms]

    @property
    def max_latency_ms(self) -> float:
        return max((a.latency_ms for a in self.answers), default=0.0)


# ------------------------------------------------------------------------------ attacks


@dataclass
class AttackResult:
    """What one attacking process did and what it was answered."""

    kind: str
    connections: int = 0
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    without_nosniff: int = 0
    # Seconds from the last byte sent to the server closing the connection.
    closed_after_s: list[float] = field(default_factory=list)
    # Connections still open when the attack ended.
    still_open: int = 0
    # Milliseconds from a request's last byte to the head of its answer.
    answer_ms: list[float] = field(default_factory=list)

    def to_json(self) -> str:
        doc = asdict(self)
        doc["statuses"] = dict(self.statuses)
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> AttackResult:
        doc = json.loads(text)
        doc["statuses"] = Counter(doc["statuses"])
        return cls(**doc)


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """The head of an HTTP answer read from a raw socket, or why there was none."""

    status: str
    nosniff: bool


def _head(method: str, path: str, host: str, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader, timeout_s: float) -> RawAnswer:
    """The status line and headers of the server's answer; ``closed`` on EOF without one."""
    try:
        async with asyncio.timeout(timeout_s):
            head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return RawAnswer("closed" if not exc.partial else "truncated", False)
    except (ConnectionError, asyncio.LimitOverrunError):
        return RawAnswer("reset", False)
    except TimeoutError:
        return RawAnswer("no_answer", False)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = parts[1] if len(parts) >= 2 else "garbled"
    nosniff = any(
        line.partition(":")[0].strip().lower() == "x-content-type-options"
        and line.partition(":")[2].strip().lower() == NOSNIFF
        for line in lines[1:]
    )
    return RawAnswer(status, nosniff)


async def wait_closed_by_server(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """Whether the server closed the connection (EOF or reset) within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()


class _Attack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.result = AttackResult(kind=args.kind)
        self.end = 0.0
        self.open = 0

    @property
    def host_header(self) -> str:
        return f"{self.args.host}:{self.args.port}"

    def remaining(self) -> float:
        return self.end - asyncio.get_running_loop().time()

    def record(self, answer: RawAnswer, elapsed_ms: float | None = None) -> None:
        self.result.statuses[answer.status] += 1
        if elapsed_ms is not None and answer.status.isdigit():
            self.result.answer_ms.append(round(elapsed_ms, 1))
        if answer.status.isdigit() and not answer.nosniff:
            self.result.without_nosniff += 1

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            async with asyncio.timeout(max(self.remaining(), 0.1)):
                pair = await asyncio.open_connection(self.args.host, self.args.port)
        except (OSError, TimeoutError):
            self.result.statuses["connect_failed"] += 1
            return None
        self.result.connections += 1
        return pair

    async def run(self) -> AttackResult:
        loop = asyncio.get_running_loop()
        self.end = loop.time() + self.args.seconds
        workers = [asyncio.create_task(self.worker()) for _ in range(self.args.connections)]
        print("ready", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*workers, return_exceptions=True),
                self.args.seconds + READ_LIMIT_S,
            )
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self.result.still_open = self.open
        return self.result

    async def worker(self) -> None:
        raise NotImplementedError

    async def hold(self, make_head: bytes, body: bytes = b"") -> None:
        """Sends ``make_head`` (and ``body``, never the whole of it) and waits for the
        server's answer or its closing, repeatedly."""
        while self.remaining() > 0:
            pair = await self.connect()
            if pair is None:
                await asyncio.sleep(0.05)
                continue
            reader, writer = pair
            self.open += 1
            try:
                writer.write(make_head)
                if body:
                    self.result.requests += 1
                for start in range(0, len(body), 256 * 1024):
                    if reader.at_eof():
                        break
                    writer.write(body[start : start + 256 * 1024])
                    async with asyncio.timeout(max(self.remaining(), 0.1)):
                        await writer.drain()
                sent_at = time.monotonic()
                if not body:
                    self.result.requests += 1
                wait = max(self.remaining(), 0.0) + self.args.answer_grace
                answer = await read_answer(reader, wait)
                if answer.status == "no_answer":
                    # Still held open by the server, without an answer, after the grace.
                    self.result.statuses["held_at_end"] += 1
                    break
                self.record(answer, (time.monotonic() - sent_at) * 1000)
            except ConnectionError:
                self.result.statuses["reset"] += 1
            except TimeoutError:
                self.result.statuses["send_blocked"] += 1
            finally:
                self.open -= 1
                await _close(writer)

    async def until_closed(self, partial: bytes) -> None:
        """Sends ``partial`` and waits for the server to close the connection, repeatedly."""
        loop = asyncio.get_running_loop()
        while self.remaining() > 0:
            pair = await self.connect()
            if pair is None:
                await asyncio.sleep(0.05)
                continue
            reader, writer = pair
            self.open += 1
            try:
                writer.write(partial)
                async with asyncio.timeout(max(self.remaining(), 0.1)):
                    await writer.drain()
                sent_at = loop.time()
                self.result.requests += 1
                wait = max(self.remaining(), 0.0) + self.args.close_grace
                if await wait_closed_by_server(reader, wait):
                    self.result.closed_after_s.append(loop.time() - sent_at)
                    self.result.statuses["closed_by_server"] += 1
                else:
                    self.result.statuses["still_open"] += 1
            except ConnectionError:
                self.result.statuses["reset"] += 1
            except TimeoutError:
                self.result.statuses["send_blocked"] += 1
            finally:
                self.open -= 1
                await _close(writer)


class SlowBody(_Attack):
    """POST headers announcing a body that never comes."""

    async def worker(self) -> None:
        headers = [("Content-Type", "application/json"), ("Content-Length", "100000")]
        if self.args.signature == "bogus":
            headers.append(("X-ALM-Signature", bogus_signature()))
        await self.hold(_head("POST", self.args.path, self.host_header, headers))


@dataclass
class SlowBodyProbe:
    """One body-less request at a time from the test's own process, timed to its answer.

    The attacker's own timings include the queueing of its hundreds of connections in one
    event loop; a single probe beside it measures what the bridge does.
    """

    host: str
    port: int
    signature: SignatureMode
    path: str = "/webhooks/alm"
    interval_s: float = 1.0
    timeout_s: float = 10.0
    # (status, milliseconds from the request's headers to the answer)
    answers: list[tuple[str, float]] = field(default_factory=list)
    # Milliseconds to connect, apart: under a storm of new connections, accepting one waits.
    connect_ms: list[float] = field(default_factory=list)

    async def once(self) -> tuple[str, float]:
        headers = [("Content-Type", "application/json"), ("Content-Length", "100000")]
        if self.signature == "bogus":
            headers.append(("X-ALM-Signature", bogus_signature()))
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        connected = time.monotonic()
        self.connect_ms.append((connected - started) * 1000)
        try:
            writer.write(_head("POST", self.path, f"{self.host}:{self.port}", headers))
            answer = await read_answer(reader, self.timeout_s)
        finally:
            await _close(writer)
        result = (answer.status, (time.monotonic() - connected) * 1000)
        self.answers.append(result)
        return result

    async def run_for(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await self.once()
            await asyncio.sleep(self.interval_s)

    @property
    def slowest_ms(self) -> float:
        return max((ms for _, ms in self.answers), default=0.0)


class PartialHeaders(_Attack):
    """Half a request head, then silence; the server should close the connection."""

    async def worker(self) -> None:
        partial = (
            f"POST {self.args.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        await self.until_closed(partial)


class Malformed(_Attack):
    """Requests with two Content-Length headers, one after the other on each connection."""

    async def worker(self) -> None:
        body = b"{}"
        head = _head(
            "POST",
            self.args.path,
            self.host_header,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Content-Length", str(len(body))),
            ],
        )
        while self.remaining() > 0 and self.result.requests < self.args.max_requests:
            # Counted before connecting, so that the workers together send exactly the maximum.
            self.result.requests += 1
            pair = await self.connect()
            if pair is None:
                await asyncio.sleep(0.05)
                continue
            reader, writer = pair
            try:
                writer.write(head + body)
                sent_at = time.monotonic()
                answer = await read_answer(reader, 5.0)
                self.record(answer, (time.monotonic() - sent_at) * 1000)
            except ConnectionError:
                self.result.statuses["reset"] += 1
            finally:
                await _close(writer)


class Flood(_Attack):
    """Complete, unauthenticated requests at full speed through an HTTP client."""

    async def worker(self) -> None:
        raise AssertionError("a flood runs through run()")

    async def run(self) -> AttackResult:
        loop = asyncio.get_running_loop()
        self.end = loop.time() + self.args.seconds
        body = attacker_batch()
        connector = aiohttp.TCPConnector(limit=self.args.connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> None:
                while self.remaining() > 0 and self.result.requests < self.args.max_requests:
                    headers = {"Content-Type": "application/json"}
                    if self.args.signature == "bogus":
                        headers["X-ALM-Signature"] = bogus_signature()
                    self.result.requests += 1
                    sent_at = time.monotonic()
                    try:
                        async with session.post(
                            self.args.url,
                            data=body,
                            headers=headers,
                            timeout=aiohttp.ClientTimeout(total=10),
                        ) as response:
                            await response.read()
                            self.record(
                                RawAnswer(
                                    str(response.status),
                                    response.headers.get("X-Content-Type-Options") == NOSNIFF,
                                ),
                                (time.monotonic() - sent_at) * 1000,
                            )
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        self.result.statuses[type(exc).__name__] += 1

            workers = [asyncio.create_task(one()) for _ in range(self.args.connections)]
            print("ready", flush=True)
            await asyncio.gather(*workers, return_exceptions=True)
        self.result.connections = self.result.requests
        return self.result


@functools.cache
def _spaces(size: int) -> bytes:
    """One body shared by every connection of an attack (hundreds of copies would take
    longer to make than the attack lasts)."""
    return b" " * size


@functools.cache
def _gzip_of_spaces(size: int) -> bytes:
    return gzip.compress(_spaces(size))


class NearlyWholeBody(_Attack):
    """A large body with a well-formed, wrong signature, sent but for its last byte."""

    async def worker(self) -> None:
        size = self.args.body_bytes
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(size)),
            ("X-ALM-Signature", bogus_signature()),
        ]
        head = _head("POST", self.args.path, self.host_header, headers)
        await self.hold(head, body=_spaces(size - 1))


class GzipStall(_Attack):
    """A small gzip body that would inflate to megabytes, its trailer never sent."""

    async def worker(self) -> None:
        compressed = _gzip_of_spaces(self.args.body_bytes)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", str(len(compressed))),
            ("X-ALM-Signature", bogus_signature()),
        ]
        head = _head("POST", self.args.path, self.host_header, headers)
        await self.hold(head, body=compressed[:-8])


class BigHeaders(_Attack):
    """Many large header fields, the head never finished; the server should close it."""

    async def worker(self) -> None:
        field_value = "a" * self.args.field_bytes
        partial = (
            f"POST {self.args.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            + "".join(f"X-Filler-{i}: {field_value}\r\n" for i in range(self.args.fields))
        ).encode()
        await self.until_closed(partial)


ATTACKS: Final[dict[str, type[_Attack]]] = {
    "slow-body": SlowBody,
    "flood": Flood,
    "partial-headers": PartialHeaders,
    "malformed": Malformed,
    "nearly-whole-body": NearlyWholeBody,
    "gzip-stall": GzipStall,
    "big-headers": BigHeaders,
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.system.attacks")
    parser.add_argument("kind", choices=sorted(ATTACKS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhooks/alm")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--signature", choices=["bogus", "none"], default="bogus")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--body-bytes", type=int, default=5 * 1024 * 1024 - 4096)
    parser.add_argument("--fields", type=int, default=60)
    parser.add_argument("--field-bytes", type=int, default=8000)
    parser.add_argument(
        "--answer-grace",
        type=float,
        default=4.0,
        help="how long past the attack a slow-body connection may wait for its answer",
    )
    parser.add_argument(
        "--close-grace",
        type=float,
        default=10.0,
        help="how long past the attack a partial-headers connection may wait to be closed",
    )
    args = parser.parse_args(argv)
    args.url = f"http://{args.host}:{args.port}{args.path}"
    return args


async def _main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    result = await ATTACKS[args.kind](args).run()
    print(result.to_json(), flush=True)


# ------------------------------------------------------------------- the attacker process


@dataclass
class AttackProcess:
    """``python -m tests.system.attacks`` as a child process; started, then awaited."""

    argv: list[str]
    cwd: Path
    _proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.system.attacks",
            *self.argv,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = await self._proc.stdout.readline()
        if line.strip() != b"ready":
            await self._proc.wait()
            stderr = b"" if self._proc.stderr is None else await self._proc.stderr.read()
            raise AssertionError(f"the attacker did not start: {line!r} {stderr.decode()[-2000:]}")

    async def result(self, timeout_s: float) -> AttackResult:
        proc = self._proc
        assert proc is not None, "start() first"
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            self.kill()
            raise AssertionError(f"the attacker did not finish within {timeout_s:g}s") from None
        if proc.returncode != 0:
            raise AssertionError(f"the attacker failed ({proc.returncode}): {stderr.decode()}")
        return AttackResult.from_json(stdout.decode().strip().splitlines()[-1])

    def kill(self) -> None:
        """Kills the attacker by the pid we started, if it still runs."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()


# ------------------------------------------------------------------------- Kafka read-back


@dataclass(frozen=True, slots=True)
class StoredRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def event_id(self) -> str | None:
        ce_id = self.headers.get("ce_id")
        return None if ce_id is None else ce_id.decode()

    @property
    def event_name(self) -> str | None:
        name = self.headers.get("alm_event_name")
        return None if name is None else name.decode()

    def hostile(self) -> bool:
        """Whether any part of the record comes from an attacker's body."""
        marker = ATTACK_MARKER.encode()
        return marker in self.value or any(marker in v for v in self.headers.values())


async def topics_under(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(f"{prefix}."))
    finally:
        await admin.close()


async def read_run(bootstrap: str, prefix: str, *, timeout_s: float = 60.0) -> list[StoredRecord]:
    """Every record of every topic ``<prefix>.*``, from the beginning to the current end."""
    topics = await topics_under(bootstrap, prefix)
    if not topics:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(entry["topic"], part["partition"])
        for entry in described
        for part in entry["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    records: list[StoredRecord] = []
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
                raise AssertionError(f"could not read {prefix}.* to the end in {timeout_s:g}s")
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for batch in batches.values():
                for record in batch:
                    records.append(
                        StoredRecord(
                            record.topic,
                            record.key,
                            record.value or b"",
                            {k: bytes(v) for k, v in record.headers},
                        )
                    )
    finally:
        await consumer.stop()
    return records


# --------------------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class LogDelta:
    """What the bridge wrote to its log during an attack, its legitimate requests aside."""

    lines: int
    bytes: int
    tracebacks: int
    legit_lines: int
    new_lines: tuple[str, ...]

    def events(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for line in self.new_lines:
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    found.append(doc)
        return found


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_delta(path: Path, since: int) -> LogDelta:
    """The lines written after byte ``since``; lines of legitimate requests counted apart."""
    with path.open("rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    own: list[str] = []
    legit = 0
    for line in text.splitlines():
        if f'"request_id":"{LEGIT_REQUEST_ID_PREFIX}' in line.replace(" ", ""):
            legit += 1
        else:
            own.append(line)
    return LogDelta(
        lines=len(own),
        bytes=sum(len(line) + 1 for line in own),
        tracebacks=sum("Traceback" in line for line in own),
        legit_lines=legit,
        new_lines=tuple(own),
    )


# --------------------------------------------------------------------------- the table


COLUMNS: Final = (
    ("attack", 34),
    ("attacker req", 12),
    ("attacker answers", 30),
    ("legit sent", 10),
    ("legit 2xx", 9),
    ("max ms", 7),
    ("log lines", 9),
)


@dataclass(frozen=True)
class AttackRow:
    """One line of the adversarial table."""

    attack: str
    attacker_requests: int
    attacker_answers: str
    legit_sent: int
    legit_ok: int
    legit_max_ms: float
    log_lines: int

    def cells(self) -> list[str]:
        return [
            self.attack,
            str(self.attacker_requests),
            self.attacker_answers,
            str(self.legit_sent),
            str(self.legit_ok),
            f"{self.legit_max_ms:.0f}",
            str(self.log_lines),
        ]


def summarize_statuses(statuses: Counter[str], top: int = 3) -> str:
    return " ".join(f"{status}:{n}" for status, n in statuses.most_common(top)) or "-"


def format_attack_table(rows: Sequence[AttackRow], *, markdown: bool = False) -> list[str]:
    if markdown:
        header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
        rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|"
        return [header, rule, *("| " + " | ".join(row.cells()) + " |" for row in rows)]

    return fixed_width_lines(COLUMNS, [row.cells() for row in rows])


ATTACK_REPORT: list[AttackRow] = []


def report_attack(row: AttackRow) -> None:
    """Keeps the row for the end-of-session table and prints it now (seen with -s)."""
    ATTACK_REPORT.append(row)
    print()
    for line in format_attack_table([row]):
        print(line)


FIGURES_BEGIN: Final = "<!-- attack-figures:begin -->"
FIGURES_END: Final = "<!-- attack-figures:end -->"


def write_figures(path: Path, rows: Sequence[AttackRow], *, note: str) -> None:
    """Replaces the marked block of ``path`` with the rows as a Markdown table."""
    text = path.read_text() if path.exists() else f"{FIGURES_BEGIN}\n{FIGURES_END}\n"
    head, found, rest = text.partition(FIGURES_BEGIN)
    _, found_end, tail = rest.partition(FIGURES_END)
    if not (found and found_end):
        raise ValueError(f"{path} has no {FIGURES_BEGIN} ... {FIGURES_END} block")
    block = [FIGURES_BEGIN, note, "", *format_attack_table(rows, markdown=True), FIGURES_END]
    path.write_text(head + "\n".join(block) + tail)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
