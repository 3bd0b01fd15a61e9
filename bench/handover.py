"""The bridge with its records handed to aiokafka through the public API only, for measuring.

    python -m bench.handover {send_batch,send} serve

Starts ``alm-bridge`` with :class:`bridge.kafka.batching.Lanes` replaced by one of two designs
that use only aiokafka's documented API, so that ``make bench`` can weigh them against the
adapter the bridge ships (``python -m bench --handover ...``):

- ``send_batch``: the same lanes (one open batch per partition, filled by the records of
  concurrent requests, linger honoured), each handing its batches over with the public
  ``send_batch()`` from one long-lived task per lane instead of through the accumulator's
  members;
- ``send``: no lanes; each request's records go through ``send()`` one by one (one task per
  request), and the producer's own ``linger_ms`` does the batching.

Everything else (HTTP, parsing, routing, the deadline, the answers) is the bridge's own.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from typing import Any, Final

from bridge.core.records import Record
from bridge.kafka import batching, publisher

DESIGNS: Final = ("send_batch", "send")


class _TaskLane(batching.Lane):
    """A lane whose batches one long-lived task hands over with ``send_batch()``."""

    __slots__ = ("_task", "_wake")

    def __init__(self, lanes: batching.Lanes, topic: str, partition: int) -> None:
        super().__init__(lanes, topic, partition)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def pump(self) -> None:
        if self._closed:
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        producer = self._lanes.producer
        topic, partition = self._tp.topic, self._tp.partition
        while not self._closed:
            taken = self._next()
            if taken is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            builder, handle = taken
            try:
                # Waits while the accumulator holds a batch of this partition.
                outcome = await producer.send_batch(builder, topic, partition=partition)
            except asyncio.CancelledError:
                if not handle.done():
                    handle.set_exception(batching.LaneClosed(batching._CLOSED))
                raise
            except Exception as exc:  # the producer's failure is the batch's outcome
                if not handle.done():
                    handle.set_exception(exc)
                continue
            outcome.add_done_callback(functools.partial(batching._settle, handle))

    def close(self) -> None:
        super().close()
        if self._task is not None:
            self._task.cancel()


class _TaskLanes(batching.Lanes):
    def lane(self, topic: str, partition: int) -> batching.Lane:
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[topic, partition] = _TaskLane(self, topic, partition)
        return lane


class _SendLane:
    """Records for ``send()``: never full, nothing held back."""

    full: Final = False

    def __init__(self, lanes: _SendLanes, topic: str, partition: int) -> None:
        self._lanes = lanes
        self._topic = topic
        self._partition = partition

    def append(self, record: Record) -> asyncio.Future[None]:
        handle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle.add_done_callback(batching._retrieve)
        self._lanes.pending.append((self._topic, self._partition, record, handle))
        return handle


class _SendLanes:
    """Each flush sends what the request added, one ``send()`` per record, in one task."""

    def __init__(self, producer: Any, *, linger_seconds: float = 0.0) -> None:
        del linger_seconds  # the producer's own linger_ms applies
        self.producer = producer
        self.pending: list[tuple[str, int, Record, asyncio.Future[None]]] = []
        self._lanes: dict[tuple[str, int], _SendLane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def lane(self, topic: str, partition: int) -> _SendLane:
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[topic, partition] = _SendLane(self, topic, partition)
        return lane

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        task = asyncio.get_running_loop().create_task(self._send(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, pending: list[tuple[str, int, Record, asyncio.Future[None]]]) -> None:
        for topic, partition, record, handle in pending:
            try:
                outcome = await self.producer.send(
                    topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    partition=partition,
                )
            except Exception as exc:
                if not handle.done():
                    handle.set_exception(exc)
                continue
            outcome.add_done_callback(functools.partial(batching._settle, handle))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for *_, handle in self.pending:
            if not handle.done():
                handle.set_exception(batching.LaneClosed(batching._CLOSED))
        self.pending.clear()


def designed_lanes(design: str) -> type[batching.Lanes] | type[_SendLanes]:
    """The class that stands in for :class:`bridge.kafka.batching.Lanes` in ``design``."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; one of {', '.join(DESIGNS)}")
    return _TaskLanes if design == "send_batch" else _SendLanes


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in DESIGNS:
        raise SystemExit(f"usage: python -m bench.handover {{{','.join(DESIGNS)}}} serve")
    vars(publisher)["Lanes"] = designed_lanes(sys.argv.pop(1))
    from bridge.cli.main import main as bridge_main

    bridge_main()


if __name__ == "__main__":
    main()
