"""Properties of the parser and router over generated input."""

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core import alm
from bridge.core.alm import Batch, Challenge, parse_body
from bridge.core.errors import InvalidBatch
from bridge.core.routing import Plan, Router, RoutingPolicy, is_legal_topic, legal_topic

DOCUMENTED = sorted(
    json.loads((Path(__file__).parent / "vectors" / "event-names.json").read_text())["names"]
)

modest = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Text that may hold lone surrogates, which JSON escapes can carry but UTF-8 cannot.
any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=20),
    st.sampled_from(["\ud800", "a\udfff", "\ud83d\ude00", "\udc80x"]),
)
json_like: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5)
    ),
    max_leaves=20,
)
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b" ",
    b'"accountId"',
    b'"events"',
    b'"eventId"',
    b'"eventName"',
    b'"data"',
    b'"eventData"',
    b'"timestamp"',
    b'"eventTime"',
    b'"challenge"',
    b'"x"',
    b'"\\ud800"',
    b'"2026-11-02T09:30:00Z"',
    b"0",
    b"-1",
    b"1762075800000",
    b"18446744073709551616",
    b"1e400",
    b"1.5",
    b"NaN",
    b"true",
    b"null",
    b"\xff",
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join)


def outcome(body: bytes) -> Batch | Challenge | InvalidBatch:
    """What parse_body gives: a result, or the InvalidBatch it raised (anything else escapes)."""
    try:
        return parse_body(body)
    except InvalidBatch as exc:
        return exc


def planned(batch: Batch) -> Plan | InvalidBatch:
    try:
        return Router(RoutingPolicy(receiver="r")).plan(batch)
    except InvalidBatch as exc:
        return exc


def assert_parses_or_refuses(body: bytes) -> None:
    result = outcome(body)
    if isinstance(result, InvalidBatch):
        assert result.code
        assert result.detail
        return
    assert isinstance(result, Batch | Challenge)
    if isinstance(result, Batch):
        plan = planned(result)
        if isinstance(plan, InvalidBatch):
            assert plan.code == "invalid_event"
        else:
            assert len(plan.records) == len(result.events)


@modest
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(body: bytes) -> None:
    assert_parses_or_refuses(body)


@modest
@given(token_soup)
def test_json_token_soup(body: bytes) -> None:
    assert_parses_or_refuses(body)


@modest
@given(json_like)
def test_arbitrary_json_values(value: Any) -> None:
    assert_parses_or_refuses(json.dumps(value, allow_nan=True).encode())


@modest
@given(
    st.one_of(st.integers(), json_like),
    st.lists(
        st.one_of(
            json_like,
            st.dictionaries(
                st.sampled_from(
                    ["eventId", "eventName", "data", "eventData", "timestamp", "eventTime"]
                )
                | any_text,
                json_like,
                max_size=8,
            ),
        ),
        max_size=5,
    ),
)
def test_arbitrary_envelopes(account_id: Any, events: list[Any]) -> None:
    doc = {"accountId": account_id, "events": events}
    assert_parses_or_refuses(json.dumps(doc, allow_nan=True).encode())


@modest
@given(json_like)
def test_arbitrary_challenges(value: Any) -> None:
    body = json.dumps({"challenge": value}, allow_nan=True).encode()
    parsed = outcome(body)
    if isinstance(parsed, InvalidBatch):
        assert parsed.code in {"invalid_challenge", "invalid_json", "number_out_of_range"}
        return
    # json.loads, not value: an escaped surrogate pair decodes to one character.
    sent = json.loads(body)["challenge"]
    assert parsed == Challenge(sent)
    assert isinstance(sent, str)
    assert sent.isprintable()


# Valid batches: documented and new names, both dialects, extra fields of any JSON shape.
plain_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=6,
)
# Blank as the parser reads it: the contract's white space (ECMAScript's) has U+FEFF.
non_blank = st.text(min_size=1, max_size=40).filter(lambda s: s.replace("\ufeff", "").strip())
event_names = st.one_of(
    st.sampled_from(DOCUMENTED),
    st.sampled_from(DOCUMENTED).map(lambda n: n + "_V2"),
    non_blank,
    st.just("RESPONSE:ASYNCAPI_SOMETHING:NEW"),
)
event_ids = st.one_of(st.uuids().map(str), non_blank, st.integers(min_value=0, max_value=2**63 - 1))
times = st.one_of(
    st.integers(min_value=0, max_value=4_102_444_800),
    st.integers(min_value=0, max_value=4_102_444_800_000),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=10),
)
record_data = st.fixed_dictionaries(
    {},
    optional={
        "userId": st.integers(min_value=0, max_value=2**63 - 1),
        "loId": st.sampled_from(["course:1", "learningProgram:2", "certification:3"]),
        "loInstanceId": st.sampled_from(["course:1_1", "learningProgram:2_9"]),
        "loType": st.sampled_from(["course", "learningProgram", "certification"]),
        "status": st.just("SUCCESS"),
    },
).flatmap(
    lambda known: st.dictionaries(st.text(max_size=10), plain_json, max_size=2).map(
        lambda extra: {**extra, **known}
    )
)


