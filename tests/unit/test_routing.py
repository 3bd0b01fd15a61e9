"""Events to Kafka records: topics, keys, values and CloudEvents headers per the contract."""

import json
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from bridge.core.alm import Batch, parse_body
from bridge.core.errors import InvalidBatch
from bridge.core.reasons import DeadLetterReason
from bridge.core.records import Record
from bridge.core.routing import (
    KNOWN_EVENT_NAMES,
    MAX_TOPIC_CHARS,
    RECORD_KEY_FIELDS,
    Plan,
    Router,
    RoutingPolicy,
    TopicRegistry,
    family,
    is_legal_topic,
    legal_topic,
    sanitize_topic_part,
    validate_topics,
)

VECTORS = Path(__file__).parent / "vectors"
DOCUMENTED: dict[str, str] = json.loads((VECTORS / "event-names.json").read_text())["names"]
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def sample(name: str) -> bytes:
    return resources.files("bridge").joinpath("samples", name).read_bytes()


def batch(*events: dict[str, Any], account_id: int = 1234) -> Batch:
    parsed = parse_body(json.dumps({"accountId": account_id, "events": list(events)}).encode())
    assert isinstance(parsed, Batch)
    return parsed


def event(name: str = "COURSE_ENROLLMENT", event_id: str = "e-1", **fields: Any) -> dict[str, Any]:
    return {"eventId": event_id, "eventName": name, **fields}


def plan(policy: RoutingPolicy, *events: dict[str, Any], account_id: int = 1234) -> Plan:
    return Router(policy).plan(batch(*events, account_id=account_id))


def only_record(policy: RoutingPolicy, one: dict[str, Any], account_id: int = 1234) -> Record:
    result = plan(policy, one, account_id=account_id)
    assert result.filtered == 0
    (record,) = result.records
    return record


def headers_of(record: Record) -> dict[str, bytes]:
    names = [name for name, _ in record.headers]
    assert len(names) == len(set(names)), names
    return dict(record.headers)


DEFAULT = RoutingPolicy(receiver="prod")


