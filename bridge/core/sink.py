"""What the bridge needs from Kafka, as a protocol: the seam between the core and aiokafka.

:class:`bridge.kafka.publisher.Publisher` is the implementation that talks to a real cluster.
The ingest path and the HTTP handlers depend only on :class:`Sink`, so tests of statuses
and admission can run against an in-memory implementation (``tests/memory_sink.py``)
while the tests that must see real records keep the real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bridge.core.reasons import KafkaRefusal
from bridge.core.records import Record


@dataclass(frozen=True, slots=True)
class Refusal:
    """Kafka refused a record for good: a short closed reason and Kafka's own words."""

    reason: KafkaRefusal
    detail: str


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Every record was acknowledged or refused for good: how many, and how long it took.

    ``refused`` maps the index of each record Kafka will never take to why.
    """

    records: int
    duration_seconds: float
    refused: Mapping[int, Refusal] = field(default_factory=dict)


class Sink(Protocol):
    """Where records go. Every method is bounded by the timeout it is given."""

    @property
    def connected(self) -> bool:
        """Whether the cluster answered the last time it was asked."""
        ...

    @property
    def started(self) -> bool:
        """Whether :meth:`start` succeeded (and :meth:`stop` was not called since)."""
        ...

    async def start(self, timeout_seconds: float) -> None:
        """Connect; raises ``KafkaStartError`` (fatal) or ``PublishUnavailable`` (retry)."""
        ...

    async def stop(self, timeout_seconds: float) -> None:
        """Flush and disconnect; safe to call twice or after a failed start."""
        ...

    async def check(self, timeout_seconds: float) -> bool:
        """Ask the cluster whether it is reachable; updates :attr:`connected`."""
        ...

    async def prepare(
        self, topics: Collection[str], *, timeout_seconds: float
    ) -> dict[str, Refusal]:
        """Make sure ``topics`` exist; returns the ones Kafka refuses for good, with why."""
        ...

    async def publish(
        self,
        records: Sequence[Record],
        *,
        timeout_seconds: float,
        on_ack: Callable[[Sequence[int]], None] | None = None,
        on_produced: Callable[[Sequence[tuple[int, asyncio.Future[None]]]], None] | None = None,
    ) -> PublishResult:
        """Produce in order; every record acknowledged or refused, else ``PublishUnavailable``.

        ``on_ack`` learns the indexes of acknowledged records on every path;
        ``on_produced`` learns, before the wait, each produced record's outcome future,
        which settles also after ``PublishUnavailable`` was raised.
        """
        ...
