"""Kafka brokers for tests: an external one, a testcontainers one, or a LocalKafka we own.

Loaded from tests/conftest.py through ``pytest_plugins``. Order of preference for
``kafka_bootstrap``: ``KAFKA_BOOTSTRAP_SERVERS``; testcontainers when installed and a Docker
engine answers; a broker from deploy/kafka/localkafka.py on free ports. With
``ALM_BRIDGE_REQUIRE_KAFKA=1`` (CI) a missing broker fails the tests instead of skipping them.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord

from deploy.kafka.localkafka import (
    LocalKafka,
    LocalKafkaCluster,
    LocalKafkaError,
    NodePorts,
    ensure_jars,
)
from deploy.ports import free_ports
from tests.system.faultproxy import FaultProxy

__all__ = [
    "ACL_KAFKA_MAX_PARTITIONS",
    "KafkaCluster",
    "KafkaSource",
    "LocalKafka",
    "LocalKafkaCluster",
    "acl_kafka",
    "client_security",
    "consume_all",
    "free_ports",
    "kafka_bootstrap",
    "kafka_broker",
    "kafka_cluster",
    "kafka_source",
    "secure_kafka",
]

REQUIRE_ENV = "ALM_BRIDGE_REQUIRE_KAFKA"
ACL_KAFKA_MAX_PARTITIONS = 4
START_TIMEOUT_S = 90.0

_prefetch_error: str | None = None


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"Kafka is required ({REQUIRE_ENV}=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fetch the Kafka jars before any test runs, outside every per-test timeout.

    Only when a selected test will need a LocalKafka.
    """
    global _prefetch_error
    if session.config.option.collectonly:
        return
    needs_local = {"secure_kafka", "kafka_broker", "acl_kafka", "kafka_cluster"}
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        needs_local |= {"kafka_source", "kafka_bootstrap"}
    if not any(needs_local & set(getattr(item, "fixturenames", ())) for item in session.items):
        return
    try:
        ensure_jars(_env_jars_dir())
    except (LocalKafkaError, OSError) as exc:
        _prefetch_error = str(exc)


def _env_jars_dir() -> Path | None:
    value = os.environ.get("KAFKA_JARS_DIR")
    return Path(value) if value else None


def _start_local(broker: LocalKafka, reasons: tuple[str, ...] = ()) -> None:
    if _prefetch_error is not None:
        _unavailable("; ".join([*reasons, _prefetch_error]))
    try:
        broker.start(timeout_s=START_TIMEOUT_S)
    except (LocalKafkaError, OSError) as exc:
        _unavailable("; ".join([*reasons, f"could not start a local broker: {exc}"]))
    except BaseException:
        # e.g. pytest-timeout firing during set-up: never leave a JVM behind.
        broker.stop()
        raise


@dataclass(frozen=True)
class KafkaSource:
    """Where the session's broker came from; ``broker`` is set only when we own it."""

    bootstrap: str
    origin: str
    broker: LocalKafka | None = None


def _try_testcontainers(reasons: list[str]) -> Any:
    try:
        tc_kafka = importlib.import_module("testcontainers.kafka")
        docker = importlib.import_module("docker")
    except ImportError:
        reasons.append("testcontainers is not installed")
        return None
    try:
        docker.from_env().ping()
    except Exception as exc:
        reasons.append(f"no Docker engine answers ({exc})")
        return None
    container = tc_kafka.KafkaContainer().with_kraft()
    try:
        container.start()
    except Exception as exc:
        reasons.append(f"testcontainers could not start Kafka ({exc})")
        return None
    return container


