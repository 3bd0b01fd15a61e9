"""The benchmark run: brokers and servers up, the workloads, the ceilings, the report.

Order: a local Kafka (unless ``--kafka-bootstrap``), the bridge in its production configuration
and the HTTP ceiling server; a warm-up that creates every topic; the bridge's workloads
(ALM-like, open-loop steps, over capacity, soak); then the ceilings at the same rates (HTTP,
raw aiokafka producer, Java ProducerPerformance); then results.json, results.md, chart.png
under bench/results/<timestamp>/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import orjson

from bench import benthospeer
from bench import profile as prof
from bench.ceilings import ProducerSpec, java_command, run_java
from bench.handover import DESIGNS
from bench.loadgen import LoadSpec, PhaseSpec, planned_seconds
from bench.processes import alive, memory_mb, steal_seconds
from bench.report import render_broker_summary, write_outputs
from bench.results import Results
from bench.services import (
    LOG4J_CONFIG,
    REPO_ROOT,
    BenchError,
    Interrupted,
    LocalKafka,
    ProcessSet,
    classpath,
    ensure_jars,
    free_ports,
    kafka_version,
)
from bench.stats import PhaseStats, step_passes
from bench.targets import exit_status, generator_check, targets, trust_problems

RESULTS_ROOT: Final = REPO_ROOT / "bench" / "results"
KAFKA_STATE: Final = REPO_ROOT / ".local" / "bench-kafka"
RECEIVER: Final = "alm"
JAVA_TOPIC: Final = "bench.java-ceiling"
DEDUPE_WINDOW: Final = 100_000
WARM_UP_ROUNDS: Final = 5
# The crowded cluster: other teams' topics on a shared production cluster.
CROWD_TOPICS: Final = 2000
CROWD_PARTITIONS: Final = 3
CROWD_PREFIX: Final = "bench.crowd."


@dataclass(slots=True)
class Config:
    quick: bool
    soak_s: float
    alm_s: float
    step_s: float
    overload_s: float
    http_cell_s: float
    http_step_s: float
    producer_throughput_s: float
    producer_latency_s: float
    producer_step_s: float
    java_s: float
    factors: list[float]
    producer_fractions: list[float]
    refine: int
    http_cells: list[tuple[int, int]]
    senders: tuple[int, ...] = (1, 4, 16)
    batches: tuple[int, ...] = (1, 10, 100)
    compare_url: str | None = None
    compare_secret: str | None = None
    bootstrap: str | None = None
    keep_kafka: bool = False
    profile: bool = False
    profile_s: int = 10
    profile_batch: int = 10
    java: bool = True
    peer: bool = True
    crowded_topics: int = 0
    results_root: Path = RESULTS_ROOT
    bridge_env: dict[str, str] = field(default_factory=dict)
    handover: str = "adapter"
    single_turns: int = 6
    all_cores: bool = True
    benthos: bool = True


def make_config(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    all_cells = [(n, b) for n in (1, 4, 16) for b in (1, 10, 100)]
    if quick:
        config = Config(
            quick=True,
            soak_s=0.0,
            alm_s=1.5,
            step_s=2.0,
            overload_s=6.0,
            http_cell_s=1.5,
            http_step_s=1.0,
            producer_throughput_s=3.0,
            producer_latency_s=2.5,
            producer_step_s=1.5,
            java_s=3.0,
            factors=[0.5, 0.7, 0.85, 1.0, 1.15, 1.3],
            producer_fractions=[0.5, 0.8],
            refine=1,
            http_cells=[(1, 10), (16, 1), (16, 10), (16, 100)],
            profile_s=6,
            single_turns=3,
        )
    else:
        config = Config(
            quick=False,
            soak_s=300.0,
            alm_s=12.0,
            step_s=8.0,
            overload_s=30.0,
            http_cell_s=4.0,
            http_step_s=4.0,
            producer_throughput_s=10.0,
            producer_latency_s=8.0,
            producer_step_s=5.0,
            java_s=15.0,
            factors=[0.3, 0.5, 0.65, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35],
            producer_fractions=[0.25, 0.5, 0.75, 0.9],
            refine=2,
            http_cells=all_cells,
            profile_s=15,
        )
    if args.soak_seconds is not None:
        config.soak_s = float(args.soak_seconds)
    config.compare_url = args.compare_url
    config.compare_secret = args.compare_secret
    config.bootstrap = args.kafka_bootstrap
    config.keep_kafka = bool(args.keep_kafka)
    config.profile = bool(args.profile)
    config.profile_batch = int(args.profile_batch)
    config.java = not args.no_java
    config.peer = not args.no_peer
    config.results_root = Path(args.results_dir)
    for item in args.bridge_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("BRIDGE_"):
            raise SystemExit(f"--bridge-env wants BRIDGE_NAME=value, got {item!r}")
        config.bridge_env[key] = value
    config.handover = args.handover
    config.all_cores = not getattr(args, "no_all_cores", False)
    config.benthos = not getattr(args, "no_benthos", False)
    return config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the bridge against its ceilings (Python client, broker, HTTP).",
    )
    parser.add_argument("--quick", action="store_true", help="short phases; under 2 minutes")
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="soak at the sustainable rate, sampling RSS (default 300, 0 with --quick)",
    )
    parser.add_argument("--compare-url", help="also drive this endpoint with the ALM-like load")
    parser.add_argument("--compare-secret", help="HMAC secret of --compare-url")
    parser.add_argument("--kafka-bootstrap", help="use this broker instead of starting a local one")
    parser.add_argument(
        "--keep-kafka", action="store_true", help="leave the local broker running afterwards"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the bridge with py-spy (extra phase)"
    )
    parser.add_argument(
        "--profile-batch", type=int, default=10, help="events per batch while profiling"
    )
    parser.add_argument("--no-java", action="store_true", help="skip ProducerPerformance")
    parser.add_argument(
        "--no-peer", action="store_true", help="skip the hand-written peer (bench/peer.py)"
    )
    parser.add_argument(
        "--no-all-cores",
        action="store_true",
        help="skip the open loop on two bridge processes (two one-core pods)",
    )
    parser.add_argument(
        "--no-benthos",
        action="store_true",
        help="skip the Benthos peer (bench/benthospeer.py; built with go on first use)",
    )
    broker = parser.add_mutually_exclusive_group()
    broker.add_argument(
        "--crowded",
        action="store_true",
        help="create --crowded-topics unrelated topics on the broker before the bridge starts",
    )
    broker.add_argument(
        "--both",
        action="store_true",
        help="a run on a fresh broker, then one on a crowded broker; both reported",
    )
    parser.add_argument(
        "--crowded-topics",
        type=int,
        default=CROWD_TOPICS,
        metavar="N",
        help=f"unrelated topics of {CROWD_PARTITIONS} partitions (default {CROWD_TOPICS:,})",
    )
    parser.add_argument(
        "--handover",
        choices=("adapter", *DESIGNS),
        default="adapter",
        help="how the bridge hands records to aiokafka: its adapter (default), or one of the "
        "public-API designs of bench/handover.py",
    )
    parser.add_argument("--results-dir", default=str(RESULTS_ROOT))
    parser.add_argument(
        "--bridge-env",
        action="append",
        metavar="BRIDGE_NAME=value",
        help="extra setting for the bridge and the raw producer (repeatable)",
    )
    return parser


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Run:
    """One benchmark run; every process it starts lives in ``self.procs``."""

    def __init__(self, config: Config, run_dir: Path, procs: ProcessSet) -> None:
        self.config = config
        self.run_dir = run_dir
        self.procs = procs
        self.results = Results()
        self.secret = secrets.token_hex(24)
        self.invocations = 0
        self.bootstrap = ""
        self.bridge_env: dict[str, str] = {}
        self.bridge_url = ""
        self.ceiling_url = ""
        self.peer_url = ""
        self.kafka: LocalKafka | None = None
        self.kafka_started = False

    # Processes ---------------------------------------------------------------------------

    def start_kafka(self) -> None:
        if self.config.bootstrap:
            self.bootstrap = self.config.bootstrap
            say(f"Kafka: using {self.bootstrap}")
            return
        probe = LocalKafka(state_dir=KAFKA_STATE)
        if probe.is_running():
            self.bootstrap = probe.recorded_bootstrap() or probe.bootstrap
            self.kafka = probe
            self.kafka_started = False
            say(f"Kafka: the bench broker is already running at {self.bootstrap}")
            return
        port, controller_port = free_ports(2)
        kafka = LocalKafka(port=port, controller_port=controller_port, state_dir=KAFKA_STATE)
        shutil.rmtree(kafka.data_dir, ignore_errors=True)
        say(f"Kafka: starting a local broker on 127.0.0.1:{port} (state in {KAFKA_STATE})")
        self.kafka = kafka
        self.kafka_started = True
        if not self.config.keep_kafka:
            # Adopted before it starts, so that an interrupted start still stops it.
            self.procs.adopt_kafka(kafka)
        started = time.monotonic()
        kafka.start(timeout_s=120.0)
        say(f"Kafka: ready in {time.monotonic() - started:.1f}s")
        if not self.config.keep_kafka:
            self.procs.adopt_kafka(kafka)
        self.bootstrap = kafka.bootstrap

    def crowd(self) -> None:
        """Other teams' topics, created before any process of ours asks for metadata."""
        wanted = self.config.crowded_topics
        self.results.meta["crowded_topics"] = wanted
        self.results.meta["crowded_partitions"] = wanted * CROWD_PARTITIONS
        if wanted <= 0:
            return
        say(f"Kafka: creating {wanted:,} unrelated topics of {CROWD_PARTITIONS} partitions")
        started = time.monotonic()
        created = asyncio.run(_create_crowd(self.bootstrap, wanted))
        took = time.monotonic() - started
        self.results.meta["crowd_seconds"] = round(took, 1)
        say(f"Kafka: {created:,} created ({wanted - created:,} were there) in {took:.1f}s")

    def start_bridge(
        self, name: str, handover: str | None = None, env: dict[str, str] | None = None
    ) -> str:
        """One bridge process in the production configuration; returns its webhook URL.

        ``handover`` (default: the run's ``--handover``) picks how it hands records to
        aiokafka: ``adapter`` is the bridge itself, the others are bench/handover.py's.
        ``env`` adds settings for this process only.
        """
        extra = env or {}
        handover = handover or self.config.handover
        [port] = free_ports(1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            {
                "BRIDGE_HOST": "127.0.0.1",
                "BRIDGE_PORT": str(port),
                "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "BRIDGE_LOG_FORMAT": "json",
                "BRIDGE_LOG_LEVEL": "info",
                "BRIDGE_RECEIVER_NAME": RECEIVER,
                "BRIDGE_AUTH_METHOD": "hmac",
                "BRIDGE_HMAC_SECRET": self.secret,
                **self.config.bridge_env,
                **extra,
            }
        )
        self.bridge_env = env
        self.procs.start(
            name,
            [sys.executable, "-m", "bridge", "serve"]
            if handover == "adapter"
            else [sys.executable, "-m", "bench.handover", handover, "serve"],
            env=env,
            log=self.run_dir / f"{name}.log",
        )
        self.procs.wait_http(name, f"http://127.0.0.1:{port}/readyz", 60.0)
        url = f"http://127.0.0.1:{port}/webhooks/{RECEIVER}"
        say(f"{name}: pid {self.procs.pid(name)}, {url}")
        return url

    def start_servers(self) -> None:
        self.bridge_url = self.start_bridge("bridge")
        [ceiling_port] = free_ports(1)
        self.procs.start(
            "http-ceiling",
            [sys.executable, "-m", "bench.httpceiling", "--port", str(ceiling_port)],
            log=self.run_dir / "http-ceiling.log",
        )
        self.procs.wait_http("http-ceiling", f"http://127.0.0.1:{ceiling_port}/healthz", 30.0)
        self.ceiling_url = f"http://127.0.0.1:{ceiling_port}/webhooks/{RECEIVER}"
        say(f"HTTP ceiling: pid {self.procs.pid('http-ceiling')}, {self.ceiling_url}")
        if not self.config.peer:
            return
        [peer_port] = free_ports(1)
        self.procs.start(
            "peer",
            [
                sys.executable,
                "-m",
                "bench.peer",
                "--port",
                str(peer_port),
                "--bootstrap",
                self.bootstrap,
                "--secret",
                self.secret,
            ],
            log=self.run_dir / "peer.log",
        )
        self.procs.wait_http("peer", f"http://127.0.0.1:{peer_port}/healthz", 30.0)
        self.peer_url = f"http://127.0.0.1:{peer_port}/webhooks/{RECEIVER}"
        say(f"hand-written peer: pid {self.procs.pid('peer')}, {self.peer_url}")

    # Load --------------------------------------------------------------------------------

    def load(
        self,
        name: str,
        phases: list[PhaseSpec],
        *,
        target: str,
        url: str,
        watch: dict[str, int],
        secret: str | None = None,
        urls: list[str] | None = None,
    ) -> dict[str, list[PhaseStats]]:
        self.invocations += 1
        spec = LoadSpec(
            url=url,
            urls=urls or [],
            target=target,
            secret=secret or self.secret,
            tag_base=self.invocations << 24,
            # Each process behind ``urls`` sees only its share of the ring: a body comes
            # round again once every one of their duplicates windows has forgotten it.
            ring_events=int(DEDUPE_WINDOW * 1.5) * max(1, len(urls or [])),
            watch=watch,
            phases=phases,
        )
        specs = self.run_dir / "specs"
        specs.mkdir(exist_ok=True)
        spec_file = specs / f"{self.invocations:02d}-{name}.json"
        out_file = specs / f"{self.invocations:02d}-{name}.out.json"
        spec_file.write_bytes(spec.to_json())
        say(f"== {name} ({target})")
        code = self.procs.run(
            f"loadgen-{name}",
            [sys.executable, "-m", "bench.loadgen", str(spec_file), str(out_file)],
            log=self.run_dir / "loadgen.log",
            timeout_s=planned_seconds(spec) + 120.0,
            console=True,
        )
        if code != 0 or not out_file.is_file():
            raise BenchError(f"the load generator failed ({code}); see {self.run_dir}/loadgen.log")
        raw = orjson.loads(out_file.read_bytes())["phases"]
        return {key: [PhaseStats.from_dict(p) for p in value] for key, value in raw.items()}

    def kafka_watch(self) -> dict[str, int]:
        pid = self.kafka.pid() if self.kafka is not None else None
        return {} if pid is None else {"kafka": pid}

    def bridge_watch(self) -> dict[str, int]:
        return {"bridge": self.procs.pid("bridge"), **self.kafka_watch()}

    def peer_watch(self) -> dict[str, int]:
        return {"peer": self.procs.pid("peer"), **self.kafka_watch()}

    def peer_alm_like(self) -> None:
        """The peer's closed-loop cells, right after the bridge's (tails drift over a run)."""
        if not self.peer_url:
            return
        phases = [
            PhaseSpec(f"peer ALM-like {n} x {b}", "closed", b, self.config.alm_s, senders=n)
            for n, b in ((1, 10), (16, 100))
        ]
        out = self.load(
            "peer-alm-like", phases, target="peer", url=self.peer_url, watch=self.peer_watch()
        )
        self.results.peer_alm = [stats for p in phases for stats in out[p.name]]

    def single_sender_turns(self) -> None:
        """One sender of 10-event batches, asking the bridge and the peer by turns.

        A single sender's p99 is set by rare stalls of the shared host and broker. Phases
        taken minutes apart compared the drift as much as the two servers, and so did
        turns of a few seconds each: another process busy for a second fell into one
        server's turn only. So the sender asks the two servers in turn, request by
        request, on a connection to each, and every stall falls on both alike. Each round
        gets its own p99 per server (who goes first alternates); the target compares the
        medians of the rounds.
        """
        if not self.peer_url:
            return
        seconds = self.config.alm_s / 3 if not self.config.quick else self.config.alm_s
        for index in range(self.config.single_turns):
            order = [("bridge", self.bridge_url), ("peer", self.peer_url)]
            if index % 2:
                order.reverse()
            phase = PhaseSpec(
                f"1 x 10, round {index + 1}",
                "closed",
                10,
                2 * seconds,
                alternate=[who for who, _ in order],
            )
            out = self.load(
                f"round{index + 1}",
                [phase],
                target="bridge and peer",
                url=order[0][1],
                urls=[url for _, url in order],
                watch={**self.bridge_watch(), **self.peer_watch()},
            )
            taken = {stats.target: stats for stats in out[phase.name]}
            self.results.single_turns.append((taken["bridge"], taken["peer"]))

    def all_cores_open_loop(self) -> None:
        """Two bridge processes behind one address, as two one-core pods behind a Service.

        The bridge is one process per core (docs/operations.md, "All cores"); this is the
        rate a pod-per-core deployment holds on this host, found like the one-process rate:
        open-loop steps, requests handed to the two processes in turn.
        """
        if not self.config.all_cores:
            return
        sus = self.results.sustainable
        base = sus.offered_rps if sus and sus.offered_rps else max(self.tried_rates() or [10.0])
        second = self.start_bridge("bridge-2")
        try:
            # Its producer learns the topics' metadata and connects before it is measured,
            # then both take requests in turn at a low rate, as in the steps.
            warm = [PhaseSpec("warm-up bridge-2", "closed", 100, 2.0, senders=4)]
            self.warm_until_2xx("bridge-2", second, warm)
            both = [PhaseSpec("warm-up both", "open", 100, 2.0, rate=round(base / 2, 2))]
            urls = [self.bridge_url, second]
            self.load("all-cores-warm-up", both, target="bridge", url=second, watch={}, urls=urls)
            phase = self.rate_search(
                "all cores open loop", [round(f * base, 2) for f in (1.0, 1.4, 1.7, 2.0)]
            )
            watch = {**self.bridge_watch(), "bridge-2": self.procs.pid("bridge-2")}
            out = self.load(
                "all-cores-open-loop",
                [phase],
                target="bridge",
                url=self.bridge_url,
                watch=watch,
                urls=[self.bridge_url, second],
            )
            self.results.all_cores_steps = out[phase.name]
        finally:
            self.procs.stop("bridge-2")

    def benthos_open_loop(self) -> None:
        """The Benthos peer on the same broker, started for this phase only: its highest rate
        held, searched like the bridge's from the rates two bridge processes were tried at."""
        if not self.config.benthos:
            return
        say("Benthos peer: go build (cached once built)")
        try:
            binary = benthospeer.build()
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            self.results.notes.append(f"Benthos peer not measured: {exc}")
            say(f"  not measured: {exc}")
            return
        port, http_port = free_ports(2)
        how = benthospeer.launch(
            binary,
            port=port,
            http_port=http_port,
            bootstrap=self.bootstrap,
            secret=self.secret,
            path=f"/webhooks/{RECEIVER}",
        )
        self.procs.start("benthos", how.command, env=how.env, log=self.run_dir / "benthos.log")
        try:
            self.procs.wait_http("benthos", how.ready_url, 60.0)
            say(f"Benthos peer: pid {self.procs.pid('benthos')}, {how.url}")
            warm = [PhaseSpec("warm-up benthos", "closed", 100, 2.0, senders=4)]
            self.warm_until_2xx("benthos", how.url, warm, target="benthos")
            tried = sorted({s.offered_rps for s in self.results.all_cores_steps if s.offered_rps})
            phase = self.rate_search("Benthos open loop", tried or self.tried_rates() or [10.0])
            watch = {"benthos": self.procs.pid("benthos"), **self.kafka_watch()}
            out = self.load(
                "benthos-open-loop", [phase], target="benthos", url=how.url, watch=watch
            )
            self.results.benthos_steps = out[phase.name]
        finally:
            self.procs.stop("benthos")

    def peer_open_loop(self) -> None:
        """The peer at the bridge's open-loop rates, then higher until it fails, then bisected."""
        if not self.peer_url:
            return
        phase = self.rate_search("peer open loop", self.tried_rates() or [10.0])
        out = self.load(
            "peer-open-loop", [phase], target="peer", url=self.peer_url, watch=self.peer_watch()
        )
        self.results.peer_steps = out[phase.name]

    def bridge_at_peer_rates(self) -> None:
        """The bridge at the rates the peer held and the bridge never tried, so that the two
        share held rates to compare even when their searches took different paths."""
        tried = {round(rate, 2) for rate in self.tried_rates()}
        extra = sorted(
            {
                rate
                for s in self.results.peer_steps
                if step_passes(s) and (rate := round(s.offered_rps or 0.0, 2)) not in tried
            }
        )
        if not extra:
            return
        phase = PhaseSpec(
            "open loop",
            "steps",
            100,
            self.config.step_s,
            rates=extra,
            adaptive=False,
            stop_on_fail=False,
            retry_failed=True,
            pause_s=1.0,
        )
        out = self.load(
            "open-loop-peer-rates",
            [phase],
            target="bridge",
            url=self.bridge_url,
            watch=self.bridge_watch(),
        )
        self.results.open_steps += out[phase.name]

    def warm_up(self) -> None:
        phases = [
            PhaseSpec(f"warm-up {b}", "closed", b, 1.5 if b == 100 else 1.0, senders=4)
            for b in self.config.batches
        ]
        self.warm_until_2xx("bridge", self.bridge_url, phases)
        if self.peer_url:  # its producer learns the topics' metadata before it is measured
            self.load("peer-warm-up", phases[-1:], target="peer", url=self.peer_url, watch={})

    def warm_until_2xx(
        self, name: str, url: str, phases: list[PhaseSpec], target: str = "bridge"
    ) -> None:
        """Warm-up rounds until one is all 2xx: on a crowded broker, creating the topics and
        learning their metadata may take longer than one round."""
        for attempt in range(1, WARM_UP_ROUNDS + 1):
            out = self.load(f"warm-up-{name}", phases, target=target, url=url, watch={})
            failed = sum(stats.failed for runs in out.values() for stats in runs)
            if not failed:
                return
            if attempt == WARM_UP_ROUNDS:
                note = f"{name}'s warm-up failed {failed} requests in each of {attempt} rounds"
                self.results.notes.append(note + f"; measured anyway (see {name}.log)")
                say(f"  {note}; measuring anyway")
                return
            say(f"  warm-up: {failed} requests not 2xx; again")
            time.sleep(2.0)

    def alm_like(self) -> None:
        phases = [
            PhaseSpec(f"ALM-like {n} x {b}", "closed", b, self.config.alm_s, senders=n)
            for n in self.config.senders
            for b in self.config.batches
        ]
        out = self.load(
            "alm-like", phases, target="bridge", url=self.bridge_url, watch=self.bridge_watch()
        )
        self.results.alm = [stats for p in phases for stats in out[p.name]]

    def open_loop(self) -> None:
        cell = self.results.alm_cell(16, 100)
        base = cell.requests_per_s if cell and cell.requests_per_s else 10.0
        rates = [round(f * base, 2) for f in self.config.factors]
        phase = self.rate_search("open loop", rates)
        out = self.load(
            "open-loop", [phase], target="bridge", url=self.bridge_url, watch=self.bridge_watch()
        )
        self.results.open_steps = out[phase.name]

    def overload(self) -> None:
        sus = self.results.sustainable
        if sus is not None and sus.offered_rps:
            rate = 2 * sus.offered_rps
        else:
            tried = [s.offered_rps for s in self.results.open_steps if s.offered_rps]
            rate = 2 * min(tried) if tried else 20.0
            self.results.notes.append(
                "no open-loop step was sustained; over capacity used twice the lowest rate tried"
            )
        phase = PhaseSpec(
            "over capacity", "open", 100, self.config.overload_s, rate=rate, sample_every_s=1.0
        )
        out = self.load(
            "over-capacity",
            [phase],
            target="bridge",
            url=self.bridge_url,
            watch=self.bridge_watch(),
        )
        self.results.overload = out[phase.name][0]
        time.sleep(2.0)

    def soak(self) -> None:
        sus = self.results.sustainable
        if self.config.soak_s <= 0:
            return
        if sus is None or not sus.offered_rps:
            self.results.notes.append("soak skipped: no sustainable rate was found")
            return
        phase = PhaseSpec(
            "soak",
            "open",
            100,
            self.config.soak_s,
            rate=sus.offered_rps,
            sample_every_s=3.0,
        )
        out = self.load(
            "soak", [phase], target="bridge", url=self.bridge_url, watch=self.bridge_watch()
        )
        self.results.soak = out[phase.name][0]

    def compare(self) -> None:
        url = self.config.compare_url
        if not url:
            return
        phases = [
            PhaseSpec(f"compare {n} x {b}", "closed", b, self.config.http_cell_s, senders=n)
            for n, b in self.config.http_cells
        ]
        out = self.load(
            "compare",
            phases,
            target="compare",
            url=url,
            watch={},
            secret=self.config.compare_secret or secrets.token_hex(16),
        )
        self.results.compare = [s for p in phases for s in out[p.name]]
        self.results.compare_url = url

    def profile(self) -> None:
        if not self.config.profile:
            return
        exe = prof.py_spy()
        if exe is None:
            self.results.notes.append("profile skipped: py-spy is not installed")
            return
        seconds = self.config.profile_s
        batch = self.config.profile_batch
        raw = self.run_dir / "profile.collapsed.txt"
        pid = self.procs.pid("bridge")
        self.procs.start(
            "py-spy",
            prof.record_command(exe, pid, seconds, raw),
            log=self.run_dir / "py-spy.log",
        )
        time.sleep(0.5)
        phase = PhaseSpec(
            f"profiled ALM-like 16 x {batch}", "closed", batch, seconds - 1.0, senders=16
        )
        out = self.load("profile", [phase], target="bridge", url=self.bridge_url, watch={})
        deadline = time.monotonic() + seconds + 30
        while _running(self.procs, "py-spy") and time.monotonic() < deadline:
            time.sleep(0.2)
        self.procs.stop("py-spy")
        if not raw.is_file():
            self.results.notes.append("py-spy wrote no profile; see py-spy.log")
            return
        summary = prof.summarize_profile(prof.parse_collapsed(raw.read_text()))
        loaded = out[phase.name][0]
        summary["workload"] = (
            f"ALM-like 16 senders x {batch} events, {seconds} s, "
            f"{loaded.events_per_s or 0:,.0f} events/s while sampled"
        )
        self.results.profile = summary
        (self.run_dir / "profile.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2)
        )

    # Ceilings ----------------------------------------------------------------------------

    def rate_search(self, name: str, rates: list[float]) -> PhaseSpec:
        """Open-loop steps of 100-event batches: up until one fails, then down and bisected."""
        return PhaseSpec(
            name,
            "steps",
            100,
            self.config.step_s,
            rates=rates,
            refine=self.config.refine,
            retry_failed=True,
            pause_s=1.0,
        )

    def tried_rates(self) -> list[float]:
        return sorted({s.offered_rps for s in self.results.open_steps if s.offered_rps})

    def http_ceiling(self) -> None:
        tried = self.tried_rates() or [10.0]
        top = max(tried)
        rates = sorted({*tried, round(2 * top, 2), round(4 * top, 2)})
        phases = [
            PhaseSpec(f"HTTP ceiling {n} x {b}", "closed", b, self.config.http_cell_s, senders=n)
            for n, b in self.config.http_cells
        ]
        steps = PhaseSpec(
            "HTTP ceiling open loop",
            "steps",
            100,
            self.config.http_step_s,
            rates=rates,
            adaptive=False,
            pause_s=0.3,
        )
        out = self.load(
            "http-ceiling",
            [*phases, steps],
            target="http-ceiling",
            url=self.ceiling_url,
            watch={"http-ceiling": self.procs.pid("http-ceiling"), **self.kafka_watch()},
        )
        self.results.http_cells = [s for p in phases for s in out[p.name]]
        self.results.http_steps = out[steps.name]

    def producer_latency(self) -> None:
        """The raw producer's 10-record latency, measured just before the bridge's."""
        spec = ProducerSpec(
            latency_s=self.config.producer_latency_s, watch=self.kafka_watch(), parts=["latency"]
        )
        say("== raw aiokafka producer latency (next to the bridge's ALM-like phases)")
        data = self._run_producer(spec, "producer-latency")
        self.results.producer_latency = PhaseStats.from_dict(data.pop("latency"))

    def producer_ceiling(self) -> None:
        tried = self.tried_rates() or [10.0]
        spec = ProducerSpec(
            throughput_s=self.config.producer_throughput_s,
            rates=sorted({*tried, round(2 * max(tried), 2)}),
            fractions=self.config.producer_fractions,
            step_s=self.config.producer_step_s,
            watch=self.kafka_watch(),
            parts=["throughput", "steps"],
        )
        say("== raw aiokafka producer ceiling")
        data = self._run_producer(spec, "producer-ceiling")
        data.pop("latency")
        self.results.producer_throughput = PhaseStats.from_dict(data.pop("throughput"))
        self.results.producer_steps = [PhaseStats.from_dict(s) for s in data.pop("steps")]
        self.results.producer_info = data

    def _run_producer(self, spec: ProducerSpec, name: str) -> dict[str, Any]:
        specs = self.run_dir / "specs"
        specs.mkdir(exist_ok=True)
        spec_file, out_file = specs / f"{name}.json", specs / f"{name}.out.json"
        spec_file.write_bytes(spec.to_json())
        env = {**self.bridge_env, "BRIDGE_PORT": "0"}
        steps = len(spec.rates) + len(spec.fractions)
        budget = spec.throughput_s + spec.latency_s + steps * (spec.step_s + 5) + 120
        code = self.procs.run(
            name,
            [sys.executable, "-m", "bench.ceilings", str(spec_file), str(out_file)],
            env=env,
            log=self.run_dir / f"{name}.log",
            timeout_s=budget,
            console=True,
        )
        if code != 0 or not out_file.is_file():
            raise BenchError(f"the raw producer failed ({code}); see {name}.log")
        data: dict[str, Any] = orjson.loads(out_file.read_bytes())
        return data

    def java_ceiling(self) -> None:
        if not self.config.java:
            return
        say("== Java ProducerPerformance (broker ceiling)")
        info = self.results.producer_info
        size = round(float(info.get("record_bytes_mean") or 700))
        settings = info.get("settings", {})
        try:
            jars = ensure_jars()
            cp = classpath(jars)
            java = shutil.which("java") or "java"
            if os.environ.get("JAVA_HOME"):
                candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
                java = str(candidate) if candidate.is_file() else java
            asyncio.run(_create_topic(self.bootstrap, JAVA_TOPIC, 3))
        except Exception as exc:  # a missing JDK or jars skips one ceiling, not the run
            self.results.java = {"error": f"{type(exc).__name__}: {exc}"}
            self.results.notes.append(f"Java ceiling skipped: {exc}")
            return
        prod = self.results.producer_throughput
        python_rate = prod.events_per_s if prod and prod.events_per_s else 20_000.0
        records = max(50_000, int(python_rate * self.config.java_s))
        props = {
            "acks": "all",
            "enable.idempotence": "true",
            "linger.ms": str(settings.get("linger_ms", 0)),
            "compression.type": str(settings.get("compression_type") or "none"),
        }
        logs = self.run_dir / "java-logs"
        logs.mkdir(exist_ok=True)
        command = java_command(
            java=java,
            classpath=cp,
            log4j_config=LOG4J_CONFIG,
            logs_dir=logs,
            topic=JAVA_TOPIC,
            records=records,
            record_size=size,
            bootstrap=self.bootstrap,
            props=props,
        )
        result = run_java(command, output=self.run_dir / "java-ceiling.log", timeout_s=180.0)
        result["record_size"] = size
        result["props"] = props
        self.results.java = result
        summary = result.get("summary")
        if summary:
            say(
                f"  {summary['records']:,} records of {size} B: "
                f"{summary['records_per_s']:,.0f} records/s"
            )
        else:
            say(f"  no summary (exit {result['exit_code']}); see java-ceiling.log")

    # Whole run ---------------------------------------------------------------------------

    def execute(self) -> None:
        self.start_kafka()
        self.crowd()
        self.start_servers()
        self.warm_up()
        self.producer_latency()
        self.alm_like()
        self.peer_alm_like()
        self.single_sender_turns()
        self.open_loop()
        self.peer_open_loop()
        self.bridge_at_peer_rates()
        self.all_cores_open_loop()
        self.benthos_open_loop()
        self.overload()
        self.soak()
        self.results.bridge_peak_rss_mb = memory_mb(self.procs.pid("bridge"))[1]
        self.profile()
        self.compare()
        self.http_ceiling()
        self.producer_ceiling()
        self.java_ceiling()
        code = self.procs.stop("bridge")
        self.results.meta["bridge_exit_code"] = code
        if self.peer_url:
            self.procs.stop("peer")
        self.results.meta["bridge_log_levels"] = _log_levels(self.run_dir / "bridge.log")