class TestTopics:
    @pytest.mark.parametrize(
        ("name", "topic"),
        [
            ("COURSE_ENROLLMENT_BATCH", "alm.course_enrollment_batch"),
            (
                "RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED",
                "alm.response_asyncapi_usergroup_user_added",
            ),
            ("LEARNER_PROGRESS", "alm.learner_progress"),
            ("CI_STATS", "alm.ci_stats"),
            ("SOMETHING_NEW_2", "alm.something_new_2"),
        ],
    )
    def test_template(self, name: str, topic: str) -> None:
        assert only_record(DEFAULT, event(name)).topic == topic
        assert Router(DEFAULT).topic_for(name) == topic

    @pytest.mark.parametrize(
        "name",
        ["Brand New/Event name", "ÉVÉNEMENT", "Course.Enrollment", "course_enrollment", "A\x00B"],
    )
    def test_names_outside_the_alphabet_never_reach_the_template(self, name: str) -> None:
        result = plan(DEFAULT, event(name))
        assert [r.topic for r in result.records] == ["alm.other"]
        assert result.fallbacks == {"name_pattern": 1}

    def test_names_outside_the_alphabet_are_dead_lettered_under_that_policy(self) -> None:
        policy = RoutingPolicy(receiver="r", allow=frozenset({"Course.Enrollment"}))
        assert only_record(policy, event("Course.Enrollment")).topic == "alm.course.enrollment"
        policy = RoutingPolicy(receiver="r", unlisted="deadletter")
        record = only_record(policy, event("Course.Enrollment"))
        assert (record.topic, record.dead_letter, record.reason) == (
            "alm.deadletter",
            True,
            "unlisted_event",
        )

    def test_a_custom_name_pattern(self) -> None:
        policy = RoutingPolicy(receiver="r", event_name_pattern=r"[a-z.]+")
        assert only_record(policy, event("course.review")).topic == "alm.course.review"
        assert only_record(policy, event("COURSE_X")).topic == "alm.other"
        # A documented name keeps its topic: a name colliding with it falls back.
        result = plan(policy, event("course.enrollment"), event("COURSE_ENROLLMENT", "2"))
        assert [r.topic for r in result.records] == ["alm.other", "alm.course_enrollment"]
        assert result.fallbacks == {"topic_collision": 1}

    @pytest.mark.parametrize(
        ("name", "policy"),
        [
            ("DEADLETTER", RoutingPolicy(receiver="r")),
            ("OTHER", RoutingPolicy(receiver="r")),
            ("MINE", RoutingPolicy(receiver="r", overrides={"X": "alm.mine"})),
            ("DEAD", RoutingPolicy(receiver="r", dead_letter_topic="alm.dead")),
        ],
    )
    def test_names_never_reach_operator_topics_through_the_template(
        self, name: str, policy: RoutingPolicy
    ) -> None:
        result = plan(policy, event(name))
        assert [r.topic for r in result.records] == [policy.catchall_topic]
        assert not result.records[0].dead_letter
        assert result.fallbacks == {"reserved_topic": 1}

    def test_reserved_topics_collide_in_kafka_terms_too(self) -> None:
        policy = RoutingPolicy(receiver="r", dead_letter_topic="alm.dead_letter")
        result = plan(policy, event("DEAD_LETTER"))
        assert [r.topic for r in result.records] == ["alm.other"]
        policy = RoutingPolicy(
            receiver="r", dead_letter_topic="alm.dead.letter", unlisted="template"
        )
        assert plan(policy, event("DEAD_LETTER")).fallbacks == {"reserved_topic": 1}

    def test_template_topics_that_collide_in_kafka_fall_back(self) -> None:
        policy = RoutingPolicy(receiver="r", event_name_pattern=r"[A-Z._]+")
        result = plan(policy, event("A_B", "1"), event("A.B", "2"), event("A_B", "3"))
        assert [r.topic for r in result.records] == ["alm.a_b", "alm.other", "alm.a_b"]
        assert result.fallbacks == {"topic_collision": 1}

    def test_the_topic_budget_bounds_new_names_not_documented_ones(self) -> None:
        router = Router(RoutingPolicy(receiver="a", unlisted="template"), max_topics=2)
        documented = {name: router.topic_for(name) for name in KNOWN_EVENT_NAMES}
        assert all(topic == f"alm.{sanitize_topic_part(n)}" for n, topic in documented.items())
        assert router.topic_for("ONE") == "alm.one"
        assert router.topic_for("TWO") == "alm.two"
        result = router.plan(batch(event("THREE"), event("COURSE_COMPLETED", "2")))
        assert [r.topic for r in result.records] == ["alm.other", "alm.course_completed"]
        assert result.fallbacks == {"topic_limit": 1}
        assert router.topic_for("ONE") == "alm.one"  # topics already used stay usable
        assert len(router.budget) == 2

    def test_listed_names_never_spend_the_budget(self) -> None:
        policy = RoutingPolicy(receiver="b", allow=frozenset({"A", "B"}), unlisted="deadletter")
        router = Router(policy, max_topics=1)
        assert router.topic_for("A") == "alm.a"
        assert router.topic_for("B") == "alm.b"
        assert router.route("C") == (None, "unlisted_event")
        assert len(router.budget) == 0

    def test_sanitize(self) -> None:
        assert sanitize_topic_part("A:b c.d-e_f/9") == "a_b_c.d-e_f_9"

    def test_custom_template(self) -> None:
        policy = RoutingPolicy(receiver="r", topic_template="lms.{event}.v1")
        assert only_record(policy, event("COURSE_COMPLETED")).topic == "lms.course_completed.v1"

    def test_override(self) -> None:
        policy = RoutingPolicy(receiver="r", overrides={"LEARNER_PROGRESS": "alm.progress"})
        result = plan(policy, event("LEARNER_PROGRESS", "a"), event("COURSE_COMPLETED", "b"))
        assert [r.topic for r in result.records] == ["alm.progress", "alm.course_completed"]

    def test_override_beats_the_unlisted_policy(self) -> None:
        policy = RoutingPolicy(
            receiver="r",
            allow=frozenset(),
            unlisted="deadletter",
            overrides={"CUSTOM:THING": "alm.custom"},
        )
        record = only_record(policy, event("CUSTOM:THING"))
        assert record.topic == "alm.custom"
        assert not record.dead_letter

    def test_unknown_name_follows_template_by_default(self) -> None:
        assert only_record(DEFAULT, event("NOT_DOCUMENTED")).topic == "alm.not_documented"

    def test_allow_list_with_catchall(self) -> None:
        policy = RoutingPolicy(
            receiver="r",
            allow=frozenset({"COURSE_ENROLLMENT"}),
            unlisted="catchall",
            catchall_topic="alm.misc",
        )
        result = plan(policy, event("COURSE_ENROLLMENT", "a"), event("COURSE_COMPLETED", "b"))
        assert [r.topic for r in result.records] == ["alm.course_enrollment", "alm.misc"]
        assert not any(r.dead_letter for r in result.records)

    def test_allow_list_with_template(self) -> None:
        policy = RoutingPolicy(receiver="r", allow=frozenset({"COURSE_ENROLLMENT"}))
        assert only_record(policy, event("COURSE_COMPLETED")).topic == "alm.course_completed"

    def test_without_allow_list_documented_names_are_listed(self) -> None:
        policy = RoutingPolicy(receiver="r", unlisted="catchall")
        result = plan(policy, event("CI_STATS", "a"), event("SOMETHING_NEW", "b"))
        assert [r.topic for r in result.records] == ["alm.ci_stats", "alm.other"]

    def test_unlisted_dead_letter(self) -> None:
        policy = RoutingPolicy(
            receiver="prod",
            allow=frozenset({"COURSE_ENROLLMENT"}),
            unlisted="deadletter",
            dead_letter_topic="alm.dlq",
        )
        result = plan(
            policy,
            event("COURSE_ENROLLMENT", "a", data={"userId": 1, "loInstanceId": "course:1_1"}),
            event("SURPRISE_EVENT", "b", data={"x": 1}),
        )
        listed, parked = result.records
        assert listed.topic == "alm.course_enrollment"
        assert not listed.dead_letter
        assert "dlq_reason" not in headers_of(listed)
        assert parked.topic == "alm.dlq"
        assert parked.dead_letter
        assert parked.event_id == "b"
        headers = headers_of(parked)
        assert headers["dlq_reason"] == b"unlisted_event"
        assert b"SURPRISE_EVENT" in headers["dlq_error"]
        assert headers["ce_id"] == b"b"
        assert headers["alm_receiver"] == b"prod"
        assert json.loads(parked.value) == {
            "eventId": "b",
            "eventName": "SURPRISE_EVENT",
            "data": {"x": 1},
            "accountId": 1234,
        }

    def test_deny_list_filters(self) -> None:
        policy = RoutingPolicy(
            receiver="r",
            deny=frozenset({"CI_STATS"}),
            overrides={"CI_STATS": "alm.stats"},
        )
        result = plan(
            policy,
            event("CI_STATS", "a"),
            event("COURSE_ENROLLMENT", "b"),
            event("CI_STATS", "c"),
        )
        assert result.filtered == 2
        assert [r.event_id for r in result.records] == ["b"]
        assert all(r.topic != "alm.stats" for r in result.records)

    def test_long_event_name_gives_a_legal_topic(self) -> None:
        name = "X" * 500
        assert only_record(DEFAULT, event(name)).topic == "alm.other"  # past 128 characters
        listed = RoutingPolicy(receiver="r", allow=frozenset({name}))
        topic = only_record(listed, event(name)).topic
        assert is_legal_topic(topic)
        assert len(topic) == MAX_TOPIC_CHARS
        assert topic.startswith("alm.xxx")


