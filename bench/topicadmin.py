"""A new event name's first use: the bridge's topic code against aiokafka's admin client.

    python -m bench.topicadmin [--topics 5] [--crowd 2000] [--kafka-bootstrap HOST:PORT]

One local broker (bench/run.py's, production defaults: topics auto-created on metadata
requests) first fresh, then crowded with ``--crowd`` unrelated topics of three partitions
(measured once a topic created then is listed with its leader); then a fresh broker that
never creates topics on metadata requests (``auto.create.topics.enable=false``).
For each new topic name, timed from the call to ``Publisher.publish`` of one record to
Kafka's acknowledgement, three ways to make the topic exist, in turns:

- ``producer``: :mod:`bridge.kafka.topics` as it is (a metadata request naming the topic, then
  CreateTopics, on the producer's own connections);
- ``admin``: an ``AIOKafkaAdminClient`` started with the publisher and kept
  (``describe_topics``, then ``create_topics`` for the missing ones);
- ``admin-per-use``: an ``AIOKafkaAdminClient`` started for the new topic and closed after.

A 503 (``PublishUnavailable``) is sent again after 50 ms, as ALM would send the batch
again, until Kafka takes the record; the tries are counted. Counted around each first use
too: connections opened, Metadata requests and the bytes of
their answers, CreateTopics requests; and the partitions the topic ended up with (the
bridge's setting is 3, the broker's default 1). Also the admin client's own start, and one
whole-cluster metadata answer (what its client refreshes every ``metadata.max.age.ms``,
as it tracks no topic). Bounded: 30 s per first use. Results in
bench/results/<UTC>-topicadmin/.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka import client as kafka_client
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import LeaderNotAvailableError, TopicAlreadyExistsError

from bench.config import CROWD_TOPICS, RESULTS_ROOT, side_config
from bench.results import Results
from bench.servers import Servers, say
from bench.services import LocalKafka, ProcessSet, free_ports
from bridge.config.settings import Settings
from bridge.core.errors import PublishUnavailable
from bridge.core.records import Record
from bridge.core.sink import Refusal
from bridge.kafka.publisher import Publisher, client_options
from bridge.kafka.topics import Topics, refusal_for_code

VARIANTS: Final = ("producer", "admin", "admin-per-use")
FIRST_USE_TIMEOUT_S: Final = 30.0
RETRY_PAUSE_S: Final = 0.05
SETTLE_TIMEOUT_S: Final = 300.0
METADATA: Final = 3
CREATE_TOPICS: Final = 19


@dataclass
class Tally:
    """What the Kafka clients of this process did: connections, requests, answer bytes."""

    connections: int = 0
    requests: Counter[int] = field(default_factory=Counter)
    metadata_bytes: int = 0

    def snapshot(self) -> tuple[int, int, int, int]:
        return (
            self.connections,
            self.requests[METADATA],
            self.metadata_bytes,
            self.requests[CREATE_TOPICS],
        )


TALLY = Tally()


def count_kafka_traffic() -> None:
    """Every connection aiokafka's clients open, and every request they send, counted."""
    open_conn = kafka_client.create_conn
    send = AIOKafkaConnection.send

    async def counting_open(*args: Any, **kwargs: Any) -> Any:
        TALLY.connections += 1
        return await open_conn(*args, **kwargs)

    def counting_send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        TALLY.requests[request.API_KEY] += 1
        sent = send(self, request, expect_response)
        if request.API_KEY != METADATA or not expect_response:
            return sent

        async def sized() -> Any:
            response = await sent
            TALLY.metadata_bytes += len(response.encode())
            return response

        return sized()

    kafka_client.create_conn = counting_open
    AIOKafkaConnection.send = counting_send


