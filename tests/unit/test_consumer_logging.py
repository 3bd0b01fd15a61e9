"""The example consumer's first run on a fresh broker logs no ERROR for a retried lookup."""

from __future__ import annotations

import logging

from aiokafka.errors import CoordinatorNotAvailableError, GroupAuthorizationFailedError
from alm_consumer import TransientCoordinatorFilter


def _record(err: Exception) -> logging.LogRecord:
    return logging.LogRecord(
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
        __file__,
        1,
        "Group Coordinator Request failed: %s",
        (err,),
        None,
    )


def test_a_retried_coordinator_lookup_is_info() -> None:
    record = _record(CoordinatorNotAvailableError())
    assert TransientCoordinatorFilter().filter(record)
    assert record.levelno == logging.INFO
    assert record.levelname == "INFO"
    assert record.getMessage().startswith("waiting for the group coordinator")


def test_an_error_that_is_not_retried_stays_an_error() -> None:
    record = _record(GroupAuthorizationFailedError())
    assert TransientCoordinatorFilter().filter(record)
    assert record.levelno == logging.ERROR


def test_a_topic_not_created_yet_is_info() -> None:
    record = logging.LogRecord(
        "aiokafka.cluster",
        logging.ERROR,
        __file__,
        1,
        "Topic %s not found in cluster metadata",
        ("alm.deadletter",),
        None,
    )
    assert TransientCoordinatorFilter().filter(record)
    assert record.levelno == logging.INFO
    assert "alm.deadletter does not exist yet" in record.getMessage()
