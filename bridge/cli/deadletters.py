"""Sans-I/O: dead-letter records read back, and what replaying each would publish now.

A dead letter is either one event (its record as it was meant to be published: key, value,
CloudEvents and ``alm_*`` headers, plus ``dlq_*`` headers) or the raw body of a batch
(``alm_receiver`` and ``dlq_*`` headers, no ``alm_event_name``). :class:`Replanner` turns
each into *items*, one per event, through the receiver's current routing
(:class:`bridge.core.routing.Router`) and, for a body, the same parser and limits as live
traffic. An item carries the record to publish (with provenance headers naming the dead
letter) or why it still cannot be published.

Progress records (one per item, in a compacted topic, keyed by :attr:`Item.source_id`) are
encoded and read back here too; :class:`Pacer` spaces chunks to a rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from bridge.config.receivers import policy_for
from bridge.config.settings import Settings
from bridge.core.alm import Batch, Challenge, Limits, parse_body
from bridge.core.dedupe import digest
from bridge.core.errors import AccountNotAccepted, InvalidBatch
from bridge.core.reasons import DeadLetterReason, ErrorCode
from bridge.core.records import Headers, Record
from bridge.core.routing import Router, TopicRegistry, family
from bridge.core.tracing import TRACEPARENT, TRACESTATE, trace_context

# Headers a replayed record carries: where it was dead-lettered, when, and why.
SOURCE_HEADER: Final = "replay_source"
REASON_HEADER: Final = "replay_dlq_reason"
ERROR_HEADER: Final = "replay_dlq_error"
TIME_HEADER: Final = "replay_dlq_time"
PROVENANCE_HEADERS: Final = (SOURCE_HEADER, REASON_HEADER, ERROR_HEADER, TIME_HEADER)
# The bridge's own headers on a dead letter, replaced by the provenance headers above.
_DEAD_LETTER_PREFIX: Final = "dlq_"
_TRUNCATED: Final = "dlq_truncated_from_bytes"

ProgressState = Literal["pending", "done", "duplicate", "failed"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, as read back."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, record: Any) -> DeadLetter:
        """From a consumed record (aiokafka's ``ConsumerRecord``)."""
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value,
            tuple((name, value or b"") for name, value in record.headers or ()),
        )

    @property
    def source(self) -> str:
        """``topic:partition:offset``: names this dead letter for ever."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None

    @property
    def reason(self) -> str:
        return self.header("dlq_reason") or "unknown"

    @property
    def receiver(self) -> str | None:
        return self.header("alm_receiver")

    @property
    def meant_for(self) -> str | None:
        """The topic an event was meant for, when Kafka refused it (``dlq_topic``)."""
        return self.header("dlq_topic")

    @property
    def is_event(self) -> bool:
        """One event's record (else the raw body of a batch)."""
        return self.header("alm_event_name") is not None

    @property
    def truncated(self) -> bool:
        return self.header(_TRUNCATED) is not None


@dataclass(frozen=True, slots=True)
class Item:
    """One event of a dead letter, and what replaying it publishes now.

    ``record`` is None when it still cannot be published; ``blocked`` then says why.
    """

    source_id: str
    letter: DeadLetter
    account_id: int | None
    event_name: str | None
    event_id: str | None
    record: Record | None
    blocked: str | None = None

    @property
    def destination(self) -> str | None:
        return None if self.record is None else self.record.topic

    @property
    def event_key(self) -> bytes | None:
        """The live duplicate rule's key (account and eventId), when both are known."""
        if self.account_id is None or self.event_id is None:
            return None
        return digest(self.account_id, self.event_id)


def provenance(letter: DeadLetter, source_id: str) -> Headers:
    """Where a replayed record comes from: its dead letter (and, for an event of a batch,
    ``#eventId``), when and why it was parked."""
    return [
        (SOURCE_HEADER, source_id.encode("utf-8", "surrogatepass")),
        (REASON_HEADER, letter.reason.encode()),
        (ERROR_HEADER, (letter.header("dlq_error") or "").encode()),
        (TIME_HEADER, (letter.header("dlq_time") or _time_of(letter.timestamp_ms)).encode()),
    ]


