"""The first-delivery diagnosis: which header would verify, and what to set."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bridge.cli.main import app
from bridge.core.auth import (
    ALGORITHMS,
    ENCODINGS,
    Algorithm,
    BasicAuth,
    Encoding,
    HmacAuth,
    SignatureMatch,
    diagnose_hmac,
    sign_hmac,
)
from bridge.telemetry.diagnosis import Throttle, diagnosis_fields, parse_headers

SECRET = b"s3cret-of-the-account"
BODY = b'{"accountId": 1, "events": []}'
CONFIGURED = HmacAuth(secrets=[b"old-secret", SECRET])
COMMON = [("Host", "bridge:8080"), ("Content-Type", "application/json"), ("User-Agent", "ALM")]


@pytest.mark.parametrize(
    ("algorithm", "encoding", "prefix"),
    list(itertools.product(ALGORITHMS, ENCODINGS, (False, True))),
)
def test_a_header_under_another_name_algorithm_or_encoding_is_found(
    algorithm: Algorithm, encoding: Encoding, prefix: bool
) -> None:
    signature = sign_hmac(BODY, SECRET, algorithm=algorithm, encoding=encoding, prefix=prefix)
    headers = [*COMMON, ("X-Adobe-Signature", signature)]

    diagnosis = diagnose_hmac(headers, BODY, CONFIGURED)

    assert diagnosis.matches == (
        SignatureMatch("X-Adobe-Signature", algorithm, encoding, algorithm if prefix else None),
    )
    assert diagnosis.header_names == ("Host", "Content-Type", "User-Agent", "X-Adobe-Signature")
    assert diagnosis.hint.startswith(
        f"header X-Adobe-Signature verifies with {algorithm}/{encoding}"
    )
    assert "BRIDGE_HMAC_HEADER=X-Adobe-Signature" in diagnosis.hint
    assert ("BRIDGE_HMAC_ALGORITHM" in diagnosis.hint) == (algorithm != "sha256")
    assert (f"BRIDGE_HMAC_ENCODING={encoding}" in diagnosis.hint) == (encoding != "hex")
    assert signature not in diagnosis.hint
    assert SECRET.decode() not in diagnosis.hint


def test_the_example_of_the_guide() -> None:
    signature = sign_hmac(BODY, SECRET, encoding="base64")
    diagnosis = diagnose_hmac([("X-Foo", signature)], BODY, CONFIGURED)
    assert diagnosis.hint == (
        "header X-Foo verifies with sha256/base64; set BRIDGE_HMAC_HEADER=X-Foo "
        "BRIDGE_HMAC_ENCODING=base64 (or auth: {header: X-Foo, encoding: base64} in the "
        "receiver's YAML)"
    )


def test_the_configured_header_under_another_encoding_names_only_the_encoding() -> None:
    signature = sign_hmac(BODY, SECRET, encoding="base64")
    diagnosis = diagnose_hmac([("x-alm-signature", signature)], BODY, CONFIGURED)
    assert "BRIDGE_HMAC_HEADER" not in diagnosis.hint
    assert "set BRIDGE_HMAC_ENCODING=base64" in diagnosis.hint


def test_a_prefix_that_does_not_name_the_algorithm_is_told() -> None:
    signature = "v1=" + sign_hmac(BODY, SECRET)
    diagnosis = diagnose_hmac([("X-Sig", signature)], BODY, CONFIGURED)
    assert diagnosis.matches == (SignatureMatch("X-Sig", "sha256", "hex", "v1"),)
    assert "after a 'v1=' prefix" in diagnosis.hint
    assert "not this one" in diagnosis.hint


def test_a_signature_with_another_secret_is_a_lookalike() -> None:
    signature = sign_hmac(BODY, b"not the configured one", encoding="base64")
    diagnosis = diagnose_hmac([*COMMON, ("X-Sig", signature)], BODY, CONFIGURED)
    assert diagnosis.matches == ()
    assert diagnosis.lookalikes == (("X-Sig", "sha256", "base64"),)
    assert "no header verifies with the configured secret" in diagnosis.hint
    assert "X-Sig (sha256/base64)" in diagnosis.hint


def test_no_signature_at_all() -> None:
    diagnosis = diagnose_hmac([*COMMON, ("X-Other", "hello")], BODY, CONFIGURED)
    assert diagnosis.matches == ()
    assert diagnosis.lookalikes == ()
    assert "ALM sent no signature" in diagnosis.hint


def test_without_the_body_only_the_names_are_told() -> None:
    signature = sign_hmac(BODY, SECRET)
    diagnosis = diagnose_hmac([("X-Sig", signature)], None, CONFIGURED)
    assert diagnosis.header_names == ("X-Sig",)
    assert diagnosis.matches == ()
    assert "body was not read" in diagnosis.hint


def test_the_work_is_bounded_by_the_number_and_size_of_headers() -> None:
    signature = sign_hmac(BODY, SECRET)
    many = [(f"X-H{i}", "00" * 32) for i in range(500)]
    diagnosis = diagnose_hmac([*many, ("X-Sig", signature)], BODY, CONFIGURED)
    assert len(diagnosis.header_names) == 64
    assert diagnosis.matches == ()
    long_value = diagnose_hmac([("X-Sig", signature + " " * 300 + "x")], BODY, CONFIGURED)
    assert long_value.lookalikes == ()


def test_fields_never_hold_values_and_escape_names() -> None:
    signature = sign_hmac(BODY, SECRET)
    fields = diagnosis_fields(CONFIGURED, [("X-Sig", signature), ("X-\udcffodd", "v")], BODY)
    assert fields["header_names"] == ["X-Sig", "X-\\xffodd"]
    assert signature not in str(fields)
    basic = diagnosis_fields(BasicAuth([("u", "p")]), [("Authorization", "Basic abc")], None)
    assert basic == {"header_names": ["Authorization"]}


def test_the_throttle_allows_one_line_per_receiver_and_window() -> None:
    now = [0.0]
    throttle = Throttle(5.0, clock=lambda: now[0])
    assert throttle.allow("alm")
    assert not throttle.allow("alm")
    assert throttle.allow("other")
    now[0] = 5.0
    assert throttle.allow("alm")


def test_parse_headers_of_a_capture_and_of_json() -> None:
    capture = "POST /webhooks/alm HTTP/1.1\r\nHost: x\r\nX-Sig: abc: def\r\n\r\n{}"
    assert parse_headers(capture) == [("Host", "x"), ("X-Sig", "abc: def")]
    assert parse_headers('{"X-Sig": "abc"}') == [("X-Sig", "abc")]
    with pytest.raises(ValueError, match="line 2"):
        parse_headers("Host: x\nnot a header")


def _diagnose(tmp_path: Path, headers: str, body: bytes, *args: str) -> Any:
    (tmp_path / "headers.txt").write_text(headers)
    (tmp_path / "body.json").write_bytes(body)
    env = {"BRIDGE_AUTH_METHOD": "hmac", "BRIDGE_HMAC_SECRET": SECRET.decode()}
    return CliRunner().invoke(
        app,
        [
            "diagnose",
            "--headers",
            str(tmp_path / "headers.txt"),
            "--body",
            str(tmp_path / "body.json"),
            *args,
        ],
        env=env,
    )


def test_the_offline_command_says_what_to_set(tmp_path: Path) -> None:
    signature = sign_hmac(BODY, SECRET, algorithm="sha512", encoding="base64")
    result = _diagnose(tmp_path, f"Host: x\nX-Adobe-Signature: {signature}\n", BODY)
    assert result.exit_code == 1, result.output
    assert "refused: missing (no X-ALM-Signature header)" in result.stdout
    assert "headers: Host, X-Adobe-Signature" in result.stdout
    assert (
        "hint: header X-Adobe-Signature verifies with sha512/base64; set "
        "BRIDGE_HMAC_HEADER=X-Adobe-Signature BRIDGE_HMAC_ALGORITHM=sha512 "
        "BRIDGE_HMAC_ENCODING=base64"
    ) in result.stdout
    assert signature not in result.stdout


def test_the_offline_command_accepts_a_good_request(tmp_path: Path) -> None:
    result = _diagnose(tmp_path, f"X-ALM-Signature: {sign_hmac(BODY, SECRET)}\n", BODY)
    assert result.exit_code == 0, result.output
    assert "accepted" in result.stdout


def test_the_offline_command_names_an_unknown_receiver(tmp_path: Path) -> None:
    result = _diagnose(tmp_path, "Host: x\n", BODY, "--receiver", "nope")
    assert result.exit_code == 2
    assert "no receiver 'nope' (configured: alm)" in result.output
