"""The closed sets of codes the bridge gives: the one definition of each, sans-I/O.

Every value is a public contract: a ``dlq_reason`` header, the ``error`` of a JSON answer,
a metric label, a request line's ``outcome``. Members are ``str`` (``StrEnum``), so they
go on the wire, into headers and into labels as they are, with no conversion. The
metrics pre-create their series from these enums, the AsyncAPI document names its
reasons through them, and ``tests/unit/test_reasons.py`` checks the code, the operations
guide, the README and the AsyncAPI document against them.
"""

from __future__ import annotations

from enum import StrEnum, unique
from typing import Final, Literal, get_args


@unique
class DeadLetterReason(StrEnum):
    """Why a record went to the dead-letter topic: its ``dlq_reason`` header and the
    ``reason`` label of ``almbridge_dead_letters_total``.

    A whole batch is dead-lettered with the error code of its body (the first group);
    under the ``reject`` policy the same code is the ``error`` of the 400 answer.
    """

    # A body that can never be accepted (errors.InvalidBatch).
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    DUPLICATE_KEY = "duplicate_key"
    TOO_DEEP = "too_deep"
    STRING_TOO_LONG = "string_too_long"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    INVALID_ENVELOPE = "invalid_envelope"
    TOO_MANY_EVENTS = "too_many_events"
    INVALID_EVENT = "invalid_event"
    # Also an event Kafka refuses for its size.
    RECORD_TOO_LARGE = "record_too_large"
    BATCH_TOO_COMPLEX = "batch_too_complex"
    # An event name the routing does not list, under the unlisted policy ``deadletter``.
    UNLISTED_EVENT = "unlisted_event"
    # A name that cannot use the topic template (routing.FallbackReason).
    NAME_PATTERN = "name_pattern"
    RESERVED_TOPIC = "reserved_topic"
    # Also a topic Kafka refuses because it collides with another.
    TOPIC_COLLISION = "topic_collision"
    TOPIC_LIMIT = "topic_limit"
    # An event Kafka refuses for good (bridge.kafka.topics).
    TOPIC_INVALID = "topic_invalid"
    TOPIC_NOT_AUTHORIZED = "topic_not_authorized"
    TOPIC_POLICY = "topic_policy"
    TOPIC_CONFIG = "topic_config"
    TOPIC_MISSING = "topic_missing"
    KAFKA_REFUSED = "kafka_refused"


# Why an event name could not use the topic template: it goes to the catch-all topic (or,
# under the unlisted policy ``deadletter``, to the dead-letter topic with this reason).
FallbackReason = Literal[
    DeadLetterReason.NAME_PATTERN,
    DeadLetterReason.RESERVED_TOPIC,
    DeadLetterReason.TOPIC_COLLISION,
    DeadLetterReason.TOPIC_LIMIT,
]
FALLBACK_REASONS: Final[tuple[FallbackReason, ...]] = get_args(FallbackReason)
# Why Kafka refuses a record for good (sink.Refusal): the event is dead-lettered with it,
# or, under the ``reject`` policy, the batch answered 400 with it.
KafkaRefusal = Literal[
    DeadLetterReason.TOPIC_COLLISION,
    DeadLetterReason.TOPIC_INVALID,
    DeadLetterReason.TOPIC_NOT_AUTHORIZED,
    DeadLetterReason.TOPIC_POLICY,
    DeadLetterReason.TOPIC_CONFIG,
    DeadLetterReason.TOPIC_MISSING,
    DeadLetterReason.RECORD_TOO_LARGE,
    DeadLetterReason.KAFKA_REFUSED,
]
KAFKA_REFUSALS: Final[tuple[KafkaRefusal, ...]] = get_args(KafkaRefusal)
# The refusals that concern the topic, not the record: remembered for the topic.
TOPIC_REFUSALS: Final[frozenset[KafkaRefusal]] = frozenset(
    r for r in KAFKA_REFUSALS if r.startswith("topic_")
)


@unique
class AuthReason(StrEnum):
    """Why a request did not authenticate: the ``reason`` label of
    ``almbridge_auth_failures_total``; the 401 answers ``auth_<reason>``."""

    MISSING = "missing"
    MALFORMED = "malformed"
    MISMATCH = "mismatch"