class TestLegalTopic:
    @pytest.mark.parametrize("topic", ["alm.course_enrollment", "A-b_c.9", "x" * MAX_TOPIC_CHARS])
    def test_legal_names_are_unchanged(self, topic: str) -> None:
        assert is_legal_topic(topic)
        assert legal_topic(topic) == topic

    @pytest.mark.parametrize(
        "topic", ["", ".", "..", "a b", "alm/x", "alm:x", "ü", "x" * 250, "x" * 10_000, "a\nb"]
    )
    def test_illegal_names_are_made_legal(self, topic: str) -> None:
        assert not is_legal_topic(topic)
        fixed = legal_topic(topic)
        assert is_legal_topic(fixed)
        assert fixed not in {".", ".."}
        assert 1 <= len(fixed) <= MAX_TOPIC_CHARS
        assert legal_topic(topic) == fixed

    def test_long_names_keep_distinct_hashes(self) -> None:
        first, second = legal_topic("a" * 300 + "1"), legal_topic("a" * 300 + "2")
        assert first != second
        assert len(first) == len(second) == MAX_TOPIC_CHARS
        assert first[:200] == "a" * 200

    @pytest.mark.parametrize("topic", ["alm.x\n", "alm.x\r\n", "\nalm.x", "alm x", "."])
    def test_is_legal_topic_rejects_whitespace_and_dots(self, topic: str) -> None:
        assert not is_legal_topic(topic)
        assert validate_topics([topic]) == [f"illegal Kafka topic name {topic!r}"]

    def test_validate_topics(self) -> None:
        assert validate_topics(["alm.a", "alm.b"]) == []
        assert len(validate_topics(["ok", "not ok", "..", "x" * 250])) == 3


