"""A TCP proxy on 127.0.0.1 that a test can cut, for faults a signal cannot make.

A :class:`FaultProxy` forwards each connection it accepts to one of its upstreams, round
robin, trying the next when one refuses (so two bridge processes behind it are one
address, as behind a Kubernetes Service). A Kafka node whose advertised client listener is
the proxy is reached by clients only through it, while its brokers replicate on their own
listener.

:meth:`FaultProxy.blackhole` is a network partition as a client sees it: connections are
still accepted and bytes still taken, but nothing is forwarded in either direction, so
requests time out instead of failing fast. :meth:`FaultProxy.heal` closes the stalled
connections (their streams lost bytes) and forwards again. :meth:`FaultProxy.drop` resets
every connection at once.

The proxy runs its own event loop in a thread, so it outlives the event loop of any one
test and needs no care from the code under test. It is stdlib only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self, TypeVar

HOST: Final = "127.0.0.1"
CHUNK: Final = 65_536
CONNECT_TIMEOUT_S: Final = 2.0
T = TypeVar("T")


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    stalled: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstreams`` until cut; see the module's docstring."""

    def __init__(self, upstreams: Sequence[tuple[str, int]], *, port: int = 0) -> None:
        if not upstreams:
            raise ValueError("a proxy needs at least one upstream")
        self._upstreams: list[tuple[str, int]] = list(upstreams)
        self._requested_port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._turn = itertools.count()
        self._blackholed = False
        self.accepted = 0
        self.stalled_bytes = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    @property
    def upstreams(self) -> list[tuple[str, int]]:
        return list(self._upstreams)

    # Lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        """Listen (on a free port unless one was given); returns once listening."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, HOST, self._requested_port)
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=f"faultproxy-{id(self):x}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or failure:
            self._thread.join(timeout_s)
            self._thread = self._loop = None
            raise OSError(f"the fault proxy could not listen: {failure[0] if failure else '?'}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the listener and every connection; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._call(self._close_all, timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        self._thread = self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Faults -----------------------------------------------------------------------------

    def blackhole(self) -> None:
        """Forward nothing from now on, on open connections and on new ones alike."""

        def cut() -> None:
            self._blackholed = True
            for connection in self._connections:
                connection.stalled = True

        self._call(cut)

    def heal(self) -> None:
        """Close the stalled connections and forward again."""

        def mend() -> None:
            self._blackholed = False
            for connection in [c for c in self._connections if c.stalled]:
                connection.abort()

        self._call(mend)

    def drop(self) -> None:
        """Reset every open connection (new ones are forwarded as before)."""

        def reset() -> None:
            for connection in list(self._connections):
                connection.abort()

        self._call(reset)

    def set_upstreams(self, upstreams: Sequence[tuple[str, int]]) -> None:
        """Send new connections to ``upstreams`` (open ones keep theirs)."""
        if not upstreams:
            raise ValueError("a proxy needs at least one upstream")
        chosen = list(upstreams)

        def replace() -> None:
            self._upstreams = chosen

        self._call(replace)

    def connections(self) -> int:
        """Connections open now."""
        return self._call(lambda: len(self._connections))

    # Inside the proxy's loop ------------------------------------------------------------

    def _call(self, fn: Callable[[], T], timeout_s: float = 10.0) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the fault proxy is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout_s)

    def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        connection = _Connection(client=writer, stalled=self._blackholed)
        self._connections.add(connection)
        try:
            upstream = None if connection.stalled else await self._connect()
            if upstream is None:
                # Blackholed (or no upstream answers): take the bytes, answer nothing.
                await self._pump(reader, None, connection)
                return
            up_reader, up_writer = upstream
            connection.upstream = up_writer
            await asyncio.gather(
                self._pump(reader, up_writer, connection),
                self._pump(up_reader, writer, connection),
            )
        finally:
            self._connections.discard(connection)
            connection.abort()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        upstreams = self._upstreams
        first = next(self._turn)
        for offset in range(len(upstreams)):
            host, port = upstreams[(first + offset) % len(upstreams)]
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    return await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                continue
        return None

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        connection: _Connection,
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if connection.stalled or writer is None:
                    self.stalled_bytes += len(data)
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: the whole connection ends, as a TCP proxy's would.
            connection.abort()
