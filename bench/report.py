"""The report of a run: results.json, results.md, chart.png, and both brokers side by side.

Everything but :func:`render_chart` and :func:`write_outputs` is pure, so it is unit-tested
with made-up numbers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from bench.formats import cpu_ms, ms, num, rounded, statuses
from bench.results import BENTHOS, BRIDGE, PEER, Results, background_pct, paired_steps
from bench.stats import DEADLINE_S, P99_LIMIT_MS, PhaseStats, rss_growth, step_passes, sustainable
from bench.targets import (
    NOISY_BACKGROUND_PCT,
    comparisons,
    generator_check,
    targets,
    trust_problems,
)

OVERLOAD_MARGIN: Final = 0.9
SATURATED_GENERATOR_PCT: Final = 90.0


# JSON -----------------------------------------------------------------------------------


def to_json(results: Results) -> dict[str, Any]:
    """results.json: the verdicts first, then every phase measured, by part of the run."""
    return {
        "meta": results.meta,
        "targets": [t.to_dict() for t in targets(results)],
        "generator_check": generator_check(results).to_dict(),
        "comparisons": [c.to_dict() for c in comparisons(results)],
        "bridge": _json_bridge(results),
        "ceilings": _json_ceilings(results),
        "compare": {"url": results.compare_url, "phases": [p.to_dict() for p in results.compare]},
        "peer": _json_peer(results),
        "all_cores": _json_search(results.all_cores_steps),
        "benthos": _json_search(results.benthos_steps),
        "untrusted": trust_problems(results) if results.meta.get("quick") else [],
        "profile": results.profile,
        "notes": results.notes,
    }


def _json_bridge(results: Results) -> dict[str, Any]:
    sus = results.sustainable
    soak_growth = None
    if results.soak is not None and BRIDGE in results.soak.procs:
        growth = rss_growth(results.soak.procs[BRIDGE].rss_mb)
        soak_growth = growth.to_dict() if growth else None
    return {
        "peak_rss_mb": rounded(results.bridge_peak_rss_mb),
        "alm_like": [p.to_dict() for p in results.alm],
        "open_loop": {
            "steps": [
                {**p.to_dict(), "passed": step_passes(p, P99_LIMIT_MS)} for p in results.open_steps
            ],
            "sustainable_rps": rounded(sus.offered_rps if sus else None),
            "sustainable_events_per_s": rounded(sus.events_per_s if sus else None),
        },
        "over_capacity": results.overload.to_dict() if results.overload else None,
        "soak": ({**results.soak.to_dict(), "rss_growth": soak_growth} if results.soak else None),
    }


def _json_ceilings(results: Results) -> dict[str, Any]:
    return {
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
    }


def _json_peer(results: Results) -> dict[str, Any]:
    return {
        "alm_like": [p.to_dict() for p in results.peer_alm],
        "single_turns": [
            {"bridge": b.to_dict(), "peer": p.to_dict()} for b, p in results.single_turns
        ],
        "open_loop": _json_search(results.peer_steps),
    }


def _json_search(steps: Sequence[PhaseStats]) -> dict[str, Any]:
    """An open-loop rate search: its steps, each passed or not, and the rate it held."""
    held = sustainable(steps)
    return {
        "steps": [{**p.to_dict(), "passed": step_passes(p)} for p in steps],
        "sustainable_events_per_s": rounded(held.events_per_s if held else None),
    }


def _d(stats: PhaseStats | None) -> dict[str, Any] | None:
    return None if stats is None else stats.to_dict()


# Markdown -------------------------------------------------------------------------------


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _value(value: float | None, unit: str) -> str:
    if unit == "ms":
        return ms(value)
    if unit == "s":
        return "-" if value is None else f"{value:.4f} s"
    if unit == "MB":
        return "-" if value is None else f"{value:.1f} MB"
    return num(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _phase_row(label: str, stats: PhaseStats, proc: str) -> list[str]:
    lat = stats.latency
    return [
        label,
        num(stats.events_per_s),
        num(stats.requests_per_s, 1),
        ms(lat.p50),
        ms(lat.p90),
        ms(lat.p99),
        ms(lat.max),
        str(stats.requests),
        str(stats.failed) if not stats.errors else f"{stats.failed} ({statuses(stats)})",
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
            num(stats.generator_cpu_pct),
            num(stats.background_cpu_pct),
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


def _step_label(step: PhaseStats, best: PhaseStats | None) -> str:
    """``open loop R req/s x B``, marked sustainable, over, or over and tried again."""
    if step is best:
        mark = " (sustainable)"
    elif step_passes(step):
        mark = ""
    else:
        mark = " (over; tried again)" if step.retried else " (over)"
    return f"open loop {num(step.offered_rps, 1)} req/s x {step.batch}{mark}"


def _search_rows(steps: Sequence[PhaseStats], proc: str) -> list[list[str]]:
    """One row per step of an open-loop rate search, its sustainable step marked."""
    best = sustainable(steps)
    return [_phase_row(_step_label(step, best), step, proc) for step in steps]


def _broker(meta: dict[str, Any]) -> str:
    topics = int(meta.get("crowded_topics") or 0)
    if topics <= 0:
        return "fresh (only the benchmark's own topics)"
    took = meta.get("crowd_seconds")
    made = f", created in {took} s" if took is not None else ""
    return (
        f"crowded: {topics:,} unrelated topics ({int(meta.get('crowded_partitions') or 0):,} "
        f"partitions) created before the bridge started{made}"
    )


def _untrusted(results: Results) -> list[str]:
    if not results.meta.get("quick"):
        return []
    problems = trust_problems(results)
    if not problems:
        return []
    return [
        "**No verdict: this quick run's figures cannot be trusted.** "
        + "; ".join(problems)
        + ". Run it again on a quiet host.",
        "",
    ]


def render_broker_summary(runs: Sequence[tuple[str, Results]]) -> str:
    """The fresh and the crowded broker side by side: the issue's table and the targets."""
    names = [label for label, _ in runs]
    lines = ["# Bridge and hand-written peer, fresh and crowded broker", ""]
    lines += [f"- {label}: {_broker(results.meta)}" for label, results in runs]
    lines += [""]
    lines += _table(("", *names), _summary_rows([results for _, results in runs]))
    lines += ["", "## Targets", ""]
    lines += _table(("target", *names), _summary_targets([results for _, results in runs]))
    return "\n".join(lines) + "\n"


