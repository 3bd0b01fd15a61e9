"""The broker and the servers one run measures: started, their addresses, the pids watched.

The local Kafka (or the one of ``--kafka-bootstrap``), the unrelated topics of a crowded
broker, the bridge in its production configuration, the HTTP ceiling server and the
hand-written peer. Every process lives in the run's :class:`~bench.services.ProcessSet`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Final

import orjson

from bench.config import CROWD_PARTITIONS, Config
from bench.processes import alive
from bench.results import Results
from bench.services import REPO_ROOT, LocalKafka, ProcessSet, free_ports

KAFKA_STATE: Final = REPO_ROOT / ".local" / "bench-kafka"
RECEIVER: Final = "alm"
CROWD_PREFIX: Final = "bench.crowd."


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Servers:
    """The broker and the servers of one run; every process it starts lives in ``procs``."""

    def __init__(self, config: Config, run_dir: Path, procs: ProcessSet, results: Results) -> None:
        self.config = config
        self.run_dir = run_dir
        self.procs = procs
        self.results = results
        self.secret = secrets.token_hex(24)
        self.bootstrap = ""
        self.bridge_env: dict[str, str] = {}
        self.bridge_url = ""
        self.ceiling_url = ""
        self.peer_url = ""
        self.kafka: LocalKafka | None = None
        self.kafka_started = False

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

    def kafka_watch(self) -> dict[str, int]:
        pid = self.kafka.pid() if self.kafka is not None else None
        return {} if pid is None else {"kafka": pid}

    def bridge_watch(self) -> dict[str, int]:
        return {"bridge": self.procs.pid("bridge"), **self.kafka_watch()}

    def peer_watch(self) -> dict[str, int]:
        return {"peer": self.procs.pid("peer"), **self.kafka_watch()}

    def stop(self) -> None:
        """The bridge and the peer stopped at the end of the run; the bridge's exit status and
        the levels of its log lines recorded."""
        code = self.procs.stop("bridge")
        self.results.meta["bridge_exit_code"] = code
        if self.peer_url:
            self.procs.stop("peer")
        self.results.meta["bridge_log_levels"] = _log_levels(self.run_dir / "bridge.log")


def running(procs: ProcessSet, name: str) -> bool:
    try:
        pid = procs.pid(name)
    except KeyError:
        return False
    return alive(pid)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
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