def _running(procs: ProcessSet, name: str) -> bool:
    try:
        pid = procs.pid(name)
    except KeyError:
        return False
    return alive(pid)


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def _create_crowd(bootstrap: str, count: int, chunk: int = 100) -> int:
    """Topics ``bench.crowd.00000`` … of CROWD_PARTITIONS partitions; returns how many were new."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=120_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [f"{CROWD_PREFIX}{i:05d}" for i in range(count)]
        new = [n for n in names if n not in existing]
        for start in range(0, len(new), chunk):
            topics = [NewTopic(n, CROWD_PARTITIONS, 1) for n in new[start : start + chunk]]
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(topics, timeout_ms=120_000)
        return len(new)
    finally:
        await admin.close()


def _log_levels(path: Path) -> dict[str, int]:
    levels: dict[str, int] = {}
    with contextlib.suppress(OSError), path.open("rb") as lines:
        for line in lines:
            try:
                level = str(orjson.loads(line).get("level", "?"))
            except (orjson.JSONDecodeError, AttributeError):
                level = "unparsed"
            levels[level] = levels.get(level, 0) + 1
    return levels


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
    args = _parser().parse_args(argv)
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
            and run.kafka is not None
            and run.kafka_started
            and not config.keep_kafka
            and not run.kafka.is_running()
        ):
            shutil.rmtree(run.kafka.data_dir, ignore_errors=True)
    results = run.results if run is not None else Results(meta=meta)
    elapsed = time.monotonic() - started
    meta["duration_s"] = round(elapsed, 1)
    meta["loadavg_end"] = loadavg()
    meta["steal_pct"] = round(
        100.0 * (steal_seconds() - steal0) / (elapsed * (os.cpu_count() or 1)), 2
    )
    meta["bootstrap"] = run.bootstrap if run is not None else None
    settings = results.producer_info.get("settings", {})
    meta["compression"] = settings.get("compression_type") or "none"
    meta["linger_ms"] = settings.get("linger_ms", "?")
    meta["config"] = _config_dict(config)
    if failure is not None:
        meta["error"] = failure
        results.notes.append(f"the run did not complete: {failure.strip().splitlines()[-1]}")
    markdown = write_outputs(results, run_dir)
    print(markdown)
    doubts = trust_problems(results) if config.quick else []
    for target in targets(results):
        verdict = "??" if doubts else target.verdict
        say(f"{verdict:4}  {target.name}  ({target.detail})")
    check = generator_check(results)
    say(f"{check.verdict:4}  {check.name}")
    for doubt in doubts:
        say(f"untrusted: {doubt}")
    say(f"results: {run_dir} (took {meta['duration_s']:.0f} s)")
    if failure is not None:
        say(f"bench: {failure}")
    return results, failure is not None


def _config_dict(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Config.__slots__:
        if name == "compare_secret":
            continue
        value = getattr(config, name)
        out[name] = str(value) if isinstance(value, Path) else value
    return out
