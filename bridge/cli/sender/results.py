"""What a ``send`` run did: one record per request, and the summary a person reads.

Pure data and pure functions; :func:`summarize` works on a partial run too (Ctrl-C).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from bridge.core.stats import percentile

Phase = Literal["send", "resend"]
RequestError = Literal["timeout", "connection_error", "client_error"]
_RESPONSE_COUNT_FIELDS: Final = ("received", "published", "duplicates", "deadLettered")


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One HTTP request and its answer (or why there was none)."""

    index: int
    phase: Phase
    attempt: int
    final: bool
    source: str
    account_id: int | None
    event_ids: tuple[str, ...]
    status: int | None
    error: RequestError | None
    error_detail: str | None
    latency_ms: float
    sent_at_seconds: float
    response_counts: Mapping[str, int] | None = None
    response_error: str | None = None
    # The bridge's words for a refusal ("detail"), and why events were dead-lettered.
    response_detail: str | None = None
    dead_letter_reasons: Mapping[str, int] | None = None

    @property
    def acknowledged(self) -> bool:
        """ALM's rule: any 2xx acknowledges the batch."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def event_count(self) -> int:
        return len(self.event_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phase": self.phase,
            "attempt": self.attempt,
            "final": self.final,
            "source": self.source,
            "status": self.status,
            "error": self.error,
            "error_detail": self.error_detail,
            "latency_ms": round(self.latency_ms, 3),
            "sent_at_seconds": round(self.sent_at_seconds, 6),
            "account_id": self.account_id,
            "event_count": self.event_count,
            "event_ids": list(self.event_ids),
            "response": dict(self.response_counts) if self.response_counts is not None else None,
            "response_error": self.response_error,
            "response_detail": self.response_detail,
            "dead_letter_reasons": (
                dict(self.dead_letter_reasons) if self.dead_letter_reasons is not None else None
            ),
        }


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency of the requests that got an HTTP answer, in milliseconds."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyStats:
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=ordered[-1] if ordered else None,
        )

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "count": self.count,
            "p50_ms": rounded(self.p50),
            "p90_ms": rounded(self.p90),
            "p99_ms": rounded(self.p99),
            "max_ms": rounded(self.max),
        }


@dataclass(frozen=True)
class SendSummary:
    """What a run did. ``exit_code`` is 0 only if every batch's final answer was a 2xx."""

    url: str
    seed: int
    elapsed_seconds: float
    batches: int
    requests: int
    events_sent: int
    status_classes: dict[str, int]
    statuses: dict[int, int]
    timeouts: int
    connection_errors: int
    client_errors: int
    batches_acknowledged: int
    batches_failed: int
    events_acknowledged: int
    reported: dict[str, int]
    resent_batches: int
    resent_acknowledged: int
    resend_duplicates_reported: int
    latency: LatencyStats
    results: tuple[RequestResult, ...] = field(repr=False)
    interrupted: bool = False
    # The reason codes the bridge gave (its answer's "error"), counted per status:
    # {401: {"auth_mismatch": 3}}.
    reasons: dict[int, dict[str, int]] = field(default_factory=dict)
    # Why requests got no answer, per error: {"connection_error": {"ClientConnectorError:
    # Cannot connect to host ...": 3}}.
    error_reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    # Why events were dead-lettered, as the bridge's 2xx answers said, in events.
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    # Batches never sent because the run's time (max_run_seconds) was up.
    unsent: int = 0

    @property
    def duplicates_reported(self) -> int:
        return self.reported.get("duplicates", 0)

    @property
    def all_acknowledged(self) -> bool:
        finals = [r for r in self.results if r.final]
        return (
            not self.interrupted
            and not self.unsent
            and bool(finals)
            and all(r.acknowledged for r in finals)
        )

    @property
    def exit_code(self) -> int:
        return 0 if self.all_acknowledged else 1

    def acknowledged_event_ids(self) -> list[tuple[int | None, str]]:
        """``(accountId, eventId)`` of every event in a batch answered with a 2xx."""
        seen: dict[tuple[int | None, str], None] = {}
        for result in self.results:
            if result.acknowledged:
                for event_id in result.event_ids:
                    seen[(result.account_id, event_id)] = None
        return list(seen)

    def summary_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "seed": self.seed,
            "interrupted": self.interrupted,
            "exit_code": self.exit_code,
            "elapsed_seconds": round(self.elapsed_seconds, 6),
            "requests_per_second": (
                round(self.requests / self.elapsed_seconds, 3) if self.elapsed_seconds > 0 else None
            ),
            "batches": self.batches,
            "requests": self.requests,
            "events_sent": self.events_sent,
            "status_classes": dict(sorted(self.status_classes.items())),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "reasons": {str(k): dict(v) for k, v in sorted(self.reasons.items())},
            "error_reasons": {k: dict(v) for k, v in sorted(self.error_reasons.items())},
            "dead_letter_reasons": dict(self.dead_letter_reasons),
            "batches_not_sent": self.unsent,
            "timeouts": self.timeouts,
            "connection_errors": self.connection_errors,
            "client_errors": self.client_errors,
            "batches_acknowledged": self.batches_acknowledged,
            "batches_failed": self.batches_failed,
            "events_acknowledged": self.events_acknowledged,
            "reported": dict(self.reported),
            "duplicates_reported": self.duplicates_reported,
            "resent_batches": self.resent_batches,
            "resent_acknowledged": self.resent_acknowledged,
            "resend_duplicates_reported": self.resend_duplicates_reported,
            "latency": self.latency.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary_dict(),
            "requests": [result.to_dict() for result in self.results],
        }

    def to_json(self, *, indent: bool = True) -> str:
        return json.dumps(self.to_dict(), indent=2 if indent else None)


