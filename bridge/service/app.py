"""``create_app(settings)``: the one place where the bridge is wired together, and ``serve``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from bridge import __version__
from bridge.config.receivers import Receiver, resolve
from bridge.config.reload import Configuration, Reloader
from bridge.config.settings import Settings
from bridge.config.tls import ServerCertificate
from bridge.core.errors import PublishUnavailable, StartupError
from bridge.core.reasons import ReloadResult
from bridge.core.sink import Sink
from bridge.core.tracing import NoTracer, Tracer
from bridge.kafka.fleet import Fleet, FleetTopicRefused
from bridge.kafka.publisher import Publisher
from bridge.service.admission import BodyReads, ByteBudget, Slots
from bridge.service.handlers import (
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
from bridge.service.ingest import Ingestor
from bridge.service.server import MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS, HeaderLimits, Runner
from bridge.telemetry.logs import RepeatFilter, get_logger
from bridge.telemetry.metrics import Metrics

log = get_logger("bridge.app")

STARTUP_TIMEOUT_SECONDS: Final = 10.0
CHECK_INTERVAL_SECONDS: Final = 2.0
SUMMARY_INTERVAL_SECONDS: Final = 5.0


def create_app(
    settings: Settings,
    *,
    receivers: list[Receiver] | None = None,
    registry: CollectorRegistry | None = None,
    sink: Sink | None = None,
) -> web.Application:
    """The aiohttp application: routes, shared state, and the producer's lifetime.

    ``sink`` replaces the Kafka publisher (tests use an in-memory one); by default a
    :class:`Publisher` is built from ``settings``.
    """
    resolved = receivers if receivers is not None else resolve(settings)
    by_name = {r.name: r for r in resolved}
    metrics_ = Metrics(registry=registry, receivers=by_name)
    for receiver in resolved:
        metrics_.max_silence.labels(receiver.name).set(receiver.max_silence_seconds)
    publisher: Sink = sink or Publisher(
        settings=settings, standing_topics=[r.routing.dead_letter_topic for r in resolved]
    )
    metrics_.kafka_up.set_function(lambda: 1.0 if publisher.connected else 0.0)
    ingestor = Ingestor(settings=settings, receivers=by_name, publisher=publisher, metrics=metrics_)
    app = web.Application(middlewares=[request_context], handler_args=_handler_args(settings))
    app.on_response_prepare.append(security_headers)
    reads = BodyReads(settings.max_body_reads, ByteBudget(settings.max_unauthenticated_bytes))
    slots = Slots(
        settings.max_inflight_batches,
        settings.max_queue_delay_ms / 1000,
        max_bytes=settings.max_inflight_bytes,
        receivers=tuple(by_name),
    )
    metrics_.body_reads.set_function(lambda: len(reads))
    metrics_.unauthenticated_bytes.set_function(lambda: reads.budget.used)
    metrics_.inflight_bytes.set_function(lambda: slots.bytes_in_flight)
    fleet: Fleet | None = None
    if settings.dedupe_fleet_topic:
        fleet = Fleet(settings=settings, windows=ingestor.windows, metrics=metrics_)
        ingestor.share = fleet.share
    app[STATE] = State(
        ingestor=ingestor,
        metrics=metrics_,
        slots=slots,
        reads=reads,
        fleet=fleet,
        tracer=tracer_for(settings),
    )
    app.router.add_post("/webhooks/{receiver}", webhook_post)
    app.router.add_get("/webhooks/{receiver}", webhook_get)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_kafka_lifetime)
    app.cleanup_ctx.append(_watch_loop)
    app.cleanup_ctx.append(_tracing_lifetime)
    return app


def tracer_for(settings: Settings) -> Tracer:
    """Spans exported over OTLP when an endpoint is set, else none (OpenTelemetry unloaded)."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None:
        return NoTracer()
    try:
        from bridge.telemetry.otel import OtlpTracer
    except ImportError as exc:
        raise StartupError(
            f"BRIDGE_OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            f"({exc.name}): install the otel extra, pip install 'alm-kafka-bridge[otel]'"
        ) from None
    log.info("tracing_exported", endpoint=endpoint)
    return OtlpTracer(endpoint)


