"""Reading ALM bodies: both dialects, challenges, and every way a body can be refused."""

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest

from bridge.core.alm import Batch, Challenge, Limits, normalize_time, parse_body
from bridge.core.errors import InvalidBatch


def sample(name: str) -> bytes:
    return resources.files("bridge").joinpath("samples", name).read_bytes()


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def batch_of(*events: object, account_id: object = 1234) -> bytes:
    return body({"accountId": account_id, "events": list(events)})


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"eventId": "e-1", "eventName": "COURSE_ENROLLMENT"}
    base.update(fields)
    return base


def parse_batch(raw: bytes, limits: Limits | None = None) -> Batch:
    parsed = parse_body(raw, limits)
    assert isinstance(parsed, Batch)
    return parsed


def refusal(raw: bytes, limits: Limits | None = None) -> InvalidBatch:
    with pytest.raises(InvalidBatch) as caught:
        parse_body(raw, limits)
    return caught.value


def iso_utc(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TestSamples:
    def test_usage_guide_enrollment_batch(self) -> None:
        batch = parse_batch(sample("enrollment-batch.json"))
        assert batch.account_id == 1234
        assert [e.event_id for e in batch.events] == [
            "0f6c2b8e-4d1a-4f4e-9a57-2f1e6d3c9b10",
            "5a2d7e90-93c4-4b3f-8c1e-7d0b2a6f4e21",
        ]
        first = batch.events[0]
        assert first.name == "COURSE_ENROLLMENT_BATCH"
        assert first.time == "2026-11-02T09:30:00.000Z"
        assert first.data["userId"] == 51001
        assert first.data["loInstanceId"] == "course:771203_902114"
        assert first.raw["eventInfo"] == "1762075800000-104211-88213-0"

    def test_mixed_realtime_sample_in_order_with_epoch_times(self) -> None:
        batch = parse_batch(sample("mixed-realtime.json"))
        assert [e.name for e in batch.events] == [
            "COURSE_COMPLETED",
            "LEARNER_PROGRESS",
            "CI_STATS",
            "RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED",
            "LEARNING_OBJECT_MODIFICATION",
        ]
        completed, progress, _, response, modification = batch.events
        assert completed.time == iso_utc(1762079400)
        assert modification.time == iso_utc(1762079580)
        assert progress.time == "2026-11-02T10:10:00.000Z"
        assert "eventInfo" not in progress.raw
        assert response.event_id == "user-group-sync-2026-11-02-0001"
        assert response.data["request"] == {
            "metadata": {"userGroupId": 889},
            "users": [51001, 51002],
        }

    def test_setup_guide_dialect(self) -> None:
        batch = parse_batch(sample("setup-guide-dialect.json"))
        assert batch.account_id == 1010
        (only,) = batch.events
        assert only.event_id == "9b3e1f44-6c02-4a8d-b5f1-3e7a0c9d2f68"
        assert only.time == iso_utc(1762075800)
        assert only.data == {
            "userId": 1238,
            "loId": "course:1250",
            "loInstanceId": "course:1250_3301",
            "loType": "course",
        }
        assert only.raw["eventInitiator"] == "1173"
        assert only.raw["eventInfo"] == "1238,1250"


class TestEvents:
    def test_unknown_fields_and_their_order_are_kept(self) -> None:
        raw = {
            "zeta": 1,
            "eventName": "COURSE_ENROLLMENT",
            "custom": {"nested": [1, 2, {"x": None}]},
            "eventId": "e-1",
            "data": {"userId": 7, "extra": "kept"},
            "alpha": "last",
        }
        (parsed,) = parse_batch(batch_of(raw)).events
        assert list(parsed.raw) == ["zeta", "eventName", "custom", "eventId", "data", "alpha"]
        assert parsed.raw == raw
        assert parsed.data == {"userId": 7, "extra": "kept"}

    def test_events_keep_batch_order(self) -> None:
        ids = [f"id-{n}" for n in (5, 3, 9, 1, 7)]
        batch = parse_batch(batch_of(*(event(eventId=i) for i in ids)))
        assert [e.event_id for e in batch.events] == ids

    def test_event_info_may_be_absent(self) -> None:
        (parsed,) = parse_batch(batch_of(event(data={"userId": 1}))).events
        assert "eventInfo" not in parsed.raw
        assert parsed.data == {"userId": 1}

    def test_event_id_need_not_be_a_uuid(self) -> None:
        (parsed,) = parse_batch(batch_of(event(eventId="caller-chosen id #42"))).events
        assert parsed.event_id == "caller-chosen id #42"

    def test_integer_event_id_becomes_a_string(self) -> None:
        (parsed,) = parse_batch(batch_of(event(eventId=987654321))).events
        assert parsed.event_id == "987654321"
        assert parsed.raw["eventId"] == 987654321

    def test_event_name_with_colon_and_unknown_name(self) -> None:
        batch = parse_batch(
            batch_of(
                event(eventName="RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED"),
                event(eventName="SOMETHING:NEW:FROM_ADOBE"),
            )
        )
        assert [e.name for e in batch.events] == [
            "RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED",
            "SOMETHING:NEW:FROM_ADOBE",
        ]

    def test_data_and_time_absent(self) -> None:
        (parsed,) = parse_batch(batch_of(event())).events
        assert parsed.data == {}
        assert parsed.time is None

    def test_null_data_falls_back_to_event_data(self) -> None:
        (parsed,) = parse_batch(batch_of(event(data=None, eventData={"userId": 3}))).events
        assert parsed.data == {"userId": 3}

    def test_timestamp_wins_over_event_time(self) -> None:
        both = event(timestamp="2026-01-01T00:00:00Z", eventTime=1762075800000)
        (parsed,) = parse_batch(batch_of(both)).events
        assert parsed.time == "2026-01-01T00:00:00.000Z"

    def test_unreadable_time_is_kept_but_not_normalized(self) -> None:
        (parsed,) = parse_batch(batch_of(event(timestamp="next tuesday"))).events
        assert parsed.time is None
        assert parsed.raw["timestamp"] == "next tuesday"

    def test_empty_events_array_is_a_valid_batch(self) -> None:
        assert parse_body(b'{"accountId": 1010, "events": []}') == Batch(1010, ())

    def test_account_id_zero_and_64_bit(self) -> None:
        assert parse_batch(batch_of(account_id=0)).account_id == 0
        assert parse_batch(batch_of(account_id=2**63)).account_id == 2**63

    def test_surrounding_whitespace_is_fine(self) -> None:
        assert parse_body(b' \r\n\t{"accountId": 1, "events": []}\n\n') == Batch(1, ())


class TestNormalizeTime:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1762075800, iso_utc(1762075800)),
            (1762075800000, iso_utc(1762075800)),
            (1762075800123, iso_utc(1762075800.123)),
            (1762075800.5, iso_utc(1762075800.5)),
            ("1762075800", iso_utc(1762075800)),
            ("1762075800000", iso_utc(1762075800)),
            (" 1762075800000 ", iso_utc(1762075800)),
            (0, "1970-01-01T00:00:00.000Z"),
            ("2026-08-21T10:15:00.000Z", "2026-08-21T10:15:00.000Z"),
            ("2026-08-21T10:15:00Z", "2026-08-21T10:15:00.000Z"),
            ("2026-08-21T12:15:00+02:00", "2026-08-21T10:15:00.000Z"),
            ("2026-08-21T05:45:00-04:30", "2026-08-21T10:15:00.000Z"),
            ("2026-08-21T10:15:00", "2026-08-21T10:15:00.000Z"),
            ("2026-08-21T10:15:00.123456Z", "2026-08-21T10:15:00.123Z"),
        ],
    )
    def test_known_forms(self, value: object, expected: str) -> None:
        assert normalize_time(value) == expected

    @pytest.mark.parametrize(
        "value",
        [
            "garbage",
            "",
            "2026-13-45T99:00:00Z",
            "--5",
            "9" * 5000,
            "0001-01-01T00:00:00+01:00",
            10**30,
            1e300,
            float("nan"),
            float("inf"),
            True,
            None,
            [1762075800],
            {"t": 1},
        ],
    )
    def test_unreadable_values_give_none(self, value: object) -> None:
        assert normalize_time(value) is None


