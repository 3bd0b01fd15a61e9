"""The benchmark's statistics (percentiles, per-phase figures, ratios, growth) and its
open-loop scheduler.

Everything but :func:`schedule_open_loop` is pure arithmetic over numbers already
collected, so the load generator, the ceilings and the report share it and the unit tests
cover it without a broker. :func:`schedule_open_loop` runs on the event loop: it sleeps
until each request is due and starts it as a task; it does no I/O itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bridge.core.stats import percentile

__all__ = ["percentile"]  # the one definition, shared with the sender and the tests

DEADLINE_S: Final = 5.0
P99_LIMIT_MS: Final = 100.0
ACCEPTED_OVERLOAD_STATUSES: Final = frozenset({429, 503})


def ratio(value: float | None, ceiling: float | None) -> float | None:
    """``value / ceiling``, or None when either is unknown or the ceiling is zero."""
    if value is None or ceiling is None or ceiling == 0:
        return None
    return value / ceiling


def per_thousand(cpu_seconds: float | None, events: int) -> float | None:
    """CPU seconds per 1,000 events."""
    if cpu_seconds is None or events <= 0:
        return None
    return cpu_seconds * 1000.0 / events


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles in milliseconds."""

    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None

    @classmethod
    def of_seconds(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            return cls()
        ms = sorted(s * 1000.0 for s in seconds)
        return cls(
            count=len(ms),
            p50=percentile(ms, 50),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            max=ms[-1],
            mean=sum(ms) / len(ms),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50": _round(self.p50),
            "p90": _round(self.p90),
            "p99": _round(self.p99),
            "max": _round(self.max),
            "mean": _round(self.mean),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Latency:
        return cls(
            count=int(data.get("count", 0)),
            p50=_opt_float(data.get("p50")),
            p90=_opt_float(data.get("p90")),
            p99=_opt_float(data.get("p99")),
            max=_opt_float(data.get("max")),
            mean=_opt_float(data.get("mean")),
        )


@dataclass(slots=True)
class ProcUsage:
    """One watched process during one phase: CPU used, peak RSS, RSS samples."""

    cpu_s: float | None = None
    hwm_mb: float | None = None
    rss_mb: list[tuple[float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_s": _round(self.cpu_s, 4),
            "hwm_mb": _round(self.hwm_mb),
            "rss_mb": [[round(t, 2), round(v, 2)] for t, v in self.rss_mb],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcUsage:
        return cls(
            cpu_s=_opt_float(data.get("cpu_s")),
            hwm_mb=_opt_float(data.get("hwm_mb")),
            rss_mb=[(float(t), float(v)) for t, v in data.get("rss_mb", [])],
        )


@dataclass(slots=True)
class Sample:
    """One request: when it was due (s from the phase start), how long it took, its answer.

    Latency counts from ``due``: an open-loop request that the generator starts late is
    charged for the delay, so queueing is never hidden (``lag`` says how late it started).

    ``status`` is the HTTP status, or 0 when no answer came (timeout, connection error).
    ``clean`` is whether a 2xx body reported no duplicates and nothing dead-lettered.
    """

    due: float
    latency: float
    status: int
    clean: bool = True
    error: str | None = None
    lag: float = 0.0


@dataclass(slots=True)
class PhaseStats:
    """What one phase of load measured, in a form that crosses process boundaries as JSON."""

    name: str
    target: str
    mode: str
    senders: int
    batch: int
    duration_s: float
    offered_rps: float | None = None
    elapsed_s: float = 0.0
    requests: int = 0
    answered: int = 0
    ok: int = 0
    events: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    unclean: int = 0
    slow: int = 0
    latency: Latency = field(default_factory=Latency)
    lag: Latency = field(default_factory=Latency)
    generator_cpu_s: float | None = None
    system_busy_s: float | None = None
    procs: dict[str, ProcUsage] = field(default_factory=dict)
    # An open-loop step that failed and was run again at once: the later try stands.
    retried: bool = False

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else None

    @property
    def requests_per_s(self) -> float | None:
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else None

    @property
    def offered_eps(self) -> float | None:
        return None if self.offered_rps is None else self.offered_rps * self.batch

    @property
    def failed(self) -> int:
        """Requests without a 2xx answer."""
        return self.requests - self.ok

    def cpu_per_1k(self, proc: str) -> float | None:
        usage = self.procs.get(proc)
        return per_thousand(usage.cpu_s if usage else None, self.events)

    @property
    def generator_cpu_pct(self) -> float | None:
        if self.generator_cpu_s is None or self.elapsed_s <= 0:
            return None
        return 100.0 * self.generator_cpu_s / self.elapsed_s

    @property
    def background_cpu_pct(self) -> float | None:
        """CPU used by processes outside the measured ones, in % of one core."""
        if self.system_busy_s is None or self.elapsed_s <= 0:
            return None
        ours = (self.generator_cpu_s or 0.0) + sum(p.cpu_s or 0.0 for p in self.procs.values())
        return max(0.0, 100.0 * (self.system_busy_s - ours) / self.elapsed_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "mode": self.mode,
            "senders": self.senders,
            "batch": self.batch,
            "duration_s": self.duration_s,
            "offered_rps": _round(self.offered_rps),
            "offered_eps": _round(self.offered_eps),
            "elapsed_s": round(self.elapsed_s, 4),
            "requests": self.requests,
            "answered": self.answered,
            "ok": self.ok,
            "events": self.events,
            "events_per_s": _round(self.events_per_s),
            "requests_per_s": _round(self.requests_per_s),
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "unclean": self.unclean,
            "slow": self.slow,
            "latency_ms": self.latency.to_dict(),
            "lag_ms": self.lag.to_dict(),
            "generator_cpu_s": _round(self.generator_cpu_s, 4),
            "generator_cpu_pct": _round(self.generator_cpu_pct),
            "system_busy_s": _round(self.system_busy_s, 4),
            "background_cpu_pct": _round(self.background_cpu_pct),
            "procs": {name: usage.to_dict() for name, usage in self.procs.items()},
            "retried": self.retried,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhaseStats:
        return cls(
            name=str(data["name"]),
            target=str(data["target"]),
            mode=str(data["mode"]),
            senders=int(data["senders"]),
            batch=int(data["batch"]),
            duration_s=float(data["duration_s"]),
            offered_rps=_opt_float(data.get("offered_rps")),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            requests=int(data.get("requests", 0)),
            answered=int(data.get("answered", 0)),
            ok=int(data.get("ok", 0)),
            events=int(data.get("events", 0)),
            statuses={str(k): int(v) for k, v in data.get("statuses", {}).items()},
            errors={str(k): int(v) for k, v in data.get("errors", {}).items()},
            unclean=int(data.get("unclean", 0)),
            slow=int(data.get("slow", 0)),
            latency=Latency.from_dict(data.get("latency_ms", {})),
            lag=Latency.from_dict(data.get("lag_ms", {})),
            generator_cpu_s=_opt_float(data.get("generator_cpu_s")),
            system_busy_s=_opt_float(data.get("system_busy_s")),
            procs={str(k): ProcUsage.from_dict(v) for k, v in data.get("procs", {}).items()},
            retried=bool(data.get("retried", False)),
        )


def summarize(
    samples: Sequence[Sample],
    *,
    name: str,
    target: str,
    mode: str,
    senders: int,
    batch: int,
    duration_s: float,
    offered_rps: float | None = None,
    deadline_s: float = DEADLINE_S,
) -> PhaseStats:
    """The statistics of one phase from its samples; elapsed runs to the last answer."""
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    ok = answered = unclean = slow = 0
    end = 0.0
    for sample in samples:
        end = max(end, sample.due + sample.latency)
        if sample.status > 0:
            answered += 1
            key = str(sample.status)
            statuses[key] = statuses.get(key, 0) + 1
            if 200 <= sample.status < 300:
                ok += 1
                if not sample.clean:
                    unclean += 1
        else:
            reason = sample.error or "no_answer"
            errors[reason] = errors.get(reason, 0) + 1
        if sample.status <= 0 or sample.latency > deadline_s:
            slow += 1
    return PhaseStats(
        name=name,
        target=target,
        mode=mode,
        senders=senders,
        batch=batch,
        duration_s=duration_s,
        offered_rps=offered_rps,
        elapsed_s=end,
        requests=len(samples),
        answered=answered,
        ok=ok,
        events=ok * batch,
        statuses=dict(sorted(statuses.items())),
        errors=dict(sorted(errors.items())),
        unclean=unclean,
        slow=slow,
        latency=Latency.of_seconds([s.latency for s in samples]),
        lag=Latency.of_seconds([s.lag for s in samples]) if mode == "open" else Latency(),
    )


def step_passes(stats: PhaseStats, p99_limit_ms: float = P99_LIMIT_MS) -> bool:
    """An open-loop step is sustained: every request 2xx and clean, p99 within the limit."""
    if stats.requests == 0 or stats.failed or stats.unclean:
        return False
    p99 = stats.latency.p99
    return p99 is not None and p99 <= p99_limit_ms


def overload_violations(stats: PhaseStats, deadline_s: float = DEADLINE_S) -> int:
    """Requests not answered 2xx/429/503 within the deadline (``slow`` counts the late ones)."""
    wrong = sum(
        count
        for status, count in stats.statuses.items()
        if not (200 <= int(status) < 300 or int(status) in ACCEPTED_OVERLOAD_STATUSES)
    )
    return stats.slow + wrong


def sustainable(
    steps: Sequence[PhaseStats], p99_limit_ms: float = P99_LIMIT_MS
) -> PhaseStats | None:
    """The passing step with the highest offered rate below the first failing one.

    A failed step that was run again (``retried``) counts by its later try only.
    """
    first_fail = min(
        (s.offered_rps or 0.0 for s in steps if not s.retried and not step_passes(s, p99_limit_ms)),
        default=math.inf,
    )
    passing = [
        s for s in steps if step_passes(s, p99_limit_ms) and (s.offered_rps or 0.0) < first_fail
    ]
    return max(passing, key=lambda s: s.offered_rps or 0.0, default=None)


def next_steps(passed: Sequence[float], failed: Sequence[float], *, refine: int) -> float | None:
    """The next rate to try when stepping down below a failure or bisecting towards it.

    No failure yet: a quarter above the best pass. Below any failure with no passing rate
    yet: a fifth below the lowest failure, the mirror of the step up, so that bisecting
    starts from a gap of a quarter whichever side a search came from (halving left a
    server that failed its first rate twice as far from its figure). Otherwise the
    midpoint of the best pass and the lowest failure, while ``refine`` allows and the two
    are more than 5 % apart.
    """
    if not failed:
        return max(passed) * 1.25 if passed else None
    lowest_fail = min(failed)
    below = [p for p in passed if p < lowest_fail]
    if not below:
        return lowest_fail * 0.8
    best = max(below)
    if refine <= 0 or lowest_fail / best < 1.05:
        return None
    return (best + lowest_fail) / 2


@dataclass(frozen=True, slots=True)
class Growth:
    """Mean RSS of the first and the last third of a run."""

    first_mb: float
    last_mb: float
    samples: int

    @property
    def growth_mb(self) -> float:
        return self.last_mb - self.first_mb

    @property
    def growth_pct(self) -> float | None:
        return 100.0 * self.growth_mb / self.first_mb if self.first_mb else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_third_mb": round(self.first_mb, 2),
            "last_third_mb": round(self.last_mb, 2),
            "growth_mb": round(self.growth_mb, 2),
            "growth_pct": _round(self.growth_pct),
            "samples": self.samples,
        }


def rss_growth(samples: Sequence[tuple[float, float]]) -> Growth | None:
    """First third against last third, split by time; None with fewer than 3 samples."""
    if len(samples) < 3:
        return None
    ordered = sorted(samples)
    start, end = ordered[0][0], ordered[-1][0]
    span = end - start
    if span <= 0:
        return None
    first = [v for t, v in ordered if t <= start + span / 3]
    last = [v for t, v in ordered if t >= end - span / 3]
    return Growth(sum(first) / len(first), sum(last) / len(last), len(ordered))


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


async def schedule_open_loop(
    total: int,
    rate: float,
    t0: float,
    one: Callable[[int, float], Coroutine[Any, Any, None]],
    *,
    wait_s: float,
) -> None:
    """Start ``one(index, due)`` at fixed times, late or not, and wait for the stragglers.

    Requests are started on schedule whatever earlier ones are doing (open loop), so a
    slow server cannot slow the offered rate down.
    """
    pending: set[asyncio.Task[None]] = set()
    for index in range(total):
        due = t0 + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=wait_s)
