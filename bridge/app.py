"""``create_app(settings)``: the one place where the bridge is wired together, and ``serve``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from bridge import __version__
from bridge.admission import BodyReads, Slots
from bridge.errors import PublishUnavailable
from bridge.handlers import (
    STATE,
    State,
    healthz,
    metrics,
    readyz,
    request_context,
    security_headers,
    webhook_get,
    webhook_post,
)
from bridge.ingest import Ingestor
from bridge.logs import get_logger
from bridge.metrics import Metrics
from bridge.publisher import Publisher
from bridge.settings import Receiver, Settings, resolve

log = get_logger("bridge.app")

STARTUP_TIMEOUT_SECONDS: Final = 10.0
CHECK_INTERVAL_SECONDS: Final = 2.0


def create_app(
    settings: Settings,
    *,
    receivers: list[Receiver] | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The aiohttp application: routes, shared state, and the producer's lifetime."""
    resolved = receivers if receivers is not None else resolve(settings)
    by_name = {r.name: r for r in resolved}
    metrics_ = Metrics(registry=registry, receivers=by_name)

    def on_connected(up: bool) -> None:
        metrics_.kafka_up.set(1 if up else 0)

    publisher = Publisher(settings=settings, on_connected=on_connected)
    ingestor = Ingestor(settings=settings, receivers=by_name, publisher=publisher, metrics=metrics_)
    app = web.Application(middlewares=[request_context], handler_args=_handler_args(settings))
    app.on_response_prepare.append(security_headers)
    app[STATE] = State(
        ingestor=ingestor,
        metrics=metrics_,
        slots=Slots(settings.max_inflight_batches, settings.max_queue_delay_ms / 1000),
        reads=BodyReads(settings.max_body_reads),
    )
    app.router.add_post("/webhooks/{receiver}", webhook_post)
    app.router.add_get("/webhooks/{receiver}", webhook_get)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_kafka_lifetime)
    return app


def _handler_args(settings: Settings) -> dict[str, object]:
    """Connection limits of aiohttp's request handler.

    ``keepalive_timeout`` closes a connection that is idle between requests, and also one
    whose request headers have not all arrived by then: aiohttp arms it when the
    connection opens and after each response, and only a complete request stops it.
    """
    return {
        "max_field_size": 16384,
        "keepalive_timeout": settings.http_idle_timeout_seconds,
        # A request answered before its body was read closes the connection at once
        # rather than reading the rest of an unwanted body.
        "lingering_time": 1.0,
    }


async def _kafka_lifetime(app: web.Application) -> AsyncIterator[None]:
    """Start the producer (fatal errors stop the process) and keep checking the cluster."""
    state = app[STATE]
    publisher = state.ingestor.publisher
    settings = state.ingestor.settings
    try:
        await publisher.start(STARTUP_TIMEOUT_SECONDS)
    except PublishUnavailable as exc:
        log.warning("kafka_unreachable_at_start", error=exc.detail)
    task = asyncio.create_task(_watch_kafka(state), name="kafka-watch")
    log.info(
        "bridge_started",
        version=__version__,
        receivers=sorted(state.ingestor.receivers),
        config=settings.masked(),
    )
    try:
        yield
    finally:
        state.shutting_down = True
        state.metrics.ready.set(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await publisher.stop(max(1.0, settings.shutdown_timeout_seconds / 3))
        log.info("bridge_stopped")


async def _watch_kafka(state: State) -> None:
    """Reconnect when the first start failed; otherwise refresh the connection state."""
    publisher = state.ingestor.publisher
    while True:
        await asyncio.sleep(CHECK_INTERVAL_SECONDS)
        if state.shutting_down:
            return
        try:
            if not publisher.started:
                await publisher.start(STARTUP_TIMEOUT_SECONDS)
            else:
                await publisher.check(CHECK_INTERVAL_SECONDS)
        except PublishUnavailable as exc:
            log.debug("kafka_still_unreachable", error=exc.detail)
        except Exception:
            log.exception("kafka_watch_failed")
        state.metrics.ready.set(1 if state.ready() else 0)


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT, then drain in order; a second signal exits at once."""
    app = create_app(settings)
    state = app[STATE]
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=max(1.0, settings.shutdown_timeout_seconds / 3),
    )
    await runner.setup()
    sites = [web.TCPSite(runner, settings.host, settings.port, backlog=1024)]
    metrics_runner: web.AppRunner | None = None
    if settings.metrics_port:
        metrics_app = web.Application(handler_args=_handler_args(settings))
        metrics_app.on_response_prepare.append(security_headers)
        metrics_app[STATE] = state
        metrics_app.router.add_get("/metrics", metrics)
        metrics_runner = web.AppRunner(metrics_app, handle_signals=False, access_log=None)
        await metrics_runner.setup()
        sites.append(web.TCPSite(metrics_runner, settings.host, settings.metrics_port))
    for site in sites:
        await site.start()
    # Everything imported and built so far lives as long as the process; moving it out of
    # the collector's reach keeps full collections (tens of ms) out of request latency.
    gc.collect()
    gc.freeze()
    # Each batch allocates thousands of short-lived objects; collecting the young
    # generation less often cut the bridge's CPU per event by about a tenth.
    gc.set_threshold(50_000, 50, 100)
    log.info(
        "listening",
        url=f"http://{settings.host}:{settings.port}",
        metrics_port=settings.metrics_port or settings.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second_signal_exiting_now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("shutdown_started", signal=signal.Signals(signum).name)
        state.shutting_down = True
        state.metrics.ready.set(0)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    if state.inflight:
        try:
            async with asyncio.timeout(settings.shutdown_timeout_seconds * 0.5):
                await state.slots.idle.wait()
        except TimeoutError:
            log.warning("shutdown_drain_timed_out", inflight=state.inflight)
    await runner.cleanup()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    return 0
