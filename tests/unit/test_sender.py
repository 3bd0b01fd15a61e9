"""The send command's pure parts: generated batches, secrets, signing, summaries."""

import json
import random
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bridge.cli.sender import (
    DEFAULT_MIX,
    FAMILIES,
    BasicUser,
    BatchSize,
    RequestResult,
    SendOptions,
    SourcePlan,
    auth_headers,
    build_options,
    describe_body,
    generate_batch,
    load_secret,
    parse_batch_size,
    parse_mix,
    percentile,
    planned_batches,
    read_sample,
    sample_names,
    send_command,
    summarize,
)
from bridge.core.alm import Batch, parse_body
from bridge.core.auth import basic_authorization, sign_hmac
from bridge.core.routing import family

NOW = datetime(2026, 11, 2, 9, 30, 17, 123000, tzinfo=UTC)
URL = "http://127.0.0.1:1/webhooks/alm"
ISO_MINUTE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z$")


def _batch(
    *,
    seed: int = 7,
    size: int = 200,
    mix: Sequence[str] = FAMILIES,
    dialect: str = "guide",
    account_id: int = 1234,
) -> bytes:
    assert dialect in ("guide", "setup")
    return generate_batch(
        account_id=account_id,
        size=size,
        mix=mix,
        rng=random.Random(seed),
        dialect="guide" if dialect == "guide" else "setup",
        now=NOW,
    )


def _events(body: bytes) -> list[dict[str, Any]]:
    doc = json.loads(body)
    assert isinstance(doc, dict)
    events = doc["events"]
    assert isinstance(events, list)
    return events


def _parsed(body: bytes) -> Batch:
    parsed = parse_body(body)
    assert isinstance(parsed, Batch)
    return parsed


# ----------------------------------------------------------------------- generate_batch


@pytest.mark.parametrize("dialect", ["guide", "setup"])
def test_generated_batch_is_accepted_by_the_bridge_parser(dialect: str) -> None:
    body = _batch(dialect=dialect, account_id=1010)

    batch = _parsed(body)

    assert batch.account_id == 1010
    assert len(batch.events) == 200
    assert all(event.time is not None for event in batch.events)


def test_generated_batch_has_exactly_the_requested_size() -> None:
    for size in (0, 1, 2, 7, 60):
        assert len(_events(_batch(size=size))) == size


def test_every_family_appears_and_maps_to_the_bridge_family() -> None:
    body = _batch(size=400)

    families = {family(event.name) for event in _parsed(body).events}

    assert families == set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_single_family_mix_gives_only_that_family(name: str) -> None:
    names = {e["eventName"] for e in _events(_batch(size=40, mix=[name]))}

    assert {family(n) for n in names} == {name}


def test_default_mix_is_dominated_by_enrollment_completion_and_progress() -> None:
    body = _batch(size=2000, mix=DEFAULT_MIX)

    counts: dict[str, int] = {}
    for event in _parsed(body).events:
        counts[family(event.name)] = counts.get(family(event.name), 0) + 1

    learner = counts["enrollment"] + counts["completion"] + counts["progress"]
    assert learner / 2000 > 0.7
    assert set(counts) == set(FAMILIES)


def test_event_ids_are_unique_within_and_across_batches() -> None:
    ids = [e["eventId"] for seed in range(20) for e in _events(_batch(seed=seed, size=100))]

    assert len(ids) == len(set(ids)) == 2000


def test_event_ids_are_uuid4_except_async_responses_which_reuse_the_callers_id() -> None:
    for event in _events(_batch(size=300)):
        if event["eventName"].startswith("RESPONSE:"):
            assert event["eventId"].startswith("usergroup-sync-")
            assert event["eventInfo"] == event["eventId"]
        else:
            assert uuid.UUID(event["eventId"]).version == 4


def test_same_seed_and_time_give_the_same_bytes_and_another_seed_does_not() -> None:
    assert _batch(seed=42) == _batch(seed=42)
    first = {e["eventId"] for e in _events(_batch(seed=42))}
    other = {e["eventId"] for e in _events(_batch(seed=43))}
    assert first.isdisjoint(other)


def test_usage_guide_dialect_fields() -> None:
    for event in _events(_batch(dialect="guide")):
        assert set(event) <= {"eventId", "eventName", "timestamp", "eventInfo", "data"}
        assert {"eventId", "eventName", "timestamp", "data"} <= set(event)
        assert datetime.fromisoformat(event["timestamp"]) <= NOW


