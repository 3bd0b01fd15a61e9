"""The bridge's producer over TLS and SASL against a local broker with those listeners."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from bridge.config.settings import Settings
from bridge.core.errors import KafkaStartError, PublishUnavailable
from bridge.core.records import Record
from bridge.kafka.publisher import Publisher
from tests.kafka_fixtures import LocalKafka, consume_all

pytestmark = pytest.mark.kafka


def _settings(broker: LocalKafka, protocol: str, mechanism: str | None, **kw: Any) -> Settings:
    bootstrap = {
        "SASL_PLAINTEXT": broker.sasl_plaintext_bootstrap,
        "SASL_SSL": broker.sasl_ssl_bootstrap,
        "SSL": broker.ssl_bootstrap,
    }[protocol]
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_security_protocol": protocol,
        "kafka_topic_partitions": 1,
    }
    if protocol in ("SSL", "SASL_SSL"):
        values["kafka_ssl_cafile"] = broker.ca_file
    if mechanism is not None:
        users = broker.plain_users if mechanism == "PLAIN" else broker.scram_users
        username, password = next(iter(users.items()))
        values |= {
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": username,
            "kafka_sasl_password": password,
        }
    values.update(kw)
    return Settings(**values)


async def _round_trip(broker: LocalKafka, settings: Settings) -> None:
    topic = f"secure.{uuid.uuid4().hex[:8]}"
    publisher = Publisher(settings=settings)
    await publisher.start(20)
    try:
        record = Record(topic, b"k", b'{"ok": true}', [("ce_id", b"1")])
        await publisher.publish([record], timeout_seconds=10)
    finally:
        await publisher.stop(5)
    records = await consume_all(broker.bootstrap, topic, expected=1)
    assert [r.value for r in records] == [b'{"ok": true}']


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_bridge_publishes_over_sasl(
    secure_kafka: LocalKafka, protocol: str, mechanism: str
) -> None:
    await _round_trip(secure_kafka, _settings(secure_kafka, protocol, mechanism))


async def test_bridge_publishes_over_tls_with_a_client_certificate(
    secure_kafka: LocalKafka,
) -> None:
    settings = _settings(
        secure_kafka,
        "SSL",
        None,
        kafka_ssl_certfile=secure_kafka.client_cert_file,
        kafka_ssl_keyfile=secure_kafka.client_key_file,
    )
    await _round_trip(secure_kafka, settings)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_wrong_password_is_a_clear_start_error(
    secure_kafka: LocalKafka, mechanism: str
) -> None:
    settings = _settings(
        secure_kafka, "SASL_PLAINTEXT", mechanism, kafka_sasl_password="not-the-password"
    )
    publisher = Publisher(settings=settings)
    started = time.monotonic()

    with pytest.raises(KafkaStartError) as caught:
        await publisher.start(15)

    assert time.monotonic() - started < 15
    assert "auth" in caught.value.detail.lower()
    await publisher.stop(2)


async def test_untrusted_certificate_is_a_clear_start_error(secure_kafka: LocalKafka) -> None:
    settings = _settings(secure_kafka, "SSL", None, kafka_ssl_cafile=None)
    publisher = Publisher(settings=settings)

    with pytest.raises((KafkaStartError, PublishUnavailable)) as caught:
        await publisher.start(15)

    assert isinstance(caught.value, KafkaStartError), caught.value.detail
    assert "certificate" in caught.value.detail.lower()
    await publisher.stop(2)
