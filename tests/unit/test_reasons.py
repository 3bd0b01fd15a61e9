"""The closed sets of codes are written once, as the enums of bridge.core.reasons: the code
gives only their members, the metrics create exactly their series, and the operations
guide, the README and the AsyncAPI document name no value the enums lack (the metrics
table names every one)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.config.settings import Settings
from bridge.contract.document import build_document
from bridge.core.reasons import (
    AUTH_ERROR_CODES,
    BATCH_OUTCOMES,
    FALLBACK_REASONS,
    KAFKA_REFUSALS,
    AuthReason,
    BodyReadCut,
    DeadLetterReason,
    ErrorCode,
    FleetWriteFailure,
    HeaderCut,
    ReloadResult,
    RequestOutcome,
)
from bridge.kafka.topics import _RECORD_REFUSALS, _TOPIC_REFUSALS
from bridge.telemetry.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
ENUMS: tuple[type[StrEnum], ...] = (
    DeadLetterReason,
    ErrorCode,
    AuthReason,
    RequestOutcome,
    BodyReadCut,
    HeaderCut,
    FleetWriteFailure,
    ReloadResult,
)
CODES = {member.value for enum in ENUMS for member in enum}
# Keyword arguments that carry a code, whatever the call (errors, log lines, _note).
CODE_KEYWORDS = {"code", "reason", "outcome", "error", "auth_reason"}
# Calls whose positional argument at this index is a code.
CODE_ARGUMENTS = {
    "Refusal": 0,
    "AuthError": 0,
    "BodyNotRead": 0,
    "_cut": 0,
    "_fallback": 0,
    "dead_letter_headers": 0,
    "Route": 1,
    "error_response": 1,
    "rejected": 1,
    "dead_letter": 1,
    "dead_letter_event": 1,
}
# Calls whose every positional argument may be a code: a metric's label values.
LABEL_CALLS = {"labels", "batches_by"}
# A comparison with one of these is a comparison of codes.
CODE_NAMES = {"code", "reason", "outcome"}


def _sources() -> Iterator[tuple[Path, ast.AST]]:
    """The bridge's modules; not the sender (``alm-bridge send``), a client with codes of
    its own."""
    for path in sorted((REPO / "bridge").rglob("*.py")):
        if path.name != "reasons.py" and "sender" not in path.parts:
            yield path, ast.parse(path.read_text())


def _names_a_code(node: ast.expr) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in CODE_NAMES
    return isinstance(node, ast.Name) and node.id in CODE_NAMES


def _returns_a_code(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    returns = ast.unparse(function.returns) if function.returns is not None else ""
    return any(enum.__name__ in returns for enum in ENUMS) or "Reason" in returns


def _literal_codes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String literals in the places a code goes: ``(line, value)``."""
    for node in ast.walk(tree):
        candidates: list[ast.expr] = []
        if isinstance(node, ast.Call):
            candidates += [k.value for k in node.keywords if k.arg in CODE_KEYWORDS]
            name = ast.unparse(node.func).rsplit(".", 1)[-1]
            index = CODE_ARGUMENTS.get(name)
            if index is not None and len(node.args) > index:
                candidates.append(node.args[index])
            if name in LABEL_CALLS:
                candidates += node.args
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _returns_a_code(node):
            candidates += [
                r.value for r in ast.walk(node) if isinstance(r, ast.Return) and r.value is not None
            ]
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_names_a_code(side) for side in sides):
                candidates += sides
        for candidate in candidates:
            for sub in ast.walk(candidate):
                if isinstance(sub, ast.Constant) and sub.value in CODES:
                    yield sub.lineno, sub.value


