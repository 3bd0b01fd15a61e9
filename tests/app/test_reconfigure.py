"""A reloaded configuration applied to the running app (in-memory Kafka).

What the files and the watcher do is in tests/unit/test_reload.py; here: what a request
sees when the receivers change under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydantic import SecretStr

from bridge.config.receivers import resolve
from bridge.config.reload import Configuration
from bridge.config.settings import AuthSettings, ReceiverSettings, RoutingSettings, Settings
from bridge.core.auth import sign_hmac
from bridge.service.app import reconfigure
from tests.app.conftest import SECRET, MakeBridge, receiver_settings, sample
from tests.conditions import until

OTHER = "another-secret-0123456789"


def _apply(
    bridge_settings: Settings, receivers: list[ReceiverSettings], generation: int
) -> Configuration:
    settings = bridge_settings.model_copy(update={"receivers": receivers})
    return Configuration(settings, tuple(resolve(settings)), generation)


async def test_a_request_in_flight_finishes_under_the_routing_it_started_with(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge(publish_timeout_ms=5000)
    assert bridge.settings is not None
    body = sample("enrollment-batch")
    half = asyncio.Event()
    go_on = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield body[:10]
        half.set()
        await go_on.wait()
        yield body[10:]

    first = asyncio.create_task(
        bridge.client.post(
            "/webhooks/alm",
            data=slowly(),
            headers={
                "Content-Type": "application/json",
                "X-ALM-Signature": sign_hmac(body, SECRET),
            },
        )
    )
    await half.wait()
    await until(lambda: len(bridge.state.reads) > 0)
    assert len(bridge.state.reads) == 1, "the body is not being read"
    # The request has found its receiver and is reading its body: the routing changes.
    moved = receiver_settings(
        bridge.prefix, routing=RoutingSettings(topic_template=f"{bridge.prefix}.moved.{{event}}")
    )
    reconfigure(bridge.state, _apply(bridge.settings, [moved], 2))
    go_on.set()
    answer = await first

    assert answer.status == 200, await answer.text()
    started_under = {r.topic for r in bridge.stored()}
    assert started_under, "nothing stored"
    assert not [t for t in started_under if ".moved." in t]
    later = await bridge.post(sample("mixed-realtime"))
    assert later.status == 200
    after = {r.topic for r in bridge.stored()} - started_under
    assert after, "nothing stored after the reload"
    assert all(t.startswith(f"{bridge.prefix}.moved.") for t in after), after
    assert bridge.metric("almbridge_config_generation") == 2


async def test_receivers_added_and_removed_and_the_window_kept(
    make_offline_bridge: MakeBridge,
) -> None:
    bridge = await make_offline_bridge()
    assert bridge.settings is not None
    body = sample("enrollment-batch")
    assert (await bridge.post(body)).status == 200

    emea = ReceiverSettings(
        name="emea",
        auth=AuthSettings(method="hmac", secrets=[SecretStr(OTHER)]),
        routing=RoutingSettings(topic_template=f"{bridge.prefix}.emea.{{event}}"),
    )
    alm = receiver_settings(bridge.prefix)
    reconfigure(bridge.state, _apply(bridge.settings, [alm, emea], 2))

    again = await bridge.post(body)
    assert again.status == 200
    assert (await again.json())["duplicates"] == 2, "the kept receiver forgot its window"
    wrong = await bridge.post(body, receiver="emea")
    assert wrong.status == 401, "the new receiver must verify with its own secret"
    assert bridge.metric("almbridge_batches_total", receiver="emea", outcome="published") == 0

    reconfigure(bridge.state, _apply(bridge.settings, [emea], 3))
    gone = await bridge.post(body)
    assert gone.status == 404
    assert bridge.state.slots.receivers == ("emea",)