@pytest.fixture(scope="session")
def kafka_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSource]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield KafkaSource(bootstrap=external, origin="KAFKA_BOOTSTRAP_SERVERS")
        return
    reasons: list[str] = []
    container = _try_testcontainers(reasons)
    if container is not None:
        try:
            yield KafkaSource(bootstrap=container.get_bootstrap_server(), origin="testcontainers")
        finally:
            container.stop()
        return
    port, controller_port = free_ports(2)
    broker = LocalKafka(
        port=port,
        controller_port=controller_port,
        state_dir=tmp_path_factory.mktemp("kafka"),
        jars_dir=_env_jars_dir(),
    )
    _start_local(broker, tuple(reasons))
    try:
        yield KafkaSource(bootstrap=broker.bootstrap, origin="localkafka", broker=broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_source: KafkaSource) -> str:
    """``host:port`` of a PLAINTEXT Kafka listener for the whole session."""
    return kafka_source.bootstrap


@pytest.fixture
def kafka_broker(kafka_source: KafkaSource) -> Iterator[LocalKafka]:
    """The session's LocalKafka, for tests that stop and start it; running again afterwards."""
    broker = kafka_source.broker
    if broker is None:
        pytest.skip(f"the broker is external ({kafka_source.origin}); it cannot be stopped here")
    yield broker
    if not broker.is_running():
        _start_local(broker)


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A second LocalKafka with SASL_PLAINTEXT, SASL_SSL and SSL listeners.

    SCRAM users (SHA-256 and SHA-512) are in ``scram_users``, PLAIN users in
    ``plain_users``; clients trust ``ca_file``, and may present ``client_cert_file`` /
    ``client_key_file`` on the SSL listener.
    """
    port, controller_port, sasl_plaintext, sasl_ssl, ssl_port = free_ports(5)
    broker = LocalKafka(
        port=port,
        controller_port=controller_port,
        state_dir=tmp_path_factory.mktemp("kafka-secure"),
        jars_dir=_env_jars_dir(),
        sasl_plaintext_port=sasl_plaintext,
        sasl_ssl_port=sasl_ssl,
        ssl_port=ssl_port,
        scram_users={"alice": secrets.token_urlsafe(12)},
        plain_users={"bob": secrets.token_urlsafe(12)},
    )
    _start_local(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def acl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A LocalKafka that enforces ACLs, for one test module; topics are never auto-created.

    Kafka's StandardAuthorizer is on. Over SASL_PLAINTEXT, the SCRAM user ``bridge`` may do
    only what ``acl_kafka.acls(...)`` grants it; ``admin`` is a super user. The PLAINTEXT
    listener (``bootstrap``) is the admin side too: create topics and read records there.
    ``auto.create.topics.enable`` is false, as on clusters whose topics are managed, and a
    create-topic policy refuses topics of more than ``ACL_KAFKA_MAX_PARTITIONS`` partitions.
    """
    port, controller_port, sasl_plaintext = free_ports(3)
    broker = LocalKafka(
        port=port,
        controller_port=controller_port,
        state_dir=tmp_path_factory.mktemp("kafka-acl"),
        jars_dir=_env_jars_dir(),
        sasl_plaintext_port=sasl_plaintext,
        scram_users={"bridge": secrets.token_urlsafe(12), "admin": secrets.token_urlsafe(12)},
        authorizer=True,
        super_users=["admin"],
        broker_properties={"auto.create.topics.enable": "false"},
        topic_policy_max_partitions=ACL_KAFKA_MAX_PARTITIONS,
    )
    _start_local(broker)
    try:
        yield broker
    finally:
        broker.stop()


