"""The benchmark's pure parts: percentiles, phase statistics, ratios, targets, rendering."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import time
from pathlib import Path

import orjson
import psutil
import pytest

from bench import processes
from bench.bodies import BodyFactory, event_id_offsets, make_templates, ring_length, tagged
from bench.ceilings import parse_producer_performance
from bench.config import make_config, make_parser
from bench.loadgen import Generator, LoadSpec, PhaseSpec, planned_seconds
from bench.profile import area, parse_collapsed, summarize_profile
from bench.report import (
    chart_series,
    render_broker_summary,
    render_chart,
    render_markdown,
    to_json,
)
from bench.results import Results, background_pct, paired_steps
from bench.stats import (
    Latency,
    PhaseStats,
    ProcUsage,
    Sample,
    next_steps,
    overload_violations,
    per_thousand,
    percentile,
    ratio,
    rss_growth,
    step_passes,
    summarize,
    sustainable,
)
from bench.targets import (
    Comparison,
    comparisons,
    exit_status,
    generator_check,
    targets,
    trust_problems,
)
from deploy.supervisor import Process

# Percentiles and ratios -------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_of_nothing_and_of_one_value() -> None:
    assert percentile([], 99) is None
    assert percentile([7.0], 1) == 7.0


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_latency_is_in_milliseconds() -> None:
    latency = Latency.of_seconds([0.001, 0.002, 0.003, 0.010])
    assert latency.count == 4
    assert latency.p50 == pytest.approx(2.5)
    assert latency.max == pytest.approx(10.0)
    assert latency.mean == pytest.approx(4.0)
    assert Latency.of_seconds([]) == Latency()


def test_ratio_is_none_without_both_values_or_with_a_zero_ceiling() -> None:
    assert ratio(3.0, 4.0) == pytest.approx(0.75)
    assert ratio(None, 4.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None


def test_cpu_per_thousand_events() -> None:
    assert per_thousand(0.5, 10_000) == pytest.approx(0.05)
    assert per_thousand(0.5, 0) is None
    assert per_thousand(None, 10) is None


# Phase statistics -------------------------------------------------------------------------


def _phase(**overrides: object) -> PhaseStats:
    stats = PhaseStats(name="p", target="bridge", mode="open", senders=0, batch=100, duration_s=1)
    for key, value in overrides.items():
        setattr(stats, key, value)
    return stats


def test_summarize_counts_answers_errors_and_slow_requests() -> None:
    samples = [
        Sample(0.0, 0.010, 200),
        Sample(0.1, 0.020, 200, clean=False),
        Sample(0.2, 0.001, 429),
        Sample(0.3, 6.000, 200),
        Sample(0.4, 10.0, 0, error="timeout"),
    ]
    stats = summarize(
        samples, name="x", target="bridge", mode="open", senders=0, batch=10, duration_s=1.0
    )
    assert stats.requests == 5
    assert stats.answered == 4
    assert stats.ok == 3
    assert stats.events == 30
    assert stats.unclean == 1
    assert stats.statuses == {"200": 3, "429": 1}
    assert stats.errors == {"timeout": 1}
    assert stats.slow == 2
    assert stats.elapsed_s == pytest.approx(10.4)
    assert stats.failed == 2
    assert stats.events_per_s == pytest.approx(30 / 10.4)


def test_phase_stats_survive_json() -> None:
    stats = _phase(
        offered_rps=50.0,
        elapsed_s=2.0,
        requests=100,
        answered=100,
        ok=100,
        events=10_000,
        statuses={"200": 100},
        latency=Latency.of_seconds([0.01, 0.02]),
        generator_cpu_s=0.2,
        system_busy_s=2.5,
        procs={"bridge": ProcUsage(cpu_s=1.0, hwm_mb=90.0, rss_mb=[(0.0, 80.0), (1.0, 85.0)])},
    )
    again = PhaseStats.from_dict(orjson.loads(orjson.dumps(stats.to_dict())))
    assert again.to_dict() == stats.to_dict()
    assert again.cpu_per_1k("bridge") == pytest.approx(0.1)
    assert again.generator_cpu_pct == pytest.approx(10.0)
    assert again.background_cpu_pct == pytest.approx(65.0)
    assert again.offered_eps == pytest.approx(5000.0)


def test_step_passes_needs_every_request_2xx_clean_and_p99_within_limit() -> None:
    good = _phase(requests=10, ok=10, latency=Latency(count=10, p99=99.0))
    assert step_passes(good)
    assert not step_passes(_phase(requests=10, ok=10, latency=Latency(count=10, p99=101.0)))
    assert not step_passes(_phase(requests=10, ok=9, latency=Latency(count=10, p99=5.0)))
    assert not step_passes(
        _phase(requests=10, ok=10, unclean=1, latency=Latency(count=10, p99=5.0))
    )
    assert not step_passes(_phase())


def test_overload_violations_count_slow_and_unexpected_answers() -> None:
    fine = _phase(statuses={"200": 5, "429": 3, "503": 2})
    assert overload_violations(fine) == 0
    assert overload_violations(_phase(statuses={"200": 5, "500": 1}, slow=2)) == 3


def test_sustainable_is_the_best_pass_below_the_first_failure() -> None:
    def step(rate: float, p99: float) -> PhaseStats:
        return _phase(offered_rps=rate, requests=10, ok=10, latency=Latency(count=10, p99=p99))

    steps = [step(10, 20), step(20, 50), step(40, 150), step(30, 90), step(50, 80)]
    best = sustainable(steps)
    assert best is not None
    assert best.offered_rps == 30
    assert sustainable([step(10, 500)]) is None


def test_a_failed_step_that_was_tried_again_counts_by_its_second_try() -> None:
    def step(rate: float, p99: float, *, retried: bool = False) -> PhaseStats:
        stats = _phase(offered_rps=rate, requests=10, ok=10, latency=Latency(count=10, p99=p99))
        stats.retried = retried
        return stats

    # 30 stalled once and held when run again; 40 failed twice: 30 is the sustainable rate.
    steps = [step(20, 50), step(30, 400, retried=True), step(30, 60), step(40, 150, retried=True)]
    steps.append(step(40, 170))
    best = sustainable(steps)
    assert best is not None
    assert best.offered_rps == 30
    assert PhaseStats.from_dict(steps[1].to_dict()).retried is True


async def test_the_generator_runs_a_failed_step_once_more_and_goes_on_from_the_second_try() -> None:
    class Scripted(Generator):
        """The generator's step search over scripted p99s instead of a server."""

        def __init__(self, p99s: dict[float, list[float]]) -> None:
            super().__init__(LoadSpec(url="http://127.0.0.1:9/", target="t", secret="s"))
            self.p99s = p99s
            self.tried: list[float] = []

        async def open(self, phase: PhaseSpec, rate: float) -> PhaseStats:
            self.tried.append(rate)
            p99 = self.p99s[rate].pop(0)
            return _phase(offered_rps=rate, requests=10, ok=10, latency=Latency(count=10, p99=p99))

    # 20 stalls once; 40 fails twice; bisecting then tries 30 (once: it passes).
    generator = Scripted({10.0: [20.0], 20.0: [300.0, 40.0], 30.0: [60.0], 40.0: [200.0, 250.0]})
    phase = PhaseSpec("s", "steps", 100, 1.0, rates=[10.0, 20.0, 40.0], refine=1, pause_s=0.0)
    phase.retry_failed = True
    steps = await generator.steps(phase)
    assert generator.tried == [10.0, 20.0, 20.0, 40.0, 40.0, 30.0]
    assert [s.retried for s in steps] == [False, True, False, True, False, False]
    best = sustainable(steps)
    assert best is not None
    assert best.offered_rps == 30.0
    phase.retry_failed = False  # without it, the first stall ends the search at 10
    generator = Scripted({10.0: [20.0], 20.0: [300.0], 15.0: [200.0]})
    steps = await generator.steps(phase)
    assert generator.tried[:2] == [10.0, 20.0]
    assert not any(s.retried for s in steps)