def test_setup_guide_dialect_fields() -> None:
    for event in _events(_batch(dialect="setup")):
        assert set(event) <= {
            "eventId",
            "eventName",
            "eventInfo",
            "eventTime",
            "eventInitiator",
            "eventData",
        }
        assert {"eventId", "eventName", "eventTime", "eventInitiator", "eventData"} <= set(event)
        assert isinstance(event["eventTime"], int)
        # Milliseconds: within the last hour of NOW.
        assert NOW.timestamp() * 1000 - 3_600_000 < event["eventTime"] <= NOW.timestamp() * 1000
        assert isinstance(event["eventInitiator"], str)
        assert event["eventInitiator"].isdigit()


@pytest.mark.parametrize("dialect", ["guide", "setup"])
def test_date_fields_in_data_are_iso_with_seconds_00(dialect: str) -> None:
    seen = 0
    for event in _events(_batch(dialect=dialect)):
        data = event.get("data", event.get("eventData"))
        assert isinstance(data, dict)
        for key, value in data.items():
            if key.startswith("date"):
                seen += 1
                assert ISO_MINUTE.match(value), (key, value)
    assert seen > 50


def test_data_fields_follow_the_reference_per_family() -> None:
    required = {
        "enrollment": {"userId", "loId", "loInstanceId", "loType", "enrollmentSource"},
        "completion": {"userId", "loId", "loInstanceId", "loType", "dateCompleted"},
        "unenrollment": {"userId", "loId", "loInstanceId", "loType", "enrollmentSource"},
        "progress": {"userId", "loId", "loType", "loInstanceId", "dateStarted", "progressPercent"},
        "ci_stats": {"loInstanceId", "waitlistCount", "enrollmentCount", "seatLimit"},
        "learning_object": {"loId", "loType"},
        "learning_object_instance": {"loInstanceId", "loId", "loType"},
        "rollback": {"userId", "loId", "loInstanceId", "loType", "dateEnrolled"},
        "async_response": {"status", "request"},
    }
    for event in _parsed(_batch(size=400)).events:
        fam = family(event.name)
        assert required[fam] <= set(event.data), (event.name, event.data)
        if "loInstanceId" in event.data and "loId" in event.data:
            assert event.data["loInstanceId"].startswith(event.data["loId"] + "_")
        if fam == "enrollment":
            assert ISO_MINUTE.match(event.data["dateEnrolled"])


def test_batch_events_come_in_runs_about_one_learning_object() -> None:
    events = _parsed(_batch(size=400, mix=["enrollment"])).events
    batch_events = [e for e in events if e.name.endswith("_BATCH")]

    assert batch_events
    assert len({e.data["loInstanceId"] for e in batch_events}) < len(batch_events)


def test_generate_batch_rejects_unknown_families() -> None:
    with pytest.raises(ValueError, match="unknown families"):
        _batch(mix=["enrollment", "nonsense"])


def test_parse_mix_weights_and_shortcuts() -> None:
    assert parse_mix("enrollment:2,progress") == ("enrollment", "enrollment", "progress")
    assert parse_mix("all") == FAMILIES
    assert parse_mix("default") == DEFAULT_MIX
    with pytest.raises(ValueError, match="unknown family"):
        parse_mix("enrolment")
    with pytest.raises(ValueError, match="integer"):
        parse_mix("progress:x")
    with pytest.raises(ValueError, match="empty"):
        parse_mix("progress:0")


def test_parse_batch_size() -> None:
    assert parse_batch_size("10") == (10, None)
    assert parse_batch_size("1-50") == (1, 50)
    with pytest.raises(ValueError, match="MIN-MAX"):
        parse_batch_size("ten")


# -------------------------------------------------------------------------- load_secret


def test_load_secret_plain_text_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("  s3cr3t-value\n")

    assert load_secret(path) == b"s3cr3t-value"


def test_load_secret_json_with_a_single_string_value(tmp_path: Path) -> None:
    path = tmp_path / "alm.json"
    path.write_text(json.dumps({"whatever": "abc123", "version": 2}))

    assert load_secret(path) == b"abc123"


def test_load_secret_json_named_field_among_several(tmp_path: Path) -> None:
    path = tmp_path / "alm.json"
    path.write_text(json.dumps({"name": "prod hook", "signingSecret": "xyz", "algo": "sha256"}))

    assert load_secret(path) == b"xyz"


def test_load_secret_json_string(tmp_path: Path) -> None:
    path = tmp_path / "alm.json"
    path.write_text('"quoted"\n')

    assert load_secret(path) == b"quoted"