USER_INSTANCE = {"userId": 51001, "loId": "course:7", "loInstanceId": "course:7_9"}


class TestKeys:
    @pytest.mark.parametrize(
        ("name", "data", "key"),
        [
            ("COURSE_ENROLLMENT", USER_INSTANCE, b"1234:51001:course:7_9"),
            ("CERTIFICATION_ENROLLMENT_BATCH", USER_INSTANCE, b"1234:51001:course:7_9"),
            ("LEARNING_PATH_COMPLETED", USER_INSTANCE, b"1234:51001:course:7_9"),
            ("COURSE_UNENROLLMENT_BATCH", USER_INSTANCE, b"1234:51001:course:7_9"),
            ("LEARNER_PROGRESS", USER_INSTANCE, b"1234:51001:course:7_9"),
            ("LEARNING_PATH_COMPLETION_ROLLBACK", USER_INSTANCE, b"1234:51001:course:7_9"),
            ("COURSE_ENROLLMENT", {"userId": "u-1", "loInstanceId": "c:1_2"}, b"1234:u-1:c:1_2"),
            ("CI_STATS", {"loInstanceId": "course:7_9", "seatLimit": 4}, b"1234:course:7_9"),
            ("LEARNING_OBJECT_INSTANCE_DELETION", USER_INSTANCE, b"1234:course:7_9"),
            ("LEARNING_OBJECT_INSTANCE_MODIFICATION_BATCH", USER_INSTANCE, b"1234:course:7_9"),
            ("LEARNING_OBJECT_DRAFT", {"loId": "course:7", "loType": "course"}, b"1234:course:7"),
            ("LEARNING_OBJECT_MODIFICATION_BATCH", USER_INSTANCE, b"1234:course:7"),
            ("RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED", USER_INSTANCE, b"1234:e-1"),
            ("SOMETHING_NEW", USER_INSTANCE, b"1234:e-1"),
        ],
    )
    def test_record_key_per_family(self, name: str, data: dict[str, Any], key: bytes) -> None:
        assert only_record(DEFAULT, event(name, data=data)).key == key

    @pytest.mark.parametrize(
        ("name", "data"),
        [
            ("COURSE_ENROLLMENT", {"loInstanceId": "course:7_9"}),
            ("COURSE_ENROLLMENT", {"userId": 51001}),
            ("COURSE_COMPLETED", {"userId": True, "loInstanceId": "course:7_9"}),
            ("COURSE_COMPLETED", {"userId": 51001, "loInstanceId": ""}),
            ("LEARNER_PROGRESS", {"userId": 1.5, "loInstanceId": "course:7_9"}),
            ("LEARNER_PROGRESS", {"userId": None, "loInstanceId": "course:7_9"}),
            ("CI_STATS", {"seatLimit": 4}),
            ("CI_STATS", {"loInstanceId": ["course:7_9"]}),
            ("LEARNING_OBJECT_INSTANCE_DELETION", {"loId": "course:7"}),
            ("LEARNING_OBJECT_DELETION", {"loInstanceId": "course:7_9"}),
            ("LEARNING_OBJECT_DELETION", {"loId": {"id": 7}}),
            ("COURSE_ENROLLMENT", {}),
        ],
    )
    def test_falls_back_to_event_id(self, name: str, data: dict[str, Any]) -> None:
        record = only_record(DEFAULT, event(name, "evt-9", data=data))
        assert record.key == b"1234:evt-9"

    def test_setup_guide_dialect_keys_from_event_data(self) -> None:
        parsed = parse_body(sample("setup-guide-dialect.json"))
        assert isinstance(parsed, Batch)
        (record,) = Router(DEFAULT).plan(parsed).records
        assert record.key == b"1010:1238:course:1250_3301"

    def test_same_record_same_key(self) -> None:
        result = plan(
            DEFAULT,
            event("COURSE_ENROLLMENT", "a", data=USER_INSTANCE),
            event("LEARNER_PROGRESS", "b", data=USER_INSTANCE),
            event("COURSE_COMPLETED_BATCH", "c", data=USER_INSTANCE),
        )
        assert {r.key for r in result.records} == {b"1234:51001:course:7_9"}

    @pytest.mark.parametrize("fam", sorted(RECORD_KEY_FIELDS))
    def test_the_record_key_follows_the_rule_of_its_family(self, fam: str) -> None:
        name = min(n for n in KNOWN_EVENT_NAMES if family(n) == fam)
        fields = RECORD_KEY_FIELDS[fam]
        data = {f: f"{f}-1" for f in fields}
        assert (
            only_record(DEFAULT, event(name, data=data)).key
            == ":".join(["1234", *data.values()]).encode()
        )
        assert only_record(DEFAULT, event(name, data=data | {fields[-1]: ""})).key == b"1234:e-1"

    @pytest.mark.parametrize(
        ("strategy", "key"), [("eventId", b"e-1"), ("accountId", b"1234"), ("none", None)]
    )
    def test_other_strategies(self, strategy: Any, key: bytes | None) -> None:
        policy = RoutingPolicy(receiver="r", key=strategy)
        assert only_record(policy, event(data=USER_INSTANCE)).key == key


