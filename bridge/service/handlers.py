"""HTTP handlers, kept thin: read, call the core, map the outcome to a status.

Domain errors become statuses here and only here. Unexpected exceptions are logged
once with their traceback and answered 500 by the middleware.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

import orjson
import structlog
from aiohttp import ClientPayloadError, web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.config.receivers import Receiver
from bridge.config.settings import Settings
from bridge.core.alm import Challenge, check_challenge, estimated_memory, estimated_memory_of_size
from bridge.core.errors import AccountNotAccepted, AuthError, InvalidBatch, PublishUnavailable
from bridge.core.reasons import (
    AUTH_ERROR_CODES,
    BodyReadCut,
    DeadLetterReason,
    ErrorCode,
    RequestOutcome,
)
from bridge.core.routing import Router
from bridge.core.tracing import NoTracer, Span, Tracer
from bridge.kafka.fleet import Fleet
from bridge.service.admission import BodyNotRead, BodyReads, BodyTooLarge, Slots, inflate
from bridge.service.ingest import Ingestor, Summary
from bridge.telemetry.diagnosis import Throttle, log_refusal
from bridge.telemetry.logs import RepeatFilter, Sampler, escaped, get_logger, valid_text
from bridge.telemetry.metrics import UNKNOWN_RECEIVER, Metrics

log = get_logger("bridge.http")

_JSON: Final = "application/json"
# A body that may be an unauthenticated challenge is read up to this size only.
_CHALLENGE_BODY_LIMIT: Final = 4096
# Content encodings inflated when BRIDGE_ACCEPT_COMPRESSED_BODIES is on, and how much
# larger than its compressed form a body may become.
_INFLATABLE: Final = frozenset({"gzip", "deflate"})
MAX_INFLATE_RATIO: Final = 100
# A sent X-Request-Id is used only when it is this: 1 to 64 ASCII letters, digits and
# ``._:-``, starting with a letter or digit (UUIDs, ULIDs, hex and dotted ids fit). Anything
# else could forge or break log lines; a new id is made and the sent one logged escaped.
REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# True while a POST is answered 2xx without authentication (an unauthenticated challenge).


@dataclass(slots=True)
class State:
    """Mutable per-process state shared by the handlers."""

    ingestor: Ingestor
    metrics: Metrics
    slots: Slots
    reads: BodyReads
    # The fleet's memory of duplicates (BRIDGE_DEDUPE_FLEET_TOPIC), when it is on.
    fleet: Fleet | None = None
    shutting_down: bool = False
    # Request lines of requests anyone can send without credentials: sampled per receiver,
    # status and error (refusals) or outcome (probes, challenges).
    sampled_lines: Sampler = field(default_factory=Sampler)
    # Repeated stdlib lines (aiokafka, aiohttp) condensed by the logging set-up, if any.
    repeated_lines: RepeatFilter | None = None
    # At most one auth_diagnosis line per receiver per few seconds.
    diagnoses: Throttle = field(default_factory=Throttle)
    # Spans of authenticated requests (BRIDGE_OTEL_EXPORTER_OTLP_ENDPOINT), or none.
    tracer: Tracer = field(default_factory=NoTracer)

    @property
    def inflight(self) -> int:
        return len(self.slots)

    def begin_shutdown(self) -> None:
        """From now on: not ready, and new batches answered 503 (the one place it is set)."""
        self.shutting_down = True
        self.metrics.ready.set(0)

    def ready(self) -> bool:
        """Kafka reachable, not shutting down, and the fleet's memory loaded (or loading
        for longer than BRIDGE_DEDUPE_FLEET_LOAD_TIMEOUT_SECONDS), when it is on."""
        fleet = self.fleet
        return (
            self.ingestor.publisher.connected
            and not self.shutting_down
            and (fleet is None or fleet.ready)
        )


STATE: Final = web.AppKey("state", State)


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def error_response(
    status: HTTPStatus,
    code: ErrorCode | DeadLetterReason,
    detail: str,
    *,
    retry_after: int | None = None,
    close: bool = False,
) -> web.Response:
    """A JSON error; ``close`` ends the connection instead of reading what is left of it."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    response = web.Response(
        status=status,
        body=orjson.dumps({"error": code, "detail": valid_text(detail)}),
        content_type=_JSON,
        headers=headers,
    )
    if close:
        response.force_close()
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer: no content sniffing (the challenge echo is text chosen by the sender)."""
    response.headers["X-Content-Type-Options"] = "nosniff"


def _bind(**values: object) -> None:
    structlog.contextvars.bind_contextvars(**values)


@dataclass(slots=True)
class Answer:
    """What the handler made of a request, for the request-line middleware: the outcome,
    why it was refused, and whether it was answered without authentication."""

    outcome: str = ""
    reason: str = ""
    unauthenticated: bool = False


ANSWER: Final = web.RequestKey("answer", Answer)


def _note(request: web.Request, **values: object) -> None:
    """Record the request's outcome on the request and on its log line."""
    answer = request.get(ANSWER)
    if answer is not None:
        if "outcome" in values:
            answer.outcome = str(values["outcome"])
        reason = values.get("error") or values.get("auth_reason")
        if reason:
            answer.reason = str(reason)
        if values.get("authenticated") is False:
            answer.unauthenticated = True
    _bind(**values)