def test_next_steps_grows_steps_down_then_bisects() -> None:
    assert next_steps([10.0, 20.0], [], refine=0) == pytest.approx(25.0)
    assert next_steps([], [40.0], refine=2) == pytest.approx(32.0)
    assert next_steps([], [40.0, 32.0], refine=2) == pytest.approx(25.6)
    assert next_steps([20.0], [40.0], refine=1) == pytest.approx(30.0)
    assert next_steps([20.0], [40.0], refine=0) is None
    assert next_steps([39.5], [40.0], refine=3) is None
    assert next_steps([], [], refine=1) is None


def test_rss_growth_compares_first_and_last_third() -> None:
    samples = [(float(t), 100.0 + t) for t in range(10)]
    growth = rss_growth(samples)
    assert growth is not None
    assert growth.first_mb == pytest.approx(101.5)
    assert growth.last_mb == pytest.approx(107.5)
    assert growth.growth_mb == pytest.approx(6.0)
    assert growth.growth_pct == pytest.approx(600 / 101.5)
    assert rss_growth(samples[:2]) is None


# Processes ----------------------------------------------------------------------------------


def test_a_started_process_is_measured_then_stopped_with_its_children(tmp_path: Path) -> None:
    # A shell that starts a child which ignores nothing, burns a little CPU, then waits.
    script = "sleep 60 & i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo ready; wait"
    process = Process("sh", log=tmp_path / "p.log")
    pid = process.start(["sh", "-c", script])
    process.wait_until(lambda: "ready" in process.log_tail(), 20, what="ready", interval_s=0.05)
    child = psutil.Process(pid).children()[0]
    assert processes.alive(pid)
    assert (processes.cpu_seconds(pid) or 0.0) > 0.0
    rss, peak = processes.memory_mb(pid)
    assert rss is not None
    assert peak is not None
    assert 0 < rss <= peak
    assert process.stop(grace_s=5.0) == -signal.SIGTERM
    assert not processes.alive(pid)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert process.stop() == -signal.SIGTERM  # idempotent
    assert processes.cpu_seconds(pid) is None


