"""The results of a run: the comparison with the ceilings, the targets, JSON, Markdown, chart.

Everything but :func:`render_chart` is pure, so it is unit-tested with made-up numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.stats import (
    DEADLINE_S,
    P99_LIMIT_MS,
    PhaseStats,
    overload_violations,
    ratio,
    rss_growth,
    step_passes,
    sustainable,
)

BRIDGE: Final = "bridge"
MIN_SHARE_OF_PRODUCER: Final = 0.6
MAX_LATENCY_MULTIPLE: Final = 2.0
MAX_RSS_MB: Final = 150.0
GENERATOR_HEADROOM: Final = 2.0


@dataclass(slots=True)
class Results:
    """Everything one run measured; the source of results.json, results.md and chart.png."""

    meta: dict[str, Any] = field(default_factory=dict)
    alm: list[PhaseStats] = field(default_factory=list)
    open_steps: list[PhaseStats] = field(default_factory=list)
    overload: PhaseStats | None = None
    soak: PhaseStats | None = None
    http_cells: list[PhaseStats] = field(default_factory=list)
    http_steps: list[PhaseStats] = field(default_factory=list)
    producer_throughput: PhaseStats | None = None
    producer_latency: PhaseStats | None = None
    producer_steps: list[PhaseStats] = field(default_factory=list)
    producer_info: dict[str, Any] = field(default_factory=dict)
    java: dict[str, Any] | None = None
    compare: list[PhaseStats] = field(default_factory=list)
    compare_url: str | None = None
    bridge_peak_rss_mb: float | None = None
    profile: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sustainable(self) -> PhaseStats | None:
        return sustainable(self.open_steps)

    def alm_cell(self, senders: int, batch: int) -> PhaseStats | None:
        return _cell(self.alm, senders, batch)

    def http_cell(self, senders: int, batch: int) -> PhaseStats | None:
        return _cell(self.http_cells, senders, batch)


def _cell(phases: Sequence[PhaseStats], senders: int, batch: int) -> PhaseStats | None:
    return next((p for p in phases if p.senders == senders and p.batch == batch), None)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One bridge figure next to one ceiling; ``ratio`` is bridge / ceiling."""

    metric: str
    unit: str
    bridge: float | None
    ceiling_name: str
    ceiling: float | None

    @property
    def ratio(self) -> float | None:
        return ratio(self.bridge, self.ceiling)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "unit": self.unit,
            "bridge": _r(self.bridge),
            "ceiling_name": self.ceiling_name,
            "ceiling": _r(self.ceiling),
            "ratio": _r(self.ratio, 4),
        }


@dataclass(frozen=True, slots=True)
class Target:
    """A target of the issue: the measured value, the limit, and whether it was met."""

    name: str
    value: float | None
    limit: float | None
    passed: bool | None
    detail: str

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _r(self.value, 4),
            "limit": _r(self.limit, 4),
            "result": self.verdict,
            "detail": self.detail,
        }


def _proc_cpu_per_1k(stats: PhaseStats | None, proc: str) -> float | None:
    return None if stats is None else stats.cpu_per_1k(proc)


def _hwm(stats: PhaseStats | None, proc: str) -> float | None:
    if stats is None or proc not in stats.procs:
        return None
    return stats.procs[proc].hwm_mb