def summarize(
    results: Sequence[RequestResult],
    *,
    url: str,
    seed: int,
    elapsed_seconds: float,
    interrupted: bool = False,
    unsent: int = 0,
) -> SendSummary:
    """The summary of a run's requests (a pure function, usable on a partial run)."""
    statuses: Counter[int] = Counter()
    reasons: dict[int, Counter[str]] = {}
    classes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    error_reasons: dict[str, Counter[str]] = {}
    dead_letter_reasons: Counter[str] = Counter()
    reported: Counter[str] = Counter({name: 0 for name in _RESPONSE_COUNT_FIELDS})
    latencies: list[float] = []
    sent_batches: set[int] = set()
    acknowledged_batches: set[int] = set()
    failed_batches: set[int] = set()
    events_acknowledged = 0
    resent: set[int] = set()
    resent_acknowledged = 0
    resend_duplicates = 0
    events_sent = 0
    for result in results:
        events_sent += result.event_count
        if result.status is not None:
            statuses[result.status] += 1
            classes[f"{result.status // 100}xx"] += 1
            latencies.append(result.latency_ms)
            if result.response_error is not None:
                reasons.setdefault(result.status, Counter())[result.response_error] += 1
        if result.error is not None:
            errors[result.error] += 1
            detail = result.error_detail or "no reason given"
            error_reasons.setdefault(result.error, Counter())[detail] += 1
        if result.acknowledged and result.response_counts is not None:
            reported.update(result.response_counts)
        if result.acknowledged and result.dead_letter_reasons:
            dead_letter_reasons.update(result.dead_letter_reasons)
        if result.phase == "send":
            sent_batches.add(result.index)
            if result.final and result.acknowledged:
                acknowledged_batches.add(result.index)
                events_acknowledged += result.event_count
            elif result.final:
                failed_batches.add(result.index)
        else:
            resent.add(result.index)
            if result.final and result.acknowledged:
                resent_acknowledged += 1
                if result.response_counts is not None:
                    resend_duplicates += result.response_counts.get("duplicates", 0)
    return SendSummary(
        url=url,
        seed=seed,
        elapsed_seconds=elapsed_seconds,
        batches=len(sent_batches),
        requests=len(results),
        events_sent=events_sent,
        status_classes=dict(classes),
        statuses=dict(statuses),
        timeouts=errors["timeout"],
        connection_errors=errors["connection_error"],
        client_errors=errors["client_error"],
        batches_acknowledged=len(acknowledged_batches),
        batches_failed=len(failed_batches),
        events_acknowledged=events_acknowledged,
        reported=dict(reported),
        resent_batches=len(resent),
        resent_acknowledged=resent_acknowledged,
        resend_duplicates_reported=resend_duplicates,
        latency=LatencyStats.of(latencies),
        results=tuple(results),
        interrupted=interrupted,
        reasons={status: dict(counts.most_common()) for status, counts in reasons.items()},
        error_reasons={kind: dict(c.most_common()) for kind, c in error_reasons.items()},
        dead_letter_reasons=dict(dead_letter_reasons.most_common()),
        unsent=unsent,
    )


@dataclass(frozen=True, slots=True)
class ResponseFields:
    """What a bridge's answer says: its counts, reason code, detail and dead-letter reasons."""

    counts: dict[str, int] | None = None
    error: str | None = None
    detail: str | None = None
    dead_letter_reasons: dict[str, int] | None = None


def response_fields(body: bytes) -> ResponseFields:
    """The counts of a bridge's 2xx answer, the reason code (``error``) and ``detail`` of
    any answer, and why events were dead-lettered (``deadLetterReasons``, or
    ``deadLetterReason`` for all ``deadLettered`` events)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ResponseFields()
    if not isinstance(doc, dict):
        return ResponseFields()
    counts = {
        name: value
        for name in _RESPONSE_COUNT_FIELDS
        if isinstance(value := doc.get(name), int) and not isinstance(value, bool)
    }
    error = doc.get("error")
    detail = doc.get("detail")
    reasons: dict[str, int] | None = None
    many = doc.get("deadLetterReasons")
    one = doc.get("deadLetterReason")
    if isinstance(many, dict):
        reasons = {
            str(k): v for k, v in many.items() if isinstance(v, int) and not isinstance(v, bool)
        }
    elif isinstance(one, str):
        reasons = {one: counts.get("deadLettered", 0)}
    return ResponseFields(
        counts=counts or None,
        error=error if isinstance(error, str) else None,
        detail=detail if isinstance(detail, str) else None,
        dead_letter_reasons=reasons or None,
    )


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """One answer to a challenge request."""

    method: str
    status: int | None
    body: str
    error: str | None
    latency_ms: float
    echoed: bool


@dataclass(frozen=True, slots=True)
class ChallengeReport:
    """The answers to both forms of the verification challenge."""

    value: str
    get: ChallengeAnswer
    post: ChallengeAnswer

    @property
    def ok(self) -> bool:
        return self.get.echoed and self.post.echoed

    def to_dict(self) -> dict[str, Any]:
        def one(answer: ChallengeAnswer) -> dict[str, Any]:
            return {
                "status": answer.status,
                "body": answer.body,
                "error": answer.error,
                "latency_ms": round(answer.latency_ms, 3),
                "echoed": answer.echoed,
            }

        return {
            "challenge": self.value,
            "ok": self.ok,
            "get": one(self.get),
            "post": one(self.post),
        }


def post_echoed(body: bytes, value: str) -> bool:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("challenge") == value
