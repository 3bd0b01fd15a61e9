"""Records of concurrent requests, coalesced into one Kafka batch per partition.

aiokafka's ``send()`` does for every record what only needs doing once per batch: a
metadata wait, a partition lookup that builds sets and lists, a future per record, and a
callback per record when the batch is acknowledged. Here each record goes straight into the
open batch of its partition (a :class:`Lane`), and each lane has one task that hands its
batches to the producer (``send_batch``) one at a time; while the producer holds one, the
next fills with the records of the requests arriving meanwhile. That is the batching the
producer's own accumulator does, at a fraction of the cost per record. A record's outcome
is its batch's outcome, and records of one partition reach Kafka in the order they were
appended.

Memory is bounded like the producer's own buffer: when a lane already holds a full batch
waiting for the producer, a request waits (within its deadline) for room before adding.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import Any, Final

from aiokafka.errors import KafkaError

from bridge.errors import InvalidBatch
from bridge.routing import Record

Handle = asyncio.Future[None]

_CLOSED: Final = "the Kafka producer was stopped before the batch was handed to it"


class LaneClosed(KafkaError):  # type: ignore[misc]
    """The lane's producer went away before this batch was handed to it."""


def _retrieve(future: Handle) -> None:
    # Outcomes nobody waits for any more (answered 503 already) must not be logged as
    # "exception never retrieved".
    if not future.cancelled():
        future.exception()


def _settle(handle: Handle, outcome: asyncio.Future[Any]) -> None:
    if handle.done():
        return
    if outcome.cancelled():
        handle.set_exception(LaneClosed(_CLOSED))
        return
    failure = outcome.exception()
    if failure is None:
        handle.set_result(None)
    else:
        handle.set_exception(failure)


class Lane:
    """One topic-partition: the batch filling now, full ones waiting, and their sender."""

    __slots__ = (
        "_builder",
        "_handle",
        "_lanes",
        "_room",
        "_sealed",
        "_task",
        "partition",
        "topic",
    )

    def __init__(self, lanes: Lanes, topic: str, partition: int) -> None:
        self._lanes = lanes
        self.topic = topic
        self.partition = partition
        self._builder: Any = None
        self._handle: Handle | None = None
        self._sealed: collections.deque[tuple[Any, Handle]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None

    @property
    def full(self) -> bool:
        """A full batch waits for the producer: wait for :meth:`room` before appending."""
        return bool(self._sealed)

    def room(self) -> asyncio.Future[None]:
        """Resolved once no full batch waits any more."""
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    def append(self, record: Record) -> Handle:
        """Add ``record`` to the open batch; returns the future of that batch's outcome."""
        handle = self._handle
        builder = self._builder
        if builder is None or handle is None:
            builder, handle = self._open()
        if (
            builder.append(
                timestamp=None, key=record.key, value=record.value, headers=record.headers
            )
            is None
        ):
            # Full: it waits for the producer, and the record starts the next batch (the
            # first record of a batch always fits, whatever its size).
            self._sealed.append((builder, handle))
            builder, handle = self._open()
            builder.append(
                timestamp=None, key=record.key, value=record.value, headers=record.headers
            )
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send())
        return handle

    def _open(self) -> tuple[Any, Handle]:
        builder = self._lanes.producer.create_batch()
        handle: Handle = asyncio.get_running_loop().create_future()
        handle.add_done_callback(_retrieve)
        self._builder, self._handle = builder, handle
        return builder, handle

    def _next(self) -> tuple[Any, Handle] | None:
        if self._sealed:
            taken = self._sealed.popleft()
            if not self._sealed and self._room is not None:
                if not self._room.done():
                    self._room.set_result(None)
                self._room = None
            return taken
        if self._builder is not None and self._handle is not None:
            taken = (self._builder, self._handle)
            self._builder = self._handle = None
            return taken
        return None

    async def _send(self) -> None:
        producer = self._lanes.producer
        try:
            while (taken := self._next()) is not None:
                builder, handle = taken
                builder.close()
                try:
                    outcome = await producer.send_batch(
                        builder, self.topic, partition=self.partition
                    )
                except asyncio.CancelledError:
                    if not handle.done():
                        handle.set_exception(LaneClosed(_CLOSED))
                    raise
                except Exception as exc:  # every failure belongs to the batch's requests
                    if not handle.done():
                        handle.set_exception(exc)
                    continue
                outcome.add_done_callback(functools.partial(_settle, handle))
        finally:
            self._task = None

    def close(self) -> None:
        """Fail every batch not yet handed to the producer, and stop the sender."""
        if self._task is not None:
            self._task.cancel()
        while (taken := self._next()) is not None:
            if not taken[1].done():
                taken[1].set_exception(LaneClosed(_CLOSED))
        if self._room is not None and not self._room.done():
            self._room.set_result(None)


class Lanes:
    """The lanes of one producer."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._lanes: dict[tuple[str, int], Lane] = {}

    def lane(self, topic: str, partition: int) -> Lane:
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[topic, partition] = Lane(self, topic, partition)
        return lane

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()


def raise_too_large(record: Record, max_request_size: int) -> None:
    """The producer refuses a record larger than one request: say so before appending."""
    raise InvalidBatch(
        f"a record of {record.size} bytes is larger than a Kafka request "
        f"({max_request_size} bytes)",
        code="record_too_large",
    )
