"""``alm-bridge tail`` without a broker: the default topics, how records are printed."""

from __future__ import annotations

import re

import orjson
from aiokafka.structs import ConsumerRecord

from bridge.cli.tail import TailOptions, consumer_options, default_pattern, record_dict, render
from bridge.config.settings import DeadLetterSettings, ReceiverSettings, RoutingSettings, Settings


def _record(value: bytes | None, key: bytes | None = b"k1") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="alm.enrollment",
        partition=2,
        offset=7,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(("ce_type", b"com.adobe.alm.enrollment"), ("ce_id", b"e-1")),
    )


def test_default_pattern_covers_every_topic_of_the_default_receiver() -> None:
    pattern = re.compile(default_pattern(Settings().effective_receivers()))
    for topic in ("alm.enrollment", "alm.other", "alm.deadletter", "alm.COURSE_ENROLLMENT"):
        assert pattern.match(topic), topic
    assert not pattern.match("alm")
    assert not pattern.match("almost.enrollment")
    assert not pattern.match("other.alm.x")


def test_default_pattern_follows_templates_overrides_and_dead_letters() -> None:
    receiver = ReceiverSettings(
        name="hr",
        routing=RoutingSettings(
            topic_template="hr.{event}.v1",
            overrides={"COURSE_ENROLLMENT": "enrol$ments"},
            catchall_topic="hr-misc",
        ),
        dead_letter=DeadLetterSettings(topic="hr-dlq"),
    )
    pattern = re.compile(default_pattern([receiver]))
    for topic in ("hr.x.v1", "enrol$ments", "hr-misc", "hr-dlq"):
        assert pattern.match(topic), topic
    assert not pattern.match("hr.x.v2")
    assert not pattern.match("alm.x")


def test_json_lines_embed_a_json_value_and_keep_headers() -> None:
    line = render(_record(b'{"eventId": "e-1"}'), as_json=True)
    data = orjson.loads(line)
    assert data == {
        "topic": "alm.enrollment",
        "partition": 2,
        "offset": 7,
        "timestamp": 1_700_000_000_000,
        "key": "k1",
        "headers": {"ce_type": "com.adobe.alm.enrollment", "ce_id": "e-1"},
        "value": {"eventId": "e-1"},
    }


def test_values_that_are_not_text_are_base64() -> None:
    data = record_dict(_record(b"\xff\xfe", key=b"\x80"))
    assert data["value_base64"] == "//4="
    assert data["key_base64"] == "gA=="
    assert "value" not in data


def test_text_output_names_topic_partition_offset_key_and_headers() -> None:
    text = render(_record(b'{"eventId": "e-1"}'), as_json=False)
    assert text.startswith(
        "--- alm.enrollment [partition 2, offset 7] 2023-11-14T22:13:20.000+00:00"
    )
    assert "key: k1" in text
    assert "ce_type: com.adobe.alm.enrollment" in text
    assert '"eventId": "e-1"' in text
    empty = render(_record(None, key=None), as_json=False).splitlines()
    assert empty[1] == "key: (none)"
    assert empty[-1] == "(no value)"


def test_the_reader_uses_the_bridges_kafka_settings() -> None:
    settings = Settings(
        kafka_bootstrap_servers="k1:9093",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="reader",
        kafka_sasl_password="pw",  # type: ignore[arg-type]
    )
    options = consumer_options(settings, TailOptions(group="ops", from_beginning=True))
    assert options["bootstrap_servers"] == "k1:9093"
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "reader"
    assert options["sasl_plain_password"] == "pw"
    assert options["group_id"] == "ops"
    assert options["auto_offset_reset"] == "earliest"
    assert options["enable_auto_commit"] is False
