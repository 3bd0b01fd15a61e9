"""An in-memory :class:`bridge.core.sink.Sink` for tests that check statuses, not Kafka.

It stores every record it is given, per topic, and can be told to refuse topics for good
or to be unreachable, so the HTTP contract can be exercised without a broker. With
``hold`` set it keeps records in flight, like a producer waiting for a cluster below its
in-sync replicas, until the test settles them with :meth:`release` or :meth:`fail_held`.
Tests that must see what really lands in Kafka use the real broker instead.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence

from bridge.core.errors import PublishUnavailable
from bridge.core.records import Record
from bridge.core.sink import PublishResult, Refusal


class MemorySink:
    """Records kept in memory; ``refuse`` and ``reachable`` steer the outcomes."""

    def __init__(self) -> None:
        self.records: defaultdict[str, list[Record]] = defaultdict(list)
        self.refuse: dict[str, Refusal] = {}
        self.reachable = True
        self.hold = False
        self.held: list[tuple[list[Record], asyncio.Future[None]]] = []
        # Set once records are held: a test waits on it rather than polling.
        self.holding = asyncio.Event()
        self.produced = 0
        self._started = False
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def started(self) -> bool:
        return self._started

    def stored(self) -> list[Record]:
        return [record for topic in sorted(self.records) for record in self.records[topic]]

    async def start(self, timeout_seconds: float) -> None:
        if not self.reachable:
            raise PublishUnavailable("cannot reach Kafka: the test made it unreachable")
        self._started = self._connected = True

    async def stop(self, timeout_seconds: float) -> None:
        self._started = self._connected = False

    async def check(self, timeout_seconds: float) -> bool:
        self._connected = self._started and self.reachable
        return self._connected

    async def prepare(
        self, topics: Collection[str], *, timeout_seconds: float
    ) -> dict[str, Refusal]:
        if not self.reachable:
            raise PublishUnavailable("Kafka did not describe topics: unreachable")
        return {t: self.refuse[t] for t in topics if t in self.refuse}

    async def publish(
        self,
        records: Sequence[Record],
        *,
        timeout_seconds: float,
        on_ack: Callable[[Sequence[int]], None] | None = None,
        on_produced: Callable[[Sequence[tuple[int, asyncio.Future[None]]]], None] | None = None,
    ) -> PublishResult:
        refused_topics = await self.prepare(
            {r.topic for r in records}, timeout_seconds=timeout_seconds
        )
        refused: dict[int, Refusal] = {}
        accepted: list[int] = []
        for index, record in enumerate(records):
            refusal = refused_topics.get(record.topic)
            if refusal is not None:
                refused[index] = refusal
            else:
                accepted.append(index)
        self.produced += len(accepted)
        if self.hold and accepted:
            await self._held(
                [records[i] for i in accepted], accepted, timeout_seconds, on_ack, on_produced
            )
            return PublishResult(len(accepted), 0.0, refused)
        for index in accepted:
            self.records[records[index].topic].append(records[index])
        if on_ack is not None and accepted:
            on_ack(accepted)
        return PublishResult(len(accepted), 0.0, refused)

    async def _held(
        self,
        records: list[Record],
        indexes: list[int],
        timeout_seconds: float,
        on_ack: Callable[[Sequence[int]], None] | None,
        on_produced: Callable[[Sequence[tuple[int, asyncio.Future[None]]]], None] | None,
    ) -> None:
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held.append((records, outcome))
        self.holding.set()
        if on_produced is not None:
            on_produced([(i, outcome) for i in indexes])
        if on_ack is not None:
            outcome.add_done_callback(
                lambda f: on_ack(indexes) if not f.cancelled() and not f.exception() else None
            )
        try:
            async with asyncio.timeout(timeout_seconds):
                await asyncio.shield(outcome)
        except TimeoutError:
            raise PublishUnavailable(f"{len(records)} records held in flight") from None
        except RuntimeError as exc:
            raise PublishUnavailable(f"held records failed: {exc}") from None

    def release(self) -> None:
        """Store every held record and acknowledge it, as a cluster back in sync does."""
        held, self.held = self.held, []
        for records, outcome in held:
            for record in records:
                self.records[record.topic].append(record)
            outcome.set_result(None)

    def fail_held(self, reason: str = "the batch expired in the producer") -> None:
        """Fail every held record: nothing of them is stored."""
        held, self.held = self.held, []
        for _, outcome in held:
            outcome.set_exception(RuntimeError(reason))
