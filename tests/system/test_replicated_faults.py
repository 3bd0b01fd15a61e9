"""The bridge against a replicated cluster while brokers, the network or the bridge fail.

Production Kafka is three brokers or more, topics of replication factor 3 with
``min.insync.replicas=2``, rolled regularly, with several bridge replicas behind one
Service. Each scenario runs ALM-like senders against the real bridge process (each sender
re-sends a batch until it gets a 2xx, as ALM does), breaks something, reads every topic of
the run back and checks what a user relies on:

- nothing acknowledged (2xx) is missing from Kafka;
- no batch was acknowledged while fewer than ``min.insync.replicas`` replicas were in sync;
- no event was dead-lettered (a broker's fault is not a reason that lasts);
- every answer came within ALM's 5 s;
- the bridge did not restart (same pid, still running), except where it is rolled on purpose;
- each event is at most twice in Kafka.

``make test`` runs short faults with few senders; ``ALM_BRIDGE_SOAK=1`` runs the durations
of the README's reliability table (8 senders, 20 s outages, a 30 s freeze).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bridge.cli.sender import RequestResult
from tests.kafka_fixtures import KafkaCluster, LocalKafka, free_ports
from tests.system.faultproxy import FaultProxy
from tests.system.harness import (
    ALM_RESPONSE_LIMIT_MS,
    FLEET_REPORT,
    HOST,
    RECEIVER,
    SEED,
    BridgeFactory,
    BridgeProcess,
    FleetRow,
    KafkaContents,
    Load,
    load_options,
    read_prefix,
    tally,
    unique_prefix,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka]

SOAK: Final = os.environ.get("ALM_BRIDGE_SOAK") == "1"
SENDERS: Final = 8 if SOAK else 4
# Requests per second over all senders; a batch holds 1-20 events.
RATE: Final = 24.0 if SOAK else 12.0
# Batches one sender sends in one go (one run of the sender, seeded on its own).
CHUNK: Final = 8
OUTAGE_SECONDS: Final = 20.0 if SOAK else 6.0
FREEZE_SECONDS: Final = 30.0 if SOAK else 10.0
LEADER_DOWN_SECONDS: Final = 10.0 if SOAK else 4.0
# Load before the fault (after the first acknowledgements) and after the recovery.
STEADY_SECONDS: Final = 10.0 if SOAK else 3.0
MIN_INSYNC_REPLICAS: Final = 2
# The edges of the window below min.insync.replicas: a batch acknowledged just before the
# second broker went away may be answered a moment later.
WINDOW_MARGIN_SECONDS: Final = 1.0
MAX_COPIES: Final = 2
WARM_UP_ACKS: Final = 2 * SENDERS
NODE_START_TIMEOUT_S: Final = 90.0
IN_SYNC_TIMEOUT_S: Final = 90.0
# Once the fault is over, the senders finish their last batches within this.
RECOVERY_SECONDS: Final = 120.0
TIMEOUT: Final = 600 if SOAK else 240

REPLICATED_ENV: Final = {
    "BRIDGE_KAFKA_TOPIC_REPLICATION_FACTOR": "3",
    # Three partitions per topic: every node leads some of each run's partitions.
    "BRIDGE_KAFKA_TOPIC_PARTITIONS": "3",
}


# ------------------------------------------------------------------------------ senders


@dataclass
class Senders:
    """ALM's webhooks: each sends one batch at a time and re-sends it until a 2xx.

    Each sender runs :func:`bridge.cli.sender.run_send` over chunks of :data:`CHUNK` batches,
    seeded on their own (so every event id is new), until :meth:`finish` is called.
    """

    url: str
    senders: int = SENDERS
    rate: float = RATE
    loads: list[Load] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        await asyncio.gather(*(self._sender(i) for i in range(self.senders)))

    async def _sender(self, number: int) -> None:
        chunk = 0
        while not self._stop.is_set():
            options = load_options(
                self.url,
                count=CHUNK,
                concurrency=1,
                rate=self.rate / self.senders,
                max_retry_seconds=RECOVERY_SECONDS + OUTAGE_SECONDS + FREEZE_SECONDS,
            )
            load = Load(options, seed=SEED + 10_000 * (number + 1) + chunk)
            self.loads.append(load)
            await load.run()
            chunk += 1

    async def finish(self, timeout_s: float = RECOVERY_SECONDS) -> bool:
        """Stop starting batches and wait for the last ones; False if they did not end."""
        self._stop.set()
        task = self._task
        if task is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        return True

    @property
    def results(self) -> list[RequestResult]:
        return [r for load in self.loads for r in load.results]

    def timeline(self) -> list[tuple[float, RequestResult]]:
        """Every answer with the time it arrived (``time.monotonic()``), in time order."""
        pairs = [
            (at, result)
            for load in self.loads
            for at, result in zip(load.result_times, load.results, strict=True)
        ]
        return sorted(pairs, key=lambda pair: pair[0])

    def acknowledged(self) -> int:
        return sum(1 for r in self.results if r.acknowledged)

    async def wait_acknowledged(self, count: int, timeout_s: float = 60.0) -> None:
        """Until ``count`` more batches were answered 2xx."""
        target = self.acknowledged() + count
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.acknowledged() < target:
            if loop.time() > deadline:
                raise AssertionError(
                    f"fewer than {count} batches acknowledged within {timeout_s:g}s: "
                    f"{Counter(r.status for r in self.results)}"
                )
            await asyncio.sleep(0.1)

    def unsettled(self) -> int:
        """Batches never answered 2xx."""
        batches = {(id(load), r.index) for load in self.loads for r in load.results}
        done = {(id(load), r.index) for load in self.loads for r in load.results if r.acknowledged}
        return len(batches - done)


# --------------------------------------------------------------------- cluster helpers


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def _describe(kafka: KafkaCluster, prefix: str) -> list[PartitionState]:
    """Every partition of the run's topics, as the cluster describes it now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(f"{prefix}."))
        if not topics:
            return []
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [
        PartitionState(
            topic=entry["topic"],
            partition=int(part["partition"]),
            leader=int(part["leader"]),
            replicas=tuple(int(n) for n in part["replicas"]),
            isr=tuple(int(n) for n in part["isr"]),
        )
        for entry in described
        for part in entry["partitions"]
    ]