def test_load_secret_rejects_empty_and_ambiguous_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    ambiguous = tmp_path / "ambiguous.json"
    ambiguous.write_text(json.dumps({"a": "1", "b": "2"}))

    with pytest.raises(ValueError, match="empty"):
        load_secret(empty)
    with pytest.raises(ValueError, match="single string"):
        load_secret(ambiguous)


# ---------------------------------------------------------------------- signing, options


def test_hmac_headers_sign_the_exact_body() -> None:
    body = b'{"accountId":1,"events":[]}'
    options = SendOptions(url=URL, auth="hmac", hmac_secret=b"k")

    headers = auth_headers(options, body)

    assert headers["Content-Type"] == "application/json"
    assert headers["X-ALM-Signature"] == sign_hmac(body, b"k")
    assert headers["X-ALM-Signature"] != sign_hmac(body + b" ", b"k")


def test_hmac_header_name_algorithm_encoding_and_prefix_are_configurable() -> None:
    body = b"{}"
    options = SendOptions(
        url=URL,
        auth="hmac",
        hmac_secret=b"k",
        hmac_header="X-Sig",
        hmac_algorithm="sha512",
        hmac_encoding="base64",
        hmac_prefix=True,
    )

    value = auth_headers(options, body)["X-Sig"]

    assert value == sign_hmac(body, b"k", algorithm="sha512", encoding="base64", prefix=True)
    assert value.startswith("sha512=")


def test_basic_headers() -> None:
    options = SendOptions(url=URL, auth="basic", basic_user=BasicUser("alm", "p:w"))

    assert auth_headers(options, b"{}")["Authorization"] == basic_authorization("alm", "p:w")


def test_no_auth_sends_no_credentials() -> None:
    headers = auth_headers(SendOptions(url=URL), b"{}")

    assert "Authorization" not in headers
    assert "X-ALM-Signature" not in headers


def test_options_hide_secrets_and_reject_inconsistencies() -> None:
    options = SendOptions(url=URL, auth="hmac", hmac_secret=b"topsecret")
    assert "topsecret" not in repr(options)
    with pytest.raises(ValueError, match="needs a secret"):
        SendOptions(url=URL, auth="hmac")
    with pytest.raises(ValueError, match="concurrency"):
        SendOptions(url=URL, concurrency=0)
    with pytest.raises(ValueError, match="http"):
        SendOptions(url="127.0.0.1:8080")


def test_build_options_infers_the_auth_method() -> None:
    assert build_options(URL, secret="s").auth == "hmac"
    assert build_options(URL, user="a:b").auth == "basic"
    assert build_options(URL).auth == "none"
    assert build_options(URL, auth="none", secret="s").auth == "none"
    with pytest.raises(ValueError, match="USER:PASS"):
        build_options(URL, user="nocolon")
    with pytest.raises(ValueError, match="unknown sample"):
        build_options(URL, sample=["nope"])
    with pytest.raises(ValueError, match="not both"):
        build_options(URL, secret="a", secret_file=Path("b"))


# ------------------------------------------------------------------------------ sources


def test_packaged_samples_are_found_and_described() -> None:
    assert sample_names() == ["enrollment-batch", "mixed-realtime", "setup-guide-dialect"]
    described = describe_body("sample", read_sample("mixed-realtime.json"))
    assert described.account_id == 1234
    assert "user-group-sync-2026-11-02-0001" in described.event_ids
    assert len(described.event_ids) == 5


def test_a_broken_body_is_described_without_ids() -> None:
    described = describe_body("file", b"{not json")

    assert described.account_id is None
    assert described.event_ids == ()