class TestValue:
    def test_event_as_received_plus_account(self) -> None:
        raw = {
            "zzz": [1, {"deep": None}],
            "eventId": "e-1",
            "eventName": "COURSE_COMPLETED",
            "timestamp": 1762079400000,
            "data": {"userId": 1, "loInstanceId": "c_1", "hasPassed": False, "x": 1.25},
            "eventInfo": "1-2-3",
        }
        value = json.loads(only_record(DEFAULT, raw, account_id=77).value)
        assert value == {**raw, "accountId": 77}
        assert list(value) == [*raw, "accountId"]

    def test_setup_guide_dialect_value(self) -> None:
        parsed = parse_body(sample("setup-guide-dialect.json"))
        assert isinstance(parsed, Batch)
        (record,) = Router(DEFAULT).plan(parsed).records
        original = json.loads(sample("setup-guide-dialect.json"))["events"][0]
        assert json.loads(record.value) == {**original, "accountId": 1010}
        assert json.loads(record.value)["eventData"]["loId"] == "course:1250"

    def test_non_ascii_text_survives(self) -> None:
        raw = event(data={"title": "Sécurité 101 — 日本語"})
        assert json.loads(only_record(DEFAULT, raw).value)["data"]["title"] == (
            "Sécurité 101 — 日本語"
        )

    def test_size_counts_value_key_and_headers(self) -> None:
        record = only_record(DEFAULT, event(data=USER_INSTANCE))
        assert record.size > len(record.value) + len(record.key or b"")


