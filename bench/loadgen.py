"""The load generator: a separate asyncio + aiohttp process that plays ALM against a URL.

    python -m bench.loadgen SPEC.json OUT.json

Bodies are built and signed before each phase's clock starts. One client session per phase,
with one connection per sender (closed loop) or a bounded pool (open loop). Every phase is
bounded by time and by count, so the process always stops by itself. It also samples the CPU
and memory of the processes it is told to watch, at the phase boundaries (and periodically when
asked), from /proc, so those numbers cover exactly the measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
import orjson

from bench.bodies import BodyFactory, ring_length
from bench.processes import cpu_seconds, memory_mb, system_busy_seconds
from bench.stats import (
    DEADLINE_S,
    P99_LIMIT_MS,
    PhaseStats,
    ProcUsage,
    Sample,
    next_steps,
    schedule_open_loop,
    step_passes,
    summarize,
)

Mode = Literal["closed", "open", "steps"]
Body = tuple[bytes, dict[str, str]]

# Closed-loop phases build enough bodies for this rate; beyond it they stop by count.
CLOSED_RPS_CAP: Final = 6000.0
_CLEAN_MARKS: Final = (b'"duplicates":0', b'"deadLettered":0')


@dataclass(slots=True)
class PhaseSpec:
    """One phase: closed loop (``senders`` waiting for answers), open loop, or open-loop steps."""

    name: str
    mode: Mode
    batch: int
    duration_s: float
    senders: int = 1
    rate: float | None = None
    rates: list[float] = field(default_factory=list)
    stop_on_fail: bool = True
    adaptive: bool = True
    refine: int = 0
    # A failed step is run again once at once, and the second try stands: one stall of a
    # shared host or broker does not end a search below what the server holds.
    retry_failed: bool = False
    max_steps: int = 12
    pause_s: float = 0.5
    sample_every_s: float = 0.0
    warmup_per_sender: int = 2
    # Closed loop, one sender: the names of the servers behind ``LoadSpec.urls``, which the
    # sender asks in turn, request by request; each gets results of its own. The servers
    # then share every stall of the host and broker, however short.
    alternate: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LoadSpec:
    url: str
    target: str
    secret: str
    header: str = "X-ALM-Signature"
    account_id: int = 1234
    seed: int = 1
    tag_base: int = 0
    timeout_s: float = 10.0
    deadline_s: float = DEADLINE_S
    p99_limit_ms: float = P99_LIMIT_MS
    ring_events: int = 150_000
    open_limit: int = 512
    watch: dict[str, int] = field(default_factory=dict)
    phases: list[PhaseSpec] = field(default_factory=list)
    # Several servers behind one address, as replicas behind a Service: requests (open loop)
    # or senders (closed loop) take them in turn. Empty: ``url`` alone.
    urls: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> LoadSpec:
        raw = orjson.loads(data)
        phases = [PhaseSpec(**p) for p in raw.pop("phases")]
        return cls(**raw, phases=phases)


def planned_seconds(spec: LoadSpec) -> float:
    """An upper bound of the measured time of a spec, for the caller's watchdog."""
    total = 0.0
    for phase in spec.phases:
        steps = phase.max_steps if phase.mode == "steps" else 1
        total += steps * (phase.duration_s + spec.timeout_s + phase.pause_s)
    return total