def comparisons(results: Results) -> list[Comparison]:
    """The bridge's figures, each next to the ceilings that bound it."""
    rows: list[Comparison] = []
    sus = results.sustainable
    sus_eps = sus.events_per_s if sus else None
    prod = results.producer_throughput
    prod_lat = results.producer_latency
    java = (results.java or {}).get("summary") or {}
    label_sus = "events/s, 100-event batches, sustainable (open loop, p99 <= 100 ms)"
    rows.append(
        Comparison(
            label_sus,
            "events/s",
            sus_eps,
            "raw aiokafka producer (Python client ceiling)",
            prod.events_per_s if prod else None,
        )
    )
    rows.append(
        Comparison(
            label_sus,
            "events/s",
            sus_eps,
            "Java ProducerPerformance (broker ceiling)",
            java.get("records_per_s"),
        )
    )
    for senders, batch in ((16, 100), (16, 10), (16, 1), (1, 10)):
        cell, ceiling = results.alm_cell(senders, batch), results.http_cell(senders, batch)
        if cell is None:
            continue
        rows.append(
            Comparison(
                f"events/s, ALM-like {senders} x {batch}",
                "events/s",
                cell.events_per_s,
                f"HTTP ceiling, {senders} x {batch}",
                ceiling.events_per_s if ceiling else None,
            )
        )
        rows.append(
            Comparison(
                f"requests/s, ALM-like {senders} x {batch}",
                "req/s",
                cell.requests_per_s,
                f"HTTP ceiling, {senders} x {batch}",
                ceiling.requests_per_s if ceiling else None,
            )
        )
    one = results.alm_cell(1, 10)
    if one is not None:
        for pct in ("p50", "p90", "p99", "max"):
            rows.append(
                Comparison(
                    f"latency {pct}, ALM-like 1 x 10",
                    "ms",
                    getattr(one.latency, pct),
                    "raw producer: send 10 records, await all",
                    getattr(prod_lat.latency, pct) if prod_lat else None,
                )
            )
        http_one = results.http_cell(1, 10)
        rows.append(
            Comparison(
                "latency p99, ALM-like 1 x 10",
                "ms",
                one.latency.p99,
                "HTTP ceiling, 1 x 10",
                http_one.latency.p99 if http_one else None,
            )
        )
    busy = results.alm_cell(16, 100)
    rows.append(
        Comparison(
            "CPU s per 1,000 events, ALM-like 16 x 100",
            "s",
            _proc_cpu_per_1k(busy, BRIDGE),
            "raw producer process, same records",
            _proc_cpu_per_1k(prod, "producer"),
        )
    )
    rows.append(
        Comparison(
            "CPU s per 1,000 events, ALM-like 16 x 100",
            "s",
            _proc_cpu_per_1k(busy, BRIDGE),
            "HTTP ceiling server, 16 x 100",
            _proc_cpu_per_1k(results.http_cell(16, 100), "http-ceiling"),
        )
    )
    rows.append(
        Comparison(
            "peak RSS (VmHWM)",
            "MB",
            results.bridge_peak_rss_mb,
            "raw producer process",
            _hwm(prod, "producer"),
        )
    )
    http_hwm = max(
        (h for p in results.http_cells + results.http_steps if (h := _hwm(p, "http-ceiling"))),
        default=None,
    )
    rows.append(
        Comparison(
            "peak RSS (VmHWM)", "MB", results.bridge_peak_rss_mb, "HTTP ceiling server", http_hwm
        )
    )
    return rows


def targets(results: Results) -> list[Target]:
    """The four targets of the issue, each PASS, FAIL or n/a (not measured)."""
    out: list[Target] = []
    sus = results.sustainable
    prod = results.producer_throughput
    share = ratio(sus.events_per_s if sus else None, prod.events_per_s if prod else None)
    out.append(
        Target(
            "sustainable events/s (100-event batches) >= 60 % of the raw aiokafka ceiling",
            share,
            MIN_SHARE_OF_PRODUCER,
            None if share is None else share >= MIN_SHARE_OF_PRODUCER,
            f"{_n(sus.events_per_s if sus else None)} of {_n(prod.events_per_s if prod else None)}"
            " events/s",
        )
    )
    one = results.alm_cell(1, 10)
    lat = results.producer_latency
    multiple = ratio(one.latency.p99 if one else None, lat.latency.p99 if lat else None)
    out.append(
        Target(
            "ALM-like 1 sender x 10 events: p99 <= 2 x raw producer p99 for 10 records",
            multiple,
            MAX_LATENCY_MULTIPLE,
            None if multiple is None else multiple <= MAX_LATENCY_MULTIPLE,
            f"{_ms(one.latency.p99 if one else None)} vs {_ms(lat.latency.p99 if lat else None)}",
        )
    )
    over = results.overload
    bad = overload_violations(over, DEADLINE_S) if over else None
    out.append(
        Target(
            f"over capacity (2 x sustainable): 0 requests unanswered or slower than "
            f"{DEADLINE_S:g} s",
            None if bad is None else float(bad),
            0.0,
            None if bad is None else bad == 0,
            "not run"
            if over is None
            else (
                f"{over.requests} requests, statuses {_statuses(over)}, max {_ms(over.latency.max)}"
            ),
        )
    )
    rss = results.bridge_peak_rss_mb
    out.append(
        Target(
            f"bridge peak RSS <= {MAX_RSS_MB:g} MB",
            rss,
            MAX_RSS_MB,
            None if rss is None else rss <= MAX_RSS_MB,
            f"VmHWM {_n(rss, 1)} MB",
        )
    )
    return out