class TestHeaders:
    def test_cloudevents_headers(self) -> None:
        policy = RoutingPolicy(receiver="prod")
        record = only_record(
            policy,
            event("COURSE_ENROLLMENT_BATCH", "0f6c", timestamp="2026-11-02T10:30:00+01:00"),
        )
        assert headers_of(record) == {
            "ce_specversion": b"1.0",
            "ce_id": b"0f6c",
            "ce_source": b"https://learningmanager.adobe.com/accounts/1234",
            "ce_type": b"com.adobe.learningmanager.COURSE_ENROLLMENT_BATCH",
            "ce_time": b"2026-11-02T09:30:00.000Z",
            "content-type": b"application/json",
            "alm_account_id": b"1234",
            "alm_event_name": b"COURSE_ENROLLMENT_BATCH",
            "alm_receiver": b"prod",
        }

    @pytest.mark.parametrize("when", [1762075800, 1762075800000, "1762075800000"])
    def test_ce_time_from_epoch(self, when: object) -> None:
        headers = headers_of(only_record(DEFAULT, event(eventTime=when)))
        expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=1762075800)
        assert headers["ce_time"] == expected.strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
        assert RFC3339_UTC.match(headers["ce_time"].decode())

    @pytest.mark.parametrize("extra", [{}, {"timestamp": "not a time"}, {"eventTime": None}])
    def test_no_ce_time_without_a_time(self, extra: dict[str, Any]) -> None:
        headers = headers_of(only_record(DEFAULT, event(**extra)))
        assert "ce_time" not in headers
        assert headers["ce_specversion"] == b"1.0"

    def test_colon_name_and_custom_source(self) -> None:
        policy = RoutingPolicy(receiver="hr", source_template="urn:alm:{accountId}")
        record = only_record(
            policy, event("RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED", "caller-id-1"), account_id=9
        )
        headers = headers_of(record)
        assert (
            headers["ce_type"]
            == b"com.adobe.learningmanager.RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED"
        )
        assert headers["ce_source"] == b"urn:alm:9"
        assert headers["ce_id"] == b"caller-id-1"
        assert headers["alm_account_id"] == b"9"
        assert headers["alm_receiver"] == b"hr"
        assert record.family == "async_response"


class TestPlan:
    def test_mixed_sample_in_batch_order(self) -> None:
        parsed = parse_body(sample("mixed-realtime.json"))
        assert isinstance(parsed, Batch)
        result = Router(DEFAULT).plan(parsed)
        assert result.filtered == 0
        assert [r.event_id for r in result.records] == [e.event_id for e in parsed.events]
        assert [r.topic for r in result.records] == [
            "alm.course_completed",
            "alm.learner_progress",
            "alm.ci_stats",
            "alm.response_asyncapi_usergroup_user_added",
            "alm.learning_object_modification",
        ]
        assert [r.key for r in result.records] == [
            b"1234:51001:course:771203_902114",
            b"1234:51001:learningProgram:4410_5120",
            b"1234:course:771203_902114",
            b"1234:user-group-sync-2026-11-02-0001",
            b"1234:course:771203",
        ]
        assert [r.family for r in result.records] == [
            "completion",
            "progress",
            "ci_stats",
            "async_response",
            "learning_object",
        ]
        raw_events = json.loads(sample("mixed-realtime.json"))["events"]
        for record, original in zip(result.records, raw_events, strict=True):
            assert json.loads(record.value) == {**original, "accountId": 1234}

    def test_empty_batch(self) -> None:
        assert Router(DEFAULT).plan(Batch(1, ())) == Plan((), 0)

    def test_many_events_keep_order(self) -> None:
        ids = [f"id-{n:04d}" for n in range(300, 0, -1)]
        names = sorted(DOCUMENTED)
        events = [event(names[i % len(names)], eid) for i, eid in enumerate(ids)]
        assert [r.event_id for r in plan(DEFAULT, *events).records] == ids

    @pytest.mark.parametrize(
        "raw",
        [
            rb'{"eventId": "a", "eventName": "X\ud800"}',
            rb'{"eventId": "a\udc00", "eventName": "X"}',
            rb'{"eventId": "a", "eventName": "X", "data": {"title": "\ud800"}}',
            rb'{"eventId": "a", "eventName": "X", "data": {"\udfff": 1}}',
            rb'{"eventId": "a", "eventName": "X", "eventInfo": "ok \ud83d"}',
        ],
    )
    def test_lone_surrogate_is_an_invalid_event(self, raw: bytes) -> None:
        parsed = parse_body(b'{"accountId": 1, "events": [' + raw + b"]}")
        assert isinstance(parsed, Batch)
        with pytest.raises(InvalidBatch) as caught:
            Router(DEFAULT).plan(parsed)
        assert caught.value.code == "invalid_event"

    def test_surrogate_pair_is_fine(self) -> None:
        raw = rb'{"eventId": "a", "eventName": "X", "data": {"emoji": "\ud83d\ude00"}}'
        parsed = parse_body(b'{"accountId": 1, "events": [' + raw + b"]}")
        assert isinstance(parsed, Batch)
        (record,) = Router(DEFAULT).plan(parsed).records
        assert json.loads(record.value)["data"]["emoji"] == "\U0001f600"


