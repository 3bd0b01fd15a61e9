"""From verified bytes to records acknowledged by Kafka, for one receiver.

Data flows one way: verified body -> batch -> records -> duplicates left out ->
publisher -> summary. Errors are raised as the narrow classes of :mod:`bridge.errors`
and turned into HTTP statuses by :mod:`bridge.handlers` only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from bridge.alm import Batch, Challenge, Limits, parse_body
from bridge.dedupe import SeenWindow
from bridge.errors import AccountNotAccepted, InvalidBatch
from bridge.logs import get_logger
from bridge.metrics import Metrics
from bridge.publisher import Publisher
from bridge.receivers import Receiver
from bridge.routing import Record, Router
from bridge.settings import Settings

log = get_logger("bridge.ingest")
_TRUNCATED: Final = "dlq_truncated_from_bytes"


@dataclass(slots=True)
class Summary:
    """What happened to one batch; the 200 response body."""

    account_id: int | None = None
    received: int = 0
    published: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    dead_letter_reason: str | None = None
    families: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "received": self.received,
            "published": self.published,
            "duplicates": self.duplicates,
            "deadLettered": self.dead_lettered,
        }
        if self.filtered:
            body["filtered"] = self.filtered
        if self.dead_letter_reason is not None:
            body["deadLetterReason"] = self.dead_letter_reason
        return body

    @property
    def outcome(self) -> str:
        if self.dead_letter_reason is not None:
            return "dead_lettered"
        if self.published == 0 and self.duplicates > 0:
            return "duplicate"
        return "published"


class Ingestor:
    """Turns a receiver's verified bodies into acknowledged Kafka records."""

    def __init__(
        self,
        *,
        settings: Settings,
        receivers: Mapping[str, Receiver],
        publisher: Publisher,
        metrics: Metrics,
        seen: SeenWindow | None = None,
    ) -> None:
        self.settings = settings
        self.receivers = dict(receivers)
        self.routers = {name: Router(r.routing) for name, r in receivers.items()}
        self.publisher = publisher
        self.metrics = metrics
        self.seen = seen or SeenWindow(
            max_entries=settings.dedupe_max_entries,
            max_age_seconds=settings.dedupe_max_age_seconds,
        )
        self.limits = Limits(
            max_events=settings.max_events_per_batch,
            max_depth=settings.max_json_depth,
            max_string_chars=settings.max_string_chars,
        )
        self.timeout_seconds = settings.publish_timeout_ms / 1000

    def parse(self, body: bytes) -> Batch | Challenge:
        return parse_body(body, self.limits)

    async def ingest(
        self, receiver: Receiver, body: bytes, *, deadline: float
    ) -> Summary | Challenge:
        """Publish a verified body, or return the challenge it carries.

        Raises InvalidBatch under the "reject" policy (and for a malformed challenge),
        AccountNotAccepted, and PublishUnavailable.
        """
        router = self.routers[receiver.name]
        try:
            parsed = self.parse(body)
            if isinstance(parsed, Challenge):
                return parsed
            if receiver.accounts and parsed.account_id not in receiver.accounts:
                raise AccountNotAccepted(
                    f"accountId {parsed.account_id} is not accepted by receiver {receiver.name!r}"
                )
            plan = router.plan(parsed)
            limit = self.settings.max_record_bytes
            oversized = [r for r in plan.records if r.exceeds(limit)]
            if oversized:
                raise InvalidBatch(
                    f"an event makes a record of {oversized[0].size} bytes, more than "
                    f"{self.settings.max_record_bytes}",
                    code="record_too_large",
                )
        except InvalidBatch as exc:
            if receiver.dead_letter_policy == "reject" or exc.code == "invalid_challenge":
                raise
            return await self._dead_letter(receiver, router, body, exc, deadline)
        summary = Summary(
            account_id=parsed.account_id, received=len(parsed.events), filtered=plan.filtered
        )
        fresh = self._without_duplicates(parsed.account_id, plan.records, summary)
        if fresh:
            try:
                await self._publish(parsed.account_id, fresh, deadline)
            except InvalidBatch as exc:  # the cluster refused a record for its size
                if receiver.dead_letter_policy == "reject":
                    raise
                return await self._dead_letter(receiver, router, body, exc, deadline)
        for record in fresh:
            if record.dead_letter:
                summary.dead_lettered += 1
                self.metrics.dead_letters.labels(receiver.name, "unlisted_event").inc()
            else:
                summary.published += 1
                summary.families[record.family] = summary.families.get(record.family, 0) + 1
        for fam, count in summary.families.items():
            self.metrics.events_published.labels(receiver.name, fam).inc(count)
        if summary.duplicates:
            self.metrics.duplicates.labels(receiver.name).inc(summary.duplicates)
        if summary.dead_lettered:
            log.warning(
                "events_dead_lettered",
                reason="unlisted_event",
                count=summary.dead_lettered,
                topic=receiver.routing.dead_letter_topic,
            )
        self.metrics.batch_events.observe(summary.received)
        return summary

    def _without_duplicates(
        self, account_id: int, records: tuple[Record, ...], summary: Summary
    ) -> list[Record]:
        fresh: list[Record] = []
        in_batch = self.seen.known(account_id, [r.event_id for r in records])
        for record in records:
            event_id = record.event_id
            if event_id is not None:
                if event_id in in_batch:
                    summary.duplicates += 1
                    continue
                in_batch.add(event_id)
            fresh.append(record)
        return fresh

    async def _publish(self, account_id: int, records: list[Record], deadline: float) -> None:
        seen = self.seen

        def mark_seen(indexes: Sequence[int]) -> None:
            seen.add_many(account_id, [records[i].event_id for i in indexes])

        timeout = max(0.0, deadline - time.monotonic())
        result = await self.publisher.publish(records, timeout_seconds=timeout, on_ack=mark_seen)
        self.metrics.publish_duration.observe(result.duration_seconds)
        self.metrics.last_publish.set(time.time())

    async def _dead_letter(
        self,
        receiver: Receiver,
        router: Router,
        body: bytes,
        exc: InvalidBatch,
        deadline: float,
    ) -> Summary:
        # Room for the headers and the record's own overhead.
        limit = self.settings.max_record_bytes - min(4096, self.settings.max_record_bytes // 4)
        record = router.dead_letter(body[:limit], exc.code, exc.detail)
        if len(body) > limit:
            record.headers.append((_TRUNCATED, str(len(body)).encode()))
        timeout = max(0.0, deadline - time.monotonic())
        await self.publisher.publish([record], timeout_seconds=timeout)
        self.metrics.dead_letters.labels(receiver.name, exc.code).inc()
        log.warning(
            "batch_dead_lettered",
            reason=exc.code,
            error=exc.detail,
            topic=receiver.routing.dead_letter_topic,
            body_bytes=len(body),
            truncated=len(body) > limit,
        )
        return Summary(dead_lettered=1, dead_letter_reason=exc.code)
