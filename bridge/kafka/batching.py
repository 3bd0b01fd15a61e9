"""Records of concurrent requests, coalesced into one Kafka batch per partition.

aiokafka's ``send()`` does for every record what only needs doing once per batch: a
metadata wait, a partition lookup that builds sets and lists, a future per record, and a
callback per record when the batch is acknowledged. Here each record goes straight into the
open batch of its partition (a :class:`Lane`). When a request has added its records, the
lanes it touched hand their batches to the producer's accumulator, one batch per partition
at a time, exactly as ``send_batch`` does; while the accumulator holds one, the next fills
with the records of the requests arriving meanwhile. That is the batching the producer does
itself, at a fraction of the cost per record. A record's outcome is its batch's outcome,
and the records of one partition reach Kafka in the order they were added.

The hand-over uses six members of aiokafka that are not part of its documented API: the
producer's ``_message_accumulator``, and on it ``_batches`` (the batches waiting per
partition), ``_append_batch`` (queue a closed batch), ``_closed`` and ``_exception`` (the
accumulator's state, checked before queueing), and a queued batch's ``_drain_waiter``
(resolved when the sender takes it). They were kept after measuring the documented API
instead (``python -m bench.cores --handover``, designs in ``bench/handover.py``): the same
lanes handing their batches to ``send_batch()`` from one long-lived task per lane cost a
median 13 % more CPU per event over 10 rounds and carried 10 % fewer events/s; one
``send()`` per record cost 25 % more. aiokafka is therefore pinned to one exact version
(``requirements.lock``); ``tests/unit/test_batching.py`` checks that those members exist on
the installed version, and ``tests/integration/test_lanes.py`` checks the behaviour the
bridge relies on against the real producer and broker (order, coalescing, failure, close,
linger).

Memory is bounded like the producer's own buffer: when a lane already holds a full batch
waiting for the accumulator, a request waits (within its deadline) for room before adding.

``linger_ms`` means what it means to Kafka's producers: a batch that is not full is handed
over once it is that old (0: as soon as the request that filled it has added its records),
so that more records can join it; a full batch goes at once.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import Any, Final

from aiokafka.errors import KafkaError, ProducerClosed
from aiokafka.structs import TopicPartition

from bridge.core.records import Record

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
    """One topic-partition: the batch filling now, and full ones waiting to be handed over."""

    __slots__ = (
        "_builder",
        "_closed",
        "_handle",
        "_lanes",
        "_opened_at",
        "_room",
        "_sealed",
        "_timer",
        "_tp",
        "_waiting",
    )

    def __init__(self, lanes: Lanes, topic: str, partition: int) -> None:
        self._lanes = lanes
        self._tp = TopicPartition(topic, partition)
        self._builder: Any = None
        self._handle: Handle | None = None
        self._sealed: collections.deque[tuple[Any, Handle]] = collections.deque()
        self._room: asyncio.Future[None] | None = None
        self._waiting = False
        self._closed = False
        self._opened_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def full(self) -> bool:
        """A full batch waits to be handed over: wait for :meth:`room` before appending."""
        return bool(self._sealed)

    def room(self) -> asyncio.Future[None]:
        """Resolved once no full batch waits any more."""
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    def append(self, record: Record) -> Handle:
        """Add ``record`` to the open batch; returns the future of that batch's outcome.

        Nothing is handed over here: :meth:`Lanes.flush` does that once a request has
        added all its records.
        """
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
            # Full: it waits for the accumulator, and the record starts the next batch
            # (the first record of a batch always fits, whatever its size).
            self._sealed.append((builder, handle))
            builder, handle = self._open()
            builder.append(
                timestamp=None, key=record.key, value=record.value, headers=record.headers
            )
        self._lanes.touched.add(self)
        return handle

    def _open(self) -> tuple[Any, Handle]:
        builder = self._lanes.producer.create_batch()
        loop = asyncio.get_running_loop()
        self._opened_at = loop.time()
        handle: Handle = loop.create_future()
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
            linger = self._lanes.linger_seconds
            if linger > 0:
                loop = asyncio.get_running_loop()
                due = self._opened_at + linger
                if loop.time() < due:
                    if self._timer is None:
                        self._timer = loop.call_at(due, self._lingered)
                    return None
            taken = (self._builder, self._handle)
            self._builder = self._handle = None
            return taken
        return None

    def _lingered(self) -> None:
        self._timer = None
        self.pump()

    def pump(self) -> None:
        """Hand batches to the accumulator while it holds none of this partition."""
        if self._closed or self._waiting:
            return
        accumulator = self._lanes.accumulator
        tp = self._tp
        while True:
            pending = accumulator._batches.get(tp)
            if pending:
                # One batch per partition waits in the accumulator; the next one goes in
                # when the sender has taken it (or it failed).
                self._waiting = True
                pending[-1]._drain_waiter.add_done_callback(self._drained)
                return
            taken = self._next()
            if taken is None:
                return
            builder, handle = taken
            builder.close()
            if accumulator._closed or accumulator._exception is not None:
                failure = accumulator._exception or ProducerClosed()
                handle.set_exception(failure)
                continue
            batch = accumulator._append_batch(builder, tp)
            batch.future.add_done_callback(functools.partial(_settle, handle))

    def _drained(self, _: asyncio.Future[Any]) -> None:
        self._waiting = False
        self.pump()

    def close(self) -> None:
        """Fail every batch not yet handed over."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while (taken := self._next()) is not None:
            if not taken[1].done():
                taken[1].set_exception(LaneClosed(_CLOSED))
        if self._room is not None and not self._room.done():
            self._room.set_result(None)


class Lanes:
    """The lanes of one producer."""

    def __init__(self, producer: Any, *, linger_seconds: float = 0.0) -> None:
        self.producer = producer
        self.linger_seconds = linger_seconds
        self.accumulator = producer._message_accumulator
        self._lanes: dict[tuple[str, int], Lane] = {}
        self.touched: set[Lane] = set()

    def lane(self, topic: str, partition: int) -> Lane:
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[topic, partition] = Lane(self, topic, partition)
        return lane

    def flush(self) -> None:
        """Hand over what the lanes touched since the last flush can send now."""
        touched, self.touched = self.touched, set()
        for lane in touched:
            lane.pump()

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()
        self.touched.clear()