def test_host_busy_time_grows_with_work() -> None:
    before = processes.system_busy_seconds()
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    assert processes.system_busy_seconds() - before >= 0.1
    assert processes.steal_seconds() >= 0.0


# Bodies -------------------------------------------------------------------------------------


def test_tagged_bodies_have_unique_event_ids_and_valid_signatures() -> None:
    factory = BodyFactory(secret=b"k", header="X-Sig", account_id=1234, seed=3, tag_base=7)
    bodies = factory.build(10, 5)
    ids: list[str] = []
    for body, headers in bodies:
        doc = orjson.loads(body)
        assert len(doc["events"]) == 10
        ids += [e["eventId"] for e in doc["events"]]
        expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
        assert headers["X-Sig"] == expected
        assert headers["Content-Type"] == "application/json"
    assert len(ids) == len(set(ids)) == 50


def test_tag_replaces_the_last_eight_characters_of_every_event_id() -> None:
    template = make_templates(20, 1, seed=1, account_id=1)[0]
    assert template.events == 20
    doc = orjson.loads(tagged(template, 0xABCDEF12))
    assert all(str(e["eventId"]).endswith("abcdef12") for e in doc["events"])
    assert event_id_offsets(template.body) == template.offsets


def test_ring_length_reuses_bodies_only_beyond_the_duplicate_window() -> None:
    assert ring_length(50, 100, 150_000) == (50, False)
    assert ring_length(10_000, 100, 150_000) == (1500, True)
    assert ring_length(0, 1, 10) == (1, False)


# Java and py-spy output -----------------------------------------------------------------


JAVA_OUTPUT = """\
65391 records sent, 13078.2 records/sec (7.48 MB/sec), 2147.5 ms avg latency, 3027.0 ms max latency.
200000 records sent, 20872.5 records/sec (11.94 MB/sec), 1994.74 ms avg latency, \
3027.00 ms max latency, 2014 ms 50th, 2738 ms 95th, 2995 ms 99th, 3027 ms 99.9th.
"""


def test_producer_performance_summary_is_the_final_line() -> None:
    result = parse_producer_performance(JAVA_OUTPUT)
    assert result is not None
    assert result.records == 200_000
    assert result.records_per_s == pytest.approx(20872.5)
    assert result.mb_per_s == pytest.approx(11.94)
    assert result.p99_ms == 2995
    assert parse_producer_performance("no summary here") is None


