"""Telling a listener's security protocol from its answers, and the one line that names it.

Fake listeners on 127.0.0.1 answer like a Kafka broker with or without SASL, like something
that is not Kafka, or not at all. The real listeners (PLAINTEXT, SSL, SASL_*) are asked in
tests/integration/test_protocol_mismatch.py.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bridge.config.settings import CONFIG_FILE_ENV, Settings, load_settings, setting_said
from bridge.core.errors import PublishUnavailable
from bridge.kafka.listener import Listener, first_server, identify
from bridge.kafka.publisher import Publisher, mismatch

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)


@asynccontextmanager
async def listening(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _request(reader: asyncio.StreamReader) -> tuple[int, int]:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    message = await reader.readexactly(size)
    api_key, _version, correlation_id = struct.unpack_from(">hhi", message)
    return api_key, correlation_id


def kafka(mechanisms: tuple[str, ...] | None) -> Handler:
    """A Kafka listener in plain text: with SASL (``mechanisms``) or without (``None``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                api_key, correlation_id = await _request(reader)
                if api_key == 18:
                    body = struct.pack(">ih", correlation_id, 0) + struct.pack(">i", 0)
                elif mechanisms is None:
                    body = struct.pack(">ih", correlation_id, 34) + struct.pack(">i", 0)
                else:
                    names = b"".join(struct.pack(">h", len(n)) + n.encode() for n in mechanisms)
                    error = 0 if "PLAIN" in mechanisms else 33
                    body = struct.pack(">ihi", correlation_id, error, len(mechanisms)) + names
                writer.write(struct.pack(">i", len(body)) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


async def not_kafka(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    await writer.drain()
    writer.close()


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_a_listener_without_sasl_is_plaintext() -> None:
    async with listening(kafka(None)) as port:
        assert await identify("127.0.0.1", port) == Listener("PLAINTEXT")


async def test_a_sasl_listener_lists_its_mechanisms() -> None:
    async with listening(kafka(("SCRAM-SHA-512",))) as port:
        found = await identify("127.0.0.1", port)
    assert found == Listener("SASL_PLAINTEXT", ("SCRAM-SHA-512",))


@pytest.mark.parametrize("handler", [not_kafka, hangs_up], ids=["not-kafka", "hangs-up"])
async def test_what_does_not_answer_like_kafka_is_not_identified(handler: Handler) -> None:
    async with listening(handler) as port:
        assert await identify("127.0.0.1", port, timeout_seconds=1) is None


async def test_a_closed_port_is_not_identified() -> None:
    async with listening(hangs_up) as port:
        pass
    assert await identify("127.0.0.1", port, timeout_seconds=1) is None


def test_the_first_bootstrap_server() -> None:
    assert first_server(" broker-1:9093, broker-2:9093") == ("broker-1", 9093)
    assert first_server("[::1]:9094") == ("::1", 9094)
    assert first_server("broker") == ("broker", 9092)


def test_a_protocol_mismatch_names_the_variable_that_was_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_KAFKA_SECURITY_PROTOCOL", "SSL")
    settings = load_settings()

    line = mismatch(settings, "127.0.0.1:9092", Listener("PLAINTEXT"))

    assert line == (
        "BRIDGE_KAFKA_SECURITY_PROTOCOL=SSL, but 127.0.0.1:9092 answered like a PLAINTEXT "
        "listener: set BRIDGE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT, or point "
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS at the broker's SSL listener"
    )


def test_a_protocol_mismatch_names_the_key_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("kafka_security_protocol: SASL_SSL\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    settings = load_settings(kafka_sasl_mechanism="PLAIN")

    line = mismatch(settings, "k:9093", Listener("SSL"))

    assert line is not None
    assert line.startswith(f"kafka_security_protocol: SASL_SSL in {path}, but k:9093 answered")
    assert f"set kafka_security_protocol: SSL in {path}" in line


def test_a_default_is_said_to_be_one() -> None:
    said = setting_said(Settings(), "kafka_security_protocol")
    assert said == "BRIDGE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT (the default)"


def test_a_mechanism_the_listener_does_not_offer_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("BRIDGE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    settings = load_settings()

    line = mismatch(settings, "k:9092", Listener("SASL_PLAINTEXT", ("PLAIN", "SCRAM-SHA-256")))

    assert line == (
        "BRIDGE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512, but k:9092 offers only PLAIN, "
        "SCRAM-SHA-256: set BRIDGE_KAFKA_SASL_MECHANISM to one of them"
    )
    assert mismatch(settings, "k:9092", Listener("SASL_PLAINTEXT", ("SCRAM-SHA-512",))) is None


async def test_a_refused_connection_stays_retriable() -> None:
    async with listening(hangs_up) as port:
        pass
    publisher = Publisher(
        settings=Settings(
            kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_security_protocol="SSL"
        )
    )

    with pytest.raises(PublishUnavailable):
        await publisher.start(3)
    await publisher.stop(1)


async def test_a_listener_that_is_not_kafka_stays_retriable() -> None:
    async with listening(not_kafka) as port:
        publisher = Publisher(settings=Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}"))
        with pytest.raises(PublishUnavailable):
            await publisher.start(3)
        await publisher.stop(1)
