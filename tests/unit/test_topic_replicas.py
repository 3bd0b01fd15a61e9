"""Three replicas asked while a broker of three is away: wait for it, do not dead-letter.

Kafka answers ``InvalidReplicationFactorError`` ("only 2 broker(s) are registered") both
when the cluster can never hold the replicas and while one of its brokers restarts. The
bridge tells them apart by the most brokers a metadata answer ever listed. The client here
is a stand-in that answers Metadata and CreateTopics only.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import InvalidReplicationFactorError, UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataRequest

from bridge.config.settings import Settings
from bridge.core.errors import PublishUnavailable
from bridge.core.reasons import DeadLetterReason
from bridge.kafka.topics import Topics

REFUSED = "Unable to replicate the partition 3 time(s): only 2 broker(s) are registered."


class Client:
    """Lists ``brokers`` brokers; every topic asked about is missing and cannot be created."""

    def __init__(self, brokers: int) -> None:
        self.brokers = brokers
        self.metadata_updates = 0
        self.cluster = SimpleNamespace(controller=None, brokers=self._nodes)

    def _nodes(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(nodeId=i + 1) for i in range(self.brokers)]

    def get_random_node(self) -> int:
        return 1

    def force_metadata_update(self) -> None:
        self.metadata_updates += 1

    async def send(self, node_id: int, request: Any) -> SimpleNamespace:
        if isinstance(request, MetadataRequest):
            topics: Sequence[str] = request._topics
            return SimpleNamespace(
                brokers=self._nodes(),
                topics=[(UnknownTopicOrPartitionError.errno, t, False, []) for t in topics],
            )
        return SimpleNamespace(
            topic_errors=[
                (t[0], InvalidReplicationFactorError.errno, REFUSED)
                for t in request.create_topic_requests
            ]
        )


def _topics() -> Topics:
    return Topics(Settings(receiver_name="alm", kafka_topic_replication_factor=3))


async def test_replicas_a_cluster_held_before_are_retried_while_a_broker_is_away() -> None:
    topics = _topics()
    client = Client(brokers=3)
    producer: Any = SimpleNamespace(client=client)
    with pytest.raises(PublishUnavailable):
        # All three listed, but the controller cannot place the replicas right now.
        await topics.prepare(producer, ["alm.a"], timeout_seconds=1)
    client.brokers = 2

    with pytest.raises(PublishUnavailable, match="3 replicas now"):
        await topics.prepare(producer, ["alm.b"], timeout_seconds=1)

    assert not topics.is_refused("alm.a")
    assert not topics.is_refused("alm.b")
    assert client.metadata_updates == 2


async def test_replicas_the_cluster_never_had_brokers_for_are_a_refusal() -> None:
    topics = _topics()
    producer: Any = SimpleNamespace(client=Client(brokers=1))

    refused = await topics.prepare(producer, ["alm.a"], timeout_seconds=1)

    assert refused["alm.a"].reason == DeadLetterReason.TOPIC_CONFIG
    assert topics.is_refused("alm.a")
