"""A security protocol that does not match the listener stops the start with one line.

The real ``alm-bridge serve`` against the session's PLAINTEXT broker with SSL and with SASL
exits 3 and says, on one line, which setting does not match what the listener answered;
the producer against the secured broker's listeners does the same for the other pairs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config.settings import Settings
from bridge.core.errors import KafkaStartError
from bridge.kafka.publisher import Publisher
from tests.kafka_fixtures import LocalKafka, free_ports

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def _serve(env: dict[str, str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BRIDGE_", "KAFKA_")) and k != "PYTHONPATH"
    }
    base |= {
        "PYTHONPATH": str(ROOT),
        "BRIDGE_HOST": "127.0.0.1",
        "BRIDGE_PORT": str(free_ports(1)[0]),
        "BRIDGE_HMAC_SECRET": "protocol-mismatch-secret-5e1f",
        "BRIDGE_LOG_FORMAT": "json",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bridge", "serve"],
        env=base,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"], ids=lambda p: p.lower())
def test_serve_against_a_plaintext_listener_exits_with_one_line(
    kafka_bootstrap: str, protocol: str
) -> None:
    address = kafka_bootstrap.split(",")[0].strip()
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": protocol,
    }
    if protocol.startswith("SASL"):
        env |= {
            "BRIDGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "BRIDGE_KAFKA_SASL_USERNAME": "bridge",
            "BRIDGE_KAFKA_SASL_PASSWORD": "not-asked-for",
        }

    done = _serve(env)

    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert lines == [
        f"alm-bridge: cannot connect to Kafka: BRIDGE_KAFKA_SECURITY_PROTOCOL={protocol}, "
        f"but {address} answered like a PLAINTEXT listener: set "
        "BRIDGE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT, or point BRIDGE_KAFKA_BOOTSTRAP_SERVERS at "
        f"the broker's {protocol} listener"
    ], done.stderr
    assert "not-asked-for" not in done.stdout + done.stderr


def test_serve_against_a_closed_port_keeps_trying(tmp_path: Path) -> None:
    """Nothing listening is an unreachable cluster, not a mismatch: the process stays up."""
    (port,) = free_ports(1)
    with pytest.raises(subprocess.TimeoutExpired):
        _serve(
            {
                "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL",
            },
            timeout_s=8,
        )


def _on(broker: LocalKafka, listener: str, protocol: str) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": {
            "PLAINTEXT": broker.bootstrap,
            "SASL_PLAINTEXT": broker.sasl_plaintext_bootstrap,
            "SASL_SSL": broker.sasl_ssl_bootstrap,
            "SSL": broker.ssl_bootstrap,
        }[listener],
        "kafka_security_protocol": protocol,
        "kafka_topic_partitions": 1,
    }
    if "SSL" in protocol:
        values["kafka_ssl_cafile"] = broker.ca_file
    if protocol.startswith("SASL"):
        username, password = next(iter(broker.plain_users.items()))
        values |= {
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_sasl_username": username,
            "kafka_sasl_password": password,
        }
    return Settings(**values)


PAIRS = [
    ("SSL", "PLAINTEXT"),
    ("SASL_PLAINTEXT", "PLAINTEXT"),
    ("SASL_SSL", "PLAINTEXT"),
    ("SASL_PLAINTEXT", "SSL"),
    ("SSL", "SASL_PLAINTEXT"),
    ("SSL", "SASL_SSL"),
    ("SASL_SSL", "SSL"),
    ("SASL_SSL", "SASL_PLAINTEXT"),
    ("SASL_PLAINTEXT", "SASL_SSL"),
]


@pytest.mark.parametrize(("listener", "protocol"), PAIRS, ids=lambda p: p.lower())
async def test_every_other_protocol_is_named(
    secure_kafka: LocalKafka, listener: str, protocol: str
) -> None:
    publisher = Publisher(settings=_on(secure_kafka, listener, protocol))

    with pytest.raises(KafkaStartError) as caught:
        await publisher.start(15)
    await publisher.stop(2)

    detail = caught.value.detail
    assert detail.startswith(f"BRIDGE_KAFKA_SECURITY_PROTOCOL={protocol}")
    assert f"answered like a{'n' if listener == 'SSL' else ''} {listener} listener" in detail