def generator_check(results: Results) -> Target:
    """The generator is not the bottleneck: against the HTTP ceiling it went far higher."""
    bridge_best = max((p.requests_per_s or 0.0 for p in results.alm), default=0.0)
    worst: float | None = None
    shown: list[str] = []
    for cell in results.http_cells:
        if cell.senders != 16:
            continue
        bridge = results.alm_cell(cell.senders, cell.batch)
        headroom = ratio(cell.requests_per_s, bridge.requests_per_s if bridge else None)
        if headroom is None:
            continue
        worst = headroom if worst is None else min(worst, headroom)
        shown.append(f"{cell.senders}x{cell.batch}: {headroom:.1f}x")
    gen_cpu = max(
        (p.generator_cpu_pct or 0.0 for p in [*results.alm, *results.open_steps]), default=None
    )
    detail = (
        f"HTTP ceiling req/s / bridge req/s: {', '.join(shown) or 'n/a'}; "
        f"best bridge {bridge_best:.0f} req/s; generator CPU during bridge phases <= "
        f"{_n(gen_cpu, 0)} % of a core"
    )
    return Target(
        f"generator is not the bottleneck (reaches >= {GENERATOR_HEADROOM:g} x the bridge's rate)",
        worst,
        GENERATOR_HEADROOM,
        None if worst is None else worst >= GENERATOR_HEADROOM,
        detail,
    )


# JSON -----------------------------------------------------------------------------------


def to_json(results: Results) -> dict[str, Any]:
    sus = results.sustainable
    soak_growth = None
    if results.soak is not None and BRIDGE in results.soak.procs:
        growth = rss_growth(results.soak.procs[BRIDGE].rss_mb)
        soak_growth = growth.to_dict() if growth else None
    return {
        "meta": results.meta,
        "targets": [t.to_dict() for t in targets(results)],
        "generator_check": generator_check(results).to_dict(),
        "comparisons": [c.to_dict() for c in comparisons(results)],
        "bridge": {
            "peak_rss_mb": _r(results.bridge_peak_rss_mb),
            "alm_like": [p.to_dict() for p in results.alm],
            "open_loop": {
                "steps": [
                    {**p.to_dict(), "passed": step_passes(p, P99_LIMIT_MS)}
                    for p in results.open_steps
                ],
                "sustainable_rps": _r(sus.offered_rps if sus else None),
                "sustainable_events_per_s": _r(sus.events_per_s if sus else None),
            },
            "over_capacity": results.overload.to_dict() if results.overload else None,
            "soak": (
                {**results.soak.to_dict(), "rss_growth": soak_growth} if results.soak else None
            ),
        },
        "ceilings": {
            "http": {
                "closed": [p.to_dict() for p in results.http_cells],
                "open_steps": [p.to_dict() for p in results.http_steps],
            },
            "aiokafka": {
                **results.producer_info,
                "throughput": _d(results.producer_throughput),
                "latency": _d(results.producer_latency),
                "open_steps": [p.to_dict() for p in results.producer_steps],
            },
            "java": results.java,
        },
        "compare": {"url": results.compare_url, "phases": [p.to_dict() for p in results.compare]},
        "profile": results.profile,
        "notes": results.notes,
    }


def _d(stats: PhaseStats | None) -> dict[str, Any] | None:
    return None if stats is None else stats.to_dict()


# Markdown -------------------------------------------------------------------------------


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f} ms"
    return f"{value:,.1f} ms"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _value(value: float | None, unit: str) -> str:
    if unit == "ms":
        return _ms(value)
    if unit == "s":
        return "-" if value is None else f"{value:.4f} s"
    if unit == "MB":
        return "-" if value is None else f"{value:.1f} MB"
    return _n(value)


