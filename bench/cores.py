"""One bridge process or two: the same load on one, then spread over two, in turns, one run.

    python -m bench.cores [--seconds 8] [--rounds 3] [--kafka-bootstrap HOST:PORT]

Two processes on their own ports stand for two one-core pods behind a Service: the generator
hands requests (open loop) or senders (closed loop) to them in turn. Each round measures one
process, then both, with the same workloads: 16 ALM-like senders of 100-event batches (what a
burst gets through, and the CPU per event), then an open loop at a fixed rate (the tail a
steady flow sees). Taking turns cancels most of the drift of a shared host; the medians over
the rounds are reported next to each other. Results go to bench/results/<UTC>-cores/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from bench.loadgen import PhaseSpec
from bench.run import RESULTS_ROOT, Run, loadavg, make_config, say
from bench.services import BenchError, Interrupted, ProcessSet
from bench.stats import PhaseStats

LAYOUTS: Final = ("one process", "two processes")
OPEN_SHARE: Final = 0.6  # of what one process got through closed-loop, in the first round


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cores", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per workload (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="one-then-two rounds (default 3)")
    parser.add_argument("--kafka-bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--results-dir", default=str(RESULTS_ROOT))
    return parser


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _cpu_per_1k(stats: PhaseStats) -> float | None:
    cpu = [u.cpu_s for name, u in stats.procs.items() if name.startswith("bridge")]
    if not cpu or any(c is None for c in cpu) or stats.events <= 0:
        return None
    return sum(c or 0.0 for c in cpu) * 1000.0 / stats.events


def summarize(rounds: list[dict[str, dict[str, PhaseStats]]]) -> list[dict[str, Any]]:
    """Per layout: medians over the rounds of the closed- and open-loop figures."""
    rows = []
    for layout in LAYOUTS:
        closed = [r[layout]["closed"] for r in rounds]
        opened = [r[layout]["open"] for r in rounds]
        rows.append(
            {
                "layout": layout,
                "closed_events_per_s": _median([s.events_per_s for s in closed]),
                "closed_p99_ms": _median([s.latency.p99 for s in closed]),
                "cpu_ms_per_1k_events": _median(
                    [1000.0 * c if (c := _cpu_per_1k(s)) is not None else None for s in closed]
                ),
                "open_offered_events_per_s": opened[0].offered_eps if opened else None,
                "open_p50_ms": _median([s.latency.p50 for s in opened]),
                "open_p99_ms": _median([s.latency.p99 for s in opened]),
                "open_non_2xx": sum(s.failed for s in opened),
                "background_cpu_pct": _median([s.background_cpu_pct for s in closed + opened]),
            }
        )
    return rows


def render(rows: list[dict[str, Any]], rounds: int, meta: dict[str, Any]) -> str:
    def n(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        f"# One bridge process or two ({rounds} rounds, medians; started {meta['started']})",
        "",
        f"Host: {meta['cpus']} CPUs, load average {meta['loadavg_start']} at the start. "
        "CPU per event counts every bridge process; 'other' is the CPU of processes outside "
        "the run, in % of one core.",
        "",
        "| layout | 16 x 100 events/s | 16 x 100 p99 | CPU ms / 1k events | open loop "
        "events/s | open p50 | open p99 | open non-2xx | other CPU % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layout']} | {n(r['closed_events_per_s'])} | {n(r['closed_p99_ms'], 1)} ms | "
            f"{n(r['cpu_ms_per_1k_events'], 1)} | {n(r['open_offered_events_per_s'])} | "
            f"{n(r['open_p50_ms'], 2)} ms | {n(r['open_p99_ms'], 1)} ms | {r['open_non_2xx']} | "
            f"{n(r['background_cpu_pct'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = make_config(
        argparse.Namespace(
            quick=True,
            soak_seconds=0,
            compare_url=None,
            compare_secret=None,
            kafka_bootstrap=args.kafka_bootstrap,
            keep_kafka=False,
            profile=False,
            profile_batch=10,
            no_java=True,
            no_peer=True,
            results_dir=args.results_dir,
            bridge_env=[],
        )
    )
    run_dir = Path(args.results_dir) / (datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-cores")
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
    }
    rounds: list[dict[str, dict[str, PhaseStats]]] = []
    run: Run | None = None
    try:
        with ProcessSet(run_dir) as procs:
            run = Run(config, run_dir, procs)
            run.start_kafka()
            urls = [run.start_bridge("bridge-1"), run.start_bridge("bridge-2")]
            run.bridge_url = urls[0]
            warm = [PhaseSpec("warm-up", "closed", 100, 2.0, senders=4)]
            run.load("warm-up", warm, target="bridge", url=urls[0], watch={}, urls=urls)
            rate: float | None = None
            for index in range(args.rounds):
                this: dict[str, dict[str, PhaseStats]] = {}
                for layout in LAYOUTS:
                    chosen = urls[:1] if layout == LAYOUTS[0] else urls
                    watch = {
                        f"bridge-{i + 1}": procs.pid(f"bridge-{i + 1}") for i in range(len(chosen))
                    }
                    watch.update(run.kafka_watch())
                    closed = PhaseSpec(
                        f"{layout} 16 x 100", "closed", 100, args.seconds, senders=16
                    )
                    out = run.load(
                        f"round{index + 1}-{layout.split()[0]}-closed",
                        [closed],
                        target="bridge",
                        url=chosen[0],
                        watch=watch,
                        urls=chosen,
                    )
                    this[layout] = {"closed": out[closed.name][0]}
                    if rate is None:
                        rate = OPEN_SHARE * (this[layout]["closed"].requests_per_s or 10.0)
                    opened = PhaseSpec(
                        f"{layout} open", "open", 100, args.seconds, rate=round(rate, 2)
                    )
                    out = run.load(
                        f"round{index + 1}-{layout.split()[0]}-open",
                        [opened],
                        target="bridge",
                        url=chosen[0],
                        watch=watch,
                        urls=chosen,
                    )
                    this[layout]["open"] = out[opened.name][0]
                    time.sleep(1.0)
                rounds.append(this)
    except (KeyboardInterrupt, Interrupted, BenchError) as exc:
        say(f"bench.cores: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if run is not None and run.kafka is not None and run.kafka_started:
            with contextlib.suppress(Exception):
                if not run.kafka.is_running():
                    shutil.rmtree(run.kafka.data_dir, ignore_errors=True)
    rows = summarize(rounds)
    text = render(rows, len(rounds), meta)
    (run_dir / "cores.md").write_text(text)
    raw = {
        "meta": meta,
        "summary": rows,
        "rounds": [
            {layout: {k: v.to_dict() for k, v in phases.items()} for layout, phases in r.items()}
            for r in rounds
        ],
    }
    (run_dir / "cores.json").write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
    print(text)
    say(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
