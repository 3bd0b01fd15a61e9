"""The ``auth_diagnosis`` line of a refused request, through the real app (no broker)."""

from __future__ import annotations

from typing import Any

from bridge.core.auth import sign_hmac
from bridge.telemetry.diagnosis import Throttle
from tests.app.conftest import SECRET, MakeBridge, sample
from tests.app.test_request_lines import Lines, log_lines

__all__ = ["log_lines"]


def diagnoses(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == "auth_diagnosis"]


async def test_a_signature_in_another_header_and_encoding_is_named(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    bridge = await make_offline_bridge()
    body = b'{"accountId": 1234, "events": []}'
    signature = sign_hmac(body, SECRET, encoding="base64")

    response = await bridge.post(body, signed=False, headers={"X-Foo": signature})

    assert response.status == 401
    [line] = diagnoses(log_lines())
    assert line["receiver"] == "alm"
    assert line["level"] == "warning"
    assert "X-Foo" in line["header_names"]
    assert "Content-Type" in line["header_names"]
    assert line["hint"].startswith(
        "header X-Foo verifies with sha256/base64; set BRIDGE_HMAC_HEADER=X-Foo "
        "BRIDGE_HMAC_ENCODING=base64"
    )
    assert signature not in str(log_lines())
    assert bridge.stored() == []


async def test_a_large_body_refused_from_its_headers_gets_the_names_only(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    bridge = await make_offline_bridge()
    body = sample("enrollment-batch") + b" " * 5000
    response = await bridge.post(
        body, signed=False, headers={"X-Foo": sign_hmac(body, SECRET, encoding="base64")}
    )

    assert response.status == 401
    [line] = diagnoses(log_lines())
    assert "X-Foo" in line["header_names"]
    assert "body was not read" in line["hint"]


async def test_diagnoses_are_rate_limited_per_receiver(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    bridge = await make_offline_bridge()
    now = [0.0]
    bridge.state.diagnoses = Throttle(5.0, clock=lambda: now[0])
    body = b'{"accountId": 1234, "events": []}'
    for _ in range(10):
        response = await bridge.post(body, signed=False, headers={"X-Sig": "00" * 32})
        assert response.status == 401
    assert len(diagnoses(log_lines())) == 1
    now[0] = 6.0
    response = await bridge.post(body, signed=False)
    assert response.status == 401
    assert len(diagnoses(log_lines())) == 2


async def test_an_accepted_request_writes_no_diagnosis(
    make_offline_bridge: MakeBridge, log_lines: Lines
) -> None:
    bridge = await make_offline_bridge()
    response = await bridge.post(sample("enrollment-batch"))
    assert response.status == 200
    assert diagnoses(log_lines()) == []
