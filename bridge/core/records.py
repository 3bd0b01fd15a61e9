"""The record the Kafka layer moves: what the router makes, the sink publishes and the
duplicates and dead-letter code keep. Its own module, so that the Kafka side needs no
router to know it."""

from __future__ import annotations

from typing import Final, NamedTuple

from bridge.core.reasons import DeadLetterReason

Headers = list[tuple[str, bytes]]

_HEADERS_MARGIN: Final = 65_536


class Record(NamedTuple):
    """One Kafka record ready to produce (a named tuple: one is made per event)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    event_id: str | None = None
    family: str = "other"
    dead_letter: bool = False
    reason: DeadLetterReason | None = None
    # The event's own time (RFC 3339 UTC), for the freshness histogram.
    time: str | None = None

    @property
    def size(self) -> int:
        """Bytes the record occupies, close to what the broker counts against its limit."""
        header_bytes = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.value) + len(self.key or b"") + header_bytes + 64

    def exceeds(self, limit: int) -> bool:
        """``size > limit``, measured only when the value and key come near the limit.

        The headers are the bridge's own (CloudEvents, ids, a bounded error text), far
        below the margin, so the check is exact and costs nothing for ordinary records.
        """
        near = len(self.value) + len(self.key or b"") + _HEADERS_MARGIN > limit
        return near and self.size > limit