def test_profile_summary_shares() -> None:
    text = (
        "<module> (bridge/cli/main.py:1);run (uvloop/__init__.py:2);"
        "send (aiokafka/producer/producer.py:9);murmur2 (aiokafka/partitioner.py:30) 6\n"
        "<module> (bridge/cli/main.py:1);run (uvloop/__init__.py:2);"
        "parse_body (bridge/core/alm.py:141) 3\n"
        "<module> (bridge/cli/main.py:1);run (uvloop/__init__.py:2) 1\n"
        "garbage line\n"
    )
    stacks = parse_collapsed(text)
    assert len(stacks) == 3
    summary = summarize_profile(stacks)
    assert summary["samples"] == 10
    assert summary["top_self"][0] == {
        "frame": "murmur2 (aiokafka/partitioner.py)",
        "samples": 6,
        "pct": 60.0,
    }
    inclusive = {row["frame"] for row in summary["top_inclusive"]}
    assert "<module> (bridge/cli/main.py)" not in inclusive
    assert {r["frame"]: r["pct"] for r in summary["leaf_areas"]} == {
        "aiokafka": 60.0,
        "bridge.core.alm": 30.0,
        "uvloop": 10.0,
    }
    assert area("f (<string>)") == "<string>"
    assert area("write (asyncio/streams.py)") == "asyncio"


# Report -------------------------------------------------------------------------------------


def _stats(
    name: str,
    *,
    senders: int = 16,
    batch: int = 100,
    rps: float = 100.0,
    p99: float = 10.0,
    offered: float | None = None,
    proc: str = "bridge",
    cpu: float = 1.0,
    target: str = "bridge",
) -> PhaseStats:
    requests = int(rps * 10)
    return PhaseStats(
        name=name,
        target=target,
        mode="open" if offered else "closed",
        senders=senders,
        batch=batch,
        duration_s=10.0,
        offered_rps=offered,
        elapsed_s=10.0,
        requests=requests,
        answered=requests,
        ok=requests,
        events=requests * batch,
        statuses={"200": requests},
        latency=Latency(count=requests, p50=p99 / 4, p90=p99 / 2, p99=p99, max=p99 * 2),
        generator_cpu_s=1.0,
        system_busy_s=5.0,
        procs={proc: ProcUsage(cpu_s=cpu, hwm_mb=100.0)},
    )


def _results() -> Results:
    results = Results(meta={"quick": False, "started": "now", "cpus": 2, "duration_s": 90})
    results.alm = [
        _stats("ALM-like 1 x 10", senders=1, batch=10, rps=50.0, p99=8.0),
        _stats("ALM-like 16 x 100", rps=100.0, p99=150.0, cpu=5.0),
        _stats("ALM-like 16 x 1", batch=1, rps=1000.0, p99=20.0),
    ]
    results.open_steps = [
        _stats("open loop", rps=50.0, offered=50.0, p99=20.0),
        _stats("open loop", rps=100.0, offered=100.0, p99=200.0),
        _stats("open loop", rps=75.0, offered=75.0, p99=60.0),
    ]
    over = _stats("over capacity", rps=150.0, offered=150.0, p99=900.0)
    over.statuses = {"200": 1200, "429": 300}
    results.overload = over
    results.http_cells = [
        _stats("HTTP", senders=1, batch=10, rps=5000.0, p99=0.5, proc="http-ceiling"),
        _stats("HTTP", rps=7000.0, p99=4.0, proc="http-ceiling", cpu=2.0),
        _stats("HTTP", batch=1, rps=8000.0, p99=4.0, proc="http-ceiling"),
    ]
    results.http_steps = [
        _stats("HTTP open", rps=r, offered=r, p99=2.0, proc="http-ceiling")
        for r in (50.0, 100.0, 200.0)
    ]
    results.producer_throughput = _stats("raw", rps=250.0, proc="producer", cpu=4.0)
    results.producer_latency = _stats("raw10", senders=1, batch=10, rps=1500.0, p99=3.0)
    results.producer_steps = [
        _stats("raw open", rps=r, offered=r, p99=8.0, proc="producer") for r in (50.0, 100.0)
    ]
    results.java = {
        "summary": {
            "records_per_s": 60_000.0,
            "mb_per_s": 40.0,
            "records": 1,
            "avg_ms": 1.0,
            "p99_ms": 2.0,
        },
        "cpu_s": 3.0,
        "record_size": 668,
    }
    results.bridge_peak_rss_mb = 120.0
    results.peer_alm = [
        _stats("peer 1 x 10", senders=1, batch=10, rps=60.0, p99=6.0, proc="peer", target="peer"),
        _stats("peer 16 x 100", rps=120.0, p99=100.0, proc="peer", target="peer"),
    ]
    results.peer_steps = [
        _stats("peer open", rps=r, offered=r, p99=p99, proc="peer", cpu=1.5, target="peer")
        for r, p99 in ((50.0, 15.0), (75.0, 40.0), (100.0, 50.0), (125.0, 300.0))
    ]
    return results


