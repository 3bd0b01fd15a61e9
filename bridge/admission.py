"""Admission: who may use the process's capacity, and for how long.

Two budgets, so that strangers cannot exhaust what ALM needs:

- :class:`BodyReads` bounds the request bodies being read *before* authentication (an
  HMAC signature covers the body, so a well-formed but wrong signature is only found out
  once the body is in). Each read has a deadline, and when every place is taken the oldest
  read makes room for the newcomer: a client that trickles its body keeps its place only
  until someone else needs it, while ALM's bodies arrive at once and leave within
  milliseconds.
- :class:`Slots` bounds the *authenticated* batches being published. It trips on real
  saturation: the hard limit, or the oldest batch in flight having waited longer than the
  queueing delay allowed, which is when newcomers would start to miss the deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from aiohttp import StreamReader

_CHUNK: Final = 64 * 1024
# A read younger than this is never cut short to make room: under a flood of new
# connections, every newcomer would otherwise evict the one before it.
MIN_READ_AGE_SECONDS: Final = 0.1

ReadFailure = Literal["timeout", "evicted", "busy"]


class BodyTooLarge(Exception):
    """The body is larger than the limit it is read under."""


class BodyNotRead(Exception):
    """The body did not arrive: too slow, cut short for a newer request, or no room."""

    def __init__(self, outcome: ReadFailure) -> None:
        super().__init__(outcome)
        self.outcome: ReadFailure = outcome


@dataclass(slots=True)
class _Read:
    started: float
    timeout: asyncio.Timeout | None = None
    evicted: bool = False


class BodyReads:
    """Request bodies being read before authentication: at most ``max_reads`` at once."""

    def __init__(
        self,
        max_reads: int,
        *,
        min_age_seconds: float = MIN_READ_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_reads = max_reads
        self.min_age_seconds = min_age_seconds
        self._clock = clock
        self._reads: dict[int, _Read] = {}  # insertion order: oldest first
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._reads)

    def _admit(self) -> tuple[int, _Read]:
        now = self._clock()
        if len(self._reads) >= self.max_reads:
            oldest_id, oldest = next(iter(self._reads.items()))
            if now - oldest.started < self.min_age_seconds:
                raise BodyNotRead("busy")
            del self._reads[oldest_id]
            oldest.evicted = True
            if oldest.timeout is not None:
                oldest.timeout.reschedule(asyncio.get_running_loop().time())
        read_id = next(self._ids)
        read = self._reads[read_id] = _Read(now)
        return read_id, read

    async def read(self, content: StreamReader, *, limit: int, timeout_seconds: float) -> bytes:
        """The whole body, at most ``limit`` bytes, within ``timeout_seconds``.

        Raises :class:`BodyTooLarge` or :class:`BodyNotRead`. A body that has fully
        arrived with the headers (the usual case) is taken without using a place.
        """
        if content.is_eof():
            body = content.read_nowait()
            if len(body) > limit:
                raise BodyTooLarge
            return body
        read_id, read = self._admit()
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout_seconds) as timeout:
                read.timeout = timeout
                if read.evicted:  # pragma: no cover - evicted before its first wait
                    timeout.reschedule(asyncio.get_running_loop().time())
                async for chunk in content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise BodyTooLarge
                    chunks.append(chunk)
        except TimeoutError:
            raise BodyNotRead("evicted" if read.evicted else "timeout") from None
        finally:
            self._reads.pop(read_id, None)
        return b"".join(chunks)


@dataclass(slots=True)
class Slots:
    """Authenticated batches in flight: bounded in number and in how long they queue."""

    max_inflight: int
    max_queue_delay_seconds: float
    clock: Callable[[], float] = time.monotonic
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    _started: dict[int, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self._started)

    def oldest_age(self) -> float:
        """Seconds the oldest batch in flight has been in flight (0 when none is)."""
        if not self._started:
            return 0.0
        return self.clock() - next(iter(self._started.values()))

    def saturated(self) -> str | None:
        """Why a new batch must wait (``limit`` or ``delay``), or None when it may enter."""
        if len(self._started) >= self.max_inflight:
            return "limit"
        if self._started and self.oldest_age() > self.max_queue_delay_seconds:
            return "delay"
        return None

    def enter(self) -> int:
        slot = next(self._ids)
        self._started[slot] = self.clock()
        self.idle.clear()
        return slot

    def leave(self, slot: int) -> None:
        self._started.pop(slot, None)
        if not self._started:
            self.idle.set()
