"""Fixtures shared by the integration tests that drive aiokafka's producer directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """An idempotent producer (acks=all), the bridge's settings, on the test broker."""
    made = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await made.start()
    try:
        yield made
    finally:
        await made.stop()
