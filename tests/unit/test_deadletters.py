"""The pure side of ``alm-bridge replay``: dead letters read back and what a replay makes of them.

Dead letters here are made by the bridge's own routing code (``Router.dead_letter`` and
``Router.dead_letter_event``), as the live path writes them.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from bridge.cli.deadletters import (
    DeadLetter,
    Filters,
    Item,
    Ledger,
    Pacer,
    Progress,
    Replanner,
    Tally,
    summary_lines,
)
from bridge.cli.main import app
from bridge.config.receivers import policy_for
from bridge.config.settings import DeadLetterSettings, ReceiverSettings, RoutingSettings, Settings
from bridge.core.alm import parse_body
from bridge.core.reasons import DeadLetterReason
from bridge.core.records import Record
from bridge.core.routing import Router

DLQ = "t.deadletter"


def settings(accounts: tuple[int, ...] = (7,), **routing: Any) -> Settings:
    receiver = ReceiverSettings(
        name="alm",
        accounts=list(accounts),
        routing=RoutingSettings(topic_template="t.{event}", **routing),
        dead_letter=DeadLetterSettings(topic=DLQ),
    )
    return Settings(receivers=[receiver])


def router(**routing: Any) -> Router:
    return Router(policy_for(settings(**routing).receivers[0]))


def letter(record: Record, offset: int = 42, timestamp_ms: int = 1_000) -> DeadLetter:
    return DeadLetter(DLQ, 0, offset, timestamp_ms, record.key, record.value, tuple(record.headers))


BODY = orjson.dumps(
    {
        "accountId": 7,
        "events": [
            {"eventId": "e-1", "eventName": "CUSTOM_THING", "timestamp": 1_700_000_000_000},
            {"eventId": "e-2", "eventName": "COURSE_ENROLLMENT", "data": {"userId": 1}},
        ],
    }
)


def event_letters(**routing: Any) -> list[DeadLetter]:
    """The events of BODY as the bridge dead-letters them under ``unlisted: deadletter``."""
    batch = parse_body(BODY)
    assert not isinstance(batch, tuple)
    plan = router(unlisted="deadletter", **routing).plan(batch)  # type: ignore[arg-type]
    return [letter(r, offset=n) for n, r in enumerate(plan.records) if r.dead_letter]


def test_an_event_dead_lettered_by_routing_is_replayed_with_its_key_and_headers() -> None:
    (dead,) = event_letters()
    assert dead.reason == "unlisted_event"
    assert dead.is_event

    (item,) = Replanner(settings()).items(dead)

    assert item.record is not None
    assert item.record.topic == "t.custom_thing"
    assert item.record.key == dead.key == b"7:e-1"
    assert item.record.value == dead.value
    headers = dict(item.record.headers)
    assert headers["replay_source"] == b"t.deadletter:0:0"
    assert headers["replay_dlq_reason"] == b"unlisted_event"
    assert headers["replay_dlq_time"] == dict(dead.headers)["dlq_time"]
    assert headers["ce_id"] == b"e-1"
    assert headers["alm_event_name"] == b"CUSTOM_THING"
    assert not [name for name in headers if name.startswith("dlq_")]
    assert (item.account_id, item.event_name, item.event_id) == (7, "CUSTOM_THING", "e-1")


def test_an_event_kafka_refused_goes_where_routing_sends_it_now() -> None:
    live = router()
    batch = parse_body(BODY)
    assert not isinstance(batch, tuple)
    enrolment = live.plan(batch).records[1]  # type: ignore[arg-type]
    refused = live.dead_letter_event(
        enrolment,
        DeadLetterReason.TOPIC_COLLISION,
        "collides with t.course.enrollment",
        max_value_bytes=1000,
    )
    dead = letter(refused)
    assert dead.meant_for == "t.course_enrollment"
    overridden = settings(overrides={"COURSE_ENROLLMENT": "t.enrolments"})

    (item,) = Replanner(overridden).items(dead)

    assert item.destination == "t.enrolments"
    assert item.record is not None
    assert item.record.key == enrolment.key == b"7:e-2"
    assert item.record.value == enrolment.value
    assert dict(item.record.headers)["replay_dlq_reason"] == b"topic_collision"
    assert Filters(topics=frozenset({"t.course_enrollment"})).item_matches(item)


@pytest.mark.parametrize(
    ("routing", "blocked"),
    [
        ({"unlisted": "deadletter"}, "unlisted_event"),
        ({"deny": ["CUSTOM_THING"]}, "denied"),
    ],
)
def test_an_event_that_routing_still_refuses_is_blocked_with_why(
    routing: dict[str, Any], blocked: str
) -> None:
    (dead,) = event_letters()

    (item,) = Replanner(settings(**routing)).items(dead)

    assert item.record is None
    assert item.blocked == blocked


def test_a_cut_value_or_an_unknown_receiver_is_never_replayed() -> None:
    (dead,) = event_letters()
    cut = DeadLetter(*_fields(dead, headers=(*dead.headers, ("dlq_truncated_from_bytes", b"9"))))
    stranger = DeadLetter(
        *_fields(dead, headers=tuple(h for h in dead.headers if h[0] != "alm_receiver"))
    )

    assert Replanner(settings()).items(cut)[0].blocked == "truncated"
    assert Replanner(settings()).items(stranger)[0].blocked == "unknown_receiver"


def _fields(dead: DeadLetter, **changes: Any) -> tuple[Any, ...]:
    values = {
        "topic": dead.topic,
        "partition": dead.partition,
        "offset": dead.offset,
        "timestamp_ms": dead.timestamp_ms,
        "key": dead.key,
        "value": dead.value,
        "headers": dead.headers,
    }
    values.update(changes)
    return tuple(values.values())


def test_a_batch_body_is_parsed_again_and_each_event_is_an_item() -> None:
    dead = letter(
        router().dead_letter(BODY, DeadLetterReason.TOO_MANY_EVENTS, "3 events, at most 1")
    )
    assert not dead.is_event

    items = Replanner(settings()).items(dead)

    assert [i.source_id for i in items] == ["t.deadletter:0:42#e-1", "t.deadletter:0:42#e-2"]
    assert [i.destination for i in items] == ["t.custom_thing", "t.course_enrollment"]
    for item in items:
        assert item.record is not None
        headers = dict(item.record.headers)
        assert headers["replay_source"] == item.source_id.encode()
        assert headers["replay_dlq_reason"] == b"too_many_events"
        assert headers["alm_receiver"] == b"alm"


@pytest.mark.parametrize(
    ("body", "blocked"),
    [
        # A receiver that accepts every account: the body is judged as it is.
        (b'{"accountId": 7, "events": [', "invalid_json"),
        (b'{"accountId": 8, "events": []}', "account_not_accepted"),
    ],
)
def test_a_body_that_still_fails_is_one_blocked_item(body: bytes, blocked: str) -> None:
    dead = letter(router().dead_letter(body, DeadLetterReason.INVALID_JSON, "bad"))
    accounts = () if blocked == "invalid_json" else (7,)

    (item,) = Replanner(settings(accounts)).items(dead)

    assert (item.source_id, item.blocked, item.record) == ("t.deadletter:0:42", blocked, None)


def test_filters() -> None:
    unlisted, _ = (*event_letters(), None)
    assert unlisted is not None
    (item,) = Replanner(settings()).items(unlisted)

    assert Filters().letter_matches(unlisted)
    assert Filters(reasons=frozenset({"unlisted_event"})).letter_matches(unlisted)
    assert not Filters(reasons=frozenset({"topic_missing"})).letter_matches(unlisted)
    assert not Filters(receivers=frozenset({"other"})).letter_matches(unlisted)
    assert Filters(since_ms=1_000, until_ms=1_001).letter_matches(unlisted)
    assert not Filters(since_ms=1_001).letter_matches(unlisted)
    assert not Filters(until_ms=1_000).letter_matches(unlisted)
    assert Filters(accounts=frozenset({7})).item_matches(item)
    assert not Filters(accounts=frozenset({8})).item_matches(item)
    assert Filters(event_names=frozenset({"CUSTOM_THING"})).item_matches(item)
    assert not Filters(event_names=frozenset({"OTHER"})).item_matches(item)
    assert Filters(topics=frozenset({"t.custom_thing"})).item_matches(item)
    assert not Filters(topics=frozenset({"t.other"})).item_matches(item)


def test_progress_round_trips_and_the_last_state_wins() -> None:
    pending = Progress("pending", "t.a", 5, 30_000, "ab")
    assert Progress.decode(pending.encode()) == pending
    assert Progress.decode(b"") is None
    assert Progress.decode(b"not json") is None
    assert Progress.decode(b'{"state": "maybe"}') is None
    ledger = Ledger()

    ledger.record("s:0:1", pending)
    ledger.record("s:0:2", Progress("failed", "t.a", 5))
    assert ledger.pending() == {"s:0:1": pending}
    assert not ledger.settled("s:0:1")
    ledger.record("s:0:1", Progress("done", "t.a", 5, 0, "ab"))

    assert ledger.settled("s:0:1")
    assert not ledger.settled("s:0:2")
    assert ledger.pending() == {}
    assert ledger.events == {"ab"}
    ledger.record("s:0:1", None)  # a tombstone
    assert not ledger.settled("s:0:1")


def test_pacer_spaces_chunks_to_the_rate() -> None:
    pacer = Pacer(4.0, now=100.0)
    assert pacer.chunk_size(100) == 4
    assert pacer.delay(4, now=100.0) == 0.0
    assert pacer.delay(4, now=100.25) == pytest.approx(0.75)
    # Idle time is not saved up for a burst later.
    assert pacer.delay(4, now=110.0) == 0.0
    unpaced = Pacer(None, now=0.0)
    assert unpaced.chunk_size(100) == 100
    assert unpaced.delay(1000, now=0.0) == 0.0
    assert Pacer(0.5, now=0.0).chunk_size(100) == 1


def test_summary_names_counts_by_reason_destination_and_what_still_fails() -> None:
    (dead,) = event_letters()
    (item,) = Replanner(settings()).items(dead)
    tally = Tally(
        scanned=3,
        selected=3,
        replayed=2,
        by_reason={"unlisted_event": 3},
        by_destination={"t.custom_thing": 2},
        failing={"topic_not_authorized": 1},
        examples=[item],
    )

    lines = summary_lines(tally, applied=True)

    assert lines[0] == "replay: 3 dead letters read, 3 events selected"
    assert "unlisted_event 3" in lines[1]
    assert "t.custom_thing 2" in lines[2]
    assert "still failing (left in place): topic_not_authorized 1" in lines[4]
    assert (
        "t.deadletter:0:0 [unlisted_event] CUSTOM_THING account 7 -> t.custom_thing" in (lines[5])
    )
    assert not tally.complete
    assert tally.as_json(applied=True)["failing"] == {"topic_not_authorized": 1}
    assert isinstance(tally.examples[0], Item)


@pytest.fixture
def no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_bridge_environment")
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--apply", "--dry-run"], "not both"),
        (["--since", "yesterday"], "not an ISO-8601 time"),
        (["--rate", "0"], "--rate"),
    ],
)
def test_replay_options_that_cannot_work_exit_2(args: list[str], said: str) -> None:
    result = CliRunner().invoke(app, ["replay", *args])

    assert result.exit_code == 2
    assert said in result.stderr


@pytest.mark.usefixtures("no_bridge_environment")
def test_replay_help_says_dry_run_by_default_and_the_exit_statuses() -> None:
    result = CliRunner().invoke(app, ["replay", "--help"])

    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "A dry run unless --apply (or --yes) is given" in text
    assert "Exits 0 when every selected event is in its topic" in text


def test_examples_show_each_reason_before_a_second_of_one() -> None:
    (unlisted,) = event_letters()
    broken = letter(router().dead_letter(b"{", DeadLetterReason.INVALID_JSON, "bad"), offset=9)
    planner = Replanner(settings(accounts=()))
    first = planner.items(unlisted)[0]
    tally = Tally()

    for _ in range(3):
        tally.offer(first, 2)
    tally.offer(planner.items(broken)[0], 2)
    tally.offer(planner.items(broken)[0], 2)

    assert [e.letter.reason for e in tally.examples] == ["unlisted_event", "invalid_json"]