def test_comparisons_are_bridge_over_ceiling() -> None:
    rows = comparisons(_results())
    by = {(c.metric, c.ceiling_name): c for c in rows}
    sus = by[
        (
            "events/s, 100-event batches, sustainable (open loop, p99 <= 100 ms)",
            "raw aiokafka producer (Python client ceiling)",
        )
    ]
    assert sus.bridge == pytest.approx(7500.0)
    assert sus.ceiling == pytest.approx(25_000.0)
    assert sus.ratio == pytest.approx(0.3)
    p99 = by[("latency p99, ALM-like 1 x 10", "raw producer: send 10 records, await all")]
    assert p99.ratio == pytest.approx(8.0 / 3.0)
    cpu = by[("CPU s per 1,000 events, ALM-like 16 x 100", "raw producer process, same records")]
    assert cpu.bridge == pytest.approx(5.0 * 1000 / 100_000)
    assert cpu.ceiling == pytest.approx(4.0 * 1000 / 250_000)
    assert Comparison("m", "ms", 1.0, "c", None).ratio is None


def test_targets_pass_fail_and_not_measured() -> None:
    results = _results()
    verdicts = [t.verdict for t in targets(results)]
    # 7,500 of 25,000 events/s; 8 ms vs 3 ms; no slow request; 120 MB; against the peer:
    # median p99 40 vs 27.5 ms; 8 vs 6 ms; 7,500 events/s held; CPU 0.016 vs 0.024 s per 1k.
    assert verdicts == ["FAIL", "FAIL", "PASS", "PASS", "FAIL", "FAIL", "FAIL", "PASS"]
    results.bridge_peak_rss_mb = 151.0
    results.overload = None
    assert [t.verdict for t in targets(results)][2:4] == ["n/a", "FAIL"]
    assert [t.verdict for t in targets(Results())] == ["n/a"] * 8


def test_peer_targets_compare_the_rates_both_held() -> None:
    results = _results()
    pairs = paired_steps(results)
    assert pairs.rates == [50.0, 75.0]  # the bridge failed 100, the peer 125
    assert pairs.bridge_p99 == pytest.approx(40.0)
    assert pairs.peer_p99 == pytest.approx(27.5)
    assert pairs.cpu_per_1k("bridge") == pytest.approx(2.0 * 1000 / 125_000)
    assert pairs.cpu_per_1k("peer") == pytest.approx(3.0 * 1000 / 125_000)
    p99, one, held, cpu = targets(results)[4:]
    assert p99.value == pytest.approx(40.0 / 27.5)
    assert one.value == pytest.approx(8.0 / 6.0)
    assert held.value == pytest.approx(7500.0)
    assert "hand-written 10,000 events/s" in held.detail
    assert cpu.value == pytest.approx(2.0 / 3.0)
    for step in results.open_steps:
        step.latency = Latency(count=1, p50=1.0, p90=1.0, p99=30.0, max=31.0)
    results.alm[0].latency = Latency(count=1, p50=1.0, p90=1.0, p99=7.0, max=8.0)
    assert [t.verdict for t in targets(results)[4:]] == ["PASS", "PASS", "FAIL", "PASS"]


def test_single_sender_target_uses_the_medians_of_the_turns_when_taken() -> None:
    results = _results()
    results.single_turns = [
        (
            _stats("bridge 1 x 10", senders=1, batch=10, p99=b),
            _stats("peer 1 x 10", senders=1, batch=10, p99=p, proc="peer", target="peer"),
        )
        for b, p in ((3.0, 2.0), (30.0, 2.5), (3.2, 25.0), (2.8, 2.6), (3.1, 2.9))
    ]
    assert results.single_p99s() == pytest.approx((3.1, 2.6))
    one = targets(results)[5]
    assert one.value == pytest.approx(3.1 / 2.6)
    assert "medians of 5 rounds each" in one.detail
    assert one.verdict == "PASS"
    text = render_markdown(results)
    assert "round 2: bridge 1 x 10" in text
    assert "round 5: hand-written 1 x 10" in text
    summary = render_broker_summary([("fresh", results)])
    assert "| bridge: 1 sender x 10 events, p50 / p99 | 0.78 ms / 3.10 ms |" in summary


