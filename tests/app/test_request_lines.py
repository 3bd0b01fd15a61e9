"""The request log lines under strangers: sampled floods, request ids, bytes that are not UTF-8.

Through the real app with an in-memory Kafka (no broker). Log lines are captured as the
process writes them (JSON lines), so the renderer is part of what is checked. Requests
with raw bytes are written on a socket: aiohttp's client would not send them.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp.web_protocol
import pytest
import structlog
from aiohttp.http_parser import HttpRequestParserPy
from pydantic import SecretStr

from bridge.config.settings import AuthSettings
from bridge.core.auth import basic_authorization, sign_hmac
from bridge.service.app import tell_held_back
from bridge.telemetry.logs import Sampler, configure
from tests.app.conftest import SECRET, Bridge, MakeBridge, receiver_settings, sample

Lines = Callable[[], list[dict[str, Any]]]
HEX_ID = set("0123456789abcdef")


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """The JSON lines the process writes, parsed; every line must be valid JSON."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.BytesIO()
    configure("info", "json", stream=out)
    # Loggers created at import (bridge.http) must not keep this stream after the test.
    structlog.configure(cache_logger_on_first_use=False)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in out.getvalue().splitlines()]

    yield lines
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def requests_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == "request"]


def with_fake_clock(bridge: Bridge) -> list[float]:
    """The sampler of request lines on a clock the test moves (default burst and window)."""
    now = [0.0]
    bridge.state.sampled_lines = Sampler(clock=lambda: now[0])
    return now


def told(bridge: Bridge, lines: Lines, now: list[float]) -> list[dict[str, Any]]:
    """The ``requests_not_logged`` lines once the sampling window has ended."""
    now[0] += bridge.state.sampled_lines.window_seconds + 1
    before = len(lines())
    tell_held_back(bridge.state)
    return [line for line in lines()[before:] if line["event"] == "requests_not_logged"]


async def flood(count: int, send: Callable[[], Any], expected: int) -> None:
    for _ in range(count):
        response = await send()
        assert response.status == expected
        response.release()


FLOOD = 400
BURST = Sampler().burst


@pytest.mark.parametrize(
    ("method", "url", "body", "outcome", "status"),
    [
        ("GET", "/webhooks/alm", None, "probe", 200),
        ("HEAD", "/webhooks/alm", None, "probe", 200),
        ("GET", "/webhooks/alm?challenge=abc123", None, "challenge", 200),
        ("POST", "/webhooks/alm", b'{"challenge": "abc123"}', "challenge", 200),
    ],
)
async def test_a_flood_of_stranger_2xx_is_sampled_and_counted(
    make_offline_bridge: MakeBridge,
    log_lines: Lines,
    method: str,
    url: str,
    body: bytes | None,
    outcome: str,
    status: int,
) -> None:
    bridge = await make_offline_bridge()
    now = with_fake_clock(bridge)
    headers = {"Content-Type": "application/json"} if body else None

    await flood(
        FLOOD, lambda: bridge.client.request(method, url, data=body, headers=headers), status
    )

    written = requests_of(log_lines())
    assert len(written) <= FLOOD * 0.05 + BURST
    assert len(written) == BURST
    assert {(line["status"], line["outcome"]) for line in written} == {(status, outcome)}
    if method == "POST":
        assert all(line["authenticated"] is False for line in written)
    [summary] = told(bridge, log_lines, now)
    assert summary["level"] == "warning"
    assert (summary["receiver"], summary["status"], summary["outcome"]) == ("alm", 200, outcome)
    assert summary["count"] == FLOOD - BURST
    assert "error" not in summary
    assert (
        bridge.metric("almbridge_http_requests_total", receiver="alm", status_class="2xx") == FLOOD
    )