class AdminTopics(Topics):
    """:class:`bridge.kafka.topics.Topics` on aiokafka's admin client, the same decisions."""

    def __init__(
        self, settings: Settings, admin: Callable[[], Awaitable[AIOKafkaAdminClient]], keep: bool
    ) -> None:
        super().__init__(settings)
        self._admin = admin
        self._keep = keep

    async def _resolve(self, producer: AIOKafkaProducer, topics: list[str]) -> dict[str, Refusal]:
        s = self._settings
        async with self._lock:
            topics = [t for t in topics if t not in self.ready]
            if not topics:
                return {}
            admin = await self._admin()
            try:
                described = await admin.describe_topics(topics)
                self.most_brokers = max(self.most_brokers, len(producer.client.cluster.brokers()))
                ready: list[str] = []
                missing: list[str] = []
                refused: dict[str, Refusal] = {}
                for entry in described:
                    code, topic = entry["error_code"], entry["topic"]
                    if code in (0, LeaderNotAvailableError.errno):
                        ready.append(topic)
                    elif (refusal := refusal_for_code(code, None)) is not None:
                        refused[topic] = refusal
                    else:
                        missing.append(topic)
                if missing:
                    response = await admin.create_topics(
                        [
                            NewTopic(t, s.kafka_topic_partitions, s.kafka_topic_replication_factor)
                            for t in missing
                        ],
                        timeout_ms=s.kafka_request_timeout_ms,
                    )
                    for topic, code, message in response.topic_errors:
                        if code in (0, TopicAlreadyExistsError.errno):
                            ready.append(topic)
                        elif (refusal := refusal_for_code(code, message)) is not None:
                            refused[topic] = refusal
                        else:
                            raise PublishUnavailable(f"topic {topic} not created: {code}")
            finally:
                if not self._keep:
                    await admin.close()
            self.mark_ready(ready)
            for topic, refusal in refused.items():
                self.refuse(topic, refusal)
            return refused


@dataclass
class Sample:
    seconds: float
    attempts: int
    connections: int
    metadata_requests: int
    metadata_bytes: int
    create_requests: int


@dataclass
class Contender:
    name: str
    publisher: Publisher
    admin: AIOKafkaAdminClient | None = None
    samples: list[Sample] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)


async def _contender(name: str, settings: Settings, start: dict[str, Any]) -> Contender:
    publisher = Publisher(settings=settings)
    await publisher.start(30.0)
    contender = Contender(name, publisher)
    if name == "producer":
        return contender

    async def kept() -> AIOKafkaAdminClient:
        assert contender.admin is not None
        return contender.admin

    async def fresh() -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        return admin

    if name == "admin":
        before, started = TALLY.snapshot(), time.perf_counter()
        contender.admin = await fresh()
        after = TALLY.snapshot()
        start["admin_start_seconds"] = round(time.perf_counter() - started, 4)
        start["admin_start_connections"] = after[0] - before[0]
        start["admin_start_metadata_bytes"] = after[2] - before[2]
        before = TALLY.snapshot()
        await contender.admin.list_topics()
        start["whole_cluster_metadata_bytes"] = TALLY.snapshot()[2] - before[2]
    # The candidate replaces the publisher's topic code; everything else stays the bridge's.
    publisher._topics = AdminTopics(settings, kept if name == "admin" else fresh, name == "admin")
    return contender


async def _first_use(contender: Contender, topic: str) -> None:
    record = Record(topic=topic, key=b"key", value=b'{"bench": "topicadmin"}', headers=[])
    before, started = TALLY.snapshot(), time.perf_counter()
    deadline = started + FIRST_USE_TIMEOUT_S
    attempts = 0
    while True:  # a 503 is sent again, as ALM does (here at once)
        attempts += 1
        try:
            result = await contender.publisher.publish(
                [record], timeout_seconds=max(0.1, deadline - time.perf_counter())
            )
            break
        except PublishUnavailable:
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)
    seconds = time.perf_counter() - started
    after = TALLY.snapshot()
    if result.records != 1 or result.refused:
        raise RuntimeError(f"{contender.name}: {topic} not acknowledged: {result.refused}")
    contender.samples.append(
        Sample(seconds, attempts, *(a - b for a, b in zip(after, before, strict=True)))
    )
    contender.topics.append(topic)


async def _partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def measure(bootstrap: str, phase: str, count: int) -> dict[str, Any]:
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka_topic_partitions=3)
    start: dict[str, Any] = {}
    contenders = [await _contender(name, settings, start) for name in VARIANTS]
    tag = datetime.now(UTC).strftime("%H%M%S")
    try:
        for contender in contenders:  # the producer's connection made before any timing
            await _first_use(contender, f"bench.topicadmin.{tag}.{phase}.{contender.name}.warm")
            contender.samples.clear()
            contender.topics.clear()
        for index in range(count):
            for contender in contenders:
                topic = f"bench.topicadmin.{tag}.{phase}.{contender.name}.{index}"
                await _first_use(contender, topic)
        partitions = await _partitions(bootstrap, [t for c in contenders for t in c.topics])
    finally:
        for contender in contenders:
            await contender.publisher.stop(5.0)
            if contender.admin is not None:
                await contender.admin.close()
    rows = {}
    for contender in contenders:
        samples = contender.samples
        rows[contender.name] = {
            "first_use_ms_median": round(1000 * statistics.median(s.seconds for s in samples), 1),
            "first_use_ms_min": round(1000 * min(s.seconds for s in samples), 1),
            "first_use_ms_max": round(1000 * max(s.seconds for s in samples), 1),
            "attempts_max": max(s.attempts for s in samples),
            "connections": statistics.median(s.connections for s in samples),
            "metadata_requests": statistics.median(s.metadata_requests for s in samples),
            "metadata_bytes": statistics.median(s.metadata_bytes for s in samples),
            "create_topics_requests": statistics.median(s.create_requests for s in samples),
            "partitions": sorted({partitions.get(t, 0) for t in contender.topics}),
        }
    return {"phase": phase, "topics": count, "variants": rows, **start}