async def _tracing_lifetime(app: web.Application) -> AsyncIterator[None]:
    """At shutdown, the spans still queued are exported (bounded), after the last request."""
    yield
    shutdown = getattr(app[STATE].tracer, "shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(shutdown), timeout=5)


async def _watch_loop(app: web.Application) -> AsyncIterator[None]:
    """Measure the event loop's lag (for admission and the lag histogram); tell the log
    lines held back."""
    state = app[STATE]
    tasks = [
        asyncio.create_task(
            state.slots.lag.run(state.metrics.event_loop_lag.observe), name="loop-lag"
        ),
        asyncio.create_task(_tell_held_back(state), name="log-summaries"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _tell_held_back(state: State) -> None:
    """Every few seconds, one line per kind of log line held back, with its count."""
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL_SECONDS)
        tell_held_back(state)


def tell_held_back(state: State) -> None:
    """One line per kind of log line held back in windows that have ended, with its count.

    A request line is of a kind by its receiver, status and, for a refusal, its ``error``
    or, for a 2xx (probes, challenges), its ``outcome``.
    """
    for (receiver, status, sampled_as), count in state.sampled_lines.drain():
        code = int(status)
        log.warning(
            "requests_not_logged",
            receiver=receiver,
            status=code,
            **{"outcome" if code < 400 else "error": sampled_as or None},
            count=count,
            window_seconds=state.sampled_lines.window_seconds,
        )
    repeated = state.repeated_lines
    for logger, message, count in repeated.drain() if repeated is not None else ():
        log.warning("log_lines_repeated", source=logger, message=message[:200], count=count)


def runner_for(app: web.Application, **kwargs: Any) -> Runner:
    """A runner whose connections hold their request headers to the app's limits: the
    unauthenticated byte budget, the header deadline, and a metric of the cuts."""

    def limits() -> HeaderLimits:
        state = app[STATE]
        settings = state.ingestor.settings
        return HeaderLimits(
            budget=state.reads.budget,
            timeout_seconds=settings.header_timeout_ms / 1000,
            cut=lambda reason: state.metrics.connections_cut.labels(reason).inc(),
        )

    return Runner(app, header_limits=limits, **kwargs)


def _handler_args(settings: Settings) -> dict[str, object]:
    """Connection limits of aiohttp's request handler.

    ``keepalive_timeout`` closes a connection that is idle between requests, and also one
    whose request headers have not all arrived by then: aiohttp arms it when the
    connection opens and after each response, and only a complete request stops it.
    Headers that have begun to arrive have their own, shorter deadline
    (:class:`bridge.service.server.Connection`). Bodies are never inflated by aiohttp: the handler
    does it, in steps charged to the byte budget, when compressed bodies are accepted at all.
    """
    return {
        "max_field_size": MAX_HEADER_FIELD_BYTES,
        "max_line_size": MAX_HEADER_FIELD_BYTES,
        "max_headers": MAX_HEADER_FIELDS,
        "keepalive_timeout": settings.http_idle_timeout_seconds,
        "auto_decompress": False,
        # What aiohttp buffers of a body its handler has not read yet (it pauses reading
        # past twice this): 16 KiB rather than 64 KiB keeps strangers' bodies that no
        # handler wants small.
        "read_bufsize": 16 * 1024,
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
    fleet = state.fleet
    if fleet is not None and publisher.started:
        # A topic that cannot be the fleet's memory stops the start (FleetTopicRefused).
        try:
            await fleet.start(STARTUP_TIMEOUT_SECONDS)
        except PublishUnavailable as exc:
            log.warning("dedupe_fleet_unreachable_at_start", error=exc.detail)
        except FleetTopicRefused:
            await publisher.stop(max(1.0, settings.shutdown_timeout_seconds / 3))
            raise
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
        state.begin_shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await publisher.stop(max(1.0, settings.shutdown_timeout_seconds / 3))
        if fleet is not None:
            # After the producer: its last acknowledgements are shared too.
            await fleet.stop(max(1.0, settings.shutdown_timeout_seconds / 6))
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
        await _start_fleet(state)
        state.metrics.ready.set(1 if state.ready() else 0)


async def _start_fleet(state: State) -> None:
    """Start the fleet's memory once Kafka answers, when the start-up could not.

    A refusal found now cannot stop the process any more: it keeps the bridge not ready,
    with the reason in /readyz and one error line.
    """
    fleet = state.fleet
    if fleet is None or fleet.status != "starting" or not state.ingestor.publisher.started:
        return
    try:
        await fleet.start(STARTUP_TIMEOUT_SECONDS)
    except FleetTopicRefused:
        pass  # logged, and shown by /readyz
    except PublishUnavailable as exc:
        log.debug("dedupe_fleet_still_unreachable", error=exc.detail)


async def serve(
    settings: Settings,
    receivers: list[Receiver] | None = None,
    *,
    repeated_lines: RepeatFilter | None = None,
) -> int:
    """Run until SIGTERM/SIGINT, then drain in order; a second signal exits at once.

    Signals are handled from the first line on: one that arrives while Kafka is still being
    reached stops the start-up and shuts down what was started. The listening sockets are
    bound before Kafka is contacted, so a taken port fails at once with a
    :class:`StartupError` (connections are accepted only once everything is ready).
    ``receivers`` are the ones the settings describe, when the caller resolved them already;
    ``repeated_lines`` is the logging set-up's filter of repeated lines, told periodically.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    app = create_app(settings, receivers=receivers)
    state = app[STATE]
    state.repeated_lines = repeated_lines
    warn_unauthenticated(state.ingestor.receivers.values())

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second_signal_exiting_now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("shutdown_started", signal=signal.Signals(signum).name)
        state.begin_shutdown()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    reloader = _reloader(settings, state)
    loop.add_signal_handler(signal.SIGHUP, reloader.reload, "SIGHUP")
    log.info("starting", version=__version__, kafka=settings.kafka_bootstrap_servers)
    try:
        return await _serve_until_stopped(settings, app, stop, reloader)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _serve_until_stopped(
    settings: Settings, app: web.Application, stop: asyncio.Event, reloader: Reloader
) -> int:
    state = app[STATE]
    certificate = _certificate(settings, state)
    ports = [(settings.port, "BRIDGE_PORT")]
    if settings.metrics_port:
        ports.append((settings.metrics_port, "BRIDGE_METRICS_PORT"))
    listeners: list[list[socket.socket]] = []
    try:
        for port, setting in ports:
            listeners.append(bind_listeners(settings.host, port, setting))
    except StartupError:
        for sockets in listeners:
            _close(sockets)
        raise
    runner = runner_for(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=max(1.0, settings.shutdown_timeout_seconds / 3),
    )
    metrics_runner: web.AppRunner | None = None
    if settings.metrics_port:
        metrics_app = web.Application(handler_args=_handler_args(settings))
        metrics_app.on_response_prepare.append(security_headers)
        metrics_app[STATE] = state
        metrics_app.router.add_get("/metrics", metrics)
        metrics_runner = runner_for(metrics_app, handle_signals=False, access_log=None)
    runners = [r for r in (runner, metrics_runner) if r is not None]
    tls_servers: list[asyncio.AbstractServer] = []
    background: list[asyncio.Task[None]] = []

    async def start() -> None:
        for each in runners:
            await each.setup()
        for each, sockets, (port, setting) in zip(runners, listeners, ports, strict=True):
            for sock in sockets:
                try:
                    if certificate is not None and each is runner:
                        tls_servers.append(await _serve_tls(runner, sock, certificate, settings))
                    else:
                        await web.SockSite(each, sock, backlog=1024).start()
                except OSError as exc:
                    # Another process bound the port (without listening) at the same time.
                    raise _listen_error(settings.host, port, setting, exc) from None
        if certificate is not None:
            background.append(asyncio.create_task(certificate.watch(), name="tls-files"))
        background.append(asyncio.create_task(reloader.watch(), name="config-files"))

    starting = asyncio.create_task(start(), name="start-up")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            # A signal during start-up: abandon it (bounded: some Kafka client calls
            # finish their current step before they notice the cancellation).
            log.info("start_up_abandoned")
            starting.cancel()
            await asyncio.wait({starting}, timeout=max(1.0, settings.shutdown_timeout_seconds / 3))
        elif starting.exception() is None:
            _after_start(settings, listeners)
            await stop.wait()
            if state.inflight:
                try:
                    async with asyncio.timeout(settings.shutdown_timeout_seconds * 0.5):
                        await state.slots.idle.wait()
                except TimeoutError:
                    log.warning("shutdown_drain_timed_out", inflight=state.inflight)
    finally:
        stopping.cancel()
        for task in background:
            task.cancel()
        for server in tls_servers:
            # Stop accepting; the runner's cleanup then drains the connections it serves.
            server.close()
        for each in runners:
            await each.cleanup()
        for sockets in listeners:
            _close(sockets)
    error = starting.exception() if starting.done() and not starting.cancelled() else None
    if error is not None and not stop.is_set():
        raise error
    return 0


def _certificate(settings: Settings, state: State) -> ServerCertificate | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    metrics = state.metrics

    def on_reload(ok: bool) -> None:
        metrics.tls_reloads.labels(ReloadResult.LOADED if ok else ReloadResult.REFUSED).inc()
        if ok:
            metrics.tls_loaded.set_to_current_time()

    try:
        certificate = ServerCertificate(
            settings.tls_cert_file, settings.tls_key_file, on_reload=on_reload
        )
    except (OSError, ssl.SSLError) as exc:
        # Checked with the configuration; the files changed since.
        raise StartupError(f"cannot serve HTTPS: {exc}") from None
    metrics.tls_loaded.set_to_current_time()
    return certificate


async def _serve_tls(
    runner: web.AppRunner, sock: socket.socket, certificate: ServerCertificate, settings: Settings
) -> asyncio.AbstractServer:
    """Serve the runner's connections over TLS on ``sock``.

    Through the event loop rather than :class:`aiohttp.web.SockSite`, whose server has no
    handshake deadline of its own: asyncio's default lets a client that never finishes
    its handshake hold a connection, and OpenSSL's buffers, for 60 s. A handshake gets
    the same time as the request head that follows it.
    """
    server = runner.server
    if server is None:
        raise RuntimeError("the runner is not set up")
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        server,
        sock=sock,
        ssl=certificate.context,
        backlog=1024,
        ssl_handshake_timeout=settings.header_timeout_ms / 1000,
        ssl_shutdown_timeout=5.0,
    )


def reconfigure(state: State, configuration: Configuration) -> None:
    """Serve a reloaded configuration: receivers, metrics series, shares of capacity."""
    by_name = {r.name: r for r in configuration.receivers}
    before = set(state.ingestor.receivers)
    for name, receiver in by_name.items():
        state.metrics.add_receiver(name)
        state.metrics.max_silence.labels(name).set(receiver.max_silence_seconds)
    state.ingestor.settings = configuration.settings
    state.ingestor.reconfigure(by_name)
    state.slots.receivers = tuple(by_name)
    warn_unauthenticated(r for r in configuration.receivers if r.name not in before)
    state.metrics.config_generation.set(configuration.generation)


def _reloader(settings: Settings, state: State) -> Reloader:
    metrics = state.metrics

    def on_result(ok: bool) -> None:
        metrics.config_reloads.labels(ReloadResult.LOADED if ok else ReloadResult.REFUSED).inc()
        metrics.config_last_reload_successful.set(1 if ok else 0)
        if ok:
            metrics.config_loaded.set_to_current_time()

    current = Configuration(settings, tuple(state.ingestor.receivers.values()))
    return Reloader(current, apply=lambda c: reconfigure(state, c), on_result=on_result)


def warn_unauthenticated(receivers: Iterable[Receiver]) -> None:
    """One warning per receiver that accepts requests without authentication."""
    for receiver in receivers:
        if receiver.auth_method == "none":
            log.warning(
                "receiver_unauthenticated",
                receiver=receiver.name,
                detail=(
                    f"/webhooks/{receiver.name} accepts batches from anyone (authentication "
                    "none was chosen explicitly): set BRIDGE_HMAC_SECRET in place of "
                    "BRIDGE_AUTH_METHOD=none (or a secret in the receiver's auth) before "
                    "exposing it"
                ),
            )


def _after_start(settings: Settings, listeners: list[list[socket.socket]]) -> None:
    # Everything imported and built so far lives as long as the process; moving it out of
    # the collector's reach keeps full collections (tens of ms) out of request latency.
    gc.collect()
    gc.freeze()
    # Each batch allocates thousands of short-lived objects; collecting the young
    # generation less often cut the bridge's CPU per event by about a tenth.
    gc.set_threshold(50_000, 50, 100)
    port = listeners[0][0].getsockname()[1]
    metrics_port = listeners[1][0].getsockname()[1] if len(listeners) > 1 else port
    scheme = "https" if settings.tls_cert_file is not None else "http"
    log.info("listening", url=f"{scheme}://{settings.host}:{port}", metrics_port=metrics_port)


def bind_listeners(host: str, port: int, setting: str) -> list[socket.socket]:
    """Sockets bound (not yet listening) to every address of ``host``, or a StartupError."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot listen on {host}:{port}: BRIDGE_HOST {host!r} does not resolve "
            f"({exc.strerror})"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        _close(sockets)
        raise _listen_error(host, port, setting, exc) from None
    return sockets


def _listen_error(host: str, port: int, setting: str, exc: OSError) -> StartupError:
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno == errno.EADDRINUSE:
        reason += " (another process listens there)"
    elif exc.errno == errno.EACCES:
        reason += " (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason += " (not an address of this machine; change BRIDGE_HOST)"
    return StartupError(f"cannot listen on {host}:{port} ({setting}): {reason}")


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
