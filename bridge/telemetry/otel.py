"""OpenTelemetry spans exported over OTLP/HTTP: the one adapter of the optional ``otel`` extra.

Loaded only when ``BRIDGE_OTEL_EXPORTER_OTLP_ENDPOINT`` is set; without it the bridge uses
:class:`bridge.core.tracing.NoTracer` and never imports OpenTelemetry. Each authenticated
request is a ``receive`` span (kind server) that continues the request's ``traceparent``,
with the signature check (``verify``), Kafka's acknowledgements (``publish``) and dead
letters (``dead-letter``) as its children; the records carry the ``receive`` span as their
parent. Requests that fail authentication make no span: strangers cannot fill the export.
Spans leave through a batch processor whose queue is bounded (what does not fit is dropped,
never waited for) and are flushed at shutdown.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace import Span as OtelSpan

from bridge import __version__
from bridge.core.tracing import Span, TraceContext, incoming

# Spans waiting for export; past it, new ones are dropped (the SDK counts and logs them).
MAX_QUEUED_SPANS: Final = 2048


class _Receive:
    def __init__(self, tracer: trace.Tracer, span: OtelSpan, context: TraceContext) -> None:
        self._tracer = tracer
        self._span = span
        self.context = context

    def record(self, name: str, start_ns: int, end_ns: int) -> None:
        parent = trace.set_span_in_context(self._span)
        child = self._tracer.start_span(name, context=parent, start_time=start_ns)
        child.end(end_time=end_ns)

    def child(self, name: str, **attributes: str | int) -> AbstractContextManager[None]:
        return self._child(name, attributes)

    @contextmanager
    def _child(self, name: str, attributes: Mapping[str, str | int]) -> Iterator[None]:
        parent = trace.set_span_in_context(self._span)
        with self._tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.PRODUCER, attributes=dict(attributes)
        ):
            yield

    def end(self, status: int, **attributes: str | int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        for key, value in attributes.items():
            self._span.set_attribute(key, value)
        if status >= 500:
            self._span.set_status(Status(StatusCode.ERROR, f"answered {status}"))
        self._span.end()


class OtlpTracer:
    """Spans of the request path, exported to ``endpoint`` (``http://collector:4318``)."""

    def __init__(self, endpoint: str, *, service_name: str = "alm-kafka-bridge") -> None:
        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        self.provider = TracerProvider(resource=resource)
        # A collector that does not answer holds an export (and the shutdown) 2 s at most.
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=2)
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=MAX_QUEUED_SPANS)
        )
        self._tracer = self.provider.get_tracer("bridge")

    def begin(self, headers: Mapping[str, str], start_ns: int, **attributes: str | int) -> Span:
        parsed, state = incoming(headers)
        parent_id: str | None = None
        context = None
        if parsed is not None:
            trace_id, parent_id, flags = parsed
            remote = SpanContext(
                trace_id=int(trace_id, 16),
                span_id=int(parent_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(flags, 16)),
            )
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        span = self._tracer.start_span(
            "receive",
            context=context,
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes=dict(attributes),
        )
        own = span.get_span_context()
        flags_text = f"{int(own.trace_flags):02x}"
        return _Receive(
            self._tracer,
            span,
            TraceContext(
                f"{own.trace_id:032x}", f"{own.span_id:016x}", flags_text, parent_id, state
            ),
        )

    def shutdown(self) -> None:
        """Export what is queued (bounded by the SDK's own timeout), then stop."""
        self.provider.shutdown()