@unique
class ErrorCode(StrEnum):
    """The ``error`` of a JSON answer that is not a body's own error code (those are
    :class:`DeadLetterReason` members, answered 400 under the ``reject`` policy)."""

    UNKNOWN_RECEIVER = "unknown_receiver"  # 404
    INVALID_CHALLENGE = "invalid_challenge"  # 400, never dead-lettered
    INCOMPLETE_BODY = "incomplete_body"  # 400
    INVALID_CONTENT_ENCODING = "invalid_content_encoding"  # 400
    AUTH_MISSING = "auth_missing"  # 401
    AUTH_MALFORMED = "auth_malformed"  # 401
    AUTH_MISMATCH = "auth_mismatch"  # 401
    ACCOUNT_NOT_ACCEPTED = "account_not_accepted"  # 403
    BODY_TIMEOUT = "body_timeout"  # 408
    BODY_TOO_LARGE = "body_too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    UNSUPPORTED_CONTENT_ENCODING = "unsupported_content_encoding"  # 415
    TOO_MANY_BATCHES = "too_many_batches"  # 429
    INTERNAL_ERROR = "internal_error"  # 500
    SHUTTING_DOWN = "shutting_down"  # 503
    TOO_MANY_BODY_READS = "too_many_body_reads"  # 503
    KAFKA_UNAVAILABLE = "kafka_unavailable"  # 503
    DEAD_LETTER_UNAVAILABLE = "dead_letter_unavailable"  # 503


# The 401 answer's code for each reason (ErrorCode raises at import if one is missing).
AUTH_ERROR_CODES: Final[dict[AuthReason, ErrorCode]] = {
    reason: ErrorCode(f"auth_{reason}") for reason in AuthReason
}


@unique
class RequestOutcome(StrEnum):
    """What became of a webhook request: its request line's ``outcome`` and, for a batch
    (every member but the last two), the ``outcome`` label of ``almbridge_batches_total``."""

    PUBLISHED = "published"
    DUPLICATE = "duplicate"  # every event already seen
    DEAD_LETTERED = "dead_lettered"
    REJECTED = "rejected"  # 400, 403, 408, 413, 415
    UNAUTHORIZED = "unauthorized"  # 401
    UNAVAILABLE = "unavailable"  # 503
    THROTTLED = "throttled"  # 429 (and 503 too_many_body_reads)
    # Not batches: the request line only.
    PROBE = "probe"
    CHALLENGE = "challenge"


BATCH_OUTCOMES: Final[tuple[RequestOutcome, ...]] = tuple(
    o for o in RequestOutcome if o not in {RequestOutcome.PROBE, RequestOutcome.CHALLENGE}
)


@unique
class BodyReadCut(StrEnum):
    """Why a request body was not read to the end: the ``outcome`` label of
    ``almbridge_body_reads_cut_total``."""

    TIMEOUT = "timeout"  # too slow: 408
    EVICTED = "evicted"  # cut short to make room for a newer request: 408
    BUSY = "busy"  # every read young: 503


@unique
class HeaderCut(StrEnum):
    """Why a connection was closed while its request headers were arriving: the
    ``reason`` label of ``almbridge_connections_cut_total``."""

    HEADER_TIMEOUT = "header_timeout"
    HEADER_TOO_LARGE = "header_too_large"
    EVICTED = "evicted"
    BUSY = "busy"


@unique
class FleetWriteFailure(StrEnum):
    """Why an event's digest did not reach the fleet topic: the ``reason`` label of
    ``almbridge_dedupe_fleet_writes_failed_total``."""

    DROPPED = "dropped"  # the queue was full, or the topic refused
    FAILED = "failed"  # Kafka did not store it


@unique
class ReloadResult(StrEnum):
    """What became of a change of the TLS certificate or of the receivers' configuration:
    the ``result`` label of ``almbridge_tls_certificate_reloads_total`` and
    ``almbridge_config_reloads_total``."""

    LOADED = "loaded"
    REFUSED = "refused"