class TestChallenge:
    def test_challenge_body(self) -> None:
        assert parse_body(b'{"challenge": "abc"}') == Challenge("abc")

    def test_challenge_with_events_is_a_batch(self) -> None:
        parsed = parse_body(b'{"challenge": "abc", "accountId": 1, "events": []}')
        assert parsed == Batch(1, ())

    @pytest.mark.parametrize(
        "value",
        [5, None, "", "x" * 257, "line\nbreak", "bell\x07", ["abc"], {"v": "abc"}],
    )
    def test_unsafe_challenge_values(self, value: object) -> None:
        assert refusal(body({"challenge": value})).code == "invalid_challenge"

    def test_longest_accepted_challenge(self) -> None:
        assert parse_body(body({"challenge": "x" * 256})) == Challenge("x" * 256)


class TestJsonErrors:
    def test_not_utf8(self) -> None:
        assert refusal(b"\xff").code == "invalid_utf8"
        assert refusal(b'{"accountId": 1, "events": [], "x": "\xc3("}').code == "invalid_utf8"

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"   ",
            b'{"accountId": 1, "events": [',
            b'{"accountId": 1, "events": []',
            b'{"accountId": NaN, "events": []}',
            b'{"accountId": 1, "events": [], "x": Infinity}',
            b'{"accountId": 1, "events": [], "x": -Infinity}',
            b'{"accountId": 1, "events": []} trailing',
            b'{"accountId": 1, "events": []}{}',
            b'{"accountId": 1, "events": [],}',
            b"{'accountId': 1, 'events': []}",
        ],
    )
    def test_invalid_json(self, raw: bytes) -> None:
        assert refusal(raw).code == "invalid_json"

    def test_duplicate_key_at_top_level(self) -> None:
        error = refusal(b'{"accountId": 1, "events": [], "accountId": 2}')
        assert error.code == "duplicate_key"
        assert "accountId" in error.detail

    def test_duplicate_key_inside_data(self) -> None:
        raw = (
            b'{"accountId": 1, "events": [{"eventId": "a", "eventName": "X",'
            b' "data": {"userId": 1, "loId": "course:1", "userId": 2}}]}'
        )
        error = refusal(raw)
        assert error.code == "duplicate_key"
        assert "userId" in error.detail

    def test_depth_limit_boundary(self) -> None:
        limits = Limits(max_depth=6)

        def nested(levels: int) -> dict[str, Any]:
            inner: dict[str, Any] = {}
            for _ in range(levels - 1):
                inner = {"n": inner}
            return inner

        # root (1) > events list (2) > event (3) > data (4): data may hold 2 more levels
        ok = batch_of(event(data=nested(3)))
        assert len(parse_batch(ok, limits).events) == 1
        too_deep = batch_of(event(data=nested(4)))
        assert refusal(too_deep, limits).code == "too_deep"

    def test_default_depth_limit(self) -> None:
        deep: Any = []
        for _ in range(Limits().max_depth):
            deep = [deep]
        assert refusal(batch_of(event(data={"deep": deep}))).code == "too_deep"

    def test_nesting_beyond_the_interpreter_stack(self) -> None:
        assert refusal(b"[" * 200_000 + b"]" * 200_000).code == "too_deep"
        assert refusal(b'{"a":' * 200_000 + b"1" + b"}" * 200_000).code == "too_deep"

    def test_string_too_long(self) -> None:
        limits = Limits(max_string_chars=100)
        assert len(parse_batch(batch_of(event(eventInfo="x" * 100)), limits).events) == 1
        assert refusal(batch_of(event(eventInfo="x" * 101)), limits).code == "string_too_long"

    def test_key_too_long(self) -> None:
        limits = Limits(max_string_chars=100)
        error = refusal(batch_of(event(data={"k" * 101: 1})), limits)
        assert error.code == "string_too_long"

    def test_default_string_limit(self) -> None:
        raw = batch_of(event(eventInfo="x" * (Limits().max_string_chars + 1)))
        assert refusal(raw).code == "string_too_long"

    @pytest.mark.parametrize(
        "number",
        [b"18446744073709551616", b"-9223372036854775809", b"1e400", b"-1e400", b"9" * 5000],
    )
    def test_number_out_of_range(self, number: bytes) -> None:
        raw = b'{"accountId": 1, "events": [], "x": ' + number + b"}"
        assert refusal(raw).code == "number_out_of_range"

    def test_number_out_of_range_inside_an_event(self) -> None:
        raw = batch_of(event(data={"userId": 2**64}))
        assert refusal(raw).code == "number_out_of_range"

    def test_64_bit_bounds_are_accepted(self) -> None:
        raw = batch_of(event(data={"a": 2**64 - 1, "b": -(2**63), "c": 1.7e308}))
        (parsed,) = parse_batch(raw).events
        assert parsed.data == {"a": 2**64 - 1, "b": -(2**63), "c": 1.7e308}

    def test_too_many_events(self) -> None:
        limits = Limits(max_events=3)
        three = batch_of(*(event(eventId=str(n)) for n in range(3)))
        assert len(parse_batch(three, limits).events) == 3
        four = batch_of(*(event(eventId=str(n)) for n in range(4)))
        error = refusal(four, limits)
        assert error.code == "too_many_events"
        assert "4" in error.detail