def _summary_rows(runs: Sequence[Results]) -> list[list[str]]:
    """The issue's table: per server, its figures on each broker."""
    rows: list[list[str]] = []
    for who in ("bridge", "hand-written"):
        bridge = who == "bridge"
        held = [_held(r.sustainable if bridge else r.peer_sustainable) for r in runs]
        p99 = [_paired_p99(r, bridge=bridge) for r in runs]
        one = [_one_sender(r, bridge=bridge) for r in runs]
        cpu = [cpu_ms(paired_steps(r).cpu_per_1k(BRIDGE if bridge else PEER)) for r in runs]
        rows.append([f"{who}: highest rate held (events/s)", *held])
        rows.append([f"{who}: open-loop p99, median over the rates both held", *p99])
        rows.append([f"{who}: 1 sender x 10 events, p50 / p99", *one])
        rows.append([f"{who}: CPU ms per 1,000 events, rates both held", *cpu])
    if any(r.all_cores_steps for r in runs):
        both = [_held(r.all_cores_sustainable) for r in runs]
        rows.append(["bridge, two one-core processes: highest rate held", *both])
    if any(r.benthos_steps for r in runs):
        benthos = [_held(r.benthos_sustainable) for r in runs]
        rows.append(["Benthos peer: highest rate held", *benthos])
    return rows


def _held(sus: PhaseStats | None) -> str:
    return num(sus.offered_eps if sus else None)


def _paired_p99(results: Results, *, bridge: bool) -> str:
    pairs = paired_steps(results)
    return ms(pairs.bridge_p99 if bridge else pairs.peer_p99)


