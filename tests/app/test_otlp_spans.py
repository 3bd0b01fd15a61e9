"""Spans over OTLP/HTTP to a receiver started here, with the real exporter of the otel extra."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bridge.telemetry.otel import OtlpTracer
from tests.app.conftest import MakeBridge, sample
from tests.kafka_fixtures import free_ports

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP trace receiver: every span it was sent, by name."""

    def __init__(self) -> None:
        self.spans: list[dict[str, str]] = []
        self.requests = 0

    async def traces(self, request: web.Request) -> web.Response:
        self.requests += 1
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "service": service.get("service.name", ""),
                        }
                    )
        return web.Response(body=b"", content_type="application/x-protobuf")


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    found = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_ports(1)[0]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield found, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_request_is_one_trace_from_the_caller_to_its_records(
    make_offline_bridge: MakeBridge, collector: tuple[Collector, str]
) -> None:
    spans, endpoint = collector
    bridge = await make_offline_bridge(otel_exporter_otlp_endpoint=endpoint)
    tracer = bridge.state.tracer
    assert isinstance(tracer, OtlpTracer)

    sent = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    assert (await bridge.post(sample("mixed-realtime"), headers=sent)).status == 200
    assert (await bridge.post(b"{}", signed=False)).status == 401
    await asyncio.to_thread(tracer.provider.force_flush)

    by_name = {s["name"]: s for s in spans.spans}
    assert set(by_name) == {"receive", "verify", "publish"}, spans.spans
    receive = by_name["receive"]
    assert (receive["trace_id"], receive["parent_id"]) == (TRACE, PARENT)
    assert receive["service"] == "alm-kafka-bridge"
    for child in ("verify", "publish"):
        assert by_name[child]["trace_id"] == TRACE
        assert by_name[child]["parent_id"] == receive["span_id"]
    # The records name the receive span as their parent: a consumer's span follows it.
    traceparents = {dict(r.headers)["traceparent"] for r in bridge.stored()}
    assert traceparents == {f"00-{TRACE}-{receive['span_id']}-01".encode()}
    assert len(spans.spans) == 3, "the unauthenticated request made a span"


async def test_a_dead_lettered_batch_has_its_dead_letter_span(
    make_offline_bridge: MakeBridge, collector: tuple[Collector, str]
) -> None:
    spans, endpoint = collector
    bridge = await make_offline_bridge(otel_exporter_otlp_endpoint=endpoint)
    tracer = bridge.state.tracer
    assert isinstance(tracer, OtlpTracer)

    assert (await bridge.post(b'{"accountId": 1234, "events": [{}]}')).status == 200
    await asyncio.to_thread(tracer.provider.force_flush)

    names = sorted(s["name"] for s in spans.spans)
    assert names == ["dead-letter", "receive", "verify"]
    [receive] = [s for s in spans.spans if s["name"] == "receive"]
    assert receive["parent_id"] == "", "a request without traceparent starts a trace"