def _statuses(stats: PhaseStats) -> str:
    parts = [f"{k}: {v}" for k, v in stats.statuses.items()]
    parts += [f"{k}: {v}" for k, v in stats.errors.items()]
    return ", ".join(parts) or "none"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _phase_row(label: str, stats: PhaseStats, proc: str) -> list[str]:
    lat = stats.latency
    return [
        label,
        _n(stats.events_per_s),
        _n(stats.requests_per_s, 1),
        _ms(lat.p50),
        _ms(lat.p90),
        _ms(lat.p99),
        _ms(lat.max),
        str(stats.requests),
        str(stats.failed) if not stats.errors else f"{stats.failed} ({_statuses(stats)})",
        "-" if stats.cpu_per_1k(proc) is None else f"{stats.cpu_per_1k(proc):.4f}",
        _cpu_mix(stats, proc),
    ]


def _pct(stats: PhaseStats, proc: str) -> str:
    usage = stats.procs.get(proc)
    if usage is None or usage.cpu_s is None or stats.elapsed_s <= 0:
        return "-"
    return f"{100.0 * usage.cpu_s / stats.elapsed_s:.0f}"


def _cpu_mix(stats: PhaseStats, proc: str) -> str:
    """CPU of the server, the broker, the generator and everything else, in % of one core."""
    return " / ".join(
        (
            _pct(stats, proc),
            _pct(stats, "kafka"),
            _n(stats.generator_cpu_pct),
            _n(stats.background_cpu_pct),
        )
    )


_PHASE_HEADER: Final = (
    "workload",
    "events/s",
    "req/s",
    "p50",
    "p90",
    "p99",
    "max",
    "requests",
    "non-2xx",
    "CPU s/1k ev",
    "CPU % server / broker / generator / other",
)


NOISY_BACKGROUND_PCT: Final = 25.0
OVERLOAD_MARGIN: Final = 0.9
SATURATED_GENERATOR_PCT: Final = 90.0


def background_pct(results: Results) -> float | None:
    """Mean CPU of processes outside the benchmark during the bridge's phases."""
    phases = [p for p in [*results.alm, *results.open_steps] if p.background_cpu_pct is not None]
    if not phases:
        return None
    return sum(p.background_cpu_pct or 0.0 for p in phases) / len(phases)


def _noise_warning(results: Results) -> list[str]:
    other = background_pct(results)
    if other is None or other < NOISY_BACKGROUND_PCT:
        return []
    return [
        f"**Warning: other processes used {other:.0f} % of a core on average during the "
        "bridge's phases; the host was not quiet, so the bridge's figures are pessimistic.**",
        "",
    ]