def _one_sender(results: Results, *, bridge: bool) -> str:
    """p50 / p99 of one sender of 10-event batches: medians of the turns, else the cell."""
    if results.single_turns:
        turns = [b if bridge else p for b, p in results.single_turns]
        p50 = statistics.median(t.latency.p50 for t in turns if t.latency.p50 is not None)
        p99 = results.single_p99s()[0 if bridge else 1]
        return f"{ms(p50)} / {ms(p99)}"
    cell = results.alm_cell(1, 10) if bridge else results.peer_cell(1, 10)
    if cell is None:
        return "-"
    return f"{ms(cell.latency.p50)} / {ms(cell.latency.p99)}"


def _summary_targets(runs: Sequence[Results]) -> list[list[str]]:
    """Each target's verdict and value on each broker (untrusted for a doubtful quick run)."""
    per_run = [targets(results) for results in runs]
    doubted = [bool(r.meta.get("quick")) and bool(trust_problems(r)) for r in runs]
    target_rows = []
    for index, target in enumerate(per_run[0]):
        cells = []
        for run_targets, doubt in zip(per_run, doubted, strict=True):
            t = run_targets[index]
            cells.append(f"{'untrusted' if doubt else t.verdict} ({num(t.value, 2)})")
        target_rows.append([target.name, *cells])
    return target_rows


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
    """results.md: the run, the targets, the bridge next to its ceilings, every phase measured."""
    lines = [
        *_md_header(results),
        *_md_targets(results),
        *_md_comparisons(results),
        *_md_bridge_workloads(results),
        *_md_over_capacity(results),
        *_md_soak(results),
        *_md_ceilings(results),
        *_md_java(results),
        *_md_peer(results),
        *_md_all_cores(results),
        *_md_benthos(results),
        *_md_compare(results),
        *_md_profile(results),
        *_md_notes(results),
    ]
    return "\n".join(lines) + "\n"


def _md_header(results: Results) -> list[str]:
    """The title, the host and versions, the broker and the bridge's configuration."""
    meta = results.meta
    return [
        f"# alm-kafka-bridge benchmark ({'quick' if meta.get('quick') else 'full'} run)",
        "",
        f"Started {meta.get('started', '?')}, took {num(meta.get('duration_s'))} s. "
        f"Host: {meta.get('cpus', '?')} CPUs, load average {meta.get('loadavg_start', '?')} "
        f"at the start and {meta.get('loadavg_end', '?')} at the end. "
        f"Python {meta.get('python', '?')}, aiohttp {meta.get('aiohttp', '?')}, "
        f"aiokafka {meta.get('aiokafka', '?')}, Kafka {meta.get('kafka_version', '?')}.",
        "",
        f"Broker: {_broker(meta)}.",
        "",
        "Bridge: `python -m bridge serve`, JSON logs at info level, HMAC-SHA256 auth, default "
        "producer settings (acks=all, idempotent, "
        f"compression {meta.get('compression', '?')}, linger {meta.get('linger_ms', '?')} ms). "
        "Latency is from the moment a request is due to the end of its answer. CPU % columns: "
        "the measured server (bridge, HTTP ceiling or raw producer), the broker, the load "
        "generator, and every other process on the host, in % of one core.",
        "",
        *_noise_warning(results),
        *_untrusted(results),
    ]


def _md_targets(results: Results) -> list[str]:
    """The targets (untrusted in a quick run on a busy host) and the generator's check."""
    lines = ["## Targets", ""]
    doubted = bool(results.meta.get("quick")) and bool(trust_problems(results))
    rows = [
        [t.name, num(t.value, 3), num(t.limit, 2), "untrusted" if doubted else t.verdict, t.detail]
        for t in targets(results)
    ]
    check = generator_check(results)
    rows.append([check.name, num(check.value, 1), num(check.limit, 1), check.verdict, check.detail])
    lines += _table(("target", "value", "limit", "result", "detail"), rows)
    return lines


def _md_comparisons(results: Results) -> list[str]:
    lines = ["", "## Bridge next to its ceilings", ""]
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
    return lines


