"""``alm-bridge replay`` on a real broker: dead letters written by the real app, replayed once.

Each dead letter here is made by the bridge itself (the real app, posting a batch), for
each reason the bridge gives outside Kafka's refusals (those are in
test_replay_refusals.py, on a broker that enforces ACLs): every error code of a body, and
the routing reasons of single events. A replay then runs with the settings as fixed by the
operator (a limit raised, a name allowed) and the records are read back from Kafka.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from bridge.cli import replay as replay_module
from bridge.cli.deadletters import Filters, Progress, Tally
from bridge.cli.replay import ReplayError, ReplayOptions, replay
from bridge.config.settings import RoutingSettings, Settings
from bridge.service.app import create_app
from tests.app.conftest import Bridge, receiver_settings
from tests.contract import contract_for
from tests.kafka_fixtures import consume_all

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ROOT: Final = Path(__file__).resolve().parents[2]
ACCOUNT: Final = 7001
CUSTOM: Final = "CUSTOM_THING"


def routing(prefix: str, **changes: Any) -> RoutingSettings:
    return RoutingSettings(topic_template=f"{prefix}.{{event}}", **changes)


def settings_for(
    bootstrap: str, prefix: str, *, routing_changes: dict[str, Any] | None = None, **kw: Any
) -> Settings:
    """The settings of a bridge (or a replay) whose topics all start with ``prefix``."""
    kw.setdefault("kafka_topic_partitions", 1)
    receiver = receiver_settings(prefix, routing=routing(prefix, **(routing_changes or {})))
    return Settings(receivers=[receiver], kafka_bootstrap_servers=bootstrap, **kw)


async def start_bridge(aiohttp_client: AiohttpClient, settings: Settings, prefix: str) -> Bridge:
    registry = CollectorRegistry()
    client = await aiohttp_client(create_app(settings, registry=registry))
    return Bridge(client, registry, prefix, settings.kafka_bootstrap_servers, settings=settings)


def options(prefix: str, *, apply: bool, **kw: Any) -> ReplayOptions:
    return ReplayOptions(apply=apply, progress_topic=f"{prefix}.replay-progress", **kw)


def event(event_id: str, name: str = "COURSE_ENROLLMENT", **data: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventName": name,
        "timestamp": "2026-11-02T09:30:00.000Z",
        "data": {"userId": 5100, "loInstanceId": "course:1_2", **data},
    }


def batch(*events: dict[str, Any], account: int = ACCOUNT) -> bytes:
    return orjson.dumps({"accountId": account, "events": list(events)})


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"inner": value}
    return value


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, bytes]:
    return dict(record.headers)


def ids_of(records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    return [orjson.loads(r.value)["eventId"] for r in records]


async def read(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    return await consume_all(bootstrap, topic)


# Every error code of a body the bridge dead-letters, with the body and the limits that
# make it, and whether the operator can fix it by a setting (the replay's limits are the
# defaults) or the body itself is broken and stays in the dead-letter topic.
_IDS = [f"b-{n}" for n in range(3)]
BODY_CASES: Final[dict[str, tuple[bytes, dict[str, Any], str | None]]] = {
    "invalid_utf8": (b'{"accountId": 7001, "events": [{"eventId": "\xff"}]}', {}, "invalid_utf8"),
    "invalid_json": (b'{"accountId": 7001, "events": [', {}, "invalid_json"),
    "duplicate_key": (
        b'{"accountId": 7001, "accountId": 7002, "events": []}',
        {},
        "duplicate_key",
    ),
    "number_out_of_range": (
        b'{"accountId": 123456789012345678901234567890, "events": []}',
        {},
        "number_out_of_range",
    ),
    "invalid_envelope": (b'{"accountId": 7001, "events": {}}', {}, "invalid_envelope"),
    "invalid_event": (
        orjson.dumps({"accountId": ACCOUNT, "events": [{"eventName": "COURSE_ENROLLMENT"}]}),
        {},
        "invalid_event",
    ),
    "too_many_events": (batch(*(event(i) for i in _IDS)), {"max_events_per_batch": 2}, None),
    "too_deep": (batch(event(_IDS[0], deep=nested(8))), {"max_json_depth": 6}, None),
    "string_too_long": (batch(event(_IDS[0], note="x" * 100)), {"max_string_chars": 64}, None),
    # An event too large for a record makes a body too large to keep whole: it is stored
    # cut, and a cut body can never be replayed.
    "record_too_large": (
        batch(event(_IDS[0], note="x" * 3000)),
        {"max_record_bytes": 2048},
        "truncated",
    ),
    # Estimated at more than BRIDGE_MAX_INFLIGHT_BYTES: never parsed by the bridge.
    "batch_too_complex": (
        batch(*(event(f"c-{n}", n=n) for n in range(1500))),
        {"max_inflight_bytes": 1 << 20, "max_body_bytes": 512 * 1024},
        None,
    ),
}


@pytest.mark.parametrize("reason", sorted(BODY_CASES))
async def test_dead_lettered_body_is_previewed_then_replayed_once_or_left_in_place(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str, reason: str
) -> None:
    body, limits, blocked = BODY_CASES[reason]
    prefix = f"rb{uuid.uuid4().hex[:8]}"
    bridge = await start_bridge(
        aiohttp_client, settings_for(kafka_bootstrap, prefix, **limits), prefix
    )
    response = await bridge.post(body)
    assert response.status == 200, await response.text()
    assert (await response.json())["deadLetterReason"] == reason
    dead = await read(kafka_bootstrap, bridge.dead_letter_topic)
    assert [headers_of(r)["dlq_reason"] for r in dead] == [reason.encode()]
    # The operator's fix: the default limits.
    fixed = settings_for(kafka_bootstrap, prefix)

    preview = await replay(fixed, options(prefix, apply=False))

    assert preview.scanned == 1
    assert set(preview.by_reason) == {reason}
    assert {e.letter.offset for e in preview.examples} == {dead[0].offset}
    source = f"{bridge.dead_letter_topic}:{dead[0].partition}:{dead[0].offset}"
    if blocked is not None:
        assert preview.failing == {blocked: 1}
        assert preview.replayable == 0

        applied = await replay(fixed, options(prefix, apply=True))

        assert applied.failing == {blocked: 1}
        assert not applied.complete
        assert applied.replayed == 0
        assert len(await read(kafka_bootstrap, bridge.dead_letter_topic)) == 1
        return
    sent = orjson.loads(body)["events"]
    destination = f"{prefix}.course_enrollment"
    assert preview.failing == {}
    assert preview.replayable == len(sent)
    assert preview.by_destination == {destination: len(sent)}
    assert await read(kafka_bootstrap, destination) == []

    applied = await replay(fixed, options(prefix, apply=True))

    assert applied.complete
    assert applied.replayed == len(sent)
    stored = await read(kafka_bootstrap, destination)
    assert sorted(ids_of(stored)) == sorted(e["eventId"] for e in sent)
    # Replayed records keep the consumers' contract (the AsyncAPI document).
    contract_for(fixed).check_records(stored)
    for record in stored:
        headers = headers_of(record)
        event_id = orjson.loads(record.value)["eventId"]
        assert headers["replay_source"] == f"{source}#{event_id}".encode()
        assert headers["replay_dlq_reason"] == reason.encode()
        assert headers["ce_id"] == event_id.encode()
        assert headers["alm_receiver"] == b"alm"
        assert record.key == f"{ACCOUNT}:5100:course:1_2".encode()
        assert not any(name.startswith("dlq_") for name in headers)

    again = await replay(fixed, options(prefix, apply=True))

    assert again.replayed == 0
    assert again.already == len(sent)
    assert len(await read(kafka_bootstrap, destination)) == len(sent)


# Single events dead-lettered by routing (unlisted: deadletter), replayed once the name is
# allowed: the original key, value and headers, plus provenance.
ROUTING_CASES: Final[dict[str, tuple[str, dict[str, Any], dict[str, Any], str]]] = {
    # reason: (event name, bridge's routing, replay's routing, destination suffix)
    "unlisted_event": (CUSTOM, {"unlisted": "deadletter"}, {}, "custom_thing"),
    "reserved_topic": (
        "DEADLETTER",
        {"unlisted": "deadletter", "allow": ["COURSE_ENROLLMENT", "DEADLETTER"]},
        {"overrides": {"DEADLETTER": "{prefix}.parked-names"}},
        "parked-names",
    ),
}


@pytest.mark.parametrize("reason", sorted(ROUTING_CASES))
async def test_event_dead_lettered_by_routing_is_replayed_once_with_key_and_headers(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str, reason: str
) -> None:
    name, before, after, suffix = ROUTING_CASES[reason]
    prefix = f"rr{uuid.uuid4().hex[:8]}"
    after = orjson.loads(orjson.dumps(after).decode().replace("{prefix}", prefix))
    bridge = await start_bridge(
        aiohttp_client, settings_for(kafka_bootstrap, prefix, routing_changes=before), prefix
    )
    event_id = f"ev-{uuid.uuid4().hex}"
    response = await bridge.post(batch(event("keep-1"), event(event_id, name)))
    assert (await response.json())["deadLetterReasons"] == {reason: 1}
    (dead,) = await read(kafka_bootstrap, bridge.dead_letter_topic)
    fixed = settings_for(kafka_bootstrap, prefix, routing_changes=after)
    destination = f"{prefix}.{suffix}"

    preview = await replay(fixed, options(prefix, apply=False))

    assert preview.by_reason == {reason: 1}
    assert preview.by_destination == {destination: 1}
    assert await read(kafka_bootstrap, destination) == []

    applied = await replay(fixed, options(prefix, apply=True))
    again = await replay(fixed, options(prefix, apply=True))

    assert (applied.replayed, applied.complete) == (1, True)
    assert (again.replayed, again.already) == (0, 1)
    (stored,) = await read(kafka_bootstrap, destination)
    contract_for(fixed).check_records([stored])
    assert stored.key == dead.key == f"{ACCOUNT}:{event_id}".encode()
    assert stored.value == dead.value
    original = {k: v for k, v in headers_of(dead).items() if not k.startswith("dlq_")}
    headers = headers_of(stored)
    assert {k: v for k, v in headers.items() if not k.startswith("replay_")} == original
    assert headers["replay_source"] == f"{dead.topic}:{dead.partition}:{dead.offset}".encode()
    assert headers["replay_dlq_reason"] == reason.encode()
    assert headers["replay_dlq_time"] == headers_of(dead)["dlq_time"]
    assert headers["replay_dlq_error"] == headers_of(dead)["dlq_error"]


async def test_same_event_dead_lettered_twice_is_replayed_once(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    """Two bridge processes (each its own window) dead-lettered the same event."""
    prefix = f"rd{uuid.uuid4().hex[:8]}"
    parked = settings_for(kafka_bootstrap, prefix, routing_changes={"unlisted": "deadletter"})
    body = batch(event("same-1", CUSTOM))
    for _ in range(2):
        bridge = await start_bridge(aiohttp_client, parked, prefix)
        assert (await (await bridge.post(body)).json())["deadLettered"] == 1
    assert len(await read(kafka_bootstrap, f"{prefix}.deadletter")) == 2
    fixed = settings_for(kafka_bootstrap, prefix)

    applied = await replay(fixed, options(prefix, apply=True))
    again = await replay(fixed, options(prefix, apply=True))

    assert (applied.replayed, applied.duplicates) == (1, 1)
    assert (again.replayed, again.already) == (0, 2)
    assert ids_of(await read(kafka_bootstrap, f"{prefix}.custom_thing")) == ["same-1"]


async def test_filters_select_by_account_event_name_reason_topic_receiver_and_time(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str
) -> None:
    prefix = f"rf{uuid.uuid4().hex[:8]}"
    parked = settings_for(kafka_bootstrap, prefix, routing_changes={"unlisted": "deadletter"})
    bridge = await start_bridge(aiohttp_client, parked, prefix)
    for body in (
        batch(event("a1-x", "CUSTOM_X")),
        batch(event("a2-x", "CUSTOM_X"), account=ACCOUNT + 1),
        batch(event("a1-y", "CUSTOM_Y")),
        b'{"accountId": 7001, "events": [',
    ):
        assert (await bridge.post(body)).status == 200
    fixed = settings_for(kafka_bootstrap, prefix)

    async def selected(apply: bool = False, **filters: Any) -> Tally:
        return await replay(fixed, options(prefix, apply=apply, filters=Filters(**filters)))

    assert (await selected()).selected == 4
    assert (await selected(reasons=frozenset({"invalid_json"}))).selected == 1
    assert (await selected(receivers=frozenset({"other"}))).selected == 0
    assert (await selected(event_names=frozenset({"CUSTOM_Y"}))).selected == 1
    assert (await selected(topics=frozenset({f"{prefix}.custom_x"}))).selected == 2
    assert (await selected(since_ms=4_102_444_800_000)).selected == 0  # 2100
    assert (await selected(until_ms=1_000)).selected == 0
    one = await selected(
        apply=True, accounts=frozenset({ACCOUNT}), event_names=frozenset({"CUSTOM_X"})
    )
    assert (one.selected, one.replayed, one.complete) == (1, 1, True)
    assert ids_of(await read(kafka_bootstrap, f"{prefix}.custom_x")) == ["a1-x"]

    rest = await selected(apply=True, reasons=frozenset({"unlisted_event"}))

    assert (rest.selected, rest.replayed, rest.already) == (3, 2, 1)
    assert sorted(ids_of(await read(kafka_bootstrap, f"{prefix}.custom_x"))) == ["a1-x", "a2-x"]
    assert ids_of(await read(kafka_bootstrap, f"{prefix}.custom_y")) == ["a1-y"]


class _Stopped(Exception):
    """The replay stopped between Kafka's acknowledgement and the progress record."""


