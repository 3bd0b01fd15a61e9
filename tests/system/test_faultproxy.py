"""The fault proxy itself: forwards, cuts, heals, and spreads connections over upstreams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.kafka_fixtures import free_ports
from tests.system.faultproxy import HOST, FaultProxy


@pytest.fixture
async def echo_servers() -> AsyncIterator[list[int]]:
    """Two echo servers; each prefixes what it echoes with its own name."""

    def handler(
        name: bytes,
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1024):
                writer.write(name + data)
                await writer.drain()
            writer.close()

        return echo

    servers = [await asyncio.start_server(handler(n), HOST, 0) for n in (b"a:", b"b:")]
    try:
        yield [int(s.sockets[0].getsockname()[1]) for s in servers]
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def _ask(port: int, text: bytes, timeout_s: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(text)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            return await reader.read(1024)
    finally:
        writer.close()


async def test_forwards_round_robin_and_skips_an_upstream_that_refuses(
    echo_servers: list[int],
) -> None:
    (closed,) = free_ports(1)
    with FaultProxy([(HOST, echo_servers[0]), (HOST, closed), (HOST, echo_servers[1])]) as proxy:
        answers = [await _ask(proxy.port, b"ping") for _ in range(4)]

    assert sorted(answers) == [b"a:ping", b"a:ping", b"b:ping", b"b:ping"]


async def test_blackhole_forwards_nothing_and_heal_brings_it_back(
    echo_servers: list[int],
) -> None:
    with FaultProxy([(HOST, echo_servers[0])]) as proxy:
        reader, writer = await asyncio.open_connection(HOST, proxy.port)
        writer.write(b"before")
        assert await asyncio.wait_for(reader.read(1024), 2) == b"a:before"

        proxy.blackhole()
        writer.write(b"during")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1024), 0.5)
        with pytest.raises(TimeoutError):
            # A new connection is accepted, but answered nothing either.
            await _ask(proxy.port, b"new", timeout_s=0.5)

        proxy.heal()
        # The stalled connection lost bytes: it is closed, not resumed.
        assert await asyncio.wait_for(reader.read(1024), 2) == b""
        writer.close()
        assert await _ask(proxy.port, b"after") == b"a:after"
        assert proxy.stalled_bytes >= len(b"during")
