"""The request's trace context in every record it publishes (in-memory Kafka)."""

from __future__ import annotations

from tests.app.conftest import MakeBridge, sample

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _traceparents(headers_of: list[list[tuple[str, bytes]]]) -> set[str]:
    return {v.decode() for headers in headers_of for k, v in headers if k == "traceparent"}


async def test_every_record_continues_the_trace_of_its_request(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge()
    sent = {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "congo=t61rcWkgMzE"}

    answer = await bridge.post(sample("mixed-realtime"), headers=sent)

    assert answer.status == 200
    records = bridge.stored()
    assert len(records) > 1
    [traceparent] = _traceparents([list(r.headers) for r in records])
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert span_id != PARENT, "the bridge's span is the records' parent, not the caller's"
    assert all(("tracestate", b"congo=t61rcWkgMzE") in list(r.headers) for r in records)


async def test_a_request_without_trace_context_starts_one_of_its_own(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge()
    assert (await bridge.post(sample("enrollment-batch"))).status == 200
    first = _traceparents([list(r.headers) for r in bridge.stored()])
    assert (await bridge.post(sample("mixed-realtime"))).status == 200
    both = _traceparents([list(r.headers) for r in bridge.stored()])

    assert len(first) == 1, "the records of one request share its trace"
    assert len(both) == 2, "each request has a trace of its own"
    assert all(t.endswith("-00") for t in both), "a trace nobody records is not sampled"


async def test_a_dead_lettered_batch_carries_the_trace_of_its_request(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge()
    sent = {"traceparent": f"00-{TRACE}-{PARENT}-01"}

    answer = await bridge.post(b'{"accountId": 1234, "events": [{}]}', headers=sent)

    assert answer.status == 200
    assert (await answer.json())["deadLettered"] == 1
    [record] = bridge.stored()
    [traceparent] = _traceparents([list(record.headers)])
    assert traceparent.split("-")[1] == TRACE
