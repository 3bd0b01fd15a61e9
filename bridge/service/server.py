"""aiohttp's connection handler with request headers bounded: the one aiohttp adapter.

aiohttp bounds the size of a header field and the idle time between requests, but not the
bytes or the time a request's headers may take as a whole, nor can an application reach a
connection before its request is parsed. :class:`Connection` does both, from aiohttp's
request handler, through members outside aiohttp's documented API. They are used here and
nowhere else (tests/unit/test_architecture.py fails otherwise), aiohttp is pinned to one
exact release in pyproject.toml, tests/app/test_connection_limits.py checks their presence
and the behaviour relied on against that release, and docs/architecture.md lists them.

Members of aiohttp's used: ``RequestHandler._force_close``, ``._payload``,
``._request_count``, ``._messages``, ``._loop``; ``web.Server._loop``, ``._kwargs``;
``web.AppRunner._make_server``. Why: the header budget and deadline are what keep
strangers from holding memory and connections with slow or endless request heads
(docs/security-figures.md measures it); aiohttp has no public hook before a request is
parsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from bridge.core.reasons import HeaderCut
from bridge.service.admission import BudgetFull, ByteBudget, Charge

# The most request-header bytes one request may send (nginx's default, four 8 KiB
# buffers); a field or line longer than 8190 bytes, or more than 64 fields, is answered
# 400 by aiohttp's parser. ALM sends a handful of short headers.
MAX_HEADER_BYTES: Final = 32 * 1024
MAX_HEADER_FIELD_BYTES: Final = 8190
MAX_HEADER_FIELDS: Final = 64


@dataclass(slots=True, frozen=True)
class HeaderLimits:
    """What a connection may hold while its request headers arrive."""

    budget: ByteBudget
    timeout_seconds: float
    cut: Callable[[HeaderCut], None]
    max_bytes: int = MAX_HEADER_BYTES


class Connection(RequestHandler):
    """aiohttp's request handler, with request headers bounded in bytes and in time.

    From the first byte of a request until its headers are complete, the bytes received
    are charged to the unauthenticated byte budget (the oldest such connection is closed
    to make room when it is full), at most ``MAX_HEADER_BYTES`` per request, and the
    headers must be complete within the header deadline, or the connection is closed.
    The keep-alive idle timer is aiohttp's and stays as it is. Uses aiohttp's private
    ``_request_count``, ``_messages`` and ``_force_close`` (checked by
    tests/app/test_connection_limits.py against the pinned release).

    aiohttp's own answers (400 for a request it cannot parse) carry nosniff too: aiohttp
    writes them before any route, middleware or signal of the application runs.
    """

    header_limits: HeaderLimits | None = None
    _header_charge: Charge | None = None
    _header_deadline: asyncio.TimerHandle | None = None
    _payload: StreamReader | None = None

    def data_received(self, data: bytes) -> None:
        limits = self.header_limits
        if limits is None or not data or self._force_close:
            super().data_received(data)
            return
        in_head = self._payload is None or self._payload.is_eof()  # between requests
        count = self._request_count
        super().data_received(data)
        if self._request_count != count and self._messages:
            # A complete head (nearly always in its first read): nothing to charge.
            self._payload = self._messages[-1][1]
            if self._header_charge is not None:
                self._headers_done()
            return
        if not in_head or self._force_close:
            return
        # The head is still incomplete: what the parser holds of it is charged, and timed.
        charge = self._header_charge
        if charge is None:
            charge = self._header_charge = limits.budget.open(lambda: self._cut(HeaderCut.EVICTED))
            self._header_deadline = self._loop.call_later(
                limits.timeout_seconds, self._cut, HeaderCut.HEADER_TIMEOUT
            )
        try:
            limits.budget.grow(charge, len(data))
        except BudgetFull:
            self._cut(HeaderCut.BUSY)
            return
        if charge.nbytes > limits.max_bytes:
            self._cut(HeaderCut.HEADER_TOO_LARGE)

    def _headers_done(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        if self._header_charge is not None and self.header_limits is not None:
            self.header_limits.budget.release(self._header_charge)
        self._header_charge = None

    def _cut(self, reason: HeaderCut) -> None:
        if self._header_charge is None or self._force_close:
            return
        self._headers_done()
        if self.header_limits is not None:
            self.header_limits.cut(reason)
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._headers_done()
        self._payload = None  # it refers back to this connection
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class Server(web.Server):
    header_limits: HeaderLimits | None = None

    def __call__(self) -> RequestHandler:
        handler = Connection(self, loop=self._loop, **self._kwargs)
        handler.header_limits = self.header_limits
        return handler


class Runner(web.AppRunner):
    """An :class:`~aiohttp.web.AppRunner` whose connections are :class:`Connection`.

    ``header_limits`` makes the limits of its connections, once the server exists.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        header_limits: Callable[[], HeaderLimits] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._header_limits = header_limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = Server
        if self._header_limits is not None:
            cast(Server, server).header_limits = self._header_limits()
        return server
