"""The benchmark's Benthos peer (bench/benthospeer.py) publishes what the bridge publishes.

``make bench`` judges the bridge's highest rate against the Benthos peer's, measured in the
same run. That only means something if the peer does the same work: checks the signature,
stores every event of a batch once, in its event's topic, keyed ``account:eventId`` and
carrying the batch's accountId, and answers only after Kafka acknowledged them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bench import benthospeer
from bench.bodies import BodyFactory
from bench.peer import NOT_TOPIC_CHARS
from deploy.supervisor import Process, SupervisorError, http_ok
from tests.kafka_fixtures import consume_all, free_ports

pytestmark = pytest.mark.kafka

SECRET = "benthos-peer-secret"
PATH = "/webhooks/bench"


@pytest.fixture
def peer(kafka_bootstrap: str, tmp_path: Path) -> Iterator[str]:
    binary = benthospeer.build()
    port, http_port = free_ports(2)
    how = benthospeer.launch(
        binary,
        port=port,
        http_port=http_port,
        bootstrap=kafka_bootstrap,
        secret=SECRET,
        path=PATH,
    )
    process = Process("the Benthos peer", log=tmp_path / "peer.log")
    process.start(how.command, env=how.env)
    try:
        try:
            process.wait_until(lambda: http_ok(how.ready_url), 60.0, what=how.ready_url)
        except SupervisorError as exc:
            raise AssertionError(
                f"the Benthos peer did not start: {exc}\n{process.log_tail()}"
            ) from None
        yield how.url
    finally:
        process.stop()


def _topic(event_name: object) -> str:
    return "alm." + NOT_TOPIC_CHARS.sub("_", str(event_name).lower())


async def test_the_benthos_peer_stores_every_event_once_and_refuses_a_bad_signature(
    peer: str, kafka_bootstrap: str
) -> None:
    account = random.randrange(10**8, 10**9)
    factory = BodyFactory(
        secret=SECRET.encode(),
        header="X-ALM-Signature",
        account_id=account,
        seed=11,
        tag_base=random.randrange(1 << 30),
    )
    (body, headers), (forged, _) = factory.build(20, 2)
    events = orjson.loads(body)["events"]
    topics = sorted({_topic(e["eventName"]) for e in events})
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        for topic in topics:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()

    async with aiohttp.ClientSession() as session:
        bad = {**headers, "X-ALM-Signature": "0" * 64}
        async with session.post(peer, data=forged, headers=bad) as answer:
            assert answer.status >= 400
        async with session.post(peer, data=body, headers=headers) as answer:
            assert answer.status == 200
            summary = orjson.loads(await answer.read())
    assert summary == {"received": 20, "published": 20, "duplicates": 0, "deadLettered": 0}

    stored: dict[str, list[dict[str, object]]] = {}
    for topic in topics:
        for record in await consume_all(kafka_bootstrap, topic):
            if record.key is not None and record.key.startswith(f"{account}:".encode()):
                stored.setdefault(record.key.decode(), []).append(orjson.loads(record.value or b""))
    expected = {f"{account}:{e['eventId']}": e for e in events}
    assert sorted(stored) == sorted(expected)  # every event once; the forged batch's none
    for key, [value] in stored.items():
        assert value == {**expected[key], "accountId": account}