def replay_headers(
    letter: DeadLetter, source_id: str, headers: Iterable[tuple[str, bytes]]
) -> Headers:
    """``headers`` without the ``dlq_*`` (or earlier ``replay_*``) ones, plus provenance,
    and a trace context when the dead letter had none (one written before traces were)."""
    kept = [
        (name, value)
        for name, value in headers
        if not name.startswith(_DEAD_LETTER_PREFIX) and name not in PROVENANCE_HEADERS
    ]
    if not any(name == TRACEPARENT for name, _ in kept):
        kept.extend(trace_of(letter))
    return [*kept, *provenance(letter, source_id)]


def trace_of(letter: DeadLetter) -> tuple[tuple[str, bytes], ...]:
    """The dead letter's trace continued by the replay, or a new one when it has none."""
    carried = {
        name: value
        for name in (TRACEPARENT, TRACESTATE)
        if (value := letter.header(name)) is not None
    }
    return trace_context(carried).headers()


def _time_of(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Replanner:
    """The receivers' current routing, duplicates key and limits, applied to dead letters.

    Built from the settings alone: no secret is read. One per run, like one process of
    the bridge: the topic budget of names nobody reserved is spent as live traffic would.
    """

    def __init__(self, settings: Settings) -> None:
        specs = settings.effective_receivers()
        policies = {spec.name: policy_for(spec) for spec in specs}
        registry = TopicRegistry(policies.values())
        self.routers = {
            name: Router(policy, registry, max_topics=settings.kafka_max_topics)
            for name, policy in policies.items()
        }
        self.accounts = {spec.name: frozenset(spec.accounts) for spec in specs}
        self.dead_letter_topics = tuple(dict.fromkeys(spec.dead_letter.topic for spec in specs))
        self.limits = Limits(
            max_events=settings.max_events_per_batch,
            max_depth=settings.max_json_depth,
            max_string_chars=settings.max_string_chars,
        )
        self.max_record_bytes = settings.max_record_bytes

    def items(self, letter: DeadLetter) -> list[Item]:
        """The events of ``letter``, each with its record now or why there is none."""
        router = self.routers.get(letter.receiver or "")
        if router is None:
            return [self._blocked(letter, "unknown_receiver")]
        if letter.is_event:
            return [self._event(router, letter)]
        return self._batch(router, letter)

    def _blocked(
        self,
        letter: DeadLetter,
        why: str,
        *,
        account_id: int | None = None,
        event_name: str | None = None,
        event_id: str | None = None,
    ) -> Item:
        return Item(letter.source, letter, account_id, event_name, event_id, None, why)

    def _event(self, router: Router, letter: DeadLetter) -> Item:
        name = letter.header("alm_event_name") or ""
        account = _int(letter.header("alm_account_id"))
        event_id = letter.header("ce_id")
        blocked: str | None = None
        if letter.truncated:
            blocked = "truncated"
        elif letter.value is None:
            blocked = "no_value"
        elif name in router.policy.deny:
            blocked = "denied"
        route = router.route(name) if blocked is None else None
        if route is not None and route.topic is None:
            blocked = route.reason or DeadLetterReason.UNLISTED_EVENT
        if blocked is not None or route is None or route.topic is None or letter.value is None:
            return Item(letter.source, letter, account, name, event_id, None, blocked)
        record = Record(
            route.topic,
            letter.key,
            letter.value,
            replay_headers(letter, letter.source, letter.headers),
            event_id,
            family(name),
        )
        if record.exceeds(self.max_record_bytes):
            return Item(
                letter.source,
                letter,
                account,
                name,
                event_id,
                None,
                DeadLetterReason.RECORD_TOO_LARGE,
            )
        return Item(letter.source, letter, account, name, event_id, record)

    def _batch(self, router: Router, letter: DeadLetter) -> list[Item]:
        if letter.truncated:
            return [self._blocked(letter, "truncated")]
        receiver = letter.receiver or ""
        try:
            parsed = parse_body(
                letter.value or b"", self.limits, accounts=self.accounts.get(receiver, frozenset())
            )
        except InvalidBatch as exc:
            return [self._blocked(letter, exc.code)]
        except AccountNotAccepted:
            return [self._blocked(letter, ErrorCode.ACCOUNT_NOT_ACCEPTED)]
        if isinstance(parsed, Challenge):
            return [self._blocked(letter, "challenge")]
        return self._batch_items(router, letter, parsed)

    def _batch_items(self, router: Router, letter: DeadLetter, batch: Batch) -> list[Item]:
        try:
            plan = router.plan(batch, trace_of(letter))
        except InvalidBatch as exc:
            return [self._blocked(letter, exc.code, account_id=batch.account_id)]
        if any(r.exceeds(self.max_record_bytes) for r in plan.records):
            # As live: one event too large for a record refuses the whole batch.
            return [
                self._blocked(
                    letter, DeadLetterReason.RECORD_TOO_LARGE, account_id=batch.account_id
                )
            ]
        names = {e.event_id: e.name for e in batch.events}
        items: list[Item] = []
        for record in plan.records:
            event_id = record.event_id or ""
            source_id = f"{letter.source}#{event_id}"
            if record.dead_letter:
                blocked = Item(
                    source_id,
                    letter,
                    batch.account_id,
                    names.get(event_id),
                    event_id,
                    None,
                    record.reason or DeadLetterReason.UNLISTED_EVENT,
                )
                items.append(blocked)
                continue
            replayed = record._replace(headers=replay_headers(letter, source_id, record.headers))
            items.append(
                Item(source_id, letter, batch.account_id, names.get(event_id), event_id, replayed)
            )
        return items


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters and events to replay; an empty set lets everything through."""

    reasons: frozenset[str] = frozenset()
    receivers: frozenset[str] = frozenset()
    accounts: frozenset[int] = frozenset()
    event_names: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def letter_matches(self, letter: DeadLetter) -> bool:
        """Reason, receiver and time: known before the letter is opened."""
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.receivers and letter.receiver not in self.receivers:
            return False
        if self.since_ms is not None and letter.timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or letter.timestamp_ms < self.until_ms

    def item_matches(self, item: Item) -> bool:
        """Account, event name, and topic: the one it was meant for, or where it goes now."""
        if self.accounts and item.account_id not in self.accounts:
            return False
        if self.event_names and item.event_name not in self.event_names:
            return False
        if self.topics:
            topics = {item.letter.meant_for, item.destination}
            return bool(self.topics & topics)
        return True


# Progress: one record per item in a compacted topic; the last state of a key wins.


@dataclass(frozen=True, slots=True)
class Progress:
    """What a run recorded about one item.

    ``pending``: about to be produced from ``at_ms`` for at most ``window_ms`` to
    ``topic`` (a run that stopped before ``done`` may or may not have stored it);
    ``done``: Kafka acknowledged it; ``duplicate``: the same event was replayed from
    another dead letter; ``failed``: Kafka refused it, nothing stored.
    """

    state: ProgressState
    topic: str | None = None
    at_ms: int = 0
    window_ms: int = 0
    event_key: str | None = None

    def encode(self) -> bytes:
        data: dict[str, Any] = {"state": self.state, "at_ms": self.at_ms}
        if self.topic is not None:
            data["topic"] = self.topic
        if self.window_ms:
            data["window_ms"] = self.window_ms
        if self.event_key is not None:
            data["event"] = self.event_key
        return orjson.dumps(data)

    @classmethod
    def decode(cls, value: bytes | None) -> Progress | None:
        """None for a tombstone or anything this version did not write."""
        if not value:
            return None
        try:
            data = orjson.loads(value)
            state = data["state"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if state not in ("pending", "done", "duplicate", "failed"):
            return None
        return cls(
            state,
            data.get("topic"),
            int(data.get("at_ms", 0)),
            int(data.get("window_ms", 0)),
            data.get("event"),
        )

    @property
    def settled(self) -> bool:
        """Never to be replayed again."""
        return self.state in ("done", "duplicate")


@dataclass(slots=True)
class Ledger:
    """The progress read back: the last state per item, and the events already replayed."""

    states: dict[str, Progress] = field(default_factory=dict)
    events: set[str] = field(default_factory=set)

    def record(self, source_id: str, progress: Progress | None) -> None:
        if progress is None:
            self.states.pop(source_id, None)
            return
        self.states[source_id] = progress
        if progress.state == "done" and progress.event_key is not None:
            self.events.add(progress.event_key)

    def settled(self, source_id: str) -> bool:
        progress = self.states.get(source_id)
        return progress is not None and progress.settled

    def pending(self) -> dict[str, Progress]:
        """Items a stopped run was producing: look for them in their topic before replaying."""
        return {s: p for s, p in self.states.items() if p.state == "pending"}


class Pacer:
    """Spaces chunks so that on average at most ``rate`` items a second go out."""

    def __init__(self, rate: float | None, *, now: float) -> None:
        self.rate = rate
        self._next = now

    def delay(self, count: int, now: float) -> float:
        """Seconds to wait before sending ``count`` items at ``now``."""
        if self.rate is None or count <= 0:
            return 0.0
        start = max(self._next, now)
        self._next = start + count / self.rate
        return start - now

    def chunk_size(self, largest: int) -> int:
        """Items a chunk: about one chunk a second under a rate, at most ``largest``."""
        if self.rate is None:
            return largest
        return max(1, min(largest, int(self.rate)))


@dataclass(slots=True)
class Tally:
    """Counts of one run, for the dry run's preview and the final summary."""

    scanned: int = 0
    selected: int = 0
    replayable: int = 0
    replayed: int = 0
    already: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_destination: dict[str, int] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)
    examples: list[Item] = field(default_factory=list)

    def offer(self, item: Item, wanted: int) -> None:
        """Keep ``item`` as an example: the first ``wanted``, one per reason first."""
        examples = self.examples
        if len(examples) < wanted:
            examples.append(item)
            return
        reasons = [e.letter.reason for e in examples]
        if item.letter.reason in reasons:
            return
        for index in range(len(examples) - 1, -1, -1):
            if reasons.count(reasons[index]) > 1:
                examples[index] = item
                return

    @property
    def complete(self) -> bool:
        """Every selected event is in its topic (now or in an earlier run)."""
        return not self.failing

    def as_json(self, *, applied: bool) -> dict[str, Any]:
        return {
            "mode": "apply" if applied else "dry-run",
            "scanned": self.scanned,
            "selected": self.selected,
            "replayable": self.replayable,
            "replayed": self.replayed,
            "alreadyReplayed": self.already,
            "duplicates": self.duplicates,
            "byReason": dict(sorted(self.by_reason.items())),
            "byDestination": dict(sorted(self.by_destination.items())),
            "failing": dict(sorted(self.failing.items())),
            "examples": [example(item) for item in self.examples],
        }