class TestDeadLetter:
    def test_raw_body_and_reason_headers(self) -> None:
        policy = RoutingPolicy(receiver="prod", dead_letter_topic="alm.dlq")
        body = b'{"accountId": 1, "events": [{"eventId": ""}]} \xff raw bytes'
        before = datetime.now(UTC)
        record = Router(policy).dead_letter(
            body, DeadLetterReason.INVALID_EVENT, "events[0].eventId is empty"
        )
        after = datetime.now(UTC)
        assert record.topic == "alm.dlq"
        assert record.value == body
        assert record.key == b"prod"
        assert record.dead_letter
        headers = headers_of(record)
        assert headers["alm_receiver"] == b"prod"
        assert headers["dlq_reason"] == b"invalid_event"
        assert headers["dlq_error"] == b"events[0].eventId is empty"
        stamp = headers["dlq_time"].decode()
        assert RFC3339_UTC.match(stamp)
        when = datetime.fromisoformat(stamp)
        assert before - timedelta(milliseconds=1) <= when <= after

    def test_long_or_odd_error_text_is_bounded(self) -> None:
        record = Router(DEFAULT).dead_letter(
            b"{}", DeadLetterReason.INVALID_JSON, "\ud800" + "e" * 5000
        )
        error = headers_of(record)["dlq_error"]
        assert len(error) <= 1000
        assert error.endswith(b"e")


class TestFamilies:
    @pytest.mark.parametrize(("name", "expected"), sorted(DOCUMENTED.items()))
    def test_documented_names(self, name: str, expected: str) -> None:
        assert family(name) == expected

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("SOMETHING_NEW", "other"),
            ("SOMETHING_NEW_BATCH", "other"),
            ("", "other"),
            ("course_enrollment", "other"),
            ("RESPONSE:ASYNCAPI_USERGROUP_RENAMED", "async_response"),
        ],
    )
    def test_other_names(self, name: str, expected: str) -> None:
        assert family(name) == expected

    def test_known_names_cover_the_reference(self) -> None:
        assert set(DOCUMENTED) <= KNOWN_EVENT_NAMES
        assert all(family(name) != "other" for name in KNOWN_EVENT_NAMES)

    def test_record_carries_the_family(self) -> None:
        result = plan(DEFAULT, *(event(name, name) for name in sorted(DOCUMENTED)))
        assert {r.event_id: r.family for r in result.records} == DOCUMENTED


def test_records_of_a_batch_take_memory_in_proportion_to_their_bytes() -> None:
    """A batch in flight holds its records until Kafka acknowledges them.

    What they occupy must follow their size: JSON encoders may hand back their whole
    working buffer (orjson: about 4 KiB for a 300-byte event), which made 100 small events
    hold half a megabyte while waiting for Kafka.
    """
    import tracemalloc

    events = [
        event(event_id=f"e-{i}", data={"userId": str(i), "loId": "course:1", "note": "x" * 200})
        for i in range(100)
    ]
    parsed = batch(*events)
    router = Router(DEFAULT)
    router.plan(parsed)  # the router's own caches are not the records'
    tracemalloc.start()
    try:
        records = router.plan(parsed).records
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    payload = sum(r.size for r in records)
    assert held < 2.5 * payload, (held, payload)


