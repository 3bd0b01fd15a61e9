"""The AsyncAPI document: built from the routing configuration, checked in for the defaults,
and accepting exactly the records the router makes (tests/contract.py checks them)."""

from __future__ import annotations

import functools
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from typer.testing import CliRunner

from bridge.cli.main import app
from bridge.cli.sender import FAMILIES, generate_batch
from bridge.config.receivers import policy_for
from bridge.config.settings import (
    AuthSettings,
    DeadLetterSettings,
    ReceiverSettings,
    RoutingSettings,
    Settings,
)
from bridge.contract import (
    DEAD_LETTERED_BATCH,
    DEAD_LETTERED_EVENT,
    build_document,
    render_markdown,
    render_yaml,
    sample_bodies,
)
from bridge.contract import FAMILIES as FAMILY_MESSAGES
from bridge.core.alm import Batch, parse_body
from bridge.core.reasons import DeadLetterReason
from bridge.core.records import Record
from bridge.core.routing import KNOWN_EVENT_NAMES, Router
from bridge.core.tracing import trace_context
from tests.contract import Contract, ContractViolation

ALL_EVENT_MESSAGES = {f.message for f in FAMILY_MESSAGES.values()}
NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs"
# Every record the bridge publishes carries its request's trace context.
TRACE = trace_context({}).headers()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def _receiver(name: str, **routing: Any) -> ReceiverSettings:
    dead_letter = routing.pop("dead_letter", DeadLetterSettings())
    return ReceiverSettings(
        name=name,
        auth=AuthSettings(method="hmac", secrets=[SecretStr("s3cret")]),
        routing=RoutingSettings(**routing),
        dead_letter=dead_letter,
    )


def _channels(document: dict[str, Any]) -> dict[str, set[str]]:
    return {c["address"]: set(c["messages"]) for c in document["channels"].values()}


def _check(contract: Contract, record: Record) -> None:
    contract.check(record.topic, record.key, record.value, record.headers)


@pytest.mark.usefixtures("clean_env")
def test_checked_in_documents_are_what_the_generator_makes_for_the_defaults() -> None:
    document = build_document(Settings(), samples=sample_bodies())

    fix = "regenerate with `make asyncapi-docs`"
    assert (DOCS / "asyncapi.yaml").read_text(encoding="utf-8") == render_yaml(document), fix
    assert (DOCS / "asyncapi.md").read_text(encoding="utf-8") == render_markdown(document), fix


@pytest.mark.usefixtures("clean_env")
def test_defaults_have_one_channel_per_documented_event_a_template_catchall_and_dead_letters() -> (
    None
):
    document = build_document(Settings())
    channels = _channels(document)

    assert channels["alm.course_enrollment"] == {"enrollmentEvent"}
    assert channels["alm.learner_progress"] == {"learnerProgressEvent"}
    assert channels["alm.response_asyncapi_usergroup_user_added"] == {"asyncResponseEvent"}
    # other names: mostly otherEvent, but e.g. an undocumented CI_STATS_BATCH is a ciStatsEvent
    assert channels["alm.{event}"] == ALL_EVENT_MESSAGES
    assert channels["alm.deadletter"] == {DEAD_LETTERED_BATCH, DEAD_LETTERED_EVENT}
    # names that cannot use the template (odd alphabet, reserved or colliding topics, past
    # the topic limit) go to the catch-all
    assert channels["alm.other"] == ALL_EVENT_MESSAGES
    # every documented name has a topic of its own, plus the template, the catch-all and
    # the dead letters
    assert len(channels) == len(KNOWN_EVENT_NAMES) + 3
    assert document["asyncapi"] == "3.0.0"


