"""The local Kafka runner: round trips on every listener, auth failures, restarts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from tests.kafka_fixtures import LocalKafka, client_security, consume_all

pytestmark = pytest.mark.kafka


def _topic(prefix: str) -> str:
    return f"test.{prefix}.{uuid.uuid4().hex[:8]}"


async def _produce(bootstrap: str, topic: str, values: list[bytes], **security: Any) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **security
    )
    try:
        async with asyncio.timeout(30):
            await producer.start()
            for i, value in enumerate(values):
                await producer.send_and_wait(
                    topic, value, key=f"k{i}".encode(), headers=[("ce_id", f"id-{i}".encode())]
                )
    finally:
        await producer.stop()


async def test_plaintext_round_trip(kafka_bootstrap: str) -> None:
    topic = _topic("plain")
    values = [b"one", b"two", b"three"]

    await _produce(kafka_bootstrap, topic, values)
    records = await consume_all(kafka_bootstrap, topic, expected=3)

    assert [r.value for r in records] == values
    assert [r.key for r in records] == [b"k0", b"k1", b"k2"]
    assert [list(r.headers) for r in records] == [[("ce_id", f"id-{i}".encode())] for i in range(3)]


async def test_consume_all_without_expected_reads_to_the_end(kafka_bootstrap: str) -> None:
    topic = _topic("drain")
    await _produce(kafka_bootstrap, topic, [b"a", b"b"])

    records = await consume_all(kafka_bootstrap, topic, timeout_s=20)

    assert [r.value for r in records] == [b"a", b"b"]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_round_trip(secure_kafka: LocalKafka, protocol: str, mechanism: str) -> None:
    bootstrap, security = client_security(secure_kafka, protocol, mechanism)
    topic = _topic(f"{protocol}.{mechanism}".lower())

    await _produce(bootstrap, topic, [b"secret"], **security)
    records = await consume_all(bootstrap, topic, expected=1, **security)

    assert [r.value for r in records] == [b"secret"]


@pytest.mark.parametrize("with_client_cert", [False, True], ids=["tls", "mtls"])
async def test_ssl_round_trip(secure_kafka: LocalKafka, with_client_cert: bool) -> None:
    bootstrap, security = client_security(secure_kafka, "SSL")
    if with_client_cert:
        security["ssl_context"].load_cert_chain(
            secure_kafka.client_cert_file, secure_kafka.client_key_file
        )
    topic = _topic("ssl")

    await _produce(bootstrap, topic, [b"tls"], **security)
    records = await consume_all(bootstrap, topic, expected=1, **security)

    assert [r.value for r in records] == [b"tls"]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
async def test_wrong_password_is_rejected(
    secure_kafka: LocalKafka, protocol: str, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, security = client_security(secure_kafka, protocol, mechanism, password="wrong")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **security)

    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        try:
            async with asyncio.timeout(20):
                with pytest.raises(KafkaConnectionError):
                    await producer.start()
        finally:
            await producer.stop()
            # aiokafka drops the rejected connection without awaiting its TLS close; let the
            # broker's immediate close arrive before the test's event loop is torn down.
            await asyncio.sleep(0.5)

    assert "SaslAuthenticationFailed" in caplog.text


async def test_stop_and_start_keep_records(kafka_broker: LocalKafka) -> None:
    topic = _topic("restart")
    await _produce(kafka_broker.bootstrap, topic, [b"before"])

    kafka_broker.stop()
    assert not kafka_broker.is_running()
    assert not kafka_broker.pid_file.exists()
    kafka_broker.stop()
    kafka_broker.start(timeout_s=90)

    assert kafka_broker.is_running()
    await _produce(kafka_broker.bootstrap, topic, [b"after"])
    records = await consume_all(kafka_broker.bootstrap, topic, expected=2)
    assert [r.value for r in records] == [b"before", b"after"]