@st.composite
def alm_event(draw: st.DrawFn) -> dict[str, Any]:
    setup_guide = draw(st.booleans())
    fields: list[tuple[str, Any]] = [
        ("eventId", draw(event_ids)),
        ("eventName", draw(event_names)),
        ("eventTime" if setup_guide else "timestamp", draw(times)),
        ("eventData" if setup_guide else "data", draw(record_data)),
    ]
    if draw(st.booleans()):
        fields.append(("eventInfo", draw(st.text(max_size=30))))
    if setup_guide and draw(st.booleans()):
        fields.append(("eventInitiator", draw(st.integers(0, 10**6).map(str))))
    extra = draw(
        st.dictionaries(st.text(max_size=12).map(lambda k: "x_" + k), plain_json, max_size=3)
    )
    fields.extend(extra.items())
    order = draw(st.permutations(range(len(fields))))
    return dict(fields[i] for i in order)


@modest
@given(st.integers(min_value=0, max_value=2**63 - 1), st.lists(alm_event(), max_size=20))
def test_valid_batches_become_one_record_per_event(
    account_id: int, events: list[dict[str, Any]]
) -> None:
    body = json.dumps({"accountId": account_id, "events": events}).encode()
    parsed = parse_body(body)
    assert isinstance(parsed, Batch)
    assert parsed.account_id == account_id
    assert [e.event_id for e in parsed.events] == [str(e["eventId"]) for e in events]

    result = Router(RoutingPolicy(receiver="r")).plan(parsed)
    assert result.filtered == 0
    assert len(result.records) == len(events)
    for record, original in zip(result.records, events, strict=True):
        assert is_legal_topic(record.topic)
        assert not record.dead_letter
        assert record.event_id == str(original["eventId"])
        expected = {**original, "accountId": account_id}
        value = json.loads(record.value)
        assert value == expected
        assert list(value) == list(expected)
        headers = dict(record.headers)
        assert headers["ce_id"] == str(original["eventId"]).encode()
        assert headers["alm_event_name"] == original["eventName"].encode()
        assert record.key is not None
        assert record.key.startswith(f"{account_id}:".encode())


@modest
@given(st.text(max_size=600))
def test_legal_topic_is_always_legal(topic: str) -> None:
    fixed = legal_topic(topic)
    assert is_legal_topic(fixed)
    assert fixed not in {".", ".."}
    if re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", topic) and topic not in {".", ".."}:
        assert fixed == topic


@modest
@given(
    st.text(min_size=1, max_size=600), st.sampled_from(["alm.{event}", "{event}", "a.{event}.b"])
)
def test_every_event_name_gets_a_legal_topic(name: str, template: str) -> None:
    topic = Router(RoutingPolicy(receiver="r", topic_template=template)).topic_for(name)
    assert topic is not None
    assert is_legal_topic(topic)


def _strict_or_error(body: bytes) -> object:
    try:
        return ("ok", alm._decode_strict(body, alm.Limits()))
    except InvalidBatch:
        return ("invalid",)


def _fast_or_error(body: bytes) -> object:
    try:
        return ("ok", alm.decode_json(body, alm.Limits()))
    except InvalidBatch:
        return ("invalid",)


def _object_text(pairs: list[tuple[str, Any]]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


json_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=':abc\\"\u00e9', max_size=8),
    st.booleans(),
    st.none(),
)
keys = st.text(alphabet=":ab", max_size=3)


@modest
@given(st.lists(st.tuples(keys, json_scalars), max_size=8), st.booleans(), st.booleans())
def test_fast_decoding_reads_exactly_what_the_strict_parser_reads(
    pairs: list[tuple[str, Any]], escape_colons: bool, nest: bool
) -> None:
    text = _object_text(pairs)
    if nest:
        text = '{"outer": [' + text + ", " + text + '], "k:": "v:"}'
    if escape_colons:
        text = text.replace(":", "\\u003a", 1) if '":' not in text[:3] else text
    body = text.encode()

    assert _fast_or_error(body) == _strict_or_error(body)


@modest
@given(st.binary(max_size=200) | st.lists(st.sampled_from(TOKENS), max_size=30).map(b"".join))
def test_fast_decoding_agrees_with_the_strict_parser_on_arbitrary_bytes(body: bytes) -> None:
    assert _fast_or_error(body) == _strict_or_error(body)


def test_duplicate_keys_are_found_whatever_colons_the_strings_hold() -> None:
    body = b'{"a": "x:y", "a": "z", "b": ":"}'

    assert _fast_or_error(body) == ("invalid",)
