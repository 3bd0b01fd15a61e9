"""The Kafka ceilings: the raw aiokafka producer (Python client) and Java ProducerPerformance.

    python -m bench.ceilings SPEC.json OUT.json

runs the raw producer ceiling in its own process, with the bridge's environment, so that
:class:`bridge.config.settings.Settings` resolves exactly as in the bridge: the same receiver, the
same :class:`bridge.core.routing.Router` building the same records from the same generated
batches, the same producer settings (acks=all, idempotence, compression, linger, batch size).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer

from bench.bodies import make_templates, templates_for
from bench.processes import cpu_seconds, memory_mb, system_busy_seconds
from bench.stats import (
    P99_LIMIT_MS,
    PhaseStats,
    ProcUsage,
    Sample,
    schedule_open_loop,
    step_passes,
    summarize,
)
from bridge.config.receivers import resolve
from bridge.config.settings import Settings, load_settings
from bridge.core.alm import Batch, Limits, parse_body
from bridge.core.records import Record
from bridge.core.routing import Router
from bridge.kafka.publisher import producer_options

TARGET: Final = "aiokafka"
_SUMMARY: Final = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbs>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99\.9th"
)


@dataclass(slots=True)
class ProducerSpec:
    seed: int = 1
    account_id: int = 1234
    batch: int = 100
    concurrency: int = 16
    throughput_s: float = 5.0
    latency_batch: int = 10
    latency_s: float = 3.0
    rates: list[float] = field(default_factory=list)
    # Open-loop steps at these fractions of the measured throughput too, so the chart shows
    # the client's latency up to its ceiling and not only at the bridge's rates.
    fractions: list[float] = field(default_factory=list)
    step_s: float = 3.0
    pause_s: float = 0.5
    p99_limit_ms: float = P99_LIMIT_MS
    watch: dict[str, int] = field(default_factory=dict)
    # Which measurements this run makes: the latency one runs on its own next to the
    # bridge's closed-loop phases, so that both see the same broker and machine.
    parts: list[str] = field(default_factory=lambda: ["throughput", "latency", "steps"])

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> ProducerSpec:
        return cls(**orjson.loads(data))


def record_groups(
    settings: Settings, batch: int, *, seed: int, account_id: int
) -> list[list[Record]]:
    """The records the bridge makes of the generated batches of ``batch`` events."""
    receiver = resolve(settings)[0]
    router = Router(receiver.routing)
    limits = Limits(
        max_events=settings.max_events_per_batch,
        max_depth=settings.max_json_depth,
        max_string_chars=settings.max_string_chars,
    )
    groups: list[list[Record]] = []
    for template in make_templates(batch, templates_for(batch), seed=seed, account_id=account_id):
        parsed = parse_body(template.body, limits)
        assert isinstance(parsed, Batch)
        groups.append(list(router.plan(parsed).records))
    return groups


def record_bytes(record: Record) -> int:
    """Key, value and header bytes: what ProducerPerformance's --record-size stands for."""
    headers = sum(len(k) + len(v) for k, v in record.headers)
    return len(record.value) + len(record.key or b"") + headers


async def _send_group(producer: AIOKafkaProducer, group: Sequence[Record]) -> None:
    futures = [await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in group]
    await asyncio.gather(*futures)


async def _outcome(producer: AIOKafkaProducer, group: Sequence[Record]) -> tuple[int, str | None]:
    """Send a group and await it: (200, None), or (0, the error's name): a sample, not a crash."""
    try:
        await _send_group(producer, group)
    except Exception as exc:
        return 0, type(exc).__name__
    return 200, None


async def _measured(
    name: str,
    *,
    mode: str,
    senders: int,
    batch: int,
    duration_s: float,
    rate: float | None,
    run: Callable[[float], Awaitable[list[Sample]]],
    watch: dict[str, int],
) -> PhaseStats:
    others0 = {proc: cpu_seconds(pid) for proc, pid in watch.items()}
    cpu0, busy0 = time.process_time(), system_busy_seconds()
    t0 = time.perf_counter()
    samples = await run(t0)
    stats = summarize(
        samples,
        name=name,
        target=TARGET,
        mode=mode,
        senders=senders,
        batch=batch,
        duration_s=duration_s,
        offered_rps=rate,
    )
    cpu = time.process_time() - cpu0
    busy = system_busy_seconds()
    stats.system_busy_s = None if busy is None or busy0 is None else busy - busy0
    stats.procs = {"producer": ProcUsage(cpu_s=cpu, hwm_mb=memory_mb(os.getpid())[1])}
    for proc, pid in watch.items():
        before, after = others0.get(proc), cpu_seconds(pid)
        usage = ProcUsage(hwm_mb=memory_mb(pid)[1])
        if before is not None and after is not None:
            usage.cpu_s = after - before
        stats.procs[proc] = usage
    return stats


async def _closed(
    producer: AIOKafkaProducer,
    groups: Sequence[Sequence[Record]],
    *,
    name: str,
    senders: int,
    duration_s: float,
    watch: dict[str, int],
) -> PhaseStats:
    batch = len(groups[0])

    async def run(t0: float) -> list[Sample]:
        samples: list[Sample] = []
        end = t0 + duration_s
        counter = iter(range(sys.maxsize))

        async def worker() -> None:
            for index in counter:
                started = time.perf_counter()
                if started >= end:
                    return
                status, error = await _outcome(producer, groups[index % len(groups)])
                samples.append(
                    Sample(started - t0, time.perf_counter() - started, status, True, error)
                )

        await asyncio.gather(*(worker() for _ in range(senders)))
        return samples

    return await _measured(
        name,
        mode="closed",
        senders=senders,
        batch=batch,
        duration_s=duration_s,
        rate=None,
        run=run,
        watch=watch,
    )


