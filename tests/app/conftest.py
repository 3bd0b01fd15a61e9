"""The real app through aiohttp's test client, against the session's real Kafka broker."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bridge.config.settings import (
    AuthSettings,
    DeadLetterSettings,
    ReceiverSettings,
    RoutingSettings,
    Settings,
)
from bridge.core.auth import sign_hmac
from bridge.core.records import Record
from bridge.service.app import create_app
from bridge.service.handlers import STATE, State
from tests.contract import contract_for
from tests.kafka_fixtures import consume_all
from tests.memory_sink import MemorySink

SECRET = b"test-secret-0123456789"
SAMPLES = Path(__file__).resolve().parents[2] / "bridge" / "samples"
AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


@dataclass
class Bridge:
    """A running app plus what a test needs to talk to it and check Kafka."""

    client: TestClient[Any, Any]
    registry: CollectorRegistry
    prefix: str
    bootstrap: str
    receiver: str = "alm"
    sink: MemorySink | None = None
    settings: Settings | None = None

    @property
    def state(self) -> State:
        app = self.client.app
        assert isinstance(app, web.Application)
        state: State = app[STATE]
        return state

    def topic(self, event_name: str) -> str:
        return f"{self.prefix}.{event_name}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}.deadletter"

    def stored(self) -> list[Record]:
        """What the in-memory Kafka holds (only for an offline bridge)."""
        assert self.sink is not None, "a bridge on a real broker: read Kafka instead"
        return self.sink.stored()

    async def consume(self, topic: str, **kw: Any) -> list[ConsumerRecord[bytes, bytes]]:
        """``consume_all`` plus: every record must match the bridge's AsyncAPI document."""
        records = await consume_all(self.bootstrap, topic, **kw)
        assert self.settings is not None
        contract_for(self.settings).check_records(records)
        return records

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def post(
        self,
        body: bytes,
        *,
        receiver: str | None = None,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Any:
        all_headers = {"Content-Type": "application/json"}
        if signed:
            all_headers["X-ALM-Signature"] = sign_hmac(body, SECRET)
        all_headers.update(headers or {})
        return await self.client.post(
            f"/webhooks/{receiver or self.receiver}", data=body, headers=all_headers
        )


MakeBridge = Callable[..., Awaitable[Bridge]]


def receiver_settings(prefix: str, **changes: Any) -> ReceiverSettings:
    base: dict[str, Any] = {
        "name": "alm",
        "auth": AuthSettings(method="hmac", secrets=[SecretStr(SECRET.decode())]),
        "routing": RoutingSettings(topic_template=f"{prefix}.{{event}}"),
        "dead_letter": DeadLetterSettings(topic=f"{prefix}.deadletter"),
    }
    base.update(changes)
    return ReceiverSettings(**base)


@pytest.fixture
def make_bridge(aiohttp_client: AiohttpClient, kafka_bootstrap: str) -> MakeBridge:
    async def make(
        *, receivers: list[ReceiverSettings] | None = None, prefix: str | None = None, **kw: Any
    ) -> Bridge:
        prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
        kw.setdefault("kafka_bootstrap_servers", kafka_bootstrap)
        kw.setdefault("kafka_topic_partitions", 1)
        settings = Settings(receivers=receivers or [receiver_settings(prefix)], **kw)
        registry = CollectorRegistry()
        client = await aiohttp_client(create_app(settings, registry=registry))
        return Bridge(client, registry, prefix, kw["kafka_bootstrap_servers"], settings=settings)

    return make


@pytest.fixture
def make_offline_bridge(aiohttp_client: AiohttpClient) -> MakeBridge:
    """Like ``make_bridge``, with an in-memory Kafka (:class:`MemorySink`): no broker."""

    async def make(
        *, receivers: list[ReceiverSettings] | None = None, prefix: str | None = None, **kw: Any
    ) -> Bridge:
        prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
        settings = Settings(receivers=receivers or [receiver_settings(prefix)], **kw)
        registry = CollectorRegistry()
        sink = MemorySink()
        client = await aiohttp_client(create_app(settings, registry=registry, sink=sink))
        return Bridge(client, registry, prefix, "", sink=sink, settings=settings)

    return make