def render_markdown(results: Results) -> str:
    meta = results.meta
    lines: list[str] = [
        f"# alm-kafka-bridge benchmark ({'quick' if meta.get('quick') else 'full'} run)",
        "",
        f"Started {meta.get('started', '?')}, took {_n(meta.get('duration_s'))} s. "
        f"Host: {meta.get('cpus', '?')} CPUs, load average {meta.get('loadavg_start', '?')} "
        f"at the start and {meta.get('loadavg_end', '?')} at the end. "
        f"Python {meta.get('python', '?')}, aiohttp {meta.get('aiohttp', '?')}, "
        f"aiokafka {meta.get('aiokafka', '?')}, Kafka {meta.get('kafka_version', '?')}.",
        "",
        "Bridge: `python -m bridge serve`, JSON logs at info level, HMAC-SHA256 auth, default "
        "producer settings (acks=all, idempotent, "
        f"compression {meta.get('compression', '?')}, linger {meta.get('linger_ms', '?')} ms). "
        "Latency is from the moment a request is due to the end of its answer. CPU % columns: "
        "the measured server (bridge, HTTP ceiling or raw producer), the broker, the load "
        "generator, and every other process on the host, in % of one core.",
        "",
        *_noise_warning(results),
        "## Targets",
        "",
    ]
    rows = [[t.name, _n(t.value, 3), _n(t.limit, 2), t.verdict, t.detail] for t in targets(results)]
    check = generator_check(results)
    rows.append([check.name, _n(check.value, 1), _n(check.limit, 1), check.verdict, check.detail])
    lines += _table(("target", "value", "limit", "result", "detail"), rows)
    lines += ["", "## Bridge next to its ceilings", ""]
    lines += _table(
        ("metric", "bridge", "ceiling", "ceiling value", "bridge / ceiling"),
        [
            [
                c.metric,
                _value(c.bridge, c.unit),
                c.ceiling_name,
                _value(c.ceiling, c.unit),
                _ratio(c.ratio),
            ]
            for c in comparisons(results)
        ],
    )
    lines += ["", "## Bridge workloads", ""]
    phase_rows = [_phase_row(f"ALM-like {p.senders} x {p.batch}", p, BRIDGE) for p in results.alm]
    sus = results.sustainable
    for step in results.open_steps:
        mark = " (sustainable)" if step is sus else ("" if step_passes(step) else " (over)")
        label = f"open loop {_n(step.offered_rps, 1)} req/s x {step.batch}{mark}"
        phase_rows.append(_phase_row(label, step, BRIDGE))
    if results.overload is not None:
        over = results.overload
        phase_rows.append(
            _phase_row(
                f"over capacity {_n(over.offered_rps, 1)} req/s x {over.batch}", over, BRIDGE
            )
        )
    if results.soak is not None:
        soak = results.soak
        phase_rows.append(
            _phase_row(
                f"soak {_n(soak.duration_s)} s at {_n(soak.offered_rps, 1)} req/s", soak, BRIDGE
            )
        )
    lines += _table(_PHASE_HEADER, phase_rows)
    if results.overload is not None:
        over = results.overload
        lines += [
            "",
            f"Over capacity: {over.requests} requests at {_n(over.offered_rps, 1)} req/s for "
            f"{_n(over.duration_s)} s; answers {_statuses(over)}; {over.slow} slower than "
            f"{DEADLINE_S:g} s or unanswered; max latency {_ms(over.latency.max)}.",
        ]
        busy = results.alm_cell(16, 100)
        most = busy.requests_per_s if busy else None
        if most and over.offered_rps and over.offered_rps < OVERLOAD_MARGIN * most:
            lines[-1] += (
                f" That rate is below the {most:,.1f} req/s that 16 closed-loop senders "
                "reached, so it did not overload the bridge: the sustainable rate was limited "
                "by latency spikes, not by throughput."
            )
    if results.soak is not None and BRIDGE in results.soak.procs:
        growth = rss_growth(results.soak.procs[BRIDGE].rss_mb)
        if growth is not None:
            lines += [
                "",
                f"Soak: RSS {growth.first_mb:.1f} MB (first third) -> {growth.last_mb:.1f} MB "
                f"(last third), growth {growth.growth_mb:+.1f} MB "
                f"({_n(growth.growth_pct, 1)} %), {growth.samples} samples.",
            ]
    lines += ["", "## Ceilings", ""]
    ceiling_rows = [
        _phase_row(f"HTTP ceiling {p.senders} x {p.batch}", p, "http-ceiling")
        for p in results.http_cells
    ]
    ceiling_rows += [
        _phase_row(
            f"HTTP ceiling open loop {_n(p.offered_rps, 1)} req/s x {p.batch}", p, "http-ceiling"
        )
        for p in results.http_steps
    ]
    for label, stats in (
        ("raw producer, 16 x 100 records in flight", results.producer_throughput),
        ("raw producer, 10 records then await", results.producer_latency),
    ):
        if stats is not None:
            ceiling_rows.append(_phase_row(label, stats, "producer"))
    ceiling_rows += [
        _phase_row(f"raw producer open loop {_n(p.offered_rps, 1)}/s x {p.batch}", p, "producer")
        for p in results.producer_steps
    ]
    lines += _table(_PHASE_HEADER, ceiling_rows)
    saturated = [
        f"{p.senders} x {p.batch}"
        for p in results.http_cells
        if (p.generator_cpu_pct or 0.0) >= SATURATED_GENERATOR_PCT
    ]
    if saturated:
        lines += [
            "",
            f"The generator used a whole core against the HTTP ceiling in {', '.join(saturated)}: "
            "there the HTTP ceiling is at least the figure shown (the generator's own limit).",
        ]
    java = results.java or {}
    summary = java.get("summary")
    if summary:
        lines += [
            "",
            f"Java ProducerPerformance ({java.get('record_size', '?')}-byte records, same broker, "
            f"acks=all, idempotent): {_n(summary['records_per_s'])} records/s "
            f"({summary['mb_per_s']:.2f} MB/s), {summary['records']:,} records; latency at full "
            f"speed avg {summary['avg_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms (queueing in "
            f"its own buffer); JVM CPU {java.get('cpu_s', '?')} s.",
        ]
    elif results.java is not None:
        lines += [
            "",
            f"Java ProducerPerformance did not report: {java.get('error', 'see its log')}.",
        ]
    if results.compare:
        lines += ["", f"## Compared endpoint {results.compare_url}", ""]
        lines += _table(
            _PHASE_HEADER,
            [_phase_row(f"{p.senders} x {p.batch}", p, "none") for p in results.compare],
        )
    if results.profile and results.profile.get("top_self"):
        lines += [
            "",
            f"## Where the bridge's time goes (py-spy, {results.profile.get('workload', '')})",
            "",
        ]
        lines += _table(
            ("function (self time)", "share"),
            [
                [f"`{row['frame']}`", f"{row['pct']:.1f} %"]
                for row in results.profile["top_self"][:12]
            ],
        )
    if results.notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {note}" for note in results.notes]
    return "\n".join(lines) + "\n"