def _request_id(request: web.Request) -> tuple[str, str | None]:
    """The request id to use, and the sent one (escaped) when it could not be used."""
    sent = request.headers.get("X-Request-Id")
    if not sent:
        return secrets.token_hex(16), None
    if REQUEST_ID.fullmatch(sent):
        return sent, None
    return secrets.token_hex(16), escaped(sent)


def _sampled_as(request: web.Request, status: int) -> str | None:
    """The error or outcome a request line is sampled under; None: always written.

    Sampled: what anyone can send without credentials, by the thousand: refusals (4xx),
    503s for want of a body-read place, and the 2xx of probes and challenges (every
    ``GET``, and a ``POST`` challenge answered without authentication). An authenticated
    batch's line, and 5xx other than ``too_many_body_reads``, are always written.
    """
    answer = request.get(ANSWER) or Answer()
    if status < 400 and request.method == "POST" and not answer.unauthenticated:
        return None  # an authenticated batch
    if status < 400:
        return answer.outcome
    reason = answer.reason
    if status < 500 or reason == ErrorCode.TOO_MANY_BODY_READS:
        return reason
    return None


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One canonical log line per webhook request, with a request id and its duration.

    A sent ``X-Request-Id`` is used when it matches :data:`REQUEST_ID`; otherwise a new id
    is made and the sent value logged escaped as ``sent_request_id``. The answer's
    ``X-Request-Id`` is the id used.

    Lines strangers can cause by the thousand (:func:`_sampled_as`) are sampled: at most a
    burst per receiver, status and error or outcome in each window; the rest are counted
    and told in one ``requests_not_logged`` line. Metrics count every request.
    """
    structlog.contextvars.clear_contextvars()
    request[ANSWER] = Answer()
    request_id, sent_request_id = _request_id(request)
    is_webhook = request.path.startswith("/webhooks/")
    if is_webhook:
        _bind(request_id=request_id, method=request.method, path=request.path)
        if sent_request_id is not None:
            _bind(sent_request_id=sent_request_id)
    started = time.monotonic()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # Answered as a plain response: returning the exception itself is deprecated.
        response = web.Response(
            status=exc.status, reason=exc.reason, text=exc.text, headers=exc.headers
        )
    except Exception:
        log.exception("unhandled_error")
        response = error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ErrorCode.INTERNAL_ERROR,
            "unexpected error; see the logs",
        )
    response.headers["X-Request-Id"] = request_id
    if is_webhook:
        duration = time.monotonic() - started
        state = request.app[STATE]
        receiver = request.match_info.get("receiver", "")
        label = receiver if receiver in state.ingestor.receivers else UNKNOWN_RECEIVER
        state.metrics.http_requests_by(label, _status_class(response.status)).inc()
        state.metrics.request_duration_by(label).observe(duration)
        status = response.status
        sampled_as = _sampled_as(request, status)
        if sampled_as is not None and not state.sampled_lines.allow(
            (label, str(status), sampled_as)
        ):
            return response  # counted; told in a summary line (requests_not_logged)
        emit = log.warning if status >= 500 else log.info
        emit("request", status=status, duration_ms=round(duration * 1000, 2))
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    kafka = state.ingestor.publisher.connected
    ready = state.ready()
    state.metrics.ready.set(1 if ready else 0)
    body: dict[str, object] = {"ready": ready, "kafka": kafka, "shuttingDown": state.shutting_down}
    fleet = state.fleet
    if fleet is not None:
        body["dedupeFleet"] = fleet.status
        if fleet.error is not None:
            body["dedupeFleetError"] = fleet.error
    return web.json_response(
        body, status=HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
    )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[STATE].metrics.registry
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def _receiver(request: web.Request) -> Receiver | None:
    return request.app[STATE].ingestor.receivers.get(request.match_info["receiver"])


def _not_found(request: web.Request) -> web.Response:
    return error_response(
        HTTPStatus.NOT_FOUND,
        ErrorCode.UNKNOWN_RECEIVER,
        f"no receiver named {request.match_info['receiver'][:64]!r}",
    )


async def webhook_get(request: web.Request) -> web.Response:
    """The verification challenge (``?challenge=``) or a reachability probe."""
    receiver = _receiver(request)
    if receiver is None:
        return _not_found(request)
    _bind(receiver=receiver.name)
    if "challenge" not in request.query:
        _note(request, outcome=RequestOutcome.PROBE)
        return web.Response(status=HTTPStatus.OK)
    try:
        value = check_challenge(request.query["challenge"])
    except InvalidBatch as exc:
        return error_response(HTTPStatus.BAD_REQUEST, exc.code, exc.detail)
    _note(request, outcome=RequestOutcome.CHALLENGE)
    return web.Response(text=value, content_type="text/plain")


def _is_json(content_type: str) -> bool:
    mime = content_type.lower()
    return mime in {"", "application/json"} or mime.endswith("+json") or mime.endswith("/json")


def _challenge_reply(request: web.Request, challenge: Challenge) -> web.Response:
    _note(request, outcome=RequestOutcome.CHALLENGE)
    return web.Response(body=orjson.dumps({"challenge": challenge.value}), content_type=_JSON)


@dataclass(slots=True)
class _Post:
    """One webhook POST on its way through the phases of :func:`webhook_post`."""

    request: web.Request
    state: State
    receiver: Receiver
    # Taken with the receiver: the request is served under the configuration it found.
    router: Router
    settings: Settings
    deadline: float
    started_ns: int
    length: int | None = None
    encoding: str = "identity"
    # Why the headers alone do not authenticate it (None: they do, or the body must tell).
    auth_error: AuthError | None = None
    # Its publishing slot, once it holds one.
    slot: int | None = None
    verified_ns: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:
        return self.receiver.name

    def rejected(
        self, status: HTTPStatus, code: ErrorCode, detail: str, *, close: bool = False
    ) -> web.Response:
        self.state.metrics.batches_by(self.name, RequestOutcome.REJECTED).inc()
        _note(self.request, outcome=RequestOutcome.REJECTED, error=code)
        return error_response(status, code, detail, close=close)

    def unauthorized(self, exc: AuthError, body: bytes | None = None) -> web.Response:
        state, name = self.state, self.name
        state.metrics.batches_by(name, RequestOutcome.UNAUTHORIZED).inc()
        state.metrics.auth_failures.labels(name, exc.reason).inc()
        _note(self.request, outcome=RequestOutcome.UNAUTHORIZED, auth_reason=exc.reason)
        headers = self.request.headers.items()
        log_refusal(state.diagnoses, name, self.receiver.verifier, headers, body)
        code = AUTH_ERROR_CODES[exc.reason]
        return error_response(HTTPStatus.UNAUTHORIZED, code, exc.detail, close=True)


async def webhook_post(request: web.Request) -> web.Response:
    """An ALM batch (or a challenge) for the named receiver, in phases.

    admit (the route, the cheap checks on the headers, authentication by the headers
    alone: a request they already fail is answered without reading its body) → read (the
    body, under the pre-authentication budget) → verify → charge (a publishing slot for
    what the batch will hold) → ingest and answer.
    """
    state = request.app[STATE]
    receiver = _receiver(request)
    if receiver is None:
        return _not_found(request)
    _bind(receiver=receiver.name)
    settings = state.ingestor.settings
    post = _Post(
        request,
        state,
        receiver,
        state.ingestor.routers[receiver.name],
        settings,
        deadline=time.monotonic() + settings.publish_timeout_ms / 1000,
        started_ns=time.time_ns(),
    )
    refused = _admit(post)
    if refused is not None:
        return refused
    try:
        body = await _read(post)
        if isinstance(body, web.Response):
            return body
        refused = _verify(post, body)
        if refused is not None:
            return refused
        charged = _charge(post, body)
        if isinstance(charged, web.Response):
            return charged
        return await _ingest_traced(post, body, charged)
    finally:
        if post.slot is not None:
            state.slots.leave(post.slot)
            state.metrics.inflight.dec()


def _admit(post: _Post) -> web.Response | None:
    """The checks on the headers; a refusal, or None to read the body."""
    request, state, settings, name = post.request, post.state, post.settings, post.name
    if state.shutting_down:
        state.metrics.batches_by(name, RequestOutcome.UNAVAILABLE).inc()
        _note(request, outcome=RequestOutcome.UNAVAILABLE)
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ErrorCode.SHUTTING_DOWN,
            "the bridge is shutting down; send again",
            retry_after=settings.retry_after_seconds,
            close=True,
        )
    length = post.length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        return post.rejected(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            ErrorCode.BODY_TOO_LARGE,
            f"body of {length} bytes is larger than {settings.max_body_bytes}",
            close=True,
        )
    if not _is_json(request.content_type if "Content-Type" in request.headers else ""):
        return post.rejected(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"expected application/json, got {request.content_type[:64]!r}",
            close=True,
        )
    encoding = post.encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity" and (
        encoding not in _INFLATABLE or not settings.accept_compressed_bodies
    ):
        return post.rejected(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            ErrorCode.UNSUPPORTED_CONTENT_ENCODING,
            f"Content-Encoding {encoding[:32]!r} is not accepted; send the body uncompressed"
            + ("" if encoding not in _INFLATABLE else " (or set BRIDGE_ACCEPT_COMPRESSED_BODIES)"),
            close=True,
        )
    verifier = post.receiver.verifier
    try:
        verifier.precheck(request.headers)
    except AuthError as exc:
        # Kept without its traceback: the traceback holds this frame, which holds the
        # error, a cycle that would keep every refused request's objects until a full
        # garbage collection.
        post.auth_error = exc.with_traceback(None)
    if post.auth_error is not None and (
        not post.receiver.unauthenticated_challenge
        or (length is not None and length > _CHALLENGE_BODY_LIMIT)
    ):
        return post.unauthorized(post.auth_error)
    # A request its headers already authenticate (Basic, or none) takes its publishing slot
    # before its body is read: the body is charged to its receiver's share, never to the
    # budget strangers share, and is never cut short to make room for them.
    if post.auth_error is None and not verifier.needs_body:
        provisional = min(
            estimated_memory_of_size(settings.max_body_bytes if length is None else length),
            state.slots.reachable_bytes(),
        )
        throttled = _throttled(request, state, name, provisional, body_unread=True)
        if throttled is not None:
            return throttled
        post.slot = _enter(state, name, provisional)
    return None


async def _read(post: _Post) -> bytes | web.Response:
    """The body (inflated), or the answer to a body that could not be read."""
    state, settings, encoding = post.state, post.settings, post.encoding
    auth_error = post.auth_error
    limit = settings.max_body_bytes if auth_error is None else _CHALLENGE_BODY_LIMIT
    body_timeout = min(settings.body_timeout_ms / 1000, max(0.0, post.deadline - time.monotonic()))
    try:
        body = await state.reads.read(
            post.request.content,
            limit=limit,
            timeout_seconds=body_timeout,
            expected=post.length,
            authenticated=post.slot is not None,
        )
        if encoding != "identity":
            body = inflate(
                body, encoding, limit=limit, max_ratio=MAX_INFLATE_RATIO, budget=state.reads.budget
            )
    except BodyNotRead as exc:
        state.metrics.body_reads_cut.labels(exc.outcome).inc()
        if auth_error is not None:
            return post.unauthorized(auth_error)
        if exc.outcome == BodyReadCut.BUSY:
            state.metrics.batches_by(post.name, RequestOutcome.THROTTLED).inc()
            _note(
                post.request, outcome=RequestOutcome.THROTTLED, error=ErrorCode.TOO_MANY_BODY_READS
            )
            return error_response(
                HTTPStatus.SERVICE_UNAVAILABLE,
                ErrorCode.TOO_MANY_BODY_READS,
                "too many request bodies are being read; send again",
                retry_after=settings.retry_after_seconds,
                close=True,
            )
        return post.rejected(
            HTTPStatus.REQUEST_TIMEOUT,
            ErrorCode.BODY_TIMEOUT,
            "the body did not arrive in time",
            close=True,
        )
    except (ConnectionError, ClientPayloadError) as exc:
        # aiohttp keeps this error in the request's stream, and its traceback holds the
        # frames that hold the stream: dropped, so the request is freed without waiting
        # for a full garbage collection.
        exc.__traceback__ = None
        return post.rejected(
            HTTPStatus.BAD_REQUEST, ErrorCode.INCOMPLETE_BODY, "the body ended early", close=True
        )
    except BodyTooLarge:
        if auth_error is not None:
            return post.unauthorized(auth_error)
        return post.rejected(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            ErrorCode.BODY_TOO_LARGE,
            f"body is larger than {settings.max_body_bytes} bytes"
            + (
                ""
                if encoding == "identity"
                else f" or {MAX_INFLATE_RATIO} times its compressed size"
            ),
            close=True,
        )
    except ValueError as exc:  # a compressed body that does not inflate
        if auth_error is not None:
            return post.unauthorized(auth_error)
        return post.rejected(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.INVALID_CONTENT_ENCODING,
            f"{encoding}: {exc}",
            close=True,
        )
    return body


def _verify(post: _Post, body: bytes) -> web.Response | None:
    """The signature over the body; the challenge or 401 of a request that fails it."""
    if post.auth_error is None:
        try:
            checking_ns = time.time_ns()
            post.receiver.verifier.verify(post.request.headers, body)
            post.verified_ns = (checking_ns, time.time_ns())
        except AuthError as exc:
            post.auth_error = exc.with_traceback(None)
    if post.auth_error is None:
        return None
    challenge = _unauthenticated_challenge(post.request, post.state, post.receiver, body)
    if challenge is not None:
        return _challenge_reply(post.request, challenge)
    return post.unauthorized(post.auth_error, body)


def _charge(post: _Post, body: bytes) -> InvalidBatch | web.Response | None:
    """A slot charged what the authenticated batch will hold while it is parsed and
    published; a 429 when none may be had now. Returns the verdict on a batch too costly
    to parse at all (dead-lettered as it is), else None."""
    state = post.state
    cost = estimated_memory(body)
    refuse: InvalidBatch | None = None
    if cost > state.slots.reachable_bytes():
        refuse = InvalidBatch(
            f"the batch would need about {cost // 1_048_576} MiB to parse, more than "
            f"the {state.slots.reachable_bytes() // 1_048_576} MiB one batch may hold "
            "(BRIDGE_MAX_INFLIGHT_BYTES)",
            code=DeadLetterReason.BATCH_TOO_COMPLEX,
        )
        cost = len(body)
    if post.slot is None:
        throttled = _throttled(post.request, state, post.name, cost)
        if throttled is not None:
            return throttled
        post.slot = _enter(state, post.name, cost)
    else:
        state.slots.resize(post.slot, cost)
    return refuse


async def _ingest_traced(post: _Post, body: bytes, refuse: InvalidBatch | None) -> web.Response:
    """The batch published under the request's span; the span ends with the answer."""
    state = post.state
    span = state.tracer.begin(post.request.headers, post.started_ns, **{"alm.receiver": post.name})
    if post.verified_ns[1]:
        span.record("verify", *post.verified_ns)
    _bind(trace_id=span.context.trace_id)
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    try:
        response = await _ingest(
            post.request, state, post.receiver, post.router, body, post.deadline, refuse, span
        )
        status = HTTPStatus(response.status)
        return response
    finally:
        span.end(status)