class TestEnvelopeErrors:
    @pytest.mark.parametrize(
        "doc",
        [
            {"events": []},
            {"accountId": "1234", "events": []},
            {"accountId": True, "events": []},
            {"accountId": -1, "events": []},
            {"accountId": 1234.0, "events": []},
            {"accountId": None, "events": []},
        ],
    )
    def test_bad_account_id(self, doc: dict[str, Any]) -> None:
        error = refusal(body(doc))
        assert error.code == "invalid_envelope"
        assert "accountId" in error.detail

    @pytest.mark.parametrize(
        "doc",
        [
            {"accountId": 1},
            {"accountId": 1, "events": {"0": {}}},
            {"accountId": 1, "events": None},
            {"accountId": 1, "events": "[]"},
        ],
    )
    def test_bad_events(self, doc: dict[str, Any]) -> None:
        error = refusal(body(doc))
        assert error.code == "invalid_envelope"
        assert "events" in error.detail

    @pytest.mark.parametrize("raw", [b"[]", b'[{"accountId": 1, "events": []}]', b'"x"', b"1"])
    def test_body_not_an_object(self, raw: bytes) -> None:
        assert refusal(raw).code == "invalid_envelope"


class TestEventErrors:
    @pytest.mark.parametrize(
        ("bad", "field"),
        [
            ("not an object", "events[1]"),
            (["eventId", "x"], "events[1]"),
            ({"eventName": "COURSE_ENROLLMENT"}, "events[1].eventId"),
            ({"eventId": "", "eventName": "COURSE_ENROLLMENT"}, "events[1].eventId"),
            ({"eventId": "   ", "eventName": "COURSE_ENROLLMENT"}, "events[1].eventId"),
            ({"eventId": None, "eventName": "COURSE_ENROLLMENT"}, "events[1].eventId"),
            ({"eventId": 1.5, "eventName": "COURSE_ENROLLMENT"}, "events[1].eventId"),
            ({"eventId": True, "eventName": "COURSE_ENROLLMENT"}, "events[1].eventId"),
            ({"eventId": "x" * 513, "eventName": "COURSE_ENROLLMENT"}, "events[1].eventId"),
            # 129 characters of four bytes: 516 bytes in UTF-8.
            ({"eventId": "\U0001f600" * 129, "eventName": "X"}, "events[1].eventId"),
            ({"eventId": "b", "eventName": "É" * 257}, "events[1].eventName"),
            ({"eventId": "\ufeff \ufeff", "eventName": "X"}, "events[1].eventId"),
            ({"eventId": "b", "eventName": "\ufeff"}, "events[1].eventName"),
            ({"eventId": "b"}, "events[1].eventName"),
            ({"eventId": "b", "eventName": ""}, "events[1].eventName"),
            ({"eventId": "b", "eventName": 7}, "events[1].eventName"),
            ({"eventId": "b", "eventName": "X", "data": []}, "events[1].data"),
            ({"eventId": "b", "eventName": "X", "data": "userId=1"}, "events[1].data"),
            ({"eventId": "b", "eventName": "X", "eventData": 5}, "events[1].eventData"),
        ],
    )
    def test_invalid_event_names_the_field(self, bad: object, field: str) -> None:
        error = refusal(batch_of(event(eventId="a"), bad))
        assert error.code == "invalid_event"
        assert error.detail.split(" ")[0] == field

    def test_ids_and_names_are_bounded_in_utf8_bytes(self) -> None:
        longest = [
            event(eventId="x" * 512),
            event(eventId="\U0001f600" * 128),
            event(eventId="é" * 256, eventName="É" * 256),
        ]
        parsed = parse_batch(batch_of(*longest))
        assert [len(e.event_id.encode()) for e in parsed.events] == [512, 512, 512]
        error = refusal(batch_of(event(eventId="é" * 256 + "x")))
        assert error.code == "invalid_event"
        assert "512 UTF-8 bytes" in error.detail
