"""Kafka's answers sorted into "retry later" (503) and "never" (dead letter)."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    PolicyViolationError,
    RecordListTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from bridge.core.reasons import DeadLetterReason
from bridge.core.sink import Refusal
from bridge.kafka.batching import LaneClosed
from bridge.kafka.topics import refusal_for_code, refusal_of


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TopicAuthorizationFailedError(), "topic_not_authorized"),
        (ClusterAuthorizationFailedError(), "topic_not_authorized"),
        (MessageSizeTooLargeError(), "record_too_large"),
        (RecordListTooLargeError(), "record_too_large"),
        (PolicyViolationError(), "topic_policy"),
        (InvalidReplicationFactorError(), "topic_config"),
        (InvalidTopicError("Topic 'a.b' collides with existing topic: a_b"), "topic_collision"),
        (InvalidTopicError("illegal character"), "topic_invalid"),
        (CorruptRecordException(), "kafka_refused"),
    ],
)
def test_permanent_refusals(error: Exception, reason: str) -> None:
    refusal = refusal_of(error)
    assert refusal is not None
    assert refusal.reason == reason
    assert type(error).__name__ in refusal.detail


@pytest.mark.parametrize(
    "error",
    [
        LeaderNotAvailableError(),
        NotLeaderForPartitionError(),
        NotEnoughReplicasError(),
        RequestTimedOutError(),
        KafkaTimeoutError(),
        KafkaConnectionError(),
        UnknownTopicOrPartitionError(),
        OutOfOrderSequenceNumber(),
        LaneClosed("stopped"),
        OSError("connection reset"),
    ],
)
def test_retriable_conditions_are_not_refusals(error: Exception) -> None:
    assert refusal_of(error) is None


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (17, "Topic 'x.y' collides with existing topic: x_y", "topic_collision"),
        (17, "Topic name is illegal", "topic_invalid"),
        (29, None, "topic_not_authorized"),
        (31, None, "topic_not_authorized"),
        (44, "no", "topic_policy"),
        (38, "Replication factor: 3 larger than available brokers: 1.", "topic_config"),
        (7, None, None),  # request timed out: ask again
        (41, None, None),  # not the controller: ask again
    ],
)
def test_topic_error_codes(code: int, message: str | None, expected: str | None) -> None:
    refusal = refusal_for_code(code, message)
    assert (refusal.reason if refusal else None) == expected
    if refusal is not None and message:
        assert message in refusal.detail


def test_a_refusal_is_plain_data() -> None:
    assert Refusal(DeadLetterReason.TOPIC_MISSING, "x") == Refusal(
        DeadLetterReason.TOPIC_MISSING, "x"
    )