def test_overrides_deny_catchall_and_several_receivers_shape_the_channels() -> None:
    settings = Settings(
        receivers=[
            _receiver(
                "prod",
                overrides={"LEARNER_PROGRESS": "alm.progress", "CI_STATS": "alm.progress"},
                deny=["COURSE_ENROLLMENT"],
                unlisted="catchall",
                catchall_topic="alm.other",
                key="eventId",
            ),
            _receiver(
                "partner",
                topic_template="partner.{event}",
                allow=["COURSE_COMPLETED", "NEW_THING"],
                unlisted="deadletter",
                dead_letter=DeadLetterSettings(topic="partner.deadletter"),
            ),
        ]
    )
    document = build_document(settings)
    channels = _channels(document)

    assert channels["alm.progress"] == {"learnerProgressEvent", "ciStatsEvent"}
    assert "alm.course_enrollment" not in channels  # denied
    assert "alm.learner_progress" not in channels  # overridden
    assert channels["alm.other"] == ALL_EVENT_MESSAGES
    assert "alm.{event}" not in channels  # unlisted names go to the catch-all
    # partner: only the allowed names get topics; the rest are dead letters
    assert channels["partner.course_completed"] == {"completionEvent"}
    assert channels["partner.new_thing"] == {"otherEvent"}
    assert "partner.course_enrollment" not in channels
    assert "partner.{event}" not in channels
    assert channels["partner.deadletter"] == {DEAD_LETTERED_BATCH, DEAD_LETTERED_EVENT}
    receivers = document["components"]["messages"]["enrollmentEvent"]["headers"]["properties"]
    assert receivers["alm_receiver"]["enum"] == ["prod", "partner"]
    key_rules = document["components"]["messages"]["ciStatsEvent"]["x-alm-key"]
    assert key_rules == [
        {"receiver": "prod", "strategy": "eventId", "templates": ["{eventId}"]},
        {
            "receiver": "partner",
            "strategy": "record",
            "templates": ["{accountId}:{loInstanceId}", "{accountId}:{eventId}"],
        },
    ]


@pytest.mark.parametrize("unlisted", ["template", "catchall", "deadletter"])
@pytest.mark.parametrize("key", ["record", "eventId", "accountId", "none"])
def test_every_record_the_router_makes_matches_the_document(unlisted: str, key: str) -> None:
    spec = _receiver("alm", unlisted=unlisted, key=key, overrides={"CI_STATS": "alm.stats"})
    contract = Contract(build_document(Settings(receivers=[spec])))
    router = Router(policy_for(spec))
    rng = random.Random(7)
    generated = [
        generate_batch(account_id=1234, size=50, mix=FAMILIES, rng=rng, dialect=dialect, now=NOW)
        for dialect in ("guide", "setup")
        for _ in range(3)
    ]
    bodies = [*sample_bodies(), *generated]
    unknown = {
        "accountId": 5,
        "events": [
            {"eventId": 1, "eventName": "MADE_UP:EVENT", "timestamp": 1, "data": {"x": 1}},
            {"eventId": "r", "eventName": "RESPONSE:ASYNCAPI_NEW_KIND", "eventData": {}},
            {"eventId": "n", "eventName": "COURSE_ENROLLMENT", "data": {"userId": 3}},
        ],
    }
    bodies.append(orjson.dumps(unknown))
    checked = 0
    for body in bodies:
        batch = parse_body(body)
        assert isinstance(batch, Batch)
        for record in router.plan(batch, TRACE).records:
            _check(contract, record)
            checked += 1
    _check(
        contract,
        router.dead_letter(b"\xff not json", DeadLetterReason.INVALID_UTF8, "byte 0", TRACE),
    )
    assert checked > 300


def _record(**changes: Any) -> Record:
    body = orjson.dumps(
        {
            "accountId": 1234,
            "events": [
                {
                    "eventId": "e-1",
                    "eventName": "COURSE_COMPLETED",
                    "timestamp": 1762079400000,
                    "data": {"userId": 51, "loId": "course:7", "loInstanceId": "course:7_9"},
                }
            ],
        }
    )
    batch = parse_body(body)
    assert isinstance(batch, Batch)
    (record,) = Router(policy_for(_receiver("alm"))).plan(batch, TRACE).records
    return record._replace(**changes)


