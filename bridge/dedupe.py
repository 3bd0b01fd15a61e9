"""The seen-event window: which ``(accountId, eventId)`` pairs Kafka already acknowledged.

Bounded by count and by age, so memory stays bounded whatever ALM sends. It lives in
one process: it suppresses the re-sends ALM makes after a timeout or a 503 to the same
replica, not every duplicate (see the README's "Duplicates" section).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable


class SeenWindow:
    """Insertion-ordered set of acknowledged event keys with count and age limits.

    Keys are one string, ``"accountId:eventId"``, rather than a tuple that would keep the
    request's own strings alive: exact, and about 60 bytes less per entry.
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
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: tuple[int, str]) -> bool:
        return bool(self.known(key[0], (key[1],)))

    def known(self, account_id: int, event_ids: Iterable[str | None]) -> set[str]:
        """The ids among ``event_ids`` of one account that are in the window."""
        seen = self._seen
        if not seen:
            return set()
        horizon = self._clock() - self.max_age_seconds
        prefix = f"{account_id}:"
        found: set[str] = set()
        for event_id in event_ids:
            if event_id is not None:
                stamp = seen.get(prefix + event_id)
                if stamp is not None and stamp >= horizon:
                    found.add(event_id)
        return found

    def add(self, key: tuple[int, str]) -> None:
        self.add_many(key[0], (key[1],))

    def add_many(self, account_id: int, event_ids: Iterable[str | None]) -> None:
        """Add the events of one account (``None`` ids are skipped)."""
        if self.max_entries <= 0:
            return
        now = self._clock()
        seen = self._seen
        prefix = f"{account_id}:"
        for event_id in event_ids:
            if event_id is not None:
                text = prefix + event_id
                seen[text] = now
                seen.move_to_end(text)
        self._evict(now)

    def _evict(self, now: float) -> None:
        seen = self._seen
        while len(seen) > self.max_entries:
            seen.popitem(last=False)
        horizon = now - self.max_age_seconds
        while seen:
            oldest = next(iter(seen.values()))
            if oldest >= horizon:
                break
            seen.popitem(last=False)
