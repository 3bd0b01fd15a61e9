"""Bridge layouts measured in turns on one broker, in one run: which does more with a core.

    python -m bench.cores [--seconds 8] [--rounds 3] [--kafka-bootstrap HOST:PORT]
    python -m bench.cores --handover [--seconds 8] [--rounds 5]
    python -m bench.cores --fleet [--seconds 8] [--rounds 5]
    python -m bench.cores --tracing [--seconds 8] [--rounds 5]
    python -m bench.cores --baseline DIR [--seconds 8] [--rounds 5]

Default: one bridge process or two. Two processes on their own ports stand for two one-core
pods behind a Service: the generator hands requests (open loop) or senders (closed loop) to
them in turn. ``--handover``: three one-process bridges that differ only in how records
reach aiokafka (the bridge's adapter, and bench/handover.py's ``send_batch`` and ``send``
designs on the public API). ``--fleet``: one bridge without and one with
``BRIDGE_DEDUPE_FLEET_TOPIC`` (the fleet's memory of duplicates), the cost of sharing every
acknowledged event's digest. ``--tracing``: one bridge without and one with
``BRIDGE_OTEL_EXPORTER_OTLP_ENDPOINT`` (spans exported to bench/otlpsink.py), the cost of
tracing. ``--baseline DIR``: this tree's bridge and the one of another checkout (``git
worktree add DIR REV``), run with this tree's virtualenv: a change's cost, in turns.

Each round measures every layout, every other round in the reverse order, with the same
workloads: 16 ALM-like senders of 100-event
batches (what a burst gets through, and the CPU per event), an open loop at a fixed rate
(the tail a steady flow sees), and one sender of 10-event batches (the single-request
latency). Taking turns cancels most of the drift of a shared host; the medians over the
rounds are reported next to each other. Results go to bench/results/<UTC>-cores/.
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

from bench.config import RESULTS_ROOT, side_config
from bench.handover import DESIGNS
from bench.loadgen import PhaseSpec
from bench.phases import Driver
from bench.results import Results
from bench.run import loadavg
from bench.servers import Servers, say
from bench.services import BenchError, Interrupted, ProcessSet
from bench.stats import PhaseStats
from deploy.ports import free_ports

# Layout -> the bridge processes that share its load; process -> its handover design.
PROCESS_LAYOUTS: Final = {"one process": ("bridge-1",), "two processes": ("bridge-1", "bridge-2")}
PROCESSES: Final = {"bridge-1": "adapter", "bridge-2": "adapter"}
HANDOVERS: Final = ("adapter", *DESIGNS)
FLEET_LAYOUTS: Final = {"fleet off": ("bridge-fleet-off",), "fleet on": ("bridge-fleet-on",)}
TRACING_LAYOUTS: Final = {
    "tracing off": ("bridge-tracing-off",),
    "tracing on": ("bridge-tracing-on",),
}
BASELINE_LAYOUTS: Final = {"this tree": ("bridge-here",), "baseline": ("bridge-baseline",)}
OPEN_SHARE: Final = 0.6  # of what one process got through closed-loop, in the first round


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cores", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per workload (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of turns (default 3)")
    parser.add_argument(
        "--handover",
        nargs="*",
        choices=HANDOVERS,
        metavar="DESIGN",
        help="compare how records reach aiokafka instead: the designs named "
        f"(default all: {', '.join(HANDOVERS)})",
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="compare a bridge without and with BRIDGE_DEDUPE_FLEET_TOPIC instead",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="compare a bridge without and with spans exported over OTLP instead",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="compare this tree's bridge with the one checked out in DIR instead",
    )
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
    for layout in rounds[0] if rounds else ():
        closed = [r[layout]["closed"] for r in rounds]
        opened = [r[layout]["open"] for r in rounds]
        single = [r[layout]["single"] for r in rounds]
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
                # Answers that were not plain publishes (duplicates, dead letters): must be 0.
                "not_clean": sum(s.unclean for s in closed + opened + single),
                "single_p50_ms": _median([s.latency.p50 for s in single]),
                "single_p99_ms": _median([s.latency.p99 for s in single]),
                "single_cpu_ms_per_request": _median(
                    [c * 10.0 if (c := _cpu_per_1k(s)) is not None else None for s in single]
                ),
                "background_cpu_pct": _median([s.background_cpu_pct for s in closed + opened]),
            }
        )
    return rows


def render(rows: list[dict[str, Any]], rounds: int, meta: dict[str, Any]) -> str:
    def n(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        f"# {meta['title']} ({rounds} rounds, medians; started {meta['started']})",
        "",
        f"Host: {meta['cpus']} CPUs, load average {meta['loadavg_start']} at the start. "
        "CPU per event counts every bridge process; 'other' is the CPU of processes outside "
        "the run, in % of one core.",
        "",
        "| layout | 16 x 100 events/s | 16 x 100 p99 | CPU ms / 1k events | open loop "
        "events/s | open p50 | open p99 | open non-2xx | 1 x 10 p50 / p99 | "
        "1 x 10 CPU ms / request | other CPU % | answers not clean |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layout']} | {n(r['closed_events_per_s'])} | {n(r['closed_p99_ms'], 1)} ms | "
            f"{n(r['cpu_ms_per_1k_events'], 1)} | {n(r['open_offered_events_per_s'])} | "
            f"{n(r['open_p50_ms'], 2)} ms | {n(r['open_p99_ms'], 1)} ms | {r['open_non_2xx']} | "
            f"{n(r['single_p50_ms'], 2)} / {n(r['single_p99_ms'], 2)} ms | "
            f"{n(r['single_cpu_ms_per_request'], 2)} | {n(r['background_cpu_pct'])} | "
            f"{r['not_clean']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = side_config(args.kafka_bootstrap, args.results_dir)
    run_dir = Path(args.results_dir) / (datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-cores")
    run_dir.mkdir(parents=True, exist_ok=True)
    layouts: dict[str, tuple[str, ...]] = dict(PROCESS_LAYOUTS)
    processes: dict[str, str] = dict(PROCESSES)
    if args.handover is not None:
        chosen = args.handover or list(HANDOVERS)
        layouts = {name: (f"bridge-{name}",) for name in chosen}
        processes = {f"bridge-{name}": name for name in chosen}
    envs: dict[str, dict[str, str]] = {}
    if args.fleet:
        layouts = dict(FLEET_LAYOUTS)
        processes = {"bridge-fleet-off": "adapter", "bridge-fleet-on": "adapter"}
        fleet_topic = f"bench.dedupe.fleet.{datetime.now(UTC):%Y%m%d%H%M%S}"
        envs = {"bridge-fleet-on": {"BRIDGE_DEDUPE_FLEET_TOPIC": fleet_topic}}
    sink_port: int | None = None
    if args.tracing:
        layouts = dict(TRACING_LAYOUTS)
        processes = {"bridge-tracing-off": "adapter", "bridge-tracing-on": "adapter"}
        [sink_port] = free_ports(1)
        endpoint = f"http://127.0.0.1:{sink_port}"
        envs = {"bridge-tracing-on": {"BRIDGE_OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}}
    if args.baseline:
        layouts = dict(BASELINE_LAYOUTS)
        processes = {"bridge-here": "adapter", "bridge-baseline": "adapter"}
        # Its package first on the path, and not the working directory's (this tree's).
        baseline = str(Path(args.baseline).resolve())
        envs = {"bridge-baseline": {"PYTHONSAFEPATH": "1", "PYTHONPATH": baseline}}
    meta = {
        "title": f"This tree and the baseline in {args.baseline}"
        if args.baseline
        else "Without and with spans exported over OTLP"
        if args.tracing
        else "Without and with the fleet's memory of duplicates"
        if args.fleet
        else "One bridge process or two"
        if args.handover is None
        else "How records reach aiokafka",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
    }
    rounds: list[dict[str, dict[str, PhaseStats]]] = []
    servers: Servers | None = None
    try:
        with ProcessSet(run_dir) as procs:
            servers = Servers(config, run_dir, procs, Results())
            driver = Driver(servers)
            if sink_port is not None:
                procs.start(
                    "otlp-sink",
                    [sys.executable, "-m", "bench.otlpsink", "--port", str(sink_port)],
                    log=run_dir / "otlp-sink.log",
                )
                procs.wait_http("otlp-sink", f"http://127.0.0.1:{sink_port}/", 30)
            servers.start_kafka()
            urls = {
                name: servers.start_bridge(name, handover, envs.get(name))
                for name, handover in processes.items()
            }
            first = next(iter(urls.values()))
            servers.bridge_url = first
            warm = [PhaseSpec("warm-up", "closed", 100, 2.0, senders=4)]
            for url in urls.values():
                driver.load("warm-up", warm, target="bridge", url=url, watch={}, urls=[url])
            rate: float | None = None
            for index in range(args.rounds):
                this: dict[str, dict[str, PhaseStats]] = {}
                # Every other round in the reverse order: whichever goes first in a round
                # (a broker that has just caught up, a colder cache) does not always favour
                # the same layout.
                turns = list(layouts.items())
                for layout, names in turns if index % 2 == 0 else reversed(turns):
                    chosen = [urls[name] for name in names]
                    watch = {name: procs.pid(name) for name in names}
                    watch.update(servers.kafka_watch())
                    tag = f"round{index + 1}-{layout.replace(' ', '_')}"
                    this[layout] = {}
                    for key in ("closed", "open", "single"):
                        if key == "closed":
                            spec = PhaseSpec(
                                f"{layout} 16 x 100", "closed", 100, args.seconds, senders=16
                            )
                        elif key == "open":
                            if rate is None:  # a share of what the first layout got through
                                rate = OPEN_SHARE * (this[layout]["closed"].requests_per_s or 10.0)
                            spec = PhaseSpec(
                                f"{layout} open", "open", 100, args.seconds, rate=round(rate, 2)
                            )
                        else:
                            spec = PhaseSpec(
                                f"{layout} 1 x 10", "closed", 10, args.seconds, senders=1
                            )
                        out = driver.load(
                            f"{tag}-{key}",
                            [spec],
                            target="bridge",
                            url=chosen[0],
                            watch=watch,
                            urls=chosen,
                        )
                        this[layout][key] = out[spec.name][0]
                    time.sleep(1.0)
                rounds.append(this)
    except (KeyboardInterrupt, Interrupted, BenchError) as exc:
        say(f"bench.cores: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if servers is not None and servers.kafka is not None and servers.kafka_started:
            with contextlib.suppress(Exception):
                if not servers.kafka.is_running():
                    shutil.rmtree(servers.kafka.data_dir, ignore_errors=True)
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