def _with_header(record: Record, name: str, value: bytes | None) -> Record:
    headers = [(k, v) for k, v in record.headers if k != name]
    if value is not None:
        headers.append((name, value))
    return record._replace(headers=headers)


def _with_value(record: Record, **fields: Any) -> Record:
    value = orjson.loads(record.value)
    value.update(fields)
    return record._replace(value=orjson.dumps(value))


@pytest.mark.parametrize(
    ("tamper", "complaint"),
    [
        (lambda r: r._replace(topic="alm.course_complete"), "belongs on 'alm.course_completed'"),
        (lambda r: r._replace(topic="alm.deadletter"), "matches no message"),
        (lambda r: r._replace(topic="elsewhere"), "not a channel"),
        (lambda r: r._replace(key=b"1234:e-1"), "builds '1234:51:course:7_9'"),
        (lambda r: r._replace(key=None), "key"),
        (lambda r: _with_header(r, "ce_id", b"e-2"), "ce_id"),
        (lambda r: _with_header(r, "ce_type", b"com.adobe.learningmanager.X"), "ce_type"),
        (lambda r: _with_header(r, "alm_receiver", b"other"), "alm_receiver"),
        (lambda r: _with_header(r, "ce_time", b"2026-11-02 10:30"), "ce_time"),
        (lambda r: _with_header(r, "ce_specversion", None), "ce_specversion"),
        (lambda r: _with_header(r, "traceparent", b"00-1"), "traceparent"),
        (lambda r: _with_header(r, "alm_account_id", b"99"), "alm_account_id"),
        (lambda r: _with_value(r, data={"userId": 51, "hasPassed": "yes"}), "hasPassed"),
        (lambda r: _with_value(r, eventName="COURSE_ENROLLMENT"), "eventName"),
        (lambda r: _with_value(r, accountId=-1), "accountId"),
        (lambda r: r._replace(value=b"{not json"), "not JSON"),
    ],
)
def test_records_that_differ_from_the_document_are_caught(tamper: Any, complaint: str) -> None:
    contract = Contract(build_document(Settings(receivers=[_receiver("alm")])))
    record = _record()
    _check(contract, record)

    with pytest.raises(ContractViolation, match=complaint):
        _check(contract, tamper(record))


def test_both_dialects_are_accepted_and_a_data_field_of_the_wrong_type_is_not() -> None:
    contract = Contract(build_document(Settings(receivers=[_receiver("alm")])))
    record = _record()
    value = orjson.loads(record.value)
    setup_guide = {k: v for k, v in value.items() if k not in {"data", "timestamp"}}
    setup_guide |= {"eventTime": 1762079400000, "eventInitiator": "1173"}
    setup_guide["eventData"] = value["data"]

    _check(contract, record._replace(value=orjson.dumps(setup_guide)))
    setup_guide["eventData"] = {**value["data"], "progressPercent": "half", "dateCompleted": []}
    with pytest.raises(ContractViolation, match="dateCompleted"):
        _check(contract, record._replace(value=orjson.dumps(setup_guide)))


@pytest.mark.usefixtures("clean_env")
def test_examples_in_the_document_match_their_messages() -> None:
    document = build_document(Settings(), samples=sample_bodies())
    contract = Contract(document)
    messages = document["components"]["messages"]
    seen = 0
    for name, message in messages.items():
        for example in message.get("examples", ()):
            channel = next(c for c in document["channels"].values() if name in c["messages"])
            topic = channel["address"].replace("{event}", "x")
            payload = example["payload"]
            value = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
            # the summary states the key: "...; key `1234:51001:course:7_9`" or "...; no key"
            stated = re.search(r"; key `(.*)`$", example["summary"])
            key = stated.group(1) if stated else None
            headers = [(k, v.encode()) for k, v in example["headers"].items()]
            contract.check(topic, None if key is None else key.encode(), value, headers)
            seen += 1
    assert seen >= 7