async def test_a_flood_of_unknown_receivers_is_sampled_and_counted(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    bridge = await make_offline_bridge()
    now = with_fake_clock(bridge)
    names = iter(range(FLOOD))

    await flood(FLOOD, lambda: bridge.client.get(f"/webhooks/nope{next(names)}"), 404)

    written = requests_of(log_lines())
    assert len(written) == BURST
    [summary] = told(bridge, log_lines, now)
    assert (summary["receiver"], summary["status"], summary["count"]) == (
        "unknown",
        404,
        FLOOD - BURST,
    )


async def test_authenticated_batches_keep_one_line_each(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    bridge = await make_offline_bridge()
    with_fake_clock(bridge)
    body = sample("enrollment-batch")
    count = BURST * 2

    await flood(count, lambda: bridge.post(body), 200)
    await flood(count, lambda: bridge.post(b'{"challenge": "signed"}'), 200)

    written = requests_of(log_lines())
    assert len(written) == 2 * count
    assert all("authenticated" not in line for line in written)
    assert bridge.state.sampled_lines.drain() == []


@pytest.mark.parametrize(
    "sent",
    [
        "3f2b9c1e-7d4a-4b8e-9a6f-0c1d2e3f4a5b",
        "01HZX3Q9V5K8M2N4P6R8T0W2Y4",
        "legit-alm-17",
        "trace.span:0042_x",
        "a" * 64,
    ],
)
async def test_a_safe_request_id_is_kept(
    make_offline_bridge: MakeBridge, log_lines: Lines, sent: str
) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.post(sample("enrollment-batch"), headers={"X-Request-Id": sent})

    assert response.status == 200
    assert response.headers["X-Request-Id"] == sent
    [line] = requests_of(log_lines())
    assert line["request_id"] == sent
    assert "sent_request_id" not in line


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        ('x","level":"error","event":"forged', 'x","level":"error","event":"forged'),
        ("two words", "two words"),
        ("-starts-with-a-dash", "-starts-with-a-dash"),
        ("a" * 65, "a" * 64 + "..."),
        ("tab\there", "tab\\there"),
        ("back\\slash", "back\\\\slash"),
        ("café", "caf\\xc3\\xa9"),
    ],
)
async def test_another_request_id_is_replaced_and_logged_escaped(
    make_offline_bridge: MakeBridge, log_lines: Lines, sent: str, logged: str
) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.client.get("/webhooks/alm", headers={"X-Request-Id": sent})

    assert response.status == 200
    used = response.headers["X-Request-Id"]
    assert len(used) == 32
    assert set(used) <= HEX_ID
    [line] = requests_of(log_lines())
    assert (line["request_id"], line["sent_request_id"]) == (used, logged)
    assert line["level"] == "info"
    assert line["event"] == "request"


