"""An in-memory :class:`bridge.sink.Sink` for tests that check statuses, not Kafka.

It stores every record it is given, per topic, and can be told to refuse topics for good
or to be unreachable, so the HTTP contract can be exercised without a broker. Tests that
must see what really lands in Kafka use the real broker instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Sequence

from bridge.errors import PublishUnavailable
from bridge.routing import Record
from bridge.sink import PublishResult, Refusal


class MemorySink:
    """Records kept in memory; ``refuse`` and ``reachable`` steer the outcomes."""

    def __init__(self) -> None:
        self.records: defaultdict[str, list[Record]] = defaultdict(list)
        self.refuse: dict[str, Refusal] = {}
        self.reachable = True
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
    ) -> PublishResult:
        refused_topics = await self.prepare(
            {r.topic for r in records}, timeout_seconds=timeout_seconds
        )
        refused: dict[int, Refusal] = {}
        acked: list[int] = []
        for index, record in enumerate(records):
            refusal = refused_topics.get(record.topic)
            if refusal is not None:
                refused[index] = refusal
            else:
                self.records[record.topic].append(record)
                acked.append(index)
        if on_ack is not None and acked:
            on_ack(acked)
        return PublishResult(len(acked), 0.0, refused)