def _members_as(tree: ast.AST, enum: type[StrEnum], keyword: str) -> set[str]:
    """Members of ``enum`` given as ``keyword=Enum.MEMBER`` in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for k in node.keywords:
                if (
                    k.arg == keyword
                    and isinstance(k.value, ast.Attribute)
                    and ast.unparse(k.value.value) == enum.__name__
                ):
                    found.add(enum[k.value.attr].value)
    return found


def _backticked(text: str) -> set[str]:
    return set(re.findall(r"`([a-z0-9_]+)`", text))


def _values(enum: Iterable[StrEnum]) -> set[str]:
    return {member.value for member in enum}


def test_no_code_is_written_as_a_literal_in_the_code() -> None:
    literals = [
        f"{path.relative_to(REPO)}:{line}: {value!r}"
        for path, tree in _sources()
        for line, value in _literal_codes(tree)
    ]
    assert not literals, "use the members of bridge.core.reasons:\n" + "\n".join(literals)


def test_the_scan_finds_literal_codes() -> None:
    planted = ast.parse(
        "raise InvalidBatch('x', code='invalid_json')\n"
        "Refusal('topic_missing', 'x')\n"
        "error_response(HTTPStatus.OK, 'too_many_batches', 'x')\n"
        "def f() -> FallbackReason | None:\n    return 'topic_limit'\n"
        "def g() -> str:\n    return 'challenge'\n"
        "if 'challenge' in doc: pass\n"
        "if exc.outcome == 'busy': pass\n"
        "_note(request, outcome='probe')\n"
        "metrics.config_reloads.labels('loaded' if ok else 'refused').inc()\n"
        "log.info('free text', error='anything else')\n"
    )
    assert {value for _, value in _literal_codes(planted)} == {
        "invalid_json",
        "topic_missing",
        "too_many_batches",
        "topic_limit",
        "busy",
        "probe",
        "loaded",
        "refused",
    }


def test_kafka_refusals_are_dead_letter_reasons() -> None:
    for reason in (*_RECORD_REFUSALS.values(), *_TOPIC_REFUSALS.values()):
        assert reason in KAFKA_REFUSALS
    assert set(KAFKA_REFUSALS) <= set(DeadLetterReason)


def test_the_enums_do_not_share_a_value_where_one_place_holds_both() -> None:
    # The ``error`` of an answer is an ErrorCode or a body's DeadLetterReason.
    assert not _values(ErrorCode) & _values(DeadLetterReason)
    assert set(AUTH_ERROR_CODES) == set(AuthReason)
    assert set(BATCH_OUTCOMES) | {RequestOutcome.PROBE, RequestOutcome.CHALLENGE} == set(
        RequestOutcome
    )


def _labels(metrics: Metrics, family: str, label: str) -> set[str]:
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    [parsed] = [f for f in text_string_to_metric_families(text) if f.name == family]
    return {s.labels[label] for s in parsed.samples if s.labels.get("receiver", "alm") == "alm"}


@pytest.mark.parametrize(
    ("family", "label", "values"),
    [
        ("almbridge_dead_letters", "reason", _values(DeadLetterReason)),
        ("almbridge_topic_fallbacks", "reason", _values(FALLBACK_REASONS)),
        ("almbridge_batches", "outcome", _values(BATCH_OUTCOMES)),
        ("almbridge_auth_failures", "reason", _values(AuthReason)),
        ("almbridge_body_reads_cut", "outcome", _values(BodyReadCut)),
        ("almbridge_connections_cut", "reason", _values(HeaderCut)),
        ("almbridge_dedupe_fleet_writes_failed", "reason", _values(FleetWriteFailure)),
        ("almbridge_tls_certificate_reloads", "result", _values(ReloadResult)),
        ("almbridge_config_reloads", "result", _values(ReloadResult)),
    ],
)
def test_the_metrics_create_exactly_the_series_of_the_enum(
    family: str, label: str, values: set[str]
) -> None:
    assert _labels(Metrics(receivers=["alm"]), family, label) == values


def _operations_row(metric: str) -> tuple[set[str], set[str]]:
    """The codes a row of the operations guide's metrics table names: in its labels
    column (label names left out) and in its meaning column."""
    guide = (REPO / "docs" / "operations.md").read_text()
    [row] = [line for line in guide.splitlines() if line.startswith(f"| `{metric}`")]
    _, _, labels, meaning = row.strip().strip("|").split(" | ")
    names = _backticked(re.sub(r"\([^)]*\)", "", labels))
    return _backticked(labels) - names, _backticked(meaning) - names


@pytest.mark.parametrize(
    ("metric", "values"),
    [
        ("almbridge_dead_letters_total", _values(DeadLetterReason)),
        ("almbridge_topic_fallbacks_total", _values(FALLBACK_REASONS)),
        ("almbridge_batches_total", _values(BATCH_OUTCOMES)),
        ("almbridge_auth_failures_total", _values(AuthReason)),
        ("almbridge_body_reads_cut_total", _values(BodyReadCut)),
        ("almbridge_connections_cut_total", _values(HeaderCut)),
        ("almbridge_dedupe_fleet_writes_failed_total", _values(FleetWriteFailure)),
        ("almbridge_tls_certificate_reloads_total", _values(ReloadResult)),
        ("almbridge_config_reloads_total", _values(ReloadResult)),
    ],
)
def test_the_operations_guide_names_exactly_the_values_of_each_label(
    metric: str, values: set[str]
) -> None:
    in_labels, in_meaning = _operations_row(metric)
    assert (in_labels or in_meaning) == values


def test_the_readme_names_the_error_codes_of_bodies_and_answers_the_code_gives() -> None:
    readme = (REPO / "README.md").read_text()
    [paragraph] = re.findall(r"^Error codes of malformed bodies: (.*?)\n\n", readme, re.M | re.S)
    body_codes = set()
    for _, tree in _sources():
        body_codes |= _members_as(tree, DeadLetterReason, "code")
        body_codes |= _members_as(tree, ErrorCode, "code") & {ErrorCode.INVALID_CHALLENGE}
    assert _backticked(paragraph) == body_codes

    statuses = readme.split("| status | when |", 1)[1].split("\n\n", 1)[0]
    named = {code for code in _backticked(statuses) if "_" in code}
    assert named, "the scan found nothing: it is broken"
    assert named <= _values(ErrorCode) | _values(DeadLetterReason)
    [unauthorized] = [line for line in statuses.splitlines() if line.startswith("| 401 |")]
    assert _backticked(unauthorized) == _values(AUTH_ERROR_CODES.values())


def test_the_readme_names_exactly_the_kafka_refusals_and_the_fallback_reasons() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("| reason | Kafka's answer |", 1)[1].split("\n\n", 1)[0]
    rows = {line.split(" | ")[0].strip("| `") for line in table.splitlines()[2:]}
    assert rows == _values(KAFKA_REFUSALS)
    [fallbacks] = re.findall(
        r"almbridge_topic_fallbacks_total\{receiver,reason\}` \((.*?)\)", readme, re.S
    )
    assert _backticked(fallbacks) == _values(FALLBACK_REASONS)


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_the_asyncapi_document_names_only_dead_letter_reasons() -> None:
    document = build_document(Settings())
    descriptions = [
        node["dlq_reason"]["description"]
        for node in _walk(document)
        if isinstance(node, dict) and isinstance(node.get("dlq_reason"), dict)
    ]
    assert descriptions, "the scan found nothing: it is broken"
    for description in descriptions:
        named = _backticked(description)
        assert named
        assert named <= _values(DeadLetterReason)
    examples = [
        node["dlq_reason"]
        for node in _walk(document)
        if isinstance(node, dict) and isinstance(node.get("dlq_reason"), str)
    ]
    assert examples
    assert set(examples) <= _values(DeadLetterReason)
    page = (REPO / "docs" / "asyncapi.md").read_text()
    lines = [x for x in page.splitlines() if "`dlq_reason`" in x and "A short code" in x]
    assert lines, "the scan found nothing: it is broken"
    for line in lines:
        assert _backticked(line) - {"dlq_reason"} <= _values(DeadLetterReason)
