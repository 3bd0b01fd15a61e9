"""From verified bytes to records acknowledged by Kafka, for one receiver.

Data flows one way: verified body -> batch -> records -> duplicates left out ->
publisher -> summary. Errors are raised as the narrow classes of :mod:`bridge.core.errors`
and turned into HTTP statuses by :mod:`bridge.service.handlers` only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, TypeVar

from bridge.config.receivers import Receiver
from bridge.config.settings import Settings
from bridge.core.alm import Batch, Challenge, Limits, epoch_seconds, leading_account_id, parse_body
from bridge.core.dedupe import InFlight, Outcome, SeenWindow, digest
from bridge.core.errors import AccountNotAccepted, InvalidBatch, PublishUnavailable
from bridge.core.reasons import DeadLetterReason, ErrorCode, RequestOutcome
from bridge.core.records import Record
from bridge.core.routing import Plan, Router, TopicRegistry
from bridge.core.sink import Refusal, Sink
from bridge.core.tracing import NO_SPAN, Span
from bridge.telemetry.logs import get_logger
from bridge.telemetry.metrics import Metrics

log = get_logger("bridge.ingest")
K = TypeVar("K")
_TRUNCATED: Final = "dlq_truncated_from_bytes"
# An event Kafka refused for its size is kept in the dead-letter topic cut to this size:
# the topic's own limit, which refused it, is not known.
_REFUSED_FOR_SIZE_KEEP_BYTES: Final = 65_536
# Bodies larger than this are parsed in the parsing thread (a 256 KiB body of small
# events takes about 30 ms in place).
INLINE_PARSE_BYTES: Final = 256 * 1024


@dataclass(slots=True)
class Summary:
    """What happened to one batch (the handlers make its 200 response body of it)."""

    account_id: int | None = None
    received: int = 0
    published: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    dead_letter_reason: DeadLetterReason | None = None
    # Keyed by the reasons' plain strings: orjson refuses a str subclass as a key.
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    families: dict[str, int] = field(default_factory=dict)
    # How many events Kafka stored per (family, the event's own time): their freshness.
    event_times: dict[tuple[str, str], int] = field(default_factory=dict)
    # Of the duplicates, those known from the fleet topic (another replica, an earlier run).
    fleet_duplicates: int = 0

    @property
    def outcome(self) -> RequestOutcome:
        if self.dead_letter_reason is not None:
            return RequestOutcome.DEAD_LETTERED
        if self.published == 0 and self.duplicates > 0:
            return RequestOutcome.DUPLICATE
        return RequestOutcome.PUBLISHED


class Ingestor:
    """Turns a receiver's verified bodies into acknowledged Kafka records."""

    def __init__(
        self,
        *,
        settings: Settings,
        receivers: Mapping[str, Receiver],
        publisher: Sink,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.metrics = metrics
        self.receivers: dict[str, Receiver] = {}
        self.topics = TopicRegistry()
        self.routers: dict[str, Router] = {}
        # One window per receiver: one receiver's events never evict another's.
        self.windows: dict[str, SeenWindow] = {}
        # Tells the fleet (bridge.kafka.fleet) what Kafka acknowledged: (receiver, keys).
        self.share: Callable[[str, Sequence[bytes | None]], None] | None = None
        # Events an earlier attempt handed to Kafka and that are not settled yet.
        self.in_flight: dict[str, InFlight] = {}
        self.reconfigure(receivers)
        self.limits = Limits(
            max_events=settings.max_events_per_batch,
            max_depth=settings.max_json_depth,
            max_string_chars=settings.max_string_chars,
        )
        self.timeout_seconds = settings.publish_timeout_ms / 1000
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    def reconfigure(self, receivers: Mapping[str, Receiver]) -> None:
        """Serve ``receivers`` from now on (at start, and on a reload).

        Every receiver's reserved topics are known before any event arrives; each receiver
        then has its own budget of topics for the names nobody reserved. A receiver that
        stays keeps its duplicates window, its attempts in flight, its budget and the
        topics derived so far; requests already started keep the receiver and router they
        were given.
        """
        topics = TopicRegistry(r.routing for r in receivers.values())
        for receiver, topic, taken in topics.conflicts:
            log.warning("reserved_topic_conflict", receiver=receiver, topic=topic, taken_by=taken)
        topics.inherit(self.topics)
        max_topics = self.settings.kafka_max_topics
        routers = {}
        for name, r in receivers.items():
            earlier = self.routers.get(name)
            budget = earlier.budget if earlier is not None else None
            routers[name] = Router(r.routing, topics, max_topics=max_topics, budget=budget)
        for name in receivers:
            if name not in self.windows:
                self.windows[name] = SeenWindow(
                    max_entries=self.settings.dedupe_max_entries,
                    max_age_seconds=self.settings.dedupe_max_age_seconds,
                )
                self.in_flight[name] = InFlight()
        # In one step, with no await: a request sees the old receivers or the new ones.
        self.receivers, self.topics, self.routers = dict(receivers), topics, routers

    def parse(self, body: bytes, accounts: frozenset[int] = frozenset()) -> Batch | Challenge:
        return parse_body(body, self.limits, accounts=accounts)

    async def _parse_off_loop(self, body: bytes, accounts: frozenset[int]) -> Batch | Challenge:
        """Parse a large body in the parsing thread, so that the event loop keeps serving.

        One thread: large bodies are parsed one at a time, which also bounds the memory
        parsing holds at once. Small bodies (nearly all of ALM's) are parsed in place.
        """
        if len(body) <= INLINE_PARSE_BYTES:
            return self.parse(body, accounts)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._parser, self.parse, body, accounts)

    async def ingest(
        self,
        receiver: Receiver,
        body: bytes,
        *,
        deadline: float,
        refuse: InvalidBatch | None = None,
        router: Router | None = None,
        trace: Sequence[tuple[str, bytes]] = (),
        span: Span = NO_SPAN,
    ) -> Summary | Challenge:
        """Publish a verified body, or return the challenge it carries.

        Raises AccountNotAccepted (before the body is judged malformed), InvalidBatch under
        the "reject" policy (and for a malformed challenge), and PublishUnavailable.
        ``refuse`` is a verdict reached before parsing (a batch too costly to parse): the
        body is dead-lettered (or rejected) as it is, once its account is judged.
        ``router`` is the receiver's when the request started (a reload may have replaced
        it since); ``trace`` the headers of the request's trace context, on every record.
        """
        if router is None:
            router = self.routers[receiver.name]
        try:
            planned = await self._plan(receiver, router, body, refuse, trace)
        except InvalidBatch as exc:
            code = exc.code
            # A malformed challenge (ErrorCode.INVALID_CHALLENGE) is answered, never kept.
            if receiver.dead_letter_policy == "reject" or not isinstance(code, DeadLetterReason):
                raise
            with span.child("dead-letter", **{"alm.dead_letter.reason": code}):
                return await self._dead_letter(
                    receiver, router, body, code, exc.detail, deadline, trace
                )
        if isinstance(planned, Challenge):
            return planned
        summary, canary, fresh, keys, joined = self._sort(receiver, *planned)
        # The parsed events are several times the size of their records: let them go
        # before waiting for Kafka, so that a batch in flight holds only its records.
        del planned
        if fresh:
            with span.child("publish", **{"messaging.batch.message_count": len(fresh)}):
                await self._publish(
                    receiver, router, self.windows[receiver.name], fresh, keys, summary, deadline
                )
        if joined:
            self.metrics.events_joined.labels(receiver.name).inc(len(joined))
            await _join(joined, deadline)
            for record, _ in joined:
                _count_published(summary, record)
            _total(summary)
        self._tell(receiver, summary, canary=canary)
        return summary

    async def _plan(
        self,
        receiver: Receiver,
        router: Router,
        body: bytes,
        refuse: InvalidBatch | None,
        trace: Sequence[tuple[str, bytes]],
    ) -> tuple[Batch, Plan] | Challenge:
        """The body parsed and planned into records; raises InvalidBatch for one that can
        never be accepted (``refuse`` once its account is judged, a record too large)."""
        if refuse is not None:
            _judge_account_unparsed(body, receiver.accounts)
            raise refuse
        parsed = await self._parse_off_loop(body, receiver.accounts)
        if isinstance(parsed, Challenge):
            return parsed
        plan = router.plan(parsed, trace)
        limit = self.settings.max_record_bytes
        oversized = [r for r in plan.records if r.exceeds(limit)]
        if oversized:
            raise InvalidBatch(
                f"an event makes a record of {oversized[0].size} bytes, more than {limit}",
                code=DeadLetterReason.RECORD_TOO_LARGE,
            )
        return parsed, plan

    def _sort(
        self, receiver: Receiver, parsed: Batch, plan: Plan
    ) -> tuple[Summary, bool, list[Record], list[bytes | None], list[tuple[Record, Outcome]]]:
        """The batch's summary, whether it is the canary alone, and its records sorted into
        fresh ones (with their window keys) and re-sends joining an attempt in flight."""
        summary = Summary(
            account_id=parsed.account_id, received=len(parsed.events), filtered=plan.filtered
        )
        for fallback, count in plan.fallbacks.items():
            self.metrics.topic_fallbacks.labels(receiver.name, fallback).inc(count)
        # A batch of the canary alone says nothing of the account's own deliveries.
        canary = plan.canaries > 0 and plan.canaries == len(parsed.events)
        fresh, keys, joined = _without_duplicates(
            self.windows[receiver.name],
            self.in_flight[receiver.name],
            parsed.account_id,
            plan.records,
            summary,
        )
        return summary, canary, fresh, keys, joined

    def _tell(self, receiver: Receiver, summary: Summary, *, canary: bool) -> None:
        """A batch's outcome in the metrics (and a line when events were dead-lettered)."""
        name = receiver.name
        for fam, count in summary.families.items():
            self.metrics.events_published_by(name, fam).inc(count)
        if canary:
            self.metrics.canary_seen.labels(name).set_to_current_time()
        else:
            self._observe_freshness(receiver, summary)
            account = receiver.account_label(summary.account_id)
            self.metrics.last_accepted_by(name, account).set(time.time())
        if summary.duplicates:
            self.metrics.duplicates.labels(name).inc(summary.duplicates)
            if summary.fleet_duplicates:
                self.metrics.fleet_suppressed.labels(name).inc(summary.fleet_duplicates)
        for reason, count in summary.dead_letter_reasons.items():
            self.metrics.dead_letters.labels(name, reason).inc(count)
        if summary.dead_lettered:
            log.warning(
                "events_dead_lettered",
                reasons=summary.dead_letter_reasons,
                count=summary.dead_lettered,
                topic=receiver.routing.dead_letter_topic,
            )
        self.metrics.batch_events.observe(summary.received)

    def _observe_freshness(self, receiver: Receiver, summary: Summary) -> None:
        """Each stored event's age at its acknowledgement (0 for a time in the future:
        ALM's clock ahead of this one)."""
        if not summary.event_times:
            return
        now = time.time()
        observe = self.metrics.event_lag.observe
        for (fam, when), count in summary.event_times.items():
            seconds = epoch_seconds(when)
            if seconds is not None:
                observe((receiver.name, fam), max(0.0, now - seconds), count)
        summary.event_times.clear()

    async def _publish(
        self,
        receiver: Receiver,
        router: Router,
        seen: SeenWindow,
        records: list[Record],
        keys: list[bytes | None],
        summary: Summary,
        deadline: float,
    ) -> None:
        """Publish ``records``; those Kafka refuses for good go to the dead-letter topic.

        Dead letters are per event: one event whose topic cannot exist or be written
        must not hold back the others, and the dead-letter record holds exactly what was
        not published (value, key and headers, plus why and the topic it was meant for),
        so it can be replayed once the cause is fixed. Every acknowledged record is marked
        seen, whatever happens to the rest.
        """
        publisher = self.publisher
        if receiver.dead_letter_policy == "reject":
            # Refusals known before producing reject the batch before anything is stored.
            refused_topics = await publisher.prepare(
                {r.topic for r in records}, timeout_seconds=_remaining(deadline)
            )
            if refused_topics:
                topic, refusal = next(iter(refused_topics.items()))
                raise InvalidBatch(f"topic {topic}: {refusal.detail}", code=refusal.reason)
        result = await publisher.publish(
            records,
            timeout_seconds=_remaining(deadline),
            on_ack=_marker(seen, keys, self.share, receiver.name),
            on_produced=self.in_flight[receiver.name].tracker(keys),
        )
        self.metrics.publish_duration.observe(result.duration_seconds)
        self.metrics.last_publish.set(time.time())
        letters: list[Record] = []
        letter_keys: list[bytes | None] = []
        for index, refusal in sorted(result.refused.items()):
            record = records[index]
            if record.dead_letter:
                raise _dead_letter_unavailable(record.topic, refusal)
            letters.append(self._letter(router, record, refusal))
            letter_keys.append(keys[index])
        if letters:
            if receiver.dead_letter_policy == "reject":
                first = result.refused[min(result.refused)]
                raise InvalidBatch(first.detail, code=first.reason)
            # Tracked like the events themselves: a re-send while a dead letter is still in
            # the producer joins it rather than producing the dead letter again.
            again = await publisher.publish(
                letters,
                timeout_seconds=_remaining(deadline),
                on_ack=_marker(seen, letter_keys, self.share, receiver.name),
                on_produced=self.in_flight[receiver.name].tracker(letter_keys, letters),
            )
            if again.refused:
                raise _dead_letter_unavailable(
                    receiver.routing.dead_letter_topic, next(iter(again.refused.values()))
                )
        for record in (r for i, r in enumerate(records) if i not in result.refused):
            _count_published(summary, record)
        for record in letters:
            _count(
                summary.dead_letter_reasons, (record.reason or DeadLetterReason.KAFKA_REFUSED).value
            )
        _total(summary)

    def _letter(self, router: Router, record: Record, refusal: Refusal) -> Record:
        keep = (
            _REFUSED_FOR_SIZE_KEEP_BYTES
            if refusal.reason == DeadLetterReason.RECORD_TOO_LARGE
            else self.settings.max_record_bytes - min(4096, self.settings.max_record_bytes // 4)
        )
        return router.dead_letter_event(
            record, refusal.reason, refusal.detail, max_value_bytes=keep
        )

    async def _dead_letter(
        self,
        receiver: Receiver,
        router: Router,
        body: bytes,
        reason: DeadLetterReason,
        detail: str,
        deadline: float,
        trace: Sequence[tuple[str, bytes]] = (),
    ) -> Summary:
        # Room for the headers and the record's own overhead.
        limit = self.settings.max_record_bytes - min(4096, self.settings.max_record_bytes // 4)
        record = router.dead_letter(body[:limit], reason, detail, trace)
        if len(body) > limit:
            record.headers.append((_TRUNCATED, str(len(body)).encode()))
        result = await self.publisher.publish([record], timeout_seconds=_remaining(deadline))
        if result.refused:
            raise _dead_letter_unavailable(record.topic, result.refused[0])
        self.metrics.dead_letters.labels(receiver.name, reason).inc()
        log.warning(
            "batch_dead_lettered",
            reason=reason,
            error=detail,
            topic=receiver.routing.dead_letter_topic,
            body_bytes=len(body),
            truncated=len(body) > limit,
        )
        return Summary(dead_lettered=1, dead_letter_reason=reason)


def _judge_account_unparsed(body: bytes, accounts: frozenset[int]) -> None:
    """The account check of a body that is not parsed: its leading ``accountId`` only."""
    if accounts:
        account_id = leading_account_id(body)
        if account_id is None or account_id not in accounts:
            shown = "unreadable without parsing" if account_id is None else str(account_id)
            raise AccountNotAccepted(f"accountId {shown} is not accepted by this receiver")


def _without_duplicates(
    seen: SeenWindow,
    in_flight: InFlight,
    account_id: int,
    records: tuple[Record, ...],
    summary: Summary,
) -> tuple[list[Record], list[bytes | None], list[tuple[Record, Outcome]]]:
    """The records to produce, with their window keys, and those that join an attempt.

    A record already acknowledged, or repeated in the batch, is a duplicate. A record an
    earlier attempt handed to Kafka and that is not settled yet joins that attempt: it
    is not produced again. Each key is computed once, here, and entered into the window
    as Kafka acknowledges its record.
    """
    fresh: list[Record] = []
    fresh_keys: list[bytes | None] = []
    joined: list[tuple[Record, Outcome]] = []
    keys = [None if r.event_id is None else digest(account_id, r.event_id) for r in records]
    in_batch = seen.known_keys(keys)
    from_fleet = seen.from_fleet(in_batch) if in_batch else in_batch
    for record, key in zip(records, keys, strict=True):
        if key is not None:
            if key in in_batch:
                summary.duplicates += 1
                if key in from_fleet:
                    summary.fleet_duplicates += 1
                continue
            in_batch.add(key)
            if in_flight:
                outcome = in_flight.get(key)
                if outcome is not None:
                    joined.append((in_flight.standin(key) or record, outcome))
                    continue
        fresh.append(record)
        fresh_keys.append(key)
    return fresh, fresh_keys, joined


async def _join(joined: Sequence[tuple[Record, Outcome]], deadline: float) -> None:
    """Wait for the earlier attempts of re-sent records, within this attempt's deadline.

    ``asyncio.wait`` never cancels what it waits for: the outcomes are shared with the
    producer and with the attempt that produced them.
    """
    outcomes = {outcome for _, outcome in joined}
    pending = {o for o in outcomes if not o.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=_remaining(deadline))
    if pending:
        waiting = sum(1 for _, outcome in joined if outcome in pending)
        raise PublishUnavailable(
            f"Kafka has not acknowledged {waiting} events of an earlier attempt yet"
        )
    for _, outcome in joined:
        failure = None if outcome.cancelled() else outcome.exception()
        if outcome.cancelled() or failure is not None:
            # The next attempt produces them again: a failed outcome leaves InFlight.
            raise PublishUnavailable(
                f"Kafka did not store the events of an earlier attempt: {failure or 'cancelled'}"
            )


def _marker(
    seen: SeenWindow,
    keys: Sequence[bytes | None],
    share: Callable[[str, Sequence[bytes | None]], None] | None,
    receiver: str,
) -> Callable[[Sequence[int]], None]:
    def mark_seen(indexes: Sequence[int]) -> None:
        acknowledged = [keys[i] for i in indexes]
        seen.add_keys(acknowledged)
        if share is not None:
            # Queued only: the answer never waits for the fleet.
            share(receiver, acknowledged)

    return mark_seen


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _count(counts: dict[K, int], key: K) -> None:
    counts[key] = counts.get(key, 0) + 1


def _count_published(summary: Summary, record: Record) -> None:
    """Count a record Kafka stored: an event of its family, or a dead letter and why."""
    if record.dead_letter:
        _count(
            summary.dead_letter_reasons, (record.reason or DeadLetterReason.UNLISTED_EVENT).value
        )
    else:
        _count(summary.families, record.family)
        if record.time is not None:
            _count(summary.event_times, (record.family, record.time))


def _total(summary: Summary) -> None:
    summary.dead_lettered = sum(summary.dead_letter_reasons.values())
    summary.published = sum(summary.families.values())


def _dead_letter_unavailable(topic: str, refusal: Refusal) -> PublishUnavailable:
    log.error("dead_letter_topic_refused", topic=topic, reason=refusal.reason, error=refusal.detail)
    return PublishUnavailable(
        f"the dead-letter topic {topic} refused a record ({refusal.reason}): {refusal.detail}",
        code=ErrorCode.DEAD_LETTER_UNAVAILABLE,
    )