def test_plan_cycles_sources_and_regenerates_identical_bodies(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(b'{"accountId": 5, "events": []}')
    options = SendOptions(
        url=URL, samples=("all",), files=(path,), generate=True, batch_size=BatchSize(3)
    )
    plan = SourcePlan(options, seed=1, now=NOW)
    again = SourcePlan(options, seed=1, now=NOW)

    sources = [plan.body(i).source for i in range(5)]

    assert planned_batches(options) == plan.default_count == 5
    assert sources[:3] == [
        "sample:enrollment-batch",
        "sample:mixed-realtime",
        "sample:setup-guide-dialect",
    ]
    assert sources[3] == f"file:{path}"
    assert sources[4] == "generated:guide"
    assert plan.body(9).body == again.body(9).body
    assert plan.body(4).event_ids != plan.body(9).event_ids
    assert len(plan.body(9).event_ids) == 3


def test_plan_uses_generated_batches_when_no_source_is_given() -> None:
    options = SendOptions(url=URL, batch_size=BatchSize(1, 4), account_ids=(7, 8))
    plan = SourcePlan(options, seed=3, now=NOW)

    bodies = [plan.body(i) for i in range(30)]

    assert planned_batches(options) == 1
    assert {b.account_id for b in bodies} == {7, 8}
    assert {len(b.event_ids) for b in bodies} <= {1, 2, 3, 4}


# ---------------------------------------------------------------------------- summaries


def test_the_summary_uses_the_shared_percentile_definition() -> None:
    latencies = [float(v) for v in range(10, 0, -1)]
    results = [_result(i, 200, latency_ms=ms) for i, ms in enumerate(latencies)]

    latency = summarize(results, url=URL, seed=1, elapsed_seconds=1.0).latency

    # Linear between closest ranks (bridge.core.stats), as the benchmark computes it.
    assert (latency.p50, latency.p90, latency.p99, latency.max) == (5.5, 9.1, 9.91, 10.0)
    assert percentile(latencies, 99) == pytest.approx(9.91)


def _result(
    index: int,
    status: int | None,
    *,
    attempt: int = 1,
    final: bool = True,
    phase: str = "send",
    latency_ms: float = 1.0,
    error: str | None = None,
    duplicates: int = 0,
) -> RequestResult:
    ids = (f"{index}-a", f"{index}-b")
    counts = None
    if status is not None and status < 300:
        counts = {
            "received": 2,
            "published": 2 - duplicates,
            "duplicates": duplicates,
            "deadLettered": 0,
        }
    return RequestResult(
        index=index,
        phase="send" if phase == "send" else "resend",
        attempt=attempt,
        final=final,
        source="test",
        account_id=1,
        event_ids=ids,
        status=status,
        error="timeout" if error == "timeout" else "connection_error" if error else None,
        error_detail=None,
        latency_ms=latency_ms,
        sent_at_seconds=0.0,
        response_counts=counts,
    )


def test_summary_counts_statuses_errors_events_and_latency() -> None:
    results = [
        _result(0, 200, latency_ms=10),
        _result(1, 503, final=False, latency_ms=20),
        _result(1, None, attempt=2, final=False, error="timeout", latency_ms=5000),
        _result(1, 200, attempt=3, latency_ms=30),
        _result(2, 401, latency_ms=40),
        _result(3, None, error="connection", latency_ms=1),
        _result(0, 200, phase="resend", duplicates=2, latency_ms=50),
    ]

    summary = summarize(results, url=URL, seed=9, elapsed_seconds=2.0)

    assert summary.batches == 4
    assert summary.requests == 7
    assert summary.events_sent == 14
    assert summary.status_classes == {"2xx": 3, "4xx": 1, "5xx": 1}
    assert summary.statuses == {200: 3, 401: 1, 503: 1}
    assert summary.timeouts == 1
    assert summary.connection_errors == 1
    assert summary.batches_acknowledged == 2
    assert summary.batches_failed == 2
    assert summary.events_acknowledged == 4
    assert summary.duplicates_reported == 2
    assert summary.reported["published"] == 4
    assert summary.resent_batches == 1
    assert summary.resend_duplicates_reported == 2
    # Only requests with an HTTP answer have a latency.
    assert summary.latency.count == 5
    assert summary.latency.p50 == 30
    assert summary.latency.max == 50
    assert summary.exit_code == 1
    assert ("1", "1-a") in [(str(a), e) for a, e in summary.acknowledged_event_ids()]


def test_summary_exit_code_is_zero_only_when_every_final_answer_is_2xx() -> None:
    ok = summarize(
        [_result(0, 503, final=False), _result(0, 202, attempt=2)],
        url=URL,
        seed=1,
        elapsed_seconds=1.0,
    )
    empty = summarize([], url=URL, seed=1, elapsed_seconds=0.0)

    assert ok.exit_code == 0
    assert empty.exit_code == 1


def test_summary_json_has_the_summary_and_every_request() -> None:
    summary = summarize([_result(0, 200), _result(1, 503)], url=URL, seed=5, elapsed_seconds=1.0)

    doc = json.loads(summary.to_json())

    assert doc["summary"]["seed"] == 5
    assert doc["summary"]["statuses"] == {"200": 1, "503": 1}
    assert doc["summary"]["latency"]["p99_ms"] == 1.0
    assert [r["status"] for r in doc["requests"]] == [200, 503]
    assert doc["requests"][0]["event_ids"] == ["0-a", "0-b"]
    assert doc["requests"][0]["response"]["published"] == 2


# --------------------------------------------------------------------------- command line


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(send_command)
    return app


def test_cli_help_lists_the_options() -> None:
    result = CliRunner().invoke(_cli(), ["--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    for option in ("--sample", "--retry-until-acknowledged", "--hmac-prefix", "--challenge"):
        assert option in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--sample", "nope"],
        ["--auth", "hmac"],
        ["--user", "nocolon"],
        ["--concurrency", "0"],
        ["--file", "/nonexistent/body.json"],
        ["--mix", "enrolment"],
    ],
)
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(_cli(), [URL, *args])

    assert result.exit_code == 2, result.output


def test_cli_errors_name_the_flag_and_list_every_problem() -> None:
    result = CliRunner().invoke(_cli(), [URL, "--concurrency", "0", "--user", "nocolon"])

    assert result.exit_code == 2
    assert "--concurrency: Input should be greater than or equal to 1" in result.output
    assert "--user: must be USER:PASS" in result.output


@pytest.mark.parametrize("columns", [80, 100])
def test_send_help_fits_the_terminal_and_shows_no_python_types(columns: int) -> None:
    from bridge.cli.main import app
    from bridge.cli.sender.options import Flag, command_line_fields

    result = CliRunner().invoke(
        app, ["send", "--help"], env={"COLUMNS": str(columns)}, prog_name="alm-bridge"
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Usage: alm-bridge send [OPTIONS] URL"
    assert max(len(line) for line in lines) <= columns
    assert "…" not in result.output
    assert not re.search(r"<(str|int|float|bool|Path|list\[.*?\])>", result.output)
    for _, declared in command_line_fields().values():
        if isinstance(declared, Flag):
            assert declared.name in result.output


def test_serve_and_check_config_never_import_the_sender() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from bridge.cli.main import app\n"
        "import bridge.service.app\n"
        "result = CliRunner().invoke(app, ['check-config'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('bridge.cli.sender')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_AUTH_METHOD"] = "none"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout

    assert loaded.strip() == "[]"


def test_the_summary_shows_the_reason_codes_the_bridge_gave() -> None:
    from rich.console import Console

    from bridge.cli.sender.display import summary_table

    refused = [
        RequestResult(
            index=i,
            phase="send",
            attempt=1,
            final=True,
            source="test",
            account_id=1,
            event_ids=("e",),
            status=401,
            error=None,
            error_detail=None,
            latency_ms=1.0,
            sent_at_seconds=0.0,
            response_error="auth_mismatch",
        )
        for i in range(3)
    ]
    summary = summarize([*refused, _result(3, 200)], url=URL, seed=1, elapsed_seconds=1.0)
    console = Console(record=True, width=100)

    console.print(summary_table(summary))
    text = console.export_text()

    assert summary.reasons == {401: {"auth_mismatch": 3}}
    assert re.search(r"status 401[\s│]+auth_mismatch \N{MULTIPLICATION SIGN} 3", text), text
    assert re.search(r"status 200[\s│]+1\b", text), text
    assert summary.summary_dict()["reasons"] == {"401": {"auth_mismatch": 3}}


def test_help_shows_the_auth_default_that_applies() -> None:
    from bridge.cli.main import app

    result = CliRunner().invoke(app, ["send", "--help"], env={"COLUMNS": "100"})

    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert (
        "--auth none|basic|hmac Credentials to send. [default: hmac when --secret or "
        "--secret-file is given, basic when --user is, else none]"
    ) in text
    assert "--max-run-seconds" in result.output
    assert "--max-batch-retry-seconds" in result.output
    assert "--max-retry-seconds " not in result.output


def test_a_secret_implies_hmac_and_the_run_is_bounded_by_default() -> None:
    options = SendOptions(url=URL, hmac_secret=b"s")
    assert options.auth == "hmac"
    assert options.max_run_seconds == 3600
    assert SendOptions(url=URL).auth == "none"


def test_summary_counts_error_reasons_and_unsent_batches() -> None:
    from bridge.cli.sender.results import summarize

    def failed(index: int, detail: str | None) -> RequestResult:
        return RequestResult(
            index=index,
            phase="send",
            attempt=1,
            final=True,
            source="generated",
            account_id=1,
            event_ids=("e",),
            status=None,
            error="connection_error",
            error_detail=detail,
            latency_ms=1.0,
            sent_at_seconds=0.0,
        )

    summary = summarize(
        [failed(0, "ClientConnectorError: refused"), failed(1, None)],
        url=URL,
        seed=1,
        elapsed_seconds=1.0,
        unsent=3,
    )
    assert summary.error_reasons == {
        "connection_error": {"ClientConnectorError: refused": 1, "no reason given": 1}
    }
    assert summary.unsent == 3
    assert summary.exit_code == 1
