"""The connection handler of the real server (``bridge.service.server.Runner``): request headers
bounded in bytes and in time, and refused requests freed as soon as they are answered.

Raw sockets play the client, so that nothing of a client library's own is in the way.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bridge.config.settings import AuthSettings, ReceiverSettings, Settings
from bridge.core.auth import sign_hmac
from bridge.service.app import bind_listeners, create_app, runner_for
from bridge.service.server import Connection
from tests.conditions import until
from tests.memory_sink import MemorySink

SECRET = "connection-limits-secret"
BATCH = b'{"accountId": 1234, "events": []}'


@dataclass
class Served:
    port: int
    registry: CollectorRegistry
    runner: web.AppRunner

    def open_connections(self) -> int:
        """Connections the server has not yet let go of (their handler still running)."""
        server = self.runner.server
        assert server is not None
        return len(server.connections)

    def cut(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "almbridge_connections_cut_total", {"reason": reason}
        )
        return 0.0 if value is None else value

    async def exchange(self, data: bytes, *, wait_s: float = 5.0) -> bytes:
        """Sends ``data`` and returns all the server answers until it closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            await writer.drain()
            async with asyncio.timeout(wait_s):
                return await reader.read()
        finally:
            writer.close()


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(**settings: object) -> Served:
        receivers = [
            ReceiverSettings(
                name="alm", auth=AuthSettings(method="hmac", secrets=[SecretStr(SECRET)])
            ),
            ReceiverSettings(name="open", auth=AuthSettings(method="none")),
        ]
        registry = CollectorRegistry()
        app = create_app(
            Settings(receivers=receivers, **settings),  # type: ignore[arg-type]
            registry=registry,
            sink=MemorySink(),
        )
        runner = runner_for(app, handle_signals=False, access_log=None)
        runners.append(runner)
        await runner.setup()
        (sock,) = bind_listeners("127.0.0.1", 0, "BRIDGE_PORT")
        await web.SockSite(runner, sock).start()
        return Served(sock.getsockname()[1], registry, runner)

    yield start
    for runner in runners:
        await runner.cleanup()


def post(path: str, body: bytes, **headers: str) -> bytes:
    head = {
        "Host": "127.0.0.1",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **headers,
    }
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_the_aiohttp_members_the_handler_reads_exist() -> None:
    for member in ("_request_count", "_messages", "_force_close"):
        assert member in RequestHandler.__slots__, member


async def test_headers_larger_than_the_limit_close_the_connection(serve: Serve) -> None:
    served = await serve()
    fields = "".join(f"X-Filler-{i}: {'a' * 4000}\r\n" for i in range(10))

    answer = await served.exchange(f"POST /webhooks/alm HTTP/1.1\r\n{fields}".encode())

    assert answer == b""
    assert served.cut("header_too_large") == 1


async def test_headers_must_be_complete_within_the_header_deadline(serve: Serve) -> None:
    served = await serve(header_timeout_ms=200)

    answer = await served.exchange(b"POST /webhooks/alm HTTP/1.1\r\nHost: x\r\n", wait_s=5)

    assert answer == b""
    assert served.cut("header_timeout") == 1


async def test_a_head_with_the_start_of_a_large_body_in_one_read_is_not_cut(
    serve: Serve,
) -> None:
    served = await serve()
    padding = b" " * (200 * 1024)  # far more than the head limit, in the same write
    body = BATCH + padding

    answer = await served.exchange(post("/webhooks/open", body))

    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert served.cut("header_too_large") == 0


def _refusals() -> dict[str, bytes]:
    signature = sign_hmac(BATCH, SECRET.encode())
    zipped = gzip.compress(BATCH)
    return {
        "no signature": post("/webhooks/alm", BATCH),
        "wrong signature": post("/webhooks/alm", BATCH, **{"X-ALM-Signature": "0" * 64}),
        "compressed": post("/webhooks/alm", zipped, **{"Content-Encoding": "gzip"}),
        "too large": post("/webhooks/alm", b"{}", **{"Content-Length": "99999999"}),
        "body ended early": post("/webhooks/alm", BATCH, **{"X-ALM-Signature": signature})[:-10],
        "unknown receiver": post("/webhooks/nobody", BATCH),
    }


@pytest.mark.parametrize("refusal", sorted(_refusals()))
async def test_a_refused_request_is_freed_without_the_garbage_collector(
    serve: Serve, refusal: str
) -> None:
    served = await serve(body_timeout_ms=300)
    request = _refusals()[refusal]
    await served.exchange(request)  # the first of a kind may fill caches for good
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(5):
            await served.exchange(request)
        await until(lambda: served.open_connections() == 0)  # each one let go of
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, web.BaseRequest | Connection)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()

    assert not held, f"{len(held)} requests or connections were left in reference cycles"