def test_highest_rate_held_counts_all_cores_when_two_processes_were_measured() -> None:
    results = _results()
    held = targets(results)[6]
    assert held.value == pytest.approx(7500.0)  # one process only
    results.all_cores_steps = [
        _stats("all cores", rps=r, offered=r, p99=p99, proc="bridge-2")
        for r, p99 in ((100.0, 20.0), (140.0, 40.0), (170.0, 150.0))
    ]
    held = targets(results)[6]
    assert held.value == pytest.approx(14_000.0)
    assert held.detail.startswith(
        "bridge 14,000 (two one-core processes); one process 7,500, two one-core processes 14,000"
    )
    # Two processes that held 5,000 only, as on a small host whose broker shares the cores:
    results.all_cores_steps = [_stats("all cores", rps=50.0, offered=50.0, proc="bridge-2")]
    held = targets(results)[6]
    assert held.value == pytest.approx(7_500.0)
    assert held.detail.startswith("bridge 7,500 (one process); one process 7,500, two one-core")
    results.all_cores_steps = [
        _stats("all cores", rps=r, offered=r, p99=p99, proc="bridge-2")
        for r, p99 in ((100.0, 20.0), (140.0, 40.0), (170.0, 150.0))
    ]
    assert "## All cores: two bridge processes" in render_markdown(results)
    summary = render_broker_summary([("fresh", results)])
    assert "| bridge, two one-core processes: highest rate held | 14,000 |" in summary


def test_highest_rate_held_is_judged_against_the_benthos_peer_of_the_same_run() -> None:
    results = _results()
    results.all_cores_steps = [
        _stats("all cores", rps=r, offered=r, p99=p99, proc="bridge-2")
        for r, p99 in ((100.0, 20.0), (140.0, 40.0), (170.0, 150.0))
    ]
    results.benthos_steps = [
        _stats("Benthos open", rps=r, offered=r, p99=p99, proc="benthos", target="benthos")
        for r, p99 in ((140.0, 10.0), (200.0, 30.0), (280.0, 120.0))
    ]
    held = targets(results)[6]
    assert held.name == "highest rate held on all cores >= the Benthos peer's (same run)"
    assert held.value == pytest.approx(14_000.0 / 20_000.0)
    assert held.passed is False
    assert held.detail.endswith("; Benthos peer 20,000 events/s")
    results.benthos_steps[1] = _stats(
        "Benthos open", rps=200.0, offered=200.0, p99=130.0, proc="benthos", target="benthos"
    )
    assert targets(results)[6].passed is True  # 14,000 against Benthos's 14,000
    assert "## Benthos peer (bench/benthos-peer)" in render_markdown(results)
    summary = render_broker_summary([("fresh", results)])
    assert "| Benthos peer: highest rate held | 14,000 |" in summary


def test_trust_problems_name_a_busy_host_and_contradicting_steps() -> None:
    results = _results()
    assert trust_problems(results) == [
        "other processes used 25 % of a core during the bridge's phases (limit 25 %)"
    ]
    for phase in [*results.alm, *results.open_steps]:
        phase.system_busy_s = 2.0  # only the measured processes were busy
    assert trust_problems(results) == []
    results.meta["steal_pct"] = 12.5
    results.open_steps.append(_stats("open loop", rps=200.0, offered=200.0, p99=20.0))
    assert results.overload is not None
    results.overload.latency = Latency(count=1, p50=1.0, p90=1.0, p99=50.0, max=60.0)
    results.overload.statuses = {"200": results.overload.requests}
    problems = trust_problems(results)
    assert problems[0] == "the hypervisor took 12.5 % of the CPUs (steal)"
    assert "bridge: the step at 10,000 events/s failed, yet the one at 20,000" in problems[1]
    assert "over capacity at 15,000 events/s was held as well" in problems[2]


