"""A secret rotation and configuration changes on the real process, under ALM-like load.

The receivers file and the receiver's Secret are laid out as the kubelet mounts a
ConfigMap and a Secret (names through a ``..data`` symlink that each update swaps). The
rotation follows the operations guide: the new secret joins the Secret, the configuration
lists both, ALM switches (a second load signs with the new secret), the old one is
removed. No request may be refused on the way, no process restarted, and every
acknowledged event must be in Kafka.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml

from bridge.core.auth import sign_hmac
from tests.mounts import Mount
from tests.system.harness import (
    SECRET,
    BridgeFactory,
    BridgeProcess,
    Load,
    load_options,
    read_prefix,
    signed_batch,
    tally,
    unique_prefix,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka]

NEW_SECRET = "the-next-signing-secret-0123456789"
# The watcher looks every 5 s; a change is applied within two checks, plus slack for a
# busy machine.
APPLIED_WITHIN_S = 30.0


class Deployment:
    """The bridge's receivers file and Secret, and the process that reads them."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.prefix = prefix
        self.secrets_dir = root / "secrets"
        self.secret = Mount(self.secrets_dir / "alm", {"current": SECRET})
        self.config = Mount(root / "config", {"receivers.yaml": self.receivers(["current"])})

    def receivers(self, keys: list[str], **extra: object) -> str:
        return yaml.safe_dump(
            {
                "secrets_dir": str(self.secrets_dir),
                "receivers": [
                    {
                        "name": "alm",
                        "auth": {"method": "hmac", "secret_keys": keys},
                        "routing": {"topic_template": f"{self.prefix}.{{event}}"},
                        "dead_letter": {"topic": f"{self.prefix}.deadletter"},
                    }
                ],
                **extra,
            }
        )

    def env(self) -> dict[str, str | None]:
        return {
            "BRIDGE_CONFIG_FILE": str(self.config.folder / "receivers.yaml"),
            "BRIDGE_RECEIVER_NAME": None,
            "BRIDGE_AUTH_METHOD": None,
            "BRIDGE_HMAC_SECRET": None,
            "BRIDGE_TOPIC_TEMPLATE": None,
            "BRIDGE_DEAD_LETTER_TOPIC": None,
        }


async def _metric(bridge: BridgeProcess, name: str) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{bridge.base_url}/metrics") as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def _until(bridge: BridgeProcess, name: str, value: float) -> None:
    """Wait (bounded) until a metric of the process reaches ``value``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + APPLIED_WITHIN_S
    while await _metric(bridge, name) < value:
        assert bridge.running(), bridge.log_tail()
        assert loop.time() < deadline, f"{name} stayed below {value}:\n{bridge.log_tail()}"
        await asyncio.sleep(0.25)


async def _post(bridge: BridgeProcess, secret: str, seed: int) -> int:
    body, _ = signed_batch(2, seed=seed)
    headers = {
        "Content-Type": "application/json",
        "X-ALM-Signature": sign_hmac(body, secret.encode()),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(bridge.webhook_url, data=body, headers=headers) as response,
    ):
        return response.status


@pytest.mark.timeout(300)
async def test_secret_rotation_and_a_refused_configuration_under_load_without_a_restart(
    kafka_bootstrap: str, bridges: BridgeFactory, tmp_path: Path
) -> None:
    prefix = unique_prefix("reload")
    deployment = Deployment(tmp_path, prefix)
    bridge = bridges.spawn(kafka_bootstrap, prefix=prefix, env=deployment.env())
    await bridge.wait_ready()
    pid = bridge.pid
    generation = 1.0

    # ALM signs with the current secret while the new one is added.
    before = Load(load_options(bridge.webhook_url, count=120, concurrency=4, rate=10.0))
    sending = asyncio.create_task(before.run_for(120))
    deployment.secret.publish({"current": SECRET, "next": NEW_SECRET})
    await _until(bridge, "almbridge_config_generation", generation + 1)
    deployment.config.publish({"receivers.yaml": deployment.receivers(["current", "next"])})
    await _until(bridge, "almbridge_config_generation", generation + 2)
    generation += 2
    assert not sending.done(), "the load ended before both secrets were served"
    assert await _post(bridge, NEW_SECRET, seed=11) == 200
    first = await sending

    # ALM switched: the old secret is removed, and a configuration that would not start
    # (a key the Secret lacks) is refused while the running one keeps serving.
    options = load_options(bridge.webhook_url, count=120, concurrency=4, rate=10.0)
    after = Load(options.model_copy(update={"hmac_secret": NEW_SECRET.encode()}), seed=7)
    sending = asyncio.create_task(after.run_for(120))
    deployment.config.publish({"receivers.yaml": deployment.receivers(["next", "missing"])})
    await _until(bridge, 'almbridge_config_reloads_total{result="refused"}', 1)
    assert await _metric(bridge, "almbridge_config_last_reload_successful") == 0
    assert await _metric(bridge, "almbridge_config_generation") == generation
    # A setting read only at start is named, and nothing of the change is applied.
    deployment.config.publish(
        {"receivers.yaml": deployment.receivers(["next"], max_body_bytes=1024)}
    )
    bridge.send_signal(signal.SIGHUP)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + APPLIED_WITHIN_S
    while not [e for e in bridge.log_events() if "BRIDGE_MAX_BODY_BYTES" in str(e.get("problems"))]:
        assert loop.time() < deadline, bridge.log_tail()
        await asyncio.sleep(0.25)
    assert await _post(bridge, SECRET, seed=12) == 200, "a refused reload changed the secrets"
    deployment.config.publish({"receivers.yaml": deployment.receivers(["next"])})
    bridge.send_signal(signal.SIGHUP)
    await _until(bridge, "almbridge_config_generation", generation + 1)
    deployment.secret.publish({"next": NEW_SECRET})
    second = await sending

    assert await _post(bridge, SECRET, seed=13) == 401, "the old secret still verifies"
    assert await _post(bridge, NEW_SECRET, seed=14) == 200
    assert await _metric(bridge, "almbridge_config_last_reload_successful") == 1
    contents = await read_prefix(kafka_bootstrap, prefix)
    for name, load, summary in (("old secret", before, first), ("new secret", after, second)):
        assert summary is not None, f"{name}: the load did not finish in time"
        assert load.statuses() == {200: len(load.results)}, (name, load.statuses())
        row = tally(name, load.results, contents)
        assert row.lost == 0, (name, row.lost_ids)
        assert not load.slow(), f"{name}: answers of ALM's limit or more"
    assert bridge.running(), "the bridge exited"
    assert bridge.pid == pid, "the bridge restarted"
    refusals = [e for e in bridge.log_events() if e.get("event") == "config_reload_refused"]
    assert len(refusals) == 2, refusals