# Chart ----------------------------------------------------------------------------------


def chart_series(results: Results) -> dict[str, list[tuple[float, float]]]:
    """(offered events/s, latency ms) points per line of the chart."""
    series: dict[str, list[tuple[float, float]]] = {}

    def add(label: str, phases: Sequence[PhaseStats]) -> None:
        for pct in ("p50", "p99"):
            points = sorted(
                (p.offered_eps, value)
                for p in phases
                if p.offered_eps is not None and (value := getattr(p.latency, pct)) is not None
            )
            if points:
                series[f"{label} {pct}"] = points

    add("bridge", results.open_steps)
    add("HTTP ceiling", results.http_steps)
    add("raw aiokafka producer", results.producer_steps)
    return series


def render_chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "bridge": ("tab:red", 2.5),
        "HTTP ceiling": ("tab:blue", 1.5),
        "raw aiokafka producer": ("tab:green", 1.5),
    }
    fig, ax = plt.subplots(figsize=(13, 6), dpi=110)
    for label, points in chart_series(results).items():
        name, pct = label.rsplit(" ", 1)
        color, width = styles.get(name, ("tab:gray", 1.0))
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs,
            ys,
            marker="o",
            color=color,
            linewidth=width,
            linestyle="-" if pct == "p99" else "--",
            label=label,
        )
    ax.axhline(P99_LIMIT_MS, color="black", linewidth=0.8, linestyle=":", label="p99 limit 100 ms")
    # Vertical markers, each (x, colour, width, style, label), for the figures known.
    markers: list[tuple[float, str, float, str, str]] = []
    prod = results.producer_throughput
    if prod is not None and prod.events_per_s:
        label = f"raw producer max {prod.events_per_s:,.0f} ev/s"
        markers.append((prod.events_per_s, "tab:green", 1.0, "-.", label))
    java = (results.java or {}).get("summary")
    if java:
        label = f"Java ProducerPerformance {java['records_per_s']:,.0f} rec/s"
        markers.append((float(java["records_per_s"]), "tab:purple", 1.0, "-.", label))
    sus = results.sustainable
    if sus is not None and sus.offered_eps:
        label = f"bridge sustainable {sus.events_per_s or 0:,.0f} ev/s"
        markers.append((sus.offered_eps, "tab:red", 0.8, ":", label))
    for x, color, width, style, label in markers:
        ax.axvline(x, color=color, linewidth=width, linestyle=style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, events/s (100-event batches, open loop)")
    ax.set_ylabel("latency, ms (due -> answered)")
    ax.set_title("alm-kafka-bridge: latency against offered rate, with the ceilings")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