async def test_stop_after_produce_before_done_then_rerun_stores_nothing_twice(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window a crash can hit: records acknowledged, their ``done`` never written."""
    prefix = f"rc{uuid.uuid4().hex[:8]}"
    parked = settings_for(kafka_bootstrap, prefix, routing_changes={"unlisted": "deadletter"})
    bridge = await start_bridge(aiohttp_client, parked, prefix)
    ids = [f"c-{n}" for n in range(5)]
    assert (await (await bridge.post(batch(*(event(i, CUSTOM) for i in ids)))).json())[
        "deadLettered"
    ] == 5
    fixed = settings_for(kafka_bootstrap, prefix)
    write_progress = replay_module._publish_progress

    async def stop_before_done(publisher: Any, topic: str, marks: Any, seconds: float) -> None:
        if any(progress.state == "done" for _, progress in marks):
            raise _Stopped
        await write_progress(publisher, topic, marks, seconds)

    monkeypatch.setattr(replay_module, "_publish_progress", stop_before_done)
    with pytest.raises(_Stopped):
        await replay(fixed, options(prefix, apply=True))
    assert sorted(ids_of(await read(kafka_bootstrap, f"{prefix}.custom_thing"))) == ids
    monkeypatch.setattr(replay_module, "_publish_progress", write_progress)

    rerun = await replay(fixed, options(prefix, apply=True))

    assert (rerun.replayed, rerun.already, rerun.complete) == (0, 5, True)
    assert sorted(ids_of(await read(kafka_bootstrap, f"{prefix}.custom_thing"))) == ids
    progress = await read(kafka_bootstrap, f"{prefix}.replay-progress")
    last = {r.key: Progress.decode(r.value) for r in progress}
    assert {p.state for p in last.values() if p is not None} == {"done"}


def _config(tmp_path: Path, bootstrap: str, prefix: str, **routing_changes: Any) -> Path:
    receiver = {
        "name": "alm",
        "auth": {"method": "none"},
        "routing": {"topic_template": f"{prefix}.{{event}}", **routing_changes},
        "dead_letter": {"topic": f"{prefix}.deadletter"},
    }
    path = tmp_path / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump({"receivers": [receiver]}))
    return path


def _cli_env(bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env |= {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BRIDGE_KAFKA_TOPIC_PARTITIONS": "1",
        "BRIDGE_LOG_FORMAT": "json",
    }
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", "replay", *args]


async def test_killed_replay_process_then_rerun_leaves_each_event_once(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The real command, paced, killed with SIGKILL mid-run, then run again to the end."""
    prefix = f"rk{uuid.uuid4().hex[:8]}"
    parked = settings_for(kafka_bootstrap, prefix, routing_changes={"unlisted": "deadletter"})
    bridge = await start_bridge(aiohttp_client, parked, prefix)
    ids = [f"k-{n:02d}" for n in range(24)]
    for start in range(0, len(ids), 4):
        body = batch(*(event(i, CUSTOM) for i in ids[start : start + 4]))
        assert (await bridge.post(body)).status == 200
    config = _config(tmp_path, kafka_bootstrap, prefix)
    progress = ["--progress-topic", f"{prefix}.replay-progress", "-c", str(config)]
    destination = f"{prefix}.custom_thing"
    env = _cli_env(kafka_bootstrap)

    dry = await asyncio.to_thread(
        subprocess.run, _cli(*progress), env=env, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 24 dead letters read, 24 events selected" in dry.stdout
    assert f"{destination} 24" in dry.stdout
    assert "run again with --apply" in dry.stdout

    process = await asyncio.create_subprocess_exec(
        *_cli(*progress, "--apply", "--rate", "4"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        stored: list[ConsumerRecord[bytes, bytes]] = []
        while len(stored) < 6 and process.returncode is None and loop.time() < deadline:
            await asyncio.sleep(0.3)
            stored = await read(kafka_bootstrap, destination)
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), timeout=30)
    assert process.returncode == -signal.SIGKILL, "the replay ended before it was killed"
    assert 6 <= len(await read(kafka_bootstrap, destination)) < len(ids)

    rerun = await asyncio.to_thread(
        subprocess.run,
        _cli(*progress, "--apply", "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert rerun.returncode == 0, rerun.stderr
    summary = orjson.loads(rerun.stdout)
    assert summary["replayed"] + summary["alreadyReplayed"] == len(ids)
    assert summary["alreadyReplayed"] >= 6
    assert sorted(ids_of(await read(kafka_bootstrap, destination))) == ids


async def test_cli_exit_status_says_whether_everything_was_replayed(
    aiohttp_client: AiohttpClient, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"rx{uuid.uuid4().hex[:8]}"
    bridge = await start_bridge(aiohttp_client, settings_for(kafka_bootstrap, prefix), prefix)
    assert (await bridge.post(b'{"accountId": 7001, "events": [')).status == 200
    config = _config(tmp_path, kafka_bootstrap, prefix)
    args = ["--progress-topic", f"{prefix}.replay-progress", "-c", str(config), "--apply"]

    failing = await asyncio.to_thread(
        subprocess.run, _cli(*args), env=_cli_env(kafka_bootstrap), capture_output=True, text=True
    )
    nothing = await asyncio.to_thread(
        subprocess.run,
        _cli(*args, "--reason", "topic_missing"),
        env=_cli_env(kafka_bootstrap),
        capture_output=True,
        text=True,
    )
    unreachable = await asyncio.to_thread(
        subprocess.run,
        _cli(*args),
        env=_cli_env("127.0.0.1:1"),
        capture_output=True,
        text=True,
    )

    assert failing.returncode == 1, failing.stderr
    assert "still failing (left in place): invalid_json 1" in failing.stdout
    assert nothing.returncode == 0, nothing.stderr
    assert unreachable.returncode == 3
    assert "cannot read Kafka at 127.0.0.1:1" in unreachable.stderr


async def test_missing_dead_letter_topic_is_an_error(kafka_bootstrap: str) -> None:
    prefix = f"rm{uuid.uuid4().hex[:8]}"
    with pytest.raises(ReplayError, match="no such dead-letter topic"):
        await replay(settings_for(kafka_bootstrap, prefix), options(prefix, apply=False))