def test_command_prints_the_document_of_a_config_file(tmp_path: Path, clean_env: None) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "receivers:\n"
        "  - name: prod\n"
        "    routing: {topic_template: 'lms.{event}', overrides: {CI_STATS: lms.stats}}\n"
        "    dead_letter: {topic: lms.dead}\n",
        encoding="utf-8",
    )

    result = CliRunner().invoke(app, ["asyncapi", "--config", str(config)])

    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.stdout)
    channels = _channels(document)
    assert channels["lms.stats"] == {"ciStatsEvent"}
    assert channels["lms.{event}"] == ALL_EVENT_MESSAGES
    assert channels["lms.dead"] == {DEAD_LETTERED_BATCH, DEAD_LETTERED_EVENT}
    markdown = CliRunner().invoke(app, ["asyncapi", "-c", str(config), "--format", "markdown"])
    assert markdown.exit_code == 0
    assert "| `lms.stats` | [ciStatsEvent](#cistatsevent) |" in markdown.stdout
    bad = CliRunner().invoke(app, ["asyncapi", "--format", "html"])
    assert bad.exit_code == 2


def test_the_page_links_resolve_and_the_readme_links_the_contract_and_example() -> None:
    page = (DOCS / "asyncapi.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", page, flags=re.MULTILINE)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", page))
    assert len(links) >= 12
    assert not links - anchors, f"broken links: {sorted(links - anchors)}"
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert "## For consumers" in readme
    for target in ("docs/asyncapi.md", "docs/asyncapi.yaml", "examples/alm_consumer.py"):
        assert f"]({target})" in readme, target
        assert (DOCS.parent / target).is_file(), target


BASES = sorted({n.removesuffix("_BATCH") for n in KNOWN_EVENT_NAMES})
event_names = st.one_of(
    st.sampled_from(BASES).map(lambda n: f"{n}_BATCH"),
    st.sampled_from(BASES).map(lambda n: f"{n}:X"),
    st.sampled_from(["RESPONSE:ASYNCAPI_GROUP_SYNCED", "RESPONSE:ASYNCAPI_X_BATCH"]),
    # Not blank for the parser: white space and U+FEFF alone are refused.
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(
        lambda n: n.replace("\ufeff", "").strip()
    ),
)


@pytest.mark.parametrize("unlisted", ["template", "catchall", "deadletter"])
@settings(max_examples=60, deadline=None)
@given(name=event_names, user=st.one_of(st.integers(0, 2**40), st.text(min_size=1, max_size=5)))
def test_records_for_names_outside_the_documented_set_match_the_document(
    unlisted: str, name: str, user: int | str
) -> None:
    spec = _receiver("alm", unlisted=unlisted)
    contract = _cached_contract(unlisted)
    body = {
        "accountId": 9,
        "events": [
            {
                "eventId": "x-1",
                "eventName": name,
                "data": {"userId": user, "loId": "course:1", "loInstanceId": "course:1_2"},
            }
        ],
    }
    batch = parse_body(orjson.dumps(body))
    assert isinstance(batch, Batch)
    for record in Router(policy_for(spec)).plan(batch, TRACE).records:
        _check(contract, record)


@functools.cache
def _cached_contract(unlisted: str) -> Contract:
    return Contract(build_document(Settings(receivers=[_receiver("alm", unlisted=unlisted)])))


def test_make_asyncapi_docs_needs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    """``make asyncapi-docs`` installs what ``make run`` installs, and that is enough."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    makefile = (root / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^asyncapi-docs: \$\(RUN_STAMP\)$", makefile, re.MULTILINE)
    extras = ("pytest", "_pytest", "hypothesis", "mypy", "ruff", "matplotlib", "psutil")
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['alm-bridge', 'asyncapi', '-o', {str(tmp_path / 'a.yaml')!r}]\n"
        "try:\n    runpy.run_module('bridge', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(root)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not set(done.stdout.split()) & set(extras)
    assert (tmp_path / "a.yaml").stat().st_size > 0