def test_exit_status_says_whether_the_targets_passed() -> None:
    results = _results()
    code, why = exit_status([(results, False)], quick=False)
    assert code == 3
    assert "sustainable events/s" in why
    assert exit_status([(results, True)], quick=False)[0] == 1
    results.meta["quick"] = True
    code, why = exit_status([(results, False)], quick=True)
    assert code == 4
    assert why.startswith("no verdict, the figures cannot be trusted: other processes used 25 %")
    assert "untrusted" in render_markdown(results)
    assert "No verdict" in render_markdown(results)
    passing = Results()
    passing_targets = targets(passing)
    assert all(t.passed is None for t in passing_targets)
    assert exit_status([(passing, False)], quick=False)[0] == 3  # not measured is not met


def test_broker_summary_puts_fresh_and_crowded_side_by_side() -> None:
    fresh, crowded = _results(), _results()
    fresh.meta["crowded_topics"] = 0
    crowded.meta.update(crowded_topics=2000, crowded_partitions=6000, crowd_seconds=41.0)
    text = render_broker_summary([("fresh", fresh), ("crowded", crowded)])
    assert "|  | fresh | crowded |" in text
    assert "crowded: 2,000 unrelated topics (6,000 partitions)" in text
    assert "| bridge: highest rate held (events/s) | 7,500 | 7,500 |" in text
    assert "| hand-written: highest rate held (events/s) | 10,000 | 10,000 |" in text
    assert "| bridge: 1 sender x 10 events, p50 / p99 | 2.00 ms / 8.00 ms |" in text
    assert "FAIL (1.45)" in text


def test_generator_check_compares_ceiling_and_bridge_request_rates() -> None:
    check = generator_check(_results())
    assert check.passed is True
    assert check.value == pytest.approx(8.0)
    assert generator_check(Results()).passed is None


def test_markdown_has_the_tables_and_verdicts() -> None:
    results = _results()
    results.profile = {"workload": "16 x 10", "top_self": [{"frame": "murmur2 (x)", "pct": 5.4}]}
    text = render_markdown(results)
    assert "## Targets" in text
    assert "| sustainable events/s (100-event batches) >= 60 % of the raw aiokafka ceiling" in text
    assert "FAIL" in text
    assert "PASS" in text
    assert "open loop 75.0 req/s x 100 (sustainable)" in text
    assert "open loop 100.0 req/s x 100 (over)" in text
    assert "| events/s, 100-event batches, sustainable" in text
    assert "0.30x" in text
    assert "`murmur2 (x)`" in text
    assert "Java ProducerPerformance (668-byte records" in text
    assert background_pct(results) == pytest.approx(25.0)
    assert "Warning: other processes used 25 %" in text
    header = next(line for line in text.splitlines() if line.startswith("| workload"))
    separator = text.splitlines()[text.splitlines().index(header) + 1]
    assert separator.count("|") == header.count("|")


def test_json_is_serialisable_and_names_the_sustainable_rate() -> None:
    data = orjson.loads(orjson.dumps(to_json(_results())))
    assert data["bridge"]["open_loop"]["sustainable_rps"] == 75.0
    assert [t["result"] for t in data["targets"]][:4] == ["FAIL", "FAIL", "PASS", "PASS"]
    assert data["peer"]["open_loop"]["sustainable_events_per_s"] == 10_000.0
    assert data["ceilings"]["java"]["summary"]["records_per_s"] == 60_000.0