def count(counts: dict[str, int], key: str, n: int = 1) -> None:
    # A plain string key (a reason may be a StrEnum member): orjson refuses str subclasses.
    key = str(key)
    counts[key] = counts.get(key, 0) + n


def example(item: Item) -> dict[str, Any]:
    return {
        "source": item.source_id,
        "reason": item.letter.reason,
        "receiver": item.letter.receiver,
        "accountId": item.account_id,
        "eventName": item.event_name,
        "eventId": item.event_id,
        "destination": item.destination,
        "blocked": item.blocked,
        "key": None if item.record is None or item.record.key is None else _text(item.record.key),
    }


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def summary_lines(tally: Tally, *, applied: bool) -> list[str]:
    """The preview (dry run) or the final summary, for people."""
    lines = [
        f"{'replay' if applied else 'dry run'}: {tally.scanned} dead letters read, "
        f"{tally.selected} events selected"
    ]
    lines.append("  by reason (dlq_reason): " + _counts(tally.by_reason))
    lines.append("  by destination now: " + _counts(tally.by_destination))
    if applied:
        lines.append(
            f"  replayed {tally.replayed}, already replayed {tally.already}, "
            f"duplicates {tally.duplicates}"
        )
    else:
        lines.append(
            f"  would replay {tally.replayable}, already replayed {tally.already}, "
            f"duplicates {tally.duplicates}"
        )
    if tally.failing:
        verb = "still failing" if applied else "cannot be replayed now"
        lines.append(f"  {verb} (left in place): " + _counts(tally.failing))
    for item in tally.examples:
        where = item.destination or f"(not replayable: {item.blocked})"
        lines.append(
            f"  e.g. {item.source_id} [{item.letter.reason}] "
            f"{item.event_name or '(batch)'} account {item.account_id} -> {where}"
        )
    return lines


def _counts(counts: Mapping[str, int]) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{key} {n}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1]))