def _throttled(
    request: web.Request, state: State, receiver: str, cost: int, *, body_unread: bool = False
) -> web.Response | None:
    """429 when a batch of ``receiver`` costing ``cost`` bytes may not enter now; before
    its body was read, the connection is closed rather than the body read for nothing."""
    saturated = state.slots.saturated(receiver, cost)
    if saturated is None:
        return None
    state.metrics.batches_by(receiver, RequestOutcome.THROTTLED).inc()
    _note(request, outcome=RequestOutcome.THROTTLED, saturation=saturated)
    return error_response(
        HTTPStatus.TOO_MANY_REQUESTS,
        ErrorCode.TOO_MANY_BATCHES,
        _THROTTLED[saturated].format(settings=state.ingestor.settings),
        retry_after=1,
        close=body_unread,
    )


def _enter(state: State, receiver: str, cost: int) -> int:
    state.metrics.inflight.inc()
    return state.slots.enter(receiver, cost)


_THROTTLED: Final = {
    "limit": "more than {settings.max_inflight_batches} batches or "
    "{settings.max_inflight_bytes} bytes in flight",
    "share": "the rest of the capacity is kept for other receivers",
    "delay": "batches in flight have queued for more than {settings.max_queue_delay_ms} ms",
}


async def _ingest(
    request: web.Request,
    state: State,
    receiver: Receiver,
    router: Router,
    body: bytes,
    deadline: float,
    refuse: InvalidBatch | None,
    span: Span,
) -> web.Response:
    settings = state.ingestor.settings
    batches = state.metrics.batches_by
    name = receiver.name

    def rejected(
        status: HTTPStatus, code: ErrorCode | DeadLetterReason, detail: str
    ) -> web.Response:
        batches(name, RequestOutcome.REJECTED).inc()
        _note(request, outcome=RequestOutcome.REJECTED, error=code)
        return error_response(status, code, detail)

    try:
        summary = await state.ingestor.ingest(
            receiver,
            body,
            deadline=deadline,
            refuse=refuse,
            router=router,
            trace=span.context.headers(),
            span=span,
        )
    except AccountNotAccepted as exc:
        return rejected(HTTPStatus.FORBIDDEN, exc.code, exc.detail)
    except InvalidBatch as exc:
        return rejected(HTTPStatus.BAD_REQUEST, exc.code, exc.detail)
    except PublishUnavailable as exc:
        batches(name, RequestOutcome.UNAVAILABLE).inc()
        _note(request, outcome=RequestOutcome.UNAVAILABLE, error=exc.detail)
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE,
            exc.code,
            exc.detail,
            retry_after=settings.retry_after_seconds,
        )
    if isinstance(summary, Challenge):
        return _challenge_reply(request, summary)
    batches(name, summary.outcome).inc()
    _note(
        request,
        outcome=summary.outcome,
        account_id=summary.account_id,
        events=summary.received,
        published=summary.published,
        duplicates=summary.duplicates,
        dead_lettered=summary.dead_lettered,
    )
    return web.Response(body=orjson.dumps(summary_body(summary)), content_type=_JSON)


def summary_body(summary: Summary) -> dict[str, object]:
    """The 200 response body of a batch: the counts the contract names (camelCase)."""
    body: dict[str, object] = {
        "received": summary.received,
        "published": summary.published,
        "duplicates": summary.duplicates,
        "deadLettered": summary.dead_lettered,
    }
    if summary.filtered:
        body["filtered"] = summary.filtered
    if summary.dead_letter_reason is not None:
        body["deadLetterReason"] = summary.dead_letter_reason
    if summary.dead_letter_reasons:
        body["deadLetterReasons"] = summary.dead_letter_reasons
    return body


def _unauthenticated_challenge(
    request: web.Request, state: State, receiver: Receiver, body: bytes
) -> Challenge | None:
    if not receiver.unauthenticated_challenge or len(body) > _CHALLENGE_BODY_LIMIT:
        return None
    try:
        parsed = state.ingestor.parse(body)
    except (InvalidBatch, AccountNotAccepted):
        return None
    if not isinstance(parsed, Challenge):
        return None
    _note(request, authenticated=False)  # its request line is sampled like a probe's
    return parsed