def _md_bridge_workloads(results: Results) -> list[str]:
    """One row per phase of the bridge: ALM-like, the open-loop search, over capacity, soak."""
    lines = ["", "## Bridge workloads", ""]
    phase_rows = [_phase_row(f"ALM-like {p.senders} x {p.batch}", p, BRIDGE) for p in results.alm]
    phase_rows += _search_rows(results.open_steps, BRIDGE)
    if results.overload is not None:
        over = results.overload
        phase_rows.append(
            _phase_row(
                f"over capacity {num(over.offered_rps, 1)} req/s x {over.batch}", over, BRIDGE
            )
        )
    if results.soak is not None:
        soak = results.soak
        phase_rows.append(
            _phase_row(
                f"soak {num(soak.duration_s)} s at {num(soak.offered_rps, 1)} req/s", soak, BRIDGE
            )
        )
    lines += _table(_PHASE_HEADER, phase_rows)
    return lines


def _md_over_capacity(results: Results) -> list[str]:
    """What over capacity got as answers, and whether its rate overloaded the bridge at all."""
    over = results.overload
    if over is None:
        return []
    line = (
        f"Over capacity: {over.requests} requests at {num(over.offered_rps, 1)} req/s for "
        f"{num(over.duration_s)} s; answers {statuses(over)}; {over.slow} slower than "
        f"{DEADLINE_S:g} s or unanswered; max latency {ms(over.latency.max)}."
    )
    busy = results.alm_cell(16, 100)
    most = busy.requests_per_s if busy else None
    if most and over.offered_rps and over.offered_rps < OVERLOAD_MARGIN * most:
        line += (
            f" That rate is below the {most:,.1f} req/s that 16 closed-loop senders "
            "reached, so it did not overload the bridge: the sustainable rate was limited "
            "by latency spikes, not by throughput."
        )
    return ["", line]


def _md_soak(results: Results) -> list[str]:
    """The bridge's RSS at the start and at the end of the soak."""
    if results.soak is None or BRIDGE not in results.soak.procs:
        return []
    growth = rss_growth(results.soak.procs[BRIDGE].rss_mb)
    if growth is None:
        return []
    return [
        "",
        f"Soak: RSS {growth.first_mb:.1f} MB (first third) -> {growth.last_mb:.1f} MB "
        f"(last third), growth {growth.growth_mb:+.1f} MB "
        f"({num(growth.growth_pct, 1)} %), {growth.samples} samples.",
    ]