def test_chart_series_and_png(tmp_path: Path) -> None:
    results = _results()
    series = chart_series(results)
    assert series["bridge p99"] == [(5000.0, 20.0), (7500.0, 60.0), (10_000.0, 200.0)]
    assert "raw aiokafka producer p50" in series
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    render_chart(results, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Specs and options --------------------------------------------------------------------------


def test_load_spec_round_trip_and_time_bound() -> None:
    spec = LoadSpec(
        url="http://127.0.0.1:1/webhooks/alm",
        target="bridge",
        secret="s",
        timeout_s=10.0,
        phases=[
            PhaseSpec("a", "closed", 10, 2.0, senders=4),
            PhaseSpec("b", "steps", 100, 3.0, rates=[1.0, 2.0], max_steps=4, pause_s=0.5),
        ],
    )
    again = LoadSpec.from_json(spec.to_json())
    assert again == spec
    assert planned_seconds(spec) == pytest.approx((2 + 10 + 0.5) + 4 * (3 + 10 + 0.5))


def test_quick_and_full_configurations() -> None:
    quick = make_config(make_parser().parse_args(["--quick"]))
    assert quick.soak_s == 0
    assert quick.overload_s < 30
    full = make_config(make_parser().parse_args(["--soak-seconds", "60"]))
    assert full.soak_s == 60
    assert full.overload_s == 30
    assert len(full.http_cells) == 9
    with pytest.raises(SystemExit):
        make_config(make_parser().parse_args(["--bridge-env", "NOPE=1"]))
    args = make_parser().parse_args(["--both", "--crowded-topics", "500"])
    assert (args.both, args.crowded, args.crowded_topics) == (True, False, 500)
    assert make_parser().parse_args(["--crowded"]).crowded_topics == 2000
    with pytest.raises(SystemExit):
        make_parser().parse_args(["--both", "--crowded"])


def test_the_recorded_configuration_leaves_out_the_compared_secret() -> None:
    args = ["--compare-url", "http://x/webhooks/alm", "--compare-secret", "s3cret"]
    recorded = make_config(make_parser().parse_args(args)).to_dict()
    assert "compare_secret" not in recorded
    assert recorded["compare_url"] == "http://x/webhooks/alm"
    assert isinstance(recorded["results_root"], str)
    assert orjson.loads(orjson.dumps(recorded))["soak_s"] == 300.0


def test_markdown_says_when_over_capacity_did_not_overload() -> None:
    results = _results()
    assert "did not overload the bridge" not in render_markdown(results)
    assert results.overload is not None
    results.overload.offered_rps = 50.0
    assert "did not overload the bridge" in render_markdown(results)


def test_markdown_says_when_the_generator_limited_the_http_ceiling() -> None:
    results = _results()
    assert "at least the figure shown" not in render_markdown(results)
    results.http_cells[2].generator_cpu_s = 9.5
    assert "HTTP ceiling in 16 x 1: there the HTTP ceiling is at least" in render_markdown(results)


async def test_one_sender_alternating_asks_each_server_in_turn_and_reports_each_apart() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    calls: list[str] = []

    def server(name: str, delay_s: float) -> TestServer:
        async def handle(request: web.Request) -> web.Response:
            await request.read()
            calls.append(name)
            await asyncio.sleep(delay_s)
            return web.Response(body=b'{"duplicates":0,"deadLettered":0}')

        app = web.Application()
        app.router.add_post("/", handle)
        return TestServer(app, host="127.0.0.1")

    fast, slow = server("fast", 0.0), server("slow", 0.004)
    await fast.start_server()
    await slow.start_server()
    try:
        urls = [str(slow.make_url("/")), str(fast.make_url("/"))]
        spec = LoadSpec(url=urls[0], urls=urls, target="both", secret="s")
        phase = PhaseSpec("pair", "closed", 10, 0.5, warmup_per_sender=2, alternate=["s", "f"])
        results = await Generator(spec).closed(phase)
    finally:
        await fast.close()
        await slow.close()
    by_target = {stats.target: stats for stats in results}
    assert sorted(by_target) == ["f", "s"]
    # Two warm-up requests each, one server after the other; then strictly by turns.
    assert calls[:4] == ["slow", "slow", "fast", "fast"]
    measured = calls[4:]
    assert measured == ["slow", "fast"] * (len(measured) // 2) + ["slow"] * (len(measured) % 2)
    assert by_target["s"].requests == measured.count("slow")
    assert by_target["f"].requests == measured.count("fast")
    assert by_target["s"].ok == by_target["s"].requests > 10
    s_p50, f_p50 = by_target["s"].latency.p50, by_target["f"].latency.p50
    assert s_p50 is not None
    assert f_p50 is not None
    assert s_p50 >= 4.0
    assert f_p50 < s_p50


async def test_alternating_wants_one_sender_and_a_name_for_each_server() -> None:
    spec = LoadSpec(url="http://127.0.0.1:9/", urls=["http://127.0.0.1:9/"], target="t", secret="s")
    with pytest.raises(ValueError, match="one name for each"):
        await Generator(spec).closed(PhaseSpec("p", "closed", 10, 0.1, alternate=["a", "b"]))
