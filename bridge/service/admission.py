"""Admission: who may use the process's capacity, and for how long.

Three budgets, so that strangers cannot exhaust what ALM needs, and no receiver can
exhaust what another needs:

- :class:`ByteBudget` holds every byte kept for a request that has not authenticated:
  request headers still arriving (:mod:`bridge.service.app`'s connection handler charges them),
  bodies being read before verification, and bodies being inflated. A body is charged
  its ``Content-Length`` before the first byte is read (a chunked body as it arrives).
  When the budget is full, the oldest holder (older than :data:`MIN_READ_AGE_SECONDS`)
  is cut short to make room; when every holder is young, the newcomer is refused.
- :class:`BodyReads` bounds the request bodies being read *before* authentication (an
  HMAC signature covers the body, so a well-formed but wrong signature is only found out
  once the body is in), in number and, through the byte budget, in bytes. Each read has a
  deadline, and the oldest read makes room for a newcomer: a client that trickles its body
  keeps its place only until someone else needs it, while ALM's bodies arrive at once and
  leave within milliseconds.
- :class:`Slots` bounds the *authenticated* batches being published, in number and in
  estimated memory (:func:`batch_cost`), with a share of both kept for each receiver
  while others use the rest. It trips on real saturation too: the oldest batch in flight
  having waited longer than the queueing delay allowed *while the event loop lags*
  (:class:`LoopLag`), which is when newcomers would start to miss the deadline because the
  process has no CPU left; then the receivers holding more than an equal part of the
  batches in flight wait first. A batch that is old because Kafka is slow or down is not
  saturation: those are answered 503 by the publish deadline, not 429.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from aiohttp import StreamReader

from bridge.core.reasons import BodyReadCut

_CHUNK: Final = 64 * 1024
# A read younger than this is never cut short to make room: under a flood of new
# connections, every newcomer would otherwise evict the one before it.
MIN_READ_AGE_SECONDS: Final = 0.1

# The event loop lags this much (or more) only when it has more ready work than CPU.
SATURATED_LAG_SECONDS: Final = 0.1

Saturation = Literal["limit", "share", "delay"]


class BodyTooLarge(Exception):
    """The body is larger than the limit it is read under."""


class BodyNotRead(Exception):
    """The body did not arrive: too slow, cut short for a newer request, or no room."""

    def __init__(self, outcome: BodyReadCut) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class BudgetFull(Exception):
    """No room in the byte budget, and every holder is too young to be cut short."""


@dataclass(slots=True, eq=False)
class Charge:
    """The bytes one request holds in a :class:`ByteBudget`; ``on_evict`` cuts it short."""

    key: int
    started: float
    on_evict: Callable[[], None]
    nbytes: int = 0
    evicted: bool = False


class ByteBudget:
    """Bytes held for requests that have not authenticated, at most ``capacity``."""

    def __init__(
        self,
        capacity: int,
        *,
        min_age_seconds: float = MIN_READ_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.min_age_seconds = min_age_seconds
        self.used = 0
        self.evictions = 0
        self._clock = clock
        self._holders: dict[int, Charge] = {}  # insertion order: oldest first
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._holders)

    def open(self, on_evict: Callable[[], None]) -> Charge:
        """A new holder of no bytes yet; :meth:`grow` charges it, :meth:`release` ends it."""
        charge = Charge(next(self._ids), self._clock(), on_evict)
        self._holders[charge.key] = charge
        return charge

    def grow(self, charge: Charge, nbytes: int) -> None:
        """Charge ``nbytes`` more to ``charge``, cutting older holders short to make room.

        Raises :class:`BudgetFull` when the room cannot be made: the holders old enough to
        be cut hold too little, or ``charge`` itself was cut.
        """
        if charge.evicted or charge.key not in self._holders:
            raise BudgetFull
        excess = self.used + nbytes - self.capacity
        if excess > 0:
            self._make_room(excess, keep=charge)
        charge.nbytes += nbytes
        self.used += nbytes

    def _make_room(self, excess: int, *, keep: Charge) -> None:
        horizon = self._clock() - self.min_age_seconds
        victims: list[Charge] = []
        freed = 0
        for holder in self._holders.values():
            if freed >= excess or holder.started > horizon:
                break
            if holder is not keep and holder.nbytes:
                victims.append(holder)
                freed += holder.nbytes
        if freed < excess:
            raise BudgetFull
        for victim in victims:
            self.evict(victim)

    def evict(self, charge: Charge) -> None:
        """Cut ``charge`` short: its bytes are free at once, its holder is told."""
        if self._holders.pop(charge.key, None) is None:
            return
        self.used -= charge.nbytes
        charge.nbytes = 0
        charge.evicted = True
        self.evictions += 1
        charge.on_evict()

    def release(self, charge: Charge) -> None:
        if self._holders.pop(charge.key, None) is not None:
            self.used -= charge.nbytes
            charge.nbytes = 0


@dataclass(slots=True)
class _Read:
    timeout: asyncio.Timeout | None = None
    evicted: bool = False

    def cut(self) -> None:
        self.evicted = True
        if self.timeout is not None:
            self.timeout.reschedule(asyncio.get_running_loop().time())


class BodyReads:
    """Request bodies being read before authentication: at most ``max_reads`` at once,
    holding at most what ``budget`` allows."""

    def __init__(
        self,
        max_reads: int,
        budget: ByteBudget | None = None,
        *,
        min_age_seconds: float = MIN_READ_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_reads = max_reads
        self.min_age_seconds = min_age_seconds
        self._clock = clock
        self.budget = (
            budget
            if budget is not None
            else ByteBudget(1 << 62, min_age_seconds=min_age_seconds, clock=clock)
        )
        self._reads: dict[int, Charge] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._reads)

    def _admit(self, read: _Read) -> Charge:
        if len(self._reads) >= self.max_reads:
            oldest = next(iter(self._reads.values()))
            if self._clock() - oldest.started < self.min_age_seconds:
                raise BodyNotRead(BodyReadCut.BUSY)
            self._reads.pop(oldest.key, None)
            self.budget.evict(oldest)
        charge = self.budget.open(read.cut)
        self._reads[charge.key] = charge
        return charge

    def _grow(self, charge: Charge, nbytes: int) -> None:
        try:
            self.budget.grow(charge, nbytes)
        except BudgetFull:
            raise BodyNotRead(BodyReadCut.EVICTED if charge.evicted else BodyReadCut.BUSY) from None

    async def read(
        self,
        content: StreamReader,
        *,
        limit: int,
        timeout_seconds: float,
        expected: int | None = None,
        authenticated: bool = False,
    ) -> bytes:
        """The whole body, at most ``limit`` bytes, within ``timeout_seconds``.

        ``expected`` (the ``Content-Length``) is charged to the byte budget before the
        first byte is read; without it the body is charged as it arrives. Raises
        :class:`BodyTooLarge` or :class:`BodyNotRead`. A body that has fully arrived with
        the headers (the usual case) is taken without using a place, and so is the body
        of an ``authenticated`` request (its headers proved who sent it; its bytes are
        charged to its publishing slot instead).
        """
        if content.is_eof():
            body = content.read_nowait()
            if len(body) > limit:
                raise BodyTooLarge
            return body
        read = _Read()
        if authenticated:
            return await _read_all(content, read, limit=limit, timeout_seconds=timeout_seconds)
        charge = self._admit(read)

        def grow(size: int) -> None:
            if size > charge.nbytes:
                self._grow(charge, max(size - charge.nbytes, _CHUNK))

        try:
            self._grow(charge, min(limit, expected) if expected is not None else _CHUNK)
            return await _read_all(
                content, read, limit=limit, timeout_seconds=timeout_seconds, grow=grow
            )
        finally:
            self._reads.pop(charge.key, None)
            self.budget.release(charge)


async def _read_all(
    content: StreamReader,
    read: _Read,
    *,
    limit: int,
    timeout_seconds: float,
    grow: Callable[[int], None] | None = None,
) -> bytes:
    """Every chunk of ``content`` within ``timeout_seconds``; ``grow`` is told the size
    read so far before each chunk is kept."""
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
                if grow is not None:
                    grow(size)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyNotRead(BodyReadCut.EVICTED if read.evicted else BodyReadCut.TIMEOUT) from None
    return b"".join(chunks)


def inflate(body: bytes, encoding: str, *, limit: int, max_ratio: int, budget: ByteBudget) -> bytes:
    """``body`` inflated (``gzip`` or ``deflate``), in steps charged to ``budget``.

    Raises :class:`BodyTooLarge` past ``limit`` bytes or ``max_ratio`` times the
    compressed size, :class:`ValueError` for a stream that is not valid, and
    :class:`BodyNotRead` (``busy``) when the budget has no room.
    """
    # 16 + MAX_WBITS: a gzip header and trailer; MAX_WBITS alone: a zlib stream.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    bound = min(limit, max(len(body), 1) * max_ratio)
    charge = budget.open(lambda: None)
    parts: list[bytes] = []
    size = 0
    try:
        pending = body
        while True:
            try:
                budget.grow(charge, _CHUNK)
            except BudgetFull:
                raise BodyNotRead(BodyReadCut.BUSY) from None
            try:
                part = inflater.decompress(pending, _CHUNK)
            except zlib.error as exc:
                raise ValueError(str(exc)) from None
            size += len(part)
            if size > bound:
                raise BodyTooLarge
            parts.append(part)
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and not part):
                break
        if not inflater.eof:
            raise ValueError("the compressed stream ends early")
        if inflater.unused_data.strip():
            raise ValueError("data after the end of the compressed stream")
        return b"".join(parts)
    finally:
        budget.release(charge)


class LoopLag:
    """How late the event loop runs a callback that is due: the sign of CPU saturation.

    :meth:`run` sleeps ``interval_seconds`` again and again and measures how much later
    than asked it wakes up; :attr:`recent` is the largest lag of the last
    ``window_seconds``.
    """

    def __init__(
        self,
        *,
        interval_seconds: float = 0.05,
        window_seconds: float = 1.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``clock`` (default: the event loop's) and ``sleep`` are what tests drive."""
        self.interval_seconds = interval_seconds
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    @property
    def recent(self) -> float:
        return max((lag for _, lag in self._samples), default=0.0)

    def add(self, now: float, lag: float) -> None:
        samples = self._samples
        samples.append((now, lag))
        while samples and samples[0][0] < now - self.window_seconds:
            samples.popleft()

    async def run(self, observe: Callable[[float], None] | None = None) -> None:
        clock = self._clock or asyncio.get_running_loop().time
        while True:
            asked = clock() + self.interval_seconds
            await self._sleep(self.interval_seconds)
            now = clock()
            lag = max(0.0, now - asked)
            self.add(now, lag)
            if observe is not None:
                observe(lag)