def _md_ceilings(results: Results) -> list[str]:
    """The HTTP ceiling and the raw producer, and where the generator limited the former."""
    lines = ["", "## Ceilings", ""]
    ceiling_rows = [
        _phase_row(f"HTTP ceiling {p.senders} x {p.batch}", p, "http-ceiling")
        for p in results.http_cells
    ]
    ceiling_rows += [
        _phase_row(
            f"HTTP ceiling open loop {num(p.offered_rps, 1)} req/s x {p.batch}", p, "http-ceiling"
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
        _phase_row(f"raw producer open loop {num(p.offered_rps, 1)}/s x {p.batch}", p, "producer")
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
    return lines


def _md_java(results: Results) -> list[str]:
    """Java ProducerPerformance's summary, or why it did not report."""
    java = results.java or {}
    summary = java.get("summary")
    if summary:
        return [
            "",
            f"Java ProducerPerformance ({java.get('record_size', '?')}-byte records, same broker, "
            f"acks=all, idempotent): {num(summary['records_per_s'])} records/s "
            f"({summary['mb_per_s']:.2f} MB/s), {summary['records']:,} records; latency at full "
            f"speed avg {summary['avg_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms (queueing in "
            f"its own buffer); JVM CPU {java.get('cpu_s', '?')} s.",
        ]
    if results.java is not None:
        return [
            "",
            f"Java ProducerPerformance did not report: {java.get('error', 'see its log')}.",
        ]
    return []


def _md_peer(results: Results) -> list[str]:
    """The hand-written peer: its ALM-like cells, the rounds by turns, its open-loop search."""
    if not (results.peer_alm or results.peer_steps):
        return []
    lines = [
        "",
        "## Hand-written peer (bench/peer.py)",
        "",
        "aiohttp + aiokafka with their defaults, stdlib json, HMAC check, one `send()` per "
        "event, no limits; measured right after the bridge at the same workloads, and "
        "with it for one sender of 10-event batches asking both by turns, request by "
        "request (each server's events/s there is its share of the round).",
        "",
    ]
    peer_rows = [_phase_row(f"ALM-like {p.senders} x {p.batch}", p, PEER) for p in results.peer_alm]
    for index, (bridge_turn, peer_turn) in enumerate(results.single_turns, 1):
        peer_rows.append(_phase_row(f"round {index}: bridge 1 x 10", bridge_turn, BRIDGE))
        peer_rows.append(_phase_row(f"round {index}: hand-written 1 x 10", peer_turn, PEER))
    peer_rows += _search_rows(results.peer_steps, PEER)
    lines += _table(_PHASE_HEADER, peer_rows)
    return lines


def _md_all_cores(results: Results) -> list[str]:
    """The open-loop search on two one-core bridge processes taking requests in turn."""
    if not results.all_cores_steps:
        return []
    lines = [
        "",
        "## All cores: two bridge processes (bridge, bridge-2)",
        "",
        "Two one-core bridge processes taking requests in turn, as two pods behind a "
        "Service; open-loop steps of 100-event batches like the one-process search.",
        "",
    ]
    both = results.all_cores_sustainable
    rows = []
    for step in results.all_cores_steps:
        rows.append(
            [
                _step_label(step, both),
                num(step.events_per_s),
                ms(step.latency.p50),
                ms(step.latency.p99),
                ms(step.latency.max),
                str(step.failed),
                " / ".join(_pct(step, name) for name in ("bridge", "bridge-2", "kafka")),
            ]
        )
    lines += _table(
        (
            "workload",
            "events/s",
            "p50",
            "p99",
            "max",
            "non-2xx",
            "CPU % bridge / bridge-2 / broker",
        ),
        rows,
    )
    return lines


def _md_benthos(results: Results) -> list[str]:
    if not results.benthos_steps:
        return []
    lines = [
        "",
        "## Benthos peer (bench/benthos-peer)",
        "",
        "The Benthos engine with issue 15's pipeline: http_server, HMAC check and split in "
        "Bloblang, one record per event through franz-go with the bridge's producer settings "
        "(acks=all, idempotent, no compression), the answer after Kafka acknowledged the "
        "batch. Pipeline threads on every core. Open-loop steps of 100-event batches, "
        "searched like the bridge's, on the same broker.",
        "",
    ]
    lines += _table(_PHASE_HEADER, _search_rows(results.benthos_steps, BENTHOS))
    return lines


def _md_compare(results: Results) -> list[str]:
    if not results.compare:
        return []
    lines = ["", f"## Compared endpoint {results.compare_url}", ""]
    lines += _table(
        _PHASE_HEADER,
        [_phase_row(f"{p.senders} x {p.batch}", p, "none") for p in results.compare],
    )
    return lines


def _md_profile(results: Results) -> list[str]:
    if not (results.profile and results.profile.get("top_self")):
        return []
    lines = [
        "",
        f"## Where the bridge's time goes (py-spy, {results.profile.get('workload', '')})",
        "",
    ]
    lines += _table(
        ("function (self time)", "share"),
        [[f"`{row['frame']}`", f"{row['pct']:.1f} %"] for row in results.profile["top_self"][:12]],
    )
    return lines


def _md_notes(results: Results) -> list[str]:
    if not results.notes:
        return []
    return ["", "Notes:", "", *(f"- {note}" for note in results.notes)]


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
    add("hand-written peer", results.peer_steps)
    add("Benthos peer", results.benthos_steps)
    return series


def render_chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "bridge": ("tab:red", 2.5),
        "HTTP ceiling": ("tab:blue", 1.5),
        "raw aiokafka producer": ("tab:green", 1.5),
        "hand-written peer": ("tab:orange", 1.5),
        "Benthos peer": ("tab:purple", 1.5),
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


# Files ----------------------------------------------------------------------------------


def write_outputs(results: Results, run_dir: Path) -> str:
    (run_dir / "results.json").write_bytes(
        orjson.dumps(to_json(results), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    markdown = render_markdown(results)
    (run_dir / "results.md").write_text(markdown)
    try:
        render_chart(results, run_dir / "chart.png")
    except Exception as exc:  # a missing matplotlib must not lose the numbers
        results.notes.append(f"chart not drawn: {type(exc).__name__}: {exc}")
        markdown = render_markdown(results)
        (run_dir / "results.md").write_text(markdown)
    return markdown