class _Watcher:
    """CPU and memory of the watched processes over one phase."""

    def __init__(self, watch: dict[str, int], every_s: float) -> None:
        self._watch = watch
        self._every = every_s
        self._cpu0: dict[str, float | None] = {}
        self._gen0 = 0.0
        self._busy0: float | None = None
        self._t0 = 0.0
        self._usage = {name: ProcUsage() for name in watch}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._gen0 = time.process_time()
        self._busy0 = system_busy_seconds()
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self._watch.items()}
        self._sample()
        if self._every > 0:
            self._task = asyncio.create_task(self._loop())

    def _sample(self) -> None:
        offset = time.perf_counter() - self._t0
        for name, pid in self._watch.items():
            rss, _ = memory_mb(pid)
            if rss is not None:
                self._usage[name].rss_mb.append((offset, rss))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            self._sample()

    async def stop(self, results: Sequence[PhaseStats]) -> None:
        """The window's figures, in each of ``results`` (the servers of one window)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        generator_cpu_s = time.process_time() - self._gen0
        busy = system_busy_seconds()
        self._sample()
        for name, pid in self._watch.items():
            usage = self._usage[name]
            before, after = self._cpu0.get(name), cpu_seconds(pid)
            if before is not None and after is not None:
                usage.cpu_s = after - before
            _, usage.hwm_mb = memory_mb(pid)
        for stats in results:
            stats.generator_cpu_s = generator_cpu_s
            if busy is not None and self._busy0 is not None:
                stats.system_busy_s = busy - self._busy0
            stats.procs = self._usage


async def _post(
    session: aiohttp.ClientSession, url: str, body: Body, limit: aiohttp.ClientTimeout
) -> tuple[int, bool, str | None]:
    try:
        async with session.post(url, data=body[0], headers=body[1], timeout=limit) as resp:
            data = await resp.read()
            status = resp.status
    except TimeoutError:
        return 0, False, "timeout"
    except aiohttp.ClientError as exc:
        return 0, False, type(exc).__name__
    clean = all(mark in data for mark in _CLEAN_MARKS) if 200 <= status < 300 else True
    return status, clean, None


class Generator:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.bodies = BodyFactory(
            secret=spec.secret.encode(),
            header=spec.header,
            account_id=spec.account_id,
            seed=spec.seed,
            tag_base=spec.tag_base,
        )
        self.timeout = aiohttp.ClientTimeout(total=spec.timeout_s)

    def _session(self, limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=None)
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def run(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for phase in self.spec.phases:
            if phase.mode == "closed":
                results = await self.closed(phase)
                for each in results:
                    _progress(each, None)
            elif phase.mode == "open":
                results = [await self.open(phase, phase.rate or 1.0)]
                _progress(results[0], None)
            else:
                results = await self.steps(phase)
            out[phase.name] = [r.to_dict() for r in results]
            await asyncio.sleep(phase.pause_s)
        return out

    async def _measure(
        self,
        phase: PhaseSpec,
        run: Callable[[float], Awaitable[list[list[Sample]]]],
        *,
        mode: str,
        rate: float | None,
    ) -> list[PhaseStats]:
        """One window; ``run`` returns the samples of each server that gets results apart
        (``phase.alternate``), or one list for ``self.spec.target``."""
        watcher = _Watcher(self.spec.watch, phase.sample_every_s)
        watcher.start()
        t0 = time.perf_counter()
        groups = await run(t0)
        targets = phase.alternate or [self.spec.target]
        results = [
            summarize(
                samples,
                name=f"{phase.name}, {target}" if phase.alternate else phase.name,
                target=target,
                mode=mode,
                senders=phase.senders,
                batch=phase.batch,
                duration_s=phase.duration_s,
                offered_rps=rate,
                deadline_s=self.spec.deadline_s,
            )
            for target, samples in zip(targets, groups, strict=True)
        ]
        await watcher.stop(results)
        return results

    async def closed(self, phase: PhaseSpec) -> list[PhaseStats]:
        urls, timeout = self.spec.urls or [self.spec.url], self.timeout
        alternate = bool(phase.alternate)
        if alternate and (phase.senders != 1 or len(phase.alternate) != len(urls)):
            raise ValueError("alternate: one sender, and one name for each of the urls")
        needed = math.ceil(phase.duration_s * CLOSED_RPS_CAP)
        count, reusable = ring_length(needed, phase.batch, self.spec.ring_events)
        warmers = len(urls) if alternate else phase.senders
        warm = self.bodies.build(phase.batch, warmers * phase.warmup_per_sender)
        ring = self.bodies.build(phase.batch, count)
        limit_count = None if reusable else count
        async with self._session(warmers) as session:
            warm_iter = iter(warm)

            async def warm_up(url: str) -> None:
                for body in warm_iter:
                    await _post(session, url, body, timeout)

            if alternate:  # each server warmed in turn, on the connection it keeps
                per = phase.warmup_per_sender
                for index, url in enumerate(urls):
                    for body in warm[index * per : (index + 1) * per]:
                        await _post(session, url, body, timeout)
            else:
                await asyncio.gather(*(warm_up(urls[i % len(urls)]) for i in range(warmers)))

            async def run(t0: float) -> list[list[Sample]]:
                groups: list[list[Sample]] = [[] for _ in range(len(urls) if alternate else 1)]
                end = t0 + phase.duration_s
                counter = iter(range(sys.maxsize if limit_count is None else limit_count))

                async def sender(first: int) -> None:
                    for index in counter:
                        started = time.perf_counter()
                        if started >= end:
                            return
                        which = index % len(urls) if alternate else first
                        status, clean, error = await _post(
                            session, urls[which], ring[index % len(ring)], timeout
                        )
                        done = time.perf_counter()
                        sample = Sample(started - t0, done - started, status, clean, error)
                        groups[which if alternate else 0].append(sample)

                await asyncio.gather(*(sender(i % len(urls)) for i in range(phase.senders)))
                return groups

            return await self._measure(phase, run, mode="closed", rate=None)

    async def open(self, phase: PhaseSpec, rate: float) -> PhaseStats:
        total = max(1, math.ceil(rate * phase.duration_s))
        count, _ = ring_length(total, phase.batch, self.spec.ring_events)
        ring = self.bodies.build(phase.batch, count)
        urls, timeout = self.spec.urls or [self.spec.url], self.timeout
        async with self._session(self.spec.open_limit) as session:

            async def run(t0: float) -> list[list[Sample]]:
                samples: list[Sample] = []

                async def one(index: int, due: float) -> None:
                    started = time.perf_counter()
                    status, clean, error = await _post(
                        session, urls[index % len(urls)], ring[index % len(ring)], timeout
                    )
                    done = time.perf_counter()
                    samples.append(
                        Sample(due - t0, done - due, status, clean, error, lag=started - due)
                    )

                await schedule_open_loop(total, rate, t0, one, wait_s=self.spec.timeout_s + 5.0)
                return [samples]

            [stats] = await self._measure(phase, run, mode="open", rate=rate)
            return stats

    async def steps(self, phase: PhaseSpec) -> list[PhaseStats]:
        """Rates in ascending order until one fails; then (adaptive) step down or bisect."""
        results: list[PhaseStats] = []
        queue = sorted(phase.rates)
        passed: list[float] = []
        failed: list[float] = []
        refinements = phase.refine
        retried: set[float] = set()
        while len(results) < phase.max_steps:
            if queue:
                rate = queue.pop(0)
            else:
                follow = next_steps(passed, failed, refine=refinements) if phase.adaptive else None
                if follow is None:
                    break
                if failed and passed and max(passed) < follow < min(failed):
                    refinements -= 1
                rate = follow
            stats = await self.open(phase, rate)
            stats.name = phase.name
            results.append(stats)
            ok = step_passes(stats, self.spec.p99_limit_ms)
            _progress(stats, ok)
            if not ok and phase.retry_failed and rate not in retried:
                retried.add(rate)
                stats.retried = True
                queue.insert(0, rate)
                await asyncio.sleep(phase.pause_s)
                continue
            (passed if ok else failed).append(rate)
            if not ok and phase.stop_on_fail:
                queue = []
            await asyncio.sleep(phase.pause_s)
            if failed and not passed and not queue and min(failed) / 8 > rate:
                break
        return results


def _progress(stats: PhaseStats, ok: bool | None) -> None:
    p99 = stats.latency.p99
    if stats.offered_rps is None:
        what = f"{stats.name}: {stats.senders} x {stats.batch}"
    else:
        what = f"{stats.name}: {stats.offered_rps:.1f} req/s x {stats.batch}"
    verdict = "" if ok is None else ("  ok" if ok else "  over")
    print(
        f"  {what:<44} {stats.events_per_s or 0:9.0f} ev/s {stats.requests_per_s or 0:8.1f} req/s"
        f"  p99 {p99 if p99 is not None else float('nan'):8.2f} ms  non-2xx {stats.failed}"
        f"{verdict}",
        file=sys.stderr,
        flush=True,
    )


def _run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.loadgen SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = LoadSpec.from_json(Path(args[0]).read_bytes())
    result = _run(Generator(spec).run())
    Path(args[1]).write_bytes(orjson.dumps({"phases": result}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