@dataclass(slots=True)
class _Batch:
    started: float
    receiver: str
    cost: int


@dataclass(slots=True)
class Slots:
    """Authenticated batches in flight: bounded in number, in estimated memory and in how
    long they queue, with a share of each kept for every receiver.

    With several ``receivers``, each keeps ``1 / (2 * receivers)`` of the batches and of
    the bytes for itself: another receiver takes from the rest only what leaves every
    receiver's unused share free. Half of the capacity is shared first come, first served,
    so a receiver alone still has more than half of it.
    """

    max_inflight: int
    max_queue_delay_seconds: float
    max_bytes: int = 1 << 62
    receivers: tuple[str, ...] = ()
    lag: LoopLag = field(default_factory=LoopLag)
    clock: Callable[[], float] = time.monotonic
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    _batches: dict[int, _Batch] = field(default_factory=dict)
    _count: collections.Counter[str] = field(default_factory=collections.Counter)
    _bytes: collections.Counter[str] = field(default_factory=collections.Counter)
    _total_bytes: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def bytes_in_flight(self) -> int:
        return self._total_bytes

    def _reserved(self, capacity: int) -> int:
        return capacity // (2 * len(self.receivers)) if len(self.receivers) > 1 else 0

    def reachable_bytes(self) -> int:
        """The most one batch may cost: all but the other receivers' kept shares."""
        return self.max_bytes - max(0, len(self.receivers) - 1) * self._reserved(self.max_bytes)

    def oldest_age(self) -> float:
        """Seconds the oldest batch in flight has been in flight (0 when none is)."""
        if not self._batches:
            return 0.0
        return self.clock() - next(iter(self._batches.values())).started

    def _within_share(
        self,
        receiver: str,
        amount: int,
        used: collections.Counter[str],
        total: int,
        capacity: int,
    ) -> bool:
        reserved = self._reserved(capacity)
        if used[receiver] + amount <= reserved:
            return True
        owed = sum(max(0, reserved - used[other]) for other in self.receivers if other != receiver)
        return capacity - total - amount >= owed

    def saturated(self, receiver: str = "", cost: int = 0) -> Saturation | None:
        """Why a new batch of ``receiver`` costing ``cost`` bytes must wait, or None.

        ``limit``: the process's bound; ``share``: room kept for other receivers;
        ``delay``: the process is out of CPU and this receiver holds at least an equal
        part of the batches in flight.
        """
        total = len(self._batches)
        if total >= self.max_inflight or self._total_bytes + cost > self.max_bytes:
            return "limit"
        if not (
            self._within_share(receiver, 1, self._count, total, self.max_inflight)
            and self._within_share(receiver, cost, self._bytes, self._total_bytes, self.max_bytes)
        ):
            return "share"
        if (
            total
            and self.oldest_age() > self.max_queue_delay_seconds
            and self.lag.recent >= SATURATED_LAG_SECONDS
        ):
            mine = self._count[receiver]
            active = len(self._count) + (0 if mine else 1)
            if mine * active >= total:
                return "delay"
        return None

    def enter(self, receiver: str = "", cost: int = 0) -> int:
        slot = next(self._ids)
        self._batches[slot] = _Batch(self.clock(), receiver, cost)
        self._count[receiver] += 1
        self._bytes[receiver] += cost
        self._total_bytes += cost
        self.idle.clear()
        return slot

    def resize(self, slot: int, cost: int) -> None:
        """Charge ``slot`` ``cost`` bytes instead of what it entered with (a batch whose
        estimate is known only once its body has been read)."""
        batch = self._batches[slot]
        change = cost - batch.cost
        batch.cost = cost
        self._bytes[batch.receiver] += change
        self._total_bytes += change

    def leave(self, slot: int) -> None:
        batch = self._batches.pop(slot, None)
        if batch is not None:
            self._total_bytes -= batch.cost
            for counter, amount in ((self._count, 1), (self._bytes, batch.cost)):
                counter[batch.receiver] -= amount
                if counter[batch.receiver] <= 0:
                    del counter[batch.receiver]
        if not self._batches:
            self.idle.set()