async def leaders(kafka: KafkaCluster, prefix: str) -> Counter[int]:
    """How many partitions of the run's topics each node leads."""
    return Counter(p.leader for p in await _describe(kafka, prefix))


async def busiest_leader(kafka: KafkaCluster, prefix: str) -> LocalKafka:
    led = await leaders(kafka, prefix)
    assert led, f"no topic of {prefix} exists yet"
    return kafka.node(led.most_common(1)[0][0])


async def wait_in_sync(
    kafka: KafkaCluster, prefix: str, timeout_s: float = IN_SYNC_TIMEOUT_S
) -> None:
    """Until every partition of the run's topics has all its replicas in sync."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    lagging: list[str] = ["?"]
    while loop.time() < deadline:
        with contextlib.suppress(Exception):
            parts = await _describe(kafka, prefix)
            lagging = [
                f"{p.topic}-{p.partition}: isr {p.isr} of {p.replicas}"
                for p in parts
                if len(p.isr) < len(p.replicas)
            ]
            if parts and not lagging:
                return
        await asyncio.sleep(0.5)
    raise AssertionError(f"replicas of {prefix} not in sync within {timeout_s:g}s: {lagging[:5]}")


async def start_node(node: LocalKafka) -> None:
    await asyncio.to_thread(node.start, NODE_START_TIMEOUT_S)


# ------------------------------------------------------------------------------ verdict


@dataclass(frozen=True)
class Window:
    """When fewer than min.insync.replicas replicas of every partition could be in sync."""

    start: float
    end: float


@dataclass
class Verdict:
    row: FleetRow
    dead_lettered: Counter[str]
    contents: KafkaContents
    lost_ids: tuple[str, ...]
    acknowledged_below_min_isr: list[str]
    slow: list[RequestResult]
    statuses: Counter[int | str]
    unsettled: int
    finished: bool


def longest_without_ok(timeline: Sequence[tuple[float, RequestResult]], start: float) -> float:
    """The longest stretch from ``start`` to the last answer without any 2xx answer."""
    if not timeline:
        return 0.0
    longest = 0.0
    last_ok = start
    for at, result in timeline:
        if result.acknowledged:
            longest = max(longest, at - last_ok)
            last_ok = at
    return max(longest, timeline[-1][0] - last_ok)


def judge(
    scenario: str,
    senders: Senders,
    contents: KafkaContents,
    *,
    started: float,
    finished: bool,
    below_min_isr: Window | None = None,
) -> Verdict:
    results = senders.results
    base = tally(scenario, results, contents)
    acknowledged_ids = {e for r in results if r.acknowledged for e in r.event_ids}
    copies = Counter(
        min(contents.event_ids[e], 3)
        for e in {e for r in results for e in r.event_ids}
        if contents.event_ids[e]
    )
    timeline = senders.timeline()
    wrong: list[str] = []
    if below_min_isr is not None:
        for at, result in timeline:
            inside = below_min_isr.start + WINDOW_MARGIN_SECONDS <= at <= below_min_isr.end
            published = (result.response_counts or {}).get("published", 0)
            if inside and result.acknowledged and published:
                wrong.append(
                    f"batch {result.index} answered {result.status} with {published} events "
                    f"published {at - below_min_isr.start:.1f}s into the window"
                )
    answered = [r for r in results if r.status is not None]
    row = FleetRow(
        scenario=scenario,
        requests=len(results),
        ok=base.ok,
        unavailable=base.unavailable,
        acknowledged_events=len(acknowledged_ids),
        lost=base.lost,
        copies=(copies[1], copies[2], copies[3]),
        slowest_ms=max((r.latency_ms for r in answered), default=0.0),
        longest_without_ok_s=longest_without_ok(timeline, started),
    )
    FLEET_REPORT.append(row)
    print()
    print(row.markdown())
    statuses: Counter[int | str] = Counter()
    for result in results:
        statuses[result.status if result.status is not None else result.error or "none"] += 1
    dead_lettered: Counter[str] = Counter()
    for result in results:
        for reason, count in (result.dead_letter_reasons or {}).items():
            dead_lettered[reason] += count
    return Verdict(
        row=row,
        dead_lettered=dead_lettered,
        contents=contents,
        lost_ids=base.lost_ids,
        acknowledged_below_min_isr=wrong,
        slow=[r for r in results if r.latency_ms >= ALM_RESPONSE_LIMIT_MS],
        statuses=statuses,
        unsettled=senders.unsettled(),
        finished=finished,
    )


def assert_promises(verdict: Verdict) -> None:
    row = verdict.row
    assert not verdict.acknowledged_below_min_isr, verdict.acknowledged_below_min_isr[:5]
    # A dead letter is for what can never be published; a broker's fault is not that.
    assert not verdict.dead_lettered, f"events dead-lettered: {dict(verdict.dead_lettered)}"
    assert row.lost == 0, f"acknowledged but not in Kafka: {verdict.lost_ids}"
    assert not verdict.slow, (
        f"{len(verdict.slow)} answers took {ALM_RESPONSE_LIMIT_MS:g} ms or more, the slowest "
        f"{max(r.latency_ms for r in verdict.slow):.0f} ms"
    )
    assert verdict.finished, f"the senders did not finish after the fault; {verdict.statuses}"
    assert verdict.unsettled == 0, (
        f"{verdict.unsettled} batches never acknowledged after the fault; {verdict.statuses}"
    )
    over = {e: n for e, n in verdict.contents.event_ids.items() if n > MAX_COPIES}
    assert not over, (
        f"{len(over)} events more than {MAX_COPIES} times in Kafka "
        f"(copies 1/2/3+: {row.copies}), e.g. {sorted(over.items())[:3]}"
    )


def assert_not_restarted(bridge: BridgeProcess, pid: int) -> None:
    assert bridge.running(), f"the bridge exited\n{bridge.log_tail()}"
    assert bridge.pid == pid
    assert bridge.event_names().count("bridge_started") == 1, "the bridge restarted"


# ----------------------------------------------------------------------------- scenarios


Fault = Callable[[KafkaCluster, str], Awaitable[Window | None]]


async def run_kafka_fault(
    kafka: KafkaCluster, bridges: BridgeFactory, scenario: str, fault: Fault
) -> tuple[Verdict, BridgeProcess]:
    """One bridge, the senders, ``fault`` once the load is steady, and the verdict."""
    prefix = unique_prefix(scenario)
    bridge = bridges.spawn(kafka.bootstrap, prefix=prefix, env=REPLICATED_ENV)
    await bridge.wait_ready(60)
    pid = bridge.pid
    senders = Senders(bridge.webhook_url)
    started = time.monotonic()
    senders.start()
    window: Window | None = None
    try:
        await senders.wait_acknowledged(WARM_UP_ACKS)
        await asyncio.sleep(STEADY_SECONDS)
        window = await fault(kafka, prefix)
        await asyncio.sleep(STEADY_SECONDS)
    finally:
        finished = await senders.finish()
        await asyncio.to_thread(kafka.restore)
    contents = await read_prefix(kafka.bootstrap, prefix)
    verdict = judge(
        scenario, senders, contents, started=started, finished=finished, below_min_isr=window
    )
    assert_not_restarted(bridge, pid)
    return verdict, bridge


@pytest.mark.timeout(TIMEOUT)
async def test_leader_sigkill(kafka_cluster: KafkaCluster, bridges: BridgeFactory) -> None:
    async def fault(kafka: KafkaCluster, prefix: str) -> None:
        node = await busiest_leader(kafka, prefix)
        await asyncio.to_thread(node.kill)
        await asyncio.sleep(LEADER_DOWN_SECONDS)
        await start_node(node)
        await wait_in_sync(kafka, prefix)

    verdict, _ = await run_kafka_fault(kafka_cluster, bridges, "leader SIGKILL", fault)

    assert_promises(verdict)


@pytest.mark.timeout(TIMEOUT)
async def test_rolling_restart_of_every_broker(
    kafka_cluster: KafkaCluster, bridges: BridgeFactory
) -> None:
    async def fault(kafka: KafkaCluster, prefix: str) -> None:
        for node in kafka.nodes:
            # SIGTERM: the controlled shutdown moves the node's leaders away first.
            await asyncio.to_thread(node.stop)
            await start_node(node)
            await wait_in_sync(kafka, prefix)

    verdict, _ = await run_kafka_fault(
        kafka_cluster, bridges, "rolling restart of 3 brokers", fault
    )

    assert_promises(verdict)


@pytest.mark.timeout(TIMEOUT)
async def test_broker_frozen(kafka_cluster: KafkaCluster, bridges: BridgeFactory) -> None:
    async def fault(kafka: KafkaCluster, prefix: str) -> None:
        node = await busiest_leader(kafka, prefix)
        await asyncio.to_thread(node.freeze)
        await asyncio.sleep(FREEZE_SECONDS)
        await asyncio.to_thread(node.thaw)
        await wait_in_sync(kafka, prefix)

    verdict, _ = await run_kafka_fault(
        kafka_cluster, bridges, f"leader frozen {FREEZE_SECONDS:g}s", fault
    )

    assert_promises(verdict)
    assert verdict.statuses[503] > 0, "no 503 while the leader was frozen: the fault was not seen"


@pytest.mark.timeout(TIMEOUT)
async def test_two_brokers_down_below_min_insync_replicas(
    kafka_cluster: KafkaCluster, bridges: BridgeFactory
) -> None:
    async def fault(kafka: KafkaCluster, prefix: str) -> Window:
        down = kafka.nodes[:2]
        # One after the other, each with a controlled shutdown: the controller moves every
        # leader to the third node and takes the stopped ones out of the ISR, so that node
        # leads every partition alone, one replica in sync of the two required.
        for node in down:
            await asyncio.to_thread(node.stop)
        below = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        back = time.monotonic()
        for node in down:
            await asyncio.to_thread(node.launch)
        for node in down:
            await asyncio.to_thread(node.wait_ready, NODE_START_TIMEOUT_S)
        await wait_in_sync(kafka, prefix)
        return Window(below, back)

    verdict, _ = await run_kafka_fault(
        kafka_cluster, bridges, f"2 of 3 brokers down {OUTAGE_SECONDS:g}s", fault
    )

    assert_promises(verdict)
    assert verdict.statuses[503] > 0, "no 503 below min.insync.replicas: the fault was not seen"


@pytest.mark.timeout(TIMEOUT)
async def test_broker_blackholed(kafka_cluster: KafkaCluster, bridges: BridgeFactory) -> None:
    stalled_before = kafka_cluster.proxy.stalled_bytes

    async def fault(kafka: KafkaCluster, prefix: str) -> None:
        assert kafka.proxied_node in await leaders(kafka, prefix), "the cut node leads nothing"
        kafka.proxy.blackhole()
        await asyncio.sleep(OUTAGE_SECONDS)
        kafka.proxy.heal()

    verdict, _ = await run_kafka_fault(
        kafka_cluster, bridges, f"broker blackholed {OUTAGE_SECONDS:g}s", fault
    )

    assert_promises(verdict)
    assert kafka_cluster.proxy.stalled_bytes > stalled_before, "nothing reached the blackhole"
    assert verdict.statuses[503] > 0, "no 503 while a leader was cut off: the fault was not seen"


@pytest.mark.timeout(TIMEOUT)
async def test_rolling_restart_of_two_bridges_behind_one_address(
    kafka_cluster: KafkaCluster, bridges: BridgeFactory
) -> None:
    prefix = unique_prefix("rolling bridges")
    ports = free_ports(2)
    running = [
        bridges.spawn(kafka_cluster.bootstrap, prefix=prefix, port=port, env=REPLICATED_ENV)
        for port in ports
    ]
    for bridge in running:
        await bridge.wait_ready(60)
    with FaultProxy([(HOST, port) for port in ports]) as service:
        senders = Senders(f"http://{service.address}/webhooks/{RECEIVER}")
        started = time.monotonic()
        senders.start()
        exits: list[int | None] = []
        try:
            await senders.wait_acknowledged(WARM_UP_ACKS)
            await asyncio.sleep(STEADY_SECONDS)
            for i, old in enumerate(list(running)):
                old.send_signal(signal.SIGTERM)
                exits.append(await old.wait_exit(old.shutdown_timeout_seconds + 10))
                new = bridges.spawn(
                    kafka_cluster.bootstrap, prefix=prefix, port=old.port, env=REPLICATED_ENV
                )
                await new.wait_ready(60)
                running[i] = new
                await senders.wait_acknowledged(SENDERS)
            await asyncio.sleep(STEADY_SECONDS)
        finally:
            finished = await senders.finish()
    contents = await read_prefix(kafka_cluster.bootstrap, prefix)
    verdict = judge(
        "rolling restart of 2 bridges", senders, contents, started=started, finished=finished
    )

    assert_promises(verdict)
    assert exits == [0, 0], f"exit codes of the SIGTERMed bridges: {exits}"
    for bridge in running:
        assert_not_restarted(bridge, bridge.pid)
