"""The benchmark run: the command, one run per broker, and the order of a run's phases.

A run is in three parts. Measurement: bench/servers.py starts the broker and the servers;
bench/phases.py (the load generator every phase runs on, and the bridge's own workloads),
bench/peerphases.py and bench/ceilingphases.py fill a :class:`~bench.results.Results`.
Targets: bench/targets.py judges it. Report: bench/report.py writes results.json, results.md
and chart.png under bench/results/<timestamp>/.

Order: a local Kafka (unless ``--kafka-bootstrap``), the bridge in its production configuration
and the HTTP ceiling server; a warm-up that creates every topic; the bridge's workloads
(ALM-like, open-loop steps, over capacity, soak); then the ceilings at the same rates (HTTP,
raw aiokafka producer, Java ProducerPerformance); then results.json, results.md, chart.png
under bench/results/<timestamp>/.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.ceilingphases import CeilingPhases
from bench.config import Config, make_config, make_parser
from bench.peerphases import PeerPhases
from bench.phases import BridgePhases, Driver
from bench.processes import memory_mb, steal_seconds
from bench.report import render_broker_summary, write_outputs
from bench.results import Results
from bench.servers import Servers, say
from bench.services import BenchError, Interrupted, ProcessSet, kafka_version
from bench.targets import exit_status, generator_check, targets, trust_problems


class Run:
    """One benchmark run: its servers, its phases in order, and their results."""

    def __init__(self, config: Config, run_dir: Path, procs: ProcessSet) -> None:
        self.results = Results()
        self.servers = Servers(config, run_dir, procs, self.results)
        self.driver = Driver(self.servers)
        self.bridge = BridgePhases(self.driver)
        self.peers = PeerPhases(self.driver)
        self.ceilings = CeilingPhases(self.driver)

    def execute(self) -> None:
        servers, bridge, peers, ceilings = self.servers, self.bridge, self.peers, self.ceilings
        servers.start_kafka()
        servers.crowd()
        servers.start_servers()
        bridge.warm_up()
        ceilings.producer_latency()
        bridge.alm_like()
        peers.peer_alm_like()
        peers.single_sender_turns()
        bridge.open_loop()
        peers.peer_open_loop()
        peers.bridge_at_peer_rates()
        peers.all_cores_open_loop()
        peers.benthos_open_loop()
        bridge.overload()
        bridge.soak()
        self.results.bridge_peak_rss_mb = memory_mb(servers.procs.pid("bridge"))[1]
        bridge.profile()
        bridge.compare()
        ceilings.http_ceiling()
        ceilings.producer_ceiling()
        ceilings.java_ceiling()
        servers.stop()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("aiohttp", "aiokafka", "uvloop", "orjson", "structlog"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when every target passed; see :func:`bench.targets.exit_status` for the others."""
    args = make_parser().parse_args(argv)
    config = make_config(args)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if args.both:
        brokers = [("fresh", 0), ("crowded", max(1, args.crowded_topics))]
    elif args.crowded:
        brokers = [("crowded", max(1, args.crowded_topics))]
    else:
        brokers = [("fresh", 0)]
    outcomes: list[tuple[str, Results, bool]] = []
    for label, topics in brokers:
        config.crowded_topics = topics
        suffix = f"-{label}" if len(brokers) > 1 or topics else ""
        results, failed = run_once(config, config.results_root / f"{stamp}{suffix}", label)
        outcomes.append((label, results, failed))
    if len(outcomes) > 1:
        summary = render_broker_summary([(label, results) for label, results, _ in outcomes])
        path = config.results_root / f"{stamp}-summary.md"
        path.write_text(summary)
        print(summary)
        say(f"summary of both brokers: {path}")
    status, reason = exit_status(
        [(results, failed) for _, results, failed in outcomes], quick=config.quick
    )
    say(f"bench: exit {status}: {reason}")
    return status


def run_once(config: Config, run_dir: Path, label: str) -> tuple[Results, bool]:
    """One benchmark run on one broker; returns its results and whether it failed to finish."""
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steal0 = steal_seconds()
    say(f"bench: {'quick' if config.quick else 'full'} run, {label} broker, results in {run_dir}")
    meta = _meta_at_start(config, label)
    failure: str | None = None
    run: Run | None = None
    try:
        with ProcessSet(run_dir) as procs:
            run = Run(config, run_dir, procs)
            run.results.meta = meta
            run.execute()
    except (KeyboardInterrupt, Interrupted) as exc:
        failure = f"interrupted ({type(exc).__name__} {exc})"
    except BenchError as exc:
        failure = str(exc)
    except Exception:
        failure = traceback.format_exc()
    finally:
        if (
            run is not None
            and run.servers.kafka is not None
            and run.servers.kafka_started
            and not config.keep_kafka
            and not run.servers.kafka.is_running()
        ):
            shutil.rmtree(run.servers.kafka.data_dir, ignore_errors=True)
    results = run.results if run is not None else Results(meta=meta)
    elapsed = time.monotonic() - started
    meta["duration_s"] = round(elapsed, 1)
    meta["loadavg_end"] = loadavg()
    meta["steal_pct"] = round(
        100.0 * (steal_seconds() - steal0) / (elapsed * (os.cpu_count() or 1)), 2
    )
    meta["bootstrap"] = run.servers.bootstrap if run is not None else None
    settings = results.producer_info.get("settings", {})
    meta["compression"] = settings.get("compression_type") or "none"
    meta["linger_ms"] = settings.get("linger_ms", "?")
    meta["config"] = config.to_dict()
    if failure is not None:
        meta["error"] = failure
        results.notes.append(f"the run did not complete: {failure.strip().splitlines()[-1]}")
    markdown = write_outputs(results, run_dir)
    print(markdown)
    _say_verdicts(results, quick=config.quick)
    say(f"results: {run_dir} (took {meta['duration_s']:.0f} s)")
    if failure is not None:
        say(f"bench: {failure}")
    return results, failure is not None


def _meta_at_start(config: Config, label: str) -> dict[str, Any]:
    """What results.json records of the run before it starts: when, where, which versions."""
    meta: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": config.quick,
        "broker": label,
        "handover": config.handover,
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
        **_versions(),
    }
    with contextlib.suppress(Exception):
        meta["kafka_version"] = kafka_version()
    return meta


def _say_verdicts(results: Results, *, quick: bool) -> None:
    """One line per target (?? for a quick run that cannot be trusted), then why not."""
    doubts = trust_problems(results) if quick else []
    for target in targets(results):
        verdict = "??" if doubts else target.verdict
        say(f"{verdict:4}  {target.name}  ({target.detail})")
    check = generator_check(results)
    say(f"{check.verdict:4}  {check.name}")
    for doubt in doubts:
        say(f"untrusted: {doubt}")
