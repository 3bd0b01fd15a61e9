"""The parts of aiokafka below its documented API that the bridge's adapters use, as used.

``bridge/kafka/topics.py`` builds ``MetadataRequest`` and ``CreateTopicsRequest`` and reads their
answers by position; ``bridge/kafka/publisher.py`` opens one connection with
``aiokafka.conn.create_conn``. docs/architecture.md lists both as adapters: aiokafka is
pinned to one release, and these tests fail when that release no longer has the classes,
fields and positions the code relies on.
"""

from __future__ import annotations

import inspect
import re
import struct
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.conn import create_conn
from aiokafka.protocol.admin import CreateTopicsRequest
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import SecretStr

from bridge.config.settings import Settings
from bridge.kafka.publisher import client_options

REPO = Path(__file__).resolve().parents[2]
# Every version of a request the release can build (the broker picks the highest both know).
VERSIONS = range(16)


def _structs(request: Any) -> list[Any]:
    built = []
    for version in VERSIONS:
        try:
            built.append(request.prepare({request.API_KEY: (version, version)}))
        except NotImplementedError:
            continue
    assert built, f"{type(request).__name__} builds no version"
    return built


def _entry_names(schema: Any, field: str) -> tuple[str, ...]:
    """The names of an array field's entries, in order: what the bridge reads by position."""
    return tuple(schema.fields[schema.names.index(field)].array_of.names)


def test_aiokafka_is_the_one_release_pinned_in_pyproject_and_the_lock() -> None:
    installed = metadata.version("aiokafka")
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    locked = re.findall(r"^aiokafka==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)

    assert f"aiokafka=={installed}" in dependencies
    assert locked == [installed]


def test_metadata_request_names_only_the_given_topics_and_creates_none_when_told() -> None:
    for request_struct in _structs(MetadataRequest(["alm.a"], allow_auto_topic_creation=False)):
        fields = {name: request_struct.get_item(name) for name in request_struct.SCHEMA.names}
        assert fields["topics"] == ["alm.a"]
        if request_struct.API_VERSION >= 4:
            assert fields["allow_auto_topic_creation"] is False
    for request_struct in _structs(MetadataRequest([], allow_auto_topic_creation=False)):
        if request_struct.API_VERSION >= 1:
            # An empty array (no topic at all), not a null one (every topic of the cluster).
            assert request_struct.encode()[:4] == struct.pack(">i", 0)


def test_metadata_answers_list_brokers_and_topics_as_error_code_then_name() -> None:
    for request_struct in _structs(MetadataRequest(["alm.a"], allow_auto_topic_creation=False)):
        schema = request_struct.RESPONSE_TYPE.SCHEMA
        assert "brokers" in schema.names
        assert _entry_names(schema, "topics")[:2] == ("error_code", "topic")


def test_create_topics_request_takes_name_partitions_replicas_and_the_broker_timeout() -> None:
    request = CreateTopicsRequest(
        create_topic_requests=[("alm.a", 3, 1, [], [])], timeout=2500, validate_only=False
    )
    for request_struct in _structs(request):
        schema = request_struct.SCHEMA
        assert _entry_names(schema, "create_topic_requests")[:3] == (
            "topic",
            "num_partitions",
            "replication_factor",
        )
        assert request_struct.get_item("timeout") == 2500


def test_create_topics_answers_are_name_error_code_and_message() -> None:
    request = CreateTopicsRequest(
        create_topic_requests=[("alm.a", 3, 1, [], [])], timeout=2500, validate_only=False
    )
    for request_struct in _structs(request):
        names = _entry_names(request_struct.RESPONSE_TYPE.SCHEMA, "topic_errors")
        expected = ("topic", "error_code", "error_message")
        assert names == expected[: len(names)]
        assert len(names) >= 2


async def test_the_producers_client_has_what_topics_py_calls() -> None:
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1")
    try:
        for name in ("send", "force_metadata_update", "get_random_node"):
            assert callable(getattr(client, name))
        assert isinstance(client.cluster, ClusterMetadata)
        assert client.cluster.controller is None
        assert client.cluster.brokers() == set()
    finally:
        await client.close()


def test_create_conn_takes_the_bridges_client_options_as_keywords() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr("secret"),
    )
    options = client_options(settings)
    options.pop("bootstrap_servers")
    parameters = inspect.signature(create_conn).parameters

    assert inspect.iscoroutinefunction(create_conn)
    assert list(parameters)[:2] == ["host", "port"]
    assert set(options) | {"ssl_context"} <= {
        name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY
    }