async def test_no_request_id_gets_a_new_one_and_no_sent_field(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    bridge = await make_offline_bridge()

    response = await bridge.client.get("/webhooks/alm", headers={"X-Request-Id": ""})

    [line] = requests_of(log_lines())
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert "sent_request_id" not in line


@pytest.fixture(params=["c", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """aiohttp's C parser (the default) or its pure-Python one, which is used where the C
    extension is missing and lets more bytes through (in the path and the query)."""
    if request.param == "python":
        monkeypatch.setattr(aiohttp.web_protocol, "HttpRequestParser", HttpRequestParserPy)
    name: str = request.param
    return name


async def raw_request(bridge: Bridge, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Writes the request as it is on a new connection; the status and the answer's head."""
    reader, writer = await asyncio.open_connection(bridge.client.host, bridge.client.port)
    try:
        length = f"Content-Length: {len(body)}\r\n".encode() if body else b""
        writer.write(head + length + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[0]


def id_header(head: bytes) -> str:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"x-request-id":
            return value.strip().decode("ascii")
    raise AssertionError("no X-Request-Id in the answer")


ODD_HEADERS = (
    b"X-Request-Id: ab\xffcd\r\nX-Forwarded-For: \xfe\xff\r\nUser-Agent: caf\xc3\xa9 \xc3\r\n"
)


async def test_a_signed_batch_with_bytes_that_are_not_utf8_in_its_headers_is_published(
    make_offline_bridge: MakeBridge, log_lines: Lines, parser: str
) -> None:
    bridge = await make_offline_bridge()
    body = sample("enrollment-batch")
    signature = sign_hmac(body, SECRET).encode()
    head = (
        b"POST /webhooks/alm HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
        + b"X-ALM-Signature: "
        + signature
        + b"\r\n"
        + ODD_HEADERS
    )

    status, answer = await raw_request(bridge, head, body)

    assert status == 200
    assert len(bridge.stored()) == len(json.loads(body)["events"])
    [line] = requests_of(log_lines())
    assert line["outcome"] == "published"
    assert line["request_id"] == id_header(answer)
    assert line["sent_request_id"] == "ab\\xffcd"


async def test_probes_and_refusals_with_bytes_that_are_not_utf8_are_never_500(
    make_offline_bridge: MakeBridge, log_lines: Lines, parser: str
) -> None:
    bridge = await make_offline_bridge()
    requests = [
        (b"GET /webhooks/alm HTTP/1.1\r\nHost: b\r\n" + ODD_HEADERS, 200),
        (b"GET /webhooks/alm?challenge=a%FFb HTTP/1.1\r\nHost: b\r\n" + ODD_HEADERS, 200),
        (b"GET /webhooks/nope HTTP/1.1\r\nHost: b\r\n" + ODD_HEADERS, 404),
        (b"POST /webhooks/alm HTTP/1.1\r\nHost: b\r\nX-ALM-Signature: \xff\r\n", 401),
        (b"POST /webhooks/alm HTTP/1.1\r\nHost: b\r\nContent-Type: text/\xff\r\n", 415),
    ]

    for head, expected in requests:
        status, _ = await raw_request(bridge, head, b"{}" if head.startswith(b"POST") else b"")
        assert status == expected, head

    written = requests_of(log_lines())
    assert [line["status"] for line in written] == [expected for _, expected in requests]
    assert [line.get("sent_request_id") for line in written[:3]] == ["ab\\xffcd"] * 3


async def test_a_path_with_a_byte_that_is_not_utf8_is_never_500(
    make_offline_bridge: MakeBridge, log_lines: Lines, parser: str
) -> None:
    bridge = await make_offline_bridge()
    body = sample("enrollment-batch")
    signature = sign_hmac(body, SECRET).encode()

    unknown, _ = await raw_request(bridge, b"GET /webhooks/al\xffm HTTP/1.1\r\nHost: b\r\n")
    batch, _ = await raw_request(
        bridge,
        b"POST /webhooks/alm?from=\xff HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        + b"X-ALM-Signature: "
        + signature
        + b"\r\n"
        + ODD_HEADERS,
        body,
    )

    written = requests_of(log_lines())
    if parser == "c":
        # The C parser refuses such a request line itself, before the application.
        assert (unknown, batch) == (400, 400)
        assert written == []
        assert bridge.stored() == []
    else:
        assert (unknown, batch) == (404, 200)
        assert [line["path"] for line in written] == ["/webhooks/al\\xffm", "/webhooks/alm"]
        assert len(bridge.stored()) == len(json.loads(body)["events"])


async def test_an_odd_authorization_is_a_401_on_a_basic_receiver(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    receiver = receiver_settings(
        "tbasicodd", auth=AuthSettings(method="basic", credentials=[SecretStr("alm:pw1")])
    )
    bridge = await make_offline_bridge(receivers=[receiver], prefix="tbasicodd")
    good = basic_authorization("alm", "pw1").encode()
    body = b'{"accountId": 1, "events": []}'

    odd, _ = await raw_request(
        bridge, b"POST /webhooks/alm HTTP/1.1\r\nHost: b\r\nAuthorization: Basic \xff\r\n", body
    )
    ok, _ = await raw_request(
        bridge,
        b"POST /webhooks/alm HTTP/1.1\r\nHost: b\r\nAuthorization: " + good + b"\r\n" + ODD_HEADERS,
        body,
    )

    assert (odd, ok) == (401, 200)