class TestReceiversDoNotShareTopics:
    """One receiver's names never cost another receiver its topics."""

    PROD = RoutingPolicy(receiver="prod", overrides={"LEARNER_PROGRESS": "alm.progress"})

    @staticmethod
    def routers(*policies: RoutingPolicy, max_topics: int = 200) -> list[Router]:
        topics = TopicRegistry(policies)
        return [Router(policy, topics, max_topics=max_topics) for policy in policies]

    def test_a_flood_of_new_names_leaves_documented_names_and_overrides_alone(self) -> None:
        partner_policy = RoutingPolicy(receiver="partner", allow=frozenset({"PARTNER_SYNC"}))
        prod, partner = self.routers(self.PROD, partner_policy)

        flood = partner.plan(batch(*(event(f"NEW_NAME_{i}", str(i)) for i in range(250))))

        assert flood.fallbacks == {"topic_limit": 50}
        assert len(partner.budget) == 200
        names = sorted(KNOWN_EVENT_NAMES)
        result = prod.plan(batch(*(event(n, str(i)) for i, n in enumerate(names))))
        assert result.fallbacks == {}
        expected = {n: f"alm.{sanitize_topic_part(n)}" for n in names}
        expected["LEARNER_PROGRESS"] = "alm.progress"
        assert [r.topic for r in result.records] == [expected[n] for n in names]
        # prod's own budget is untouched by partner's names, and still bounds its own.
        assert len(prod.budget) == 0
        assert prod.topic_for("PROD_NEW") == "alm.prod_new"
        assert partner.topic_for("PARTNER_SYNC") == "alm.partner_sync"  # listed: reserved

    def test_each_receiver_is_bounded_by_its_own_budget(self) -> None:
        prod, partner = self.routers(self.PROD, RoutingPolicy(receiver="partner"), max_topics=2)
        assert [partner.topic_for(n) for n in ("P1", "P2", "P3")] == [
            "alm.p1",
            "alm.p2",
            "alm.other",
        ]
        assert [prod.topic_for(n) for n in ("Q1", "P1", "Q3")] == ["alm.q1", "alm.p1", "alm.other"]
        assert (len(prod.budget), len(partner.budget)) == (2, 2)
        # The process: the documented topics (shared: one template) + p1, p2 and q1.
        assert prod.topics.reserved == len(KNOWN_EVENT_NAMES)
        assert len(prod.topics) == 3

    @pytest.mark.parametrize("partner_first", [True, False])
    def test_another_receivers_name_never_takes_a_documented_topic(
        self, partner_first: bool
    ) -> None:
        # partner's template can spell prod's topics: "ALM.COURSE_COMPLETED" is exactly
        # prod's topic, "ALM_COURSE_COMPLETED" collides with it in Kafka.
        partner_policy = RoutingPolicy(
            receiver="partner", topic_template="{event}", event_name_pattern=r"[A-Z._]+"
        )
        prod, partner = self.routers(self.PROD, partner_policy)
        stolen = ("ALM.COURSE_COMPLETED", "ALM_COURSE_COMPLETED", "ALM.PROGRESS", "ALM.OTHER")

        def partner_sends() -> Plan:
            return partner.plan(batch(*(event(n, str(i)) for i, n in enumerate(stolen))))

        first = partner_sends() if partner_first else None
        mine = prod.plan(batch(event("COURSE_COMPLETED"), event("LEARNER_PROGRESS", "2")))
        theirs = first or partner_sends()

        assert [r.topic for r in mine.records] == ["alm.course_completed", "alm.progress"]
        assert mine.fallbacks == {}
        assert [r.topic for r in theirs.records] == ["alm.other"] * 4
        assert theirs.fallbacks == {"topic_collision": 2, "reserved_topic": 2}
        assert partner.topic_for("COURSE_COMPLETED") == "course_completed"

    def test_receivers_sharing_a_template_share_documented_topics(self) -> None:
        prod, partner = self.routers(self.PROD, RoutingPolicy(receiver="partner"))
        assert prod.topics.conflicts == []
        assert prod.topic_for("COURSE_COMPLETED") == partner.topic_for("COURSE_COMPLETED")
        # prod's override topic is prod's alone; partner's own progress events keep theirs.
        assert partner.topic_for("LEARNER_PROGRESS") == "alm.learner_progress"
        assert partner.route("PROGRESS") == ("alm.other", "reserved_topic")

    def test_documented_topics_that_collide_across_receivers_are_reported(self) -> None:
        partner_policy = RoutingPolicy(receiver="partner", topic_template="alm_{event}")
        prod, partner = self.routers(self.PROD, partner_policy)
        conflicts = prod.topics.conflicts
        assert ("partner", "alm_course_completed", "alm.course_completed") in conflicts
        assert prod.topic_for("COURSE_COMPLETED") == "alm.course_completed"
        assert partner.route("COURSE_COMPLETED") == ("alm.other", "topic_collision")