async def settle(bootstrap: str, timeout_s: float = SETTLE_TIMEOUT_S) -> float:
    """Seconds until a topic created now is listed with its leaders: a broker that has just
    been handed thousands of partitions answers "unknown topic" for new ones for a while."""
    started = time.perf_counter()
    probe = f"bench.topicadmin.settle.{datetime.now(UTC):%H%M%S}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(probe, 1, 1)])
        while True:
            [described] = await admin.describe_topics([probe])
            if described["error_code"] == 0 and all(
                p["leader"] >= 0 for p in described["partitions"]
            ):
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"the broker did not settle within {timeout_s:.0f}s")
            await asyncio.sleep(1.0)
    finally:
        await admin.close()


def render(results: list[dict[str, Any]]) -> str:
    lines = [
        "| broker | variant | first use ms (median, min-max) | most tries | connections "
        "| metadata requests | metadata bytes | CreateTopics | partitions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for name, row in result["variants"].items():
            lines.append(
                f"| {result['phase']} | {name} | {row['first_use_ms_median']} "
                f"({row['first_use_ms_min']}-{row['first_use_ms_max']}) | {row['attempts_max']} "
                f"| {row['connections']} "
                f"| {row['metadata_requests']} | {row['metadata_bytes']:,} "
                f"| {row['create_topics_requests']} | {row['partitions']} |"
            )
    lines.append("")
    for result in results:
        lines.append(
            f"{result['phase']}: the admin client's start "
            f"{result['admin_start_seconds'] * 1000:.1f} ms, "
            f"{result['admin_start_connections']} connection(s), "
            f"{result['admin_start_metadata_bytes']:,} metadata bytes; one whole-cluster "
            f"metadata answer {result['whole_cluster_metadata_bytes']:,} bytes"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.topicadmin", description=__doc__)
    parser.add_argument("--topics", type=int, default=5, help="new topic names per variant")
    parser.add_argument("--crowd", type=int, default=CROWD_TOPICS, help="unrelated topics")
    parser.add_argument("--kafka-bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--results-dir", default=str(RESULTS_ROOT))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = side_config(args.kafka_bootstrap, args.results_dir)
    run_dir = Path(args.results_dir) / (datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-topicadmin")
    run_dir.mkdir(parents=True, exist_ok=True)
    count_kafka_traffic()
    results = []
    with ProcessSet(run_dir) as procs:
        run = Servers(config, run_dir, procs, Results())
        run.start_kafka()
        results.append(asyncio.run(measure(run.bootstrap, "fresh", args.topics)))
        say(render(results[-1:]))
        if args.crowd > 0:
            run.config.crowded_topics = args.crowd
            run.crowd()
            settled = asyncio.run(settle(run.bootstrap))
            say(f"Kafka: a new topic is listed with its leader after {settled:.1f}s more")
            results.append(asyncio.run(measure(run.bootstrap, "crowded", args.topics)))
            say(render(results[-1:]))
    if not args.kafka_bootstrap:
        # The same, on a broker that never creates a topic on a metadata request: the admin
        # client's describe_topics then leaves the creation to create_topics.
        (run_dir / "no-auto-create").mkdir()
        with ProcessSet(run_dir / "no-auto-create") as procs:
            port, controller_port = free_ports(2)
            kafka = LocalKafka(
                port=port,
                controller_port=controller_port,
                state_dir=run_dir / "no-auto-create",
                broker_properties={"auto.create.topics.enable": "false"},
            )
            procs.adopt_kafka(kafka)
            say(f"Kafka: a broker without topic auto-creation on 127.0.0.1:{port}")
            kafka.start(timeout_s=120.0)
            results.append(asyncio.run(measure(kafka.bootstrap, "no-auto-create", args.topics)))
            say(render(results[-1:]))
    text = render(results)
    (run_dir / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    (run_dir / "results.md").write_text(text)
    say(f"results in {run_dir}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