async def _open(
    producer: AIOKafkaProducer,
    groups: Sequence[Sequence[Record]],
    *,
    name: str,
    rate: float,
    duration_s: float,
    watch: dict[str, int],
) -> PhaseStats:
    batch = len(groups[0])
    total = max(1, math.ceil(rate * duration_s))

    async def run(t0: float) -> list[Sample]:
        samples: list[Sample] = []

        async def one(index: int, due: float) -> None:
            started = time.perf_counter()
            status, error = await _outcome(producer, groups[index % len(groups)])
            samples.append(
                Sample(due - t0, time.perf_counter() - due, status, True, error, lag=started - due)
            )

        await schedule_open_loop(total, rate, t0, one, wait_s=30.0)
        return samples

    return await _measured(
        name,
        mode="open",
        senders=0,
        batch=batch,
        duration_s=duration_s,
        rate=rate,
        run=run,
        watch=watch,
    )


async def run_producer(spec: ProducerSpec) -> dict[str, Any]:
    settings = load_settings()
    big = record_groups(settings, spec.batch, seed=spec.seed, account_id=spec.account_id)
    small = record_groups(settings, spec.latency_batch, seed=spec.seed, account_id=spec.account_id)
    sizes = [record_bytes(r) for g in big for r in g]
    options = producer_options(settings)
    producer = AIOKafkaProducer(**options)
    await producer.start()
    throughput: PhaseStats | None = None
    latency: PhaseStats | None = None
    steps: list[dict[str, Any]] = []
    try:
        for group in big:
            await _send_group(producer, group)
        if "throughput" in spec.parts:
            throughput = await _closed(
                producer,
                big,
                name=f"raw producer, {spec.concurrency} x {spec.batch} records in flight",
                senders=spec.concurrency,
                duration_s=spec.throughput_s,
                watch=spec.watch,
            )
            _say(throughput)
        if "latency" in spec.parts:
            await asyncio.sleep(spec.pause_s)
            latency = await _closed(
                producer,
                small,
                name=f"raw producer, send {spec.latency_batch} and await all",
                senders=1,
                duration_s=spec.latency_s,
                watch=spec.watch,
            )
            _say(latency)
        most = (throughput.requests_per_s or 0.0) if throughput else 0.0
        rates = sorted({*spec.rates, *(round(f * most, 2) for f in spec.fractions if most > 0)})
        for rate in rates if "steps" in spec.parts else []:
            await asyncio.sleep(spec.pause_s)
            step = await _open(
                producer,
                big,
                name="raw producer, open loop",
                rate=rate,
                duration_s=spec.step_s,
                watch=spec.watch,
            )
            _say(step)
            steps.append(step.to_dict())
            if not step_passes(step, spec.p99_limit_ms):
                break
    finally:
        await producer.stop()
    shown = {k: v for k, v in options.items() if k not in {"sasl_plain_password", "ssl_context"}}
    return {
        "settings": shown,
        "record_bytes_mean": sum(sizes) / len(sizes),
        "value_bytes_mean": sum(len(r.value) for g in big for r in g) / len(sizes),
        "topics": sorted({r.topic for g in big for r in g}),
        "throughput": throughput.to_dict() if throughput else None,
        "latency": latency.to_dict() if latency else None,
        "steps": steps,
    }


def _say(stats: PhaseStats) -> None:
    rate = f" @ {stats.offered_rps:.1f}/s" if stats.offered_rps else ""
    print(
        f"  {stats.name}{rate}: {stats.events_per_s or 0:.0f} records/s, "
        f"p99 {stats.latency.p99 or 0:.1f} ms",
        file=sys.stderr,
        flush=True,
    )


# Java ProducerPerformance ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JavaResult:
    records: int
    records_per_s: float
    mb_per_s: float
    avg_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_producer_performance(output: str) -> JavaResult | None:
    """The final summary line of ``ProducerPerformance`` (not its 5-second progress lines)."""
    matches = list(_SUMMARY.finditer(output))
    if not matches:
        return None
    g = matches[-1].groupdict()
    return JavaResult(
        records=int(g["records"]),
        records_per_s=float(g["rps"]),
        mb_per_s=float(g["mbs"]),
        avg_ms=float(g["avg"]),
        max_ms=float(g["max"]),
        p50_ms=float(g["p50"]),
        p95_ms=float(g["p95"]),
        p99_ms=float(g["p99"]),
        p999_ms=float(g["p999"]),
    )


def java_command(
    *,
    java: str,
    classpath: str,
    log4j_config: Path,
    logs_dir: Path,
    topic: str,
    records: int,
    record_size: int,
    bootstrap: str,
    props: dict[str, str],
) -> list[str]:
    producer_props = [f"bootstrap.servers={bootstrap}", *(f"{k}={v}" for k, v in props.items())]
    return [
        java,
        "-Xmx512m",
        f"-Dlog4j2.configurationFile={log4j_config}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        classpath,
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        *producer_props,
    ]


def run_java(command: list[str], *, output: Path, timeout_s: float) -> dict[str, Any]:
    """Run ProducerPerformance; its CPU comes from the children's rusage around the run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        text = out.decode() if isinstance(out, bytes) else out
        code = -1
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output.write_text(text)
    parsed = parse_producer_performance(text)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "exit_code": code,
        "wall_s": round(elapsed, 3),
        "cpu_s": round(cpu, 3),
        "summary": parsed.to_dict() if parsed else None,
        "command": " ".join([*command[:4], "<classpath>", *command[6:]]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.ceilings SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = ProducerSpec.from_json(Path(args[0]).read_bytes())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run_producer(spec))
    else:
        result = uvloop.run(run_producer(spec))
    Path(args[1]).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
