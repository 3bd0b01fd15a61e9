"""The seen-event window: which ``(accountId, eventId)`` pairs Kafka already acknowledged.

One window per receiver, bounded by count and by age, and each entry is a fixed-size
digest, so memory stays bounded whatever ALM sends and however long its ids are. It
lives in one process: it suppresses the re-sends ALM makes after a timeout or a 503 to
the same replica, not every duplicate (see the README's "Duplicates" section).

:class:`InFlight` covers the other half of a re-send: an event handed to Kafka by an
attempt that was answered 503 is still in the producer, and may yet be stored. A re-send
of it joins that attempt instead of producing it again.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from bridge.core.records import Record

DIGEST_BYTES: Final = 16


def digest(account_id: int, event_id: str) -> bytes:
    """The window's key for one event: BLAKE2b-128 of ``"accountId:eventId"`` in UTF-8.

    128 bits keep the chance that a new event is taken for a seen one negligible: with
    100,000 entries in a window, about 3e-34 per event looked up (n / 2**128), and a
    second preimage of BLAKE2b is not within anyone's reach, so a sender cannot make
    another event's id look seen either.
    """
    text = f"{account_id}:{event_id}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=DIGEST_BYTES).digest()


class SeenWindow:
    """Acknowledged event keys with count and age limits, oldest first.

    Each entry is a 16-byte digest (:func:`digest`), a key of a plain dict whose value is
    the time it was added (one float shared by the events added together), plus a
    reference in a deque that keeps the order of arrival: about 120 bytes per entry
    whatever the length of the id (``tests/unit/test_dedupe.py`` measures it). An entry
    keeps the time of its first acknowledgment, so the deque's order is the order of
    age and eviction is O(1) from its front.

    Entries acknowledged by this process and entries learnt from the fleet (the other
    replicas, or this one before a restart: :mod:`bridge.kafka.fleet`) share the one window,
    its count and its age; they are kept in two dicts only so that a duplicate can be
    told apart by where it was seen (the entries cost the same in either).
    """

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_age_seconds: float = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._seen: dict[bytes, float] = {}
        self._fleet: dict[bytes, float] = {}
        self._order: deque[bytes] = deque()
        self._newest = float("-inf")

    def __len__(self) -> int:
        return len(self._seen) + len(self._fleet)

    def known(self, account_id: int, event_ids: Iterable[str | None]) -> set[str]:
        """The ids among ``event_ids`` of one account that are in the window."""
        pairs = [(e, digest(account_id, e)) for e in event_ids if e is not None]
        found = self.known_keys(key for _, key in pairs)
        return {event_id for event_id, key in pairs if key in found}

    def known_keys(self, keys: Iterable[bytes | None]) -> set[bytes]:
        """The keys (:func:`digest`) among ``keys`` that are in the window."""
        seen = self._seen
        fleet = self._fleet
        if not seen and not fleet:
            return set()
        horizon = self._clock() - self.max_age_seconds
        found: set[bytes] = set()
        for key in keys:
            if key is not None:
                stamp = seen.get(key)
                if stamp is None and fleet:
                    stamp = fleet.get(key)
                if stamp is not None and stamp >= horizon:
                    found.add(key)
        return found

    def from_fleet(self, keys: Iterable[bytes]) -> set[bytes]:
        """The keys among ``keys`` (found in the window) that the fleet told this process."""
        fleet = self._fleet
        return {key for key in keys if key in fleet} if fleet else set()

    def add_many(self, account_id: int, event_ids: Iterable[str | None]) -> None:
        """Add the events of one account (``None`` ids are skipped)."""
        self.add_keys(None if e is None else digest(account_id, e) for e in event_ids)

    def add_keys(self, keys: Iterable[bytes | None]) -> None:
        """Add keys (:func:`digest`; ``None`` is skipped) acknowledged by this process now.

        A key already in the window keeps its place and its time: only an event published
        twice (two identical batches at once) is acknowledged twice.
        """
        self._add(keys, self._seen, self._clock())

    def learn(self, keys: Iterable[bytes], *, at: float) -> int:
        """Add keys another replica acknowledged at ``at`` (this window's clock).

        Returns how many were new. ``at`` is held between the newest entry's time and
        now, so that the window stays in order of age: an entry learnt a little after a
        newer local one lives that much longer, never shorter.
        """
        now = self._clock()
        if at < now - self.max_age_seconds:
            return 0
        return self._add(keys, self._fleet, min(now, max(at, self._newest)))

    def merge(self, entries: Iterable[tuple[float, bytes]]) -> int:
        """Add ``(time, key)`` entries learnt from the fleet, in any order (a loading).

        The window is rebuilt in order of age, and keeps the newest ``max_entries`` of
        what it held and what is added; expired entries are left out. Returns how many
        keys were new.
        """
        if self.max_entries <= 0:
            return 0
        now = self._clock()
        horizon = now - self.max_age_seconds
        seen, fleet = self._seen, self._fleet
        added: dict[bytes, float] = {}
        for stamp, key in entries:
            if stamp >= horizon and key not in seen and key not in fleet:
                earlier = added.get(key)
                if earlier is None or stamp < earlier:
                    added[key] = min(stamp, now)
        if not added:
            return 0
        everything = [(seen[k], k) for k in self._order if k in seen]
        everything += [(fleet[k], k) for k in self._order if k in fleet]
        everything += [(stamp, key) for key, stamp in added.items()]
        everything.sort(key=lambda entry: entry[0])
        kept = everything[-self.max_entries :]
        self._order = deque(key for _, key in kept)
        self._seen = {k: seen[k] for _, k in kept if k in seen}
        self._fleet = {k: s for s, k in kept if k not in self._seen}
        self._newest = max(self._newest, kept[-1][0])
        self._expire(now)
        return sum(1 for key in added if key in self._fleet)

    def _add(self, keys: Iterable[bytes | None], into: dict[bytes, float], stamp: float) -> int:
        if self.max_entries <= 0:
            return 0
        seen = self._seen
        fleet = self._fleet
        order = self._order
        self._expire(self._clock())
        count = 0
        for key in keys:
            if key is not None and key not in seen and key not in fleet:
                into[key] = stamp
                order.append(key)
                count += 1
        if count:
            self._newest = max(self._newest, stamp)
        while len(order) > self.max_entries:
            self._forget(order.popleft())
        return count

    def _forget(self, key: bytes) -> None:
        if self._seen.pop(key, None) is None:
            del self._fleet[key]

    def _expire(self, now: float) -> None:
        order = self._order
        horizon = now - self.max_age_seconds
        seen, fleet = self._seen, self._fleet
        while order:
            key = order[0]
            stamp = seen.get(key)
            if stamp is None:
                stamp = fleet[key]
            if stamp >= horizon:
                break
            self._forget(order.popleft())


class Newest:
    """The newest ``capacity`` ``(time, key)`` entries offered, in bounded memory.

    What a loading of the fleet topic keeps for one window before merging it: a min-heap
    on time, so an older entry offered when full costs one comparison.
    """

    __slots__ = ("_heap", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, stamp: float, key: bytes) -> None:
        heap = self._heap
        if len(heap) < self.capacity:
            heapq.heappush(heap, (stamp, key))
        elif heap and stamp > heap[0][0]:
            heapq.heapreplace(heap, (stamp, key))

    def take(self) -> list[tuple[float, bytes]]:
        """Everything kept, and the loader emptied."""
        taken, self._heap = self._heap, []
        return taken


Outcome = asyncio.Future[None]


class InFlight:
    """Events handed to the producer and not yet settled, by key (:func:`digest`).

    Each key points at the future of its record's outcome (shared by the records of one
    Kafka batch), and leaves when that future settles, acknowledged or failed. So its size
    is bounded by what the producer holds, which the producer's own buffer bounds; an
    entry is a key and a reference (about 100 bytes).

    A re-sent event whose key is here joins that outcome: one attempt chain, one copy in
    Kafka, unless the earlier attempt fails after all (then the key is gone and the next
    attempt produces the event again).
    """

    __slots__ = ("_pending", "_standins")

    def __init__(self) -> None:
        self._pending: dict[bytes, Outcome] = {}
        # Keys whose record in flight is not the event itself but what stands for it (its
        # dead letter): a re-send that joins it counts it as what it is.
        self._standins: dict[bytes, Record] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def get(self, key: bytes) -> Outcome | None:
        """The outcome an attempt still waits for, if ``key`` is in flight."""
        return self._pending.get(key)

    def standin(self, key: bytes) -> Record | None:
        """The record produced for ``key`` when it was not the event's own (a dead letter)."""
        return self._standins.get(key) if self._standins else None

    def tracker(
        self, keys: Sequence[bytes | None], standins: Sequence[Record] | None = None
    ) -> Callable[[Sequence[tuple[int, Outcome]]], None]:
        """A callback that records ``(index, outcome)`` pairs, indexes into ``keys``.

        ``standins`` are the records produced, when they stand for the events of ``keys``
        rather than being them (dead letters), in the same order.
        """
        return functools.partial(self.track, keys, standins=standins)

    def track(
        self,
        keys: Sequence[bytes | None],
        produced: Sequence[tuple[int, Outcome]],
        *,
        standins: Sequence[Record] | None = None,
    ) -> None:
        pending = self._pending
        by_outcome: dict[Outcome, list[bytes]] = {}
        for index, outcome in produced:
            key = keys[index]
            if key is None or outcome.done():
                continue
            pending[key] = outcome
            if standins is not None:
                self._standins[key] = standins[index]
            else:
                self._standins.pop(key, None)
            by_outcome.setdefault(outcome, []).append(key)
        for outcome, settled in by_outcome.items():
            outcome.add_done_callback(functools.partial(self._settled, settled))

    def _settled(self, keys: list[bytes], outcome: Outcome) -> None:
        pending = self._pending
        standins = self._standins
        for key in keys:
            if pending.get(key) is outcome:
                del pending[key]
                standins.pop(key, None)


# The fleet topic (bridge.kafka.fleet): one record per acknowledged event. Key: the event's
# 16-byte digest followed by the receiver's name (a receiver's window is its own, and
# compaction keeps one record per receiver and event); value: the Unix time in
# milliseconds of the acknowledgement, in ASCII digits. Anything else (the start-up's
# write probe, a tombstone, another program's record) is skipped by readers.
FLEET_PROBE_KEY: Final = b"\x00probe"


def fleet_record(receiver: str, key: bytes, acknowledged_ms: int) -> tuple[bytes, bytes]:
    """The ``(key, value)`` of the fleet record of one acknowledged event."""
    return key + receiver.encode("ascii"), str(acknowledged_ms).encode("ascii")


def read_fleet_record(key: bytes | None, value: bytes | None) -> tuple[str, bytes, int] | None:
    """``(receiver, digest, acknowledged_ms)`` of a fleet record, or None if it is not one."""
    if key is None or value is None or len(key) <= DIGEST_BYTES:
        return None
    if not 0 < len(value) <= 20 or not value.isdigit():
        return None
    try:
        receiver = key[DIGEST_BYTES:].decode("ascii")
    except UnicodeDecodeError:
        return None
    return receiver, key[:DIGEST_BYTES], int(value)