CLUSTER_NODES = 3
# The node whose client listener is reached only through the fault proxy.
PROXIED_NODE = 3
CLUSTER_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class KafkaCluster:
    """A replicated cluster; node ``proxied_node`` is reached by clients through ``proxy``."""

    cluster: LocalKafkaCluster
    proxy: FaultProxy
    proxied_node: int

    @property
    def bootstrap(self) -> str:
        """Every node's client address (the proxy's for the proxied node)."""
        return self.cluster.bootstrap

    @property
    def nodes(self) -> tuple[LocalKafka, ...]:
        return self.cluster.nodes

    def node(self, node_id: int) -> LocalKafka:
        return self.cluster.node(node_id)

    def restore(self, timeout_s: float = CLUSTER_START_TIMEOUT_S) -> None:
        """Every node running and reachable again, whatever a test did to it."""
        self.proxy.heal()
        self.cluster.start(timeout_s)


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three combined broker+controller nodes, replication factor 3, min.insync.replicas 2.

    Once per test module (three JVMs of 256 MB are not kept for the rest of the session).
    Clients reach node ``PROXIED_NODE`` through a :class:`FaultProxy`, which a test can
    blackhole; the brokers replicate on a listener of their own, outside the proxy.
    """
    if _prefetch_error is not None:
        _unavailable(_prefetch_error)
    ports = free_ports(3 * CLUSTER_NODES)
    layout = [
        NodePorts(i + 1, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
        for i in range(CLUSTER_NODES)
    ]
    proxied = layout[PROXIED_NODE - 1]
    proxy = FaultProxy([("127.0.0.1", proxied.port)])
    proxy.start()
    layout[PROXIED_NODE - 1] = NodePorts(
        proxied.node_id,
        proxied.port,
        proxied.controller_port,
        proxied.internal_port,
        advertised_port=proxy.port,
    )
    cluster = LocalKafkaCluster(
        state_dir=tmp_path_factory.mktemp("kafka-cluster"),
        nodes=layout,
        jars_dir=_env_jars_dir(),
    )
    try:
        try:
            cluster.start(timeout_s=CLUSTER_START_TIMEOUT_S)
        except (LocalKafkaError, OSError) as exc:
            _unavailable(f"could not start a local cluster: {exc}")
        yield KafkaCluster(cluster=cluster, proxy=proxy, proxied_node=PROXIED_NODE)
    finally:
        cluster.stop()
        proxy.stop()


def client_security(
    broker: LocalKafka,
    protocol: str,
    mechanism: str | None = None,
    *,
    password: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """``(bootstrap, kwargs)`` for an aiokafka client of ``broker`` over ``protocol``.

    ``mechanism`` picks the first SCRAM or PLAIN user; ``password`` overrides theirs.
    """
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context(cafile=str(broker.ca_file))
    if protocol.startswith("SASL_"):
        if mechanism is None:
            raise ValueError(f"{protocol} needs a SASL mechanism")
        users = broker.plain_users if mechanism == "PLAIN" else broker.scram_users
        username, user_password = next(iter(users.items()))
        kwargs |= {
            "sasl_mechanism": mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": user_password if password is None else password,
        }
    bootstrap = {
        "PLAINTEXT": broker.bootstrap,
        "SASL_PLAINTEXT": broker.sasl_plaintext_bootstrap,
        "SASL_SSL": broker.sasl_ssl_bootstrap,
        "SSL": broker.ssl_bootstrap,
    }[protocol]
    return bootstrap, kwargs


async def consume_all(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    timeout_s: float = 10.0,
    **security: Any,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning, without a consumer group.

    Returns once ``expected`` records arrived or, when ``expected`` is None, once the
    end offsets seen at the start are reached; in both cases at the latest after
    ``timeout_s``, with whatever was read by then.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **security,
    )
    records: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    await consumer.start()
    try:
        end_offsets: dict[Any, int] | None = None
        while (remaining := deadline - loop.time()) > 0:
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for batch in batches.values():
                records.extend(batch)
            if expected is not None:
                if len(records) >= expected:
                    break
                continue
            assignment = consumer.assignment()
            if not assignment:
                continue
            if end_offsets is None:
                end_offsets = await consumer.end_offsets(list(assignment))
            positions = {tp: await consumer.position(tp) for tp in assignment}
            if all(positions[tp] >= end for tp, end in end_offsets.items()):
                break
    finally:
        await consumer.stop()
    return records
