"""The image built with podman from deploy/Dockerfile, then run as a user runs it.

scripts/image.sh builds it on a local Debian bookworm base (the Dockerfile's BASE argument;
no container registry is reachable here) and the test runs it with the restrictions the chart
applies: a non-root user, a read-only root filesystem, no capabilities, no privilege
escalation. It talks to the session's local Kafka over the host network on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.deploy.conftest import BUILD_TIMEOUT_S, Image
from tests.kafka_fixtures import free_ports
from tests.system.harness import (
    SECRET,
    event_ids_of,
    read_prefix,
    signed,
    signed_batch,
    unique_prefix,
)

APP_UID = 10001
# The runtime stage holds Debian's minimal base, Python and the venv; more means something
# that should not be there (a compiler, pip's cache, the sources) got in.
MAX_IMAGE_BYTES = 200 * 1024 * 1024
SHUTDOWN_TIMEOUT_SECONDS = 6
# podman stop's (and Docker's) default grace period before SIGKILL.
GRACE_PERIOD_SECONDS = 10


# The first test waits for the build (seconds when podman's layer cache holds it).
pytestmark = [pytest.mark.deploy, pytest.mark.kafka, pytest.mark.timeout(BUILD_TIMEOUT_S + 180)]


def test_image_is_lean_and_runs_as_the_fixed_user(image: Image) -> None:
    doc = image.inspect()
    size = doc["Size"]
    assert isinstance(size, int)
    print(f"image {image.tag}: {size / 1e6:.0f} MB, build {image.build_seconds:.0f}s")
    assert size < MAX_IMAGE_BYTES, f"{size / 1e6:.0f} MB"
    config = doc["Config"]
    assert isinstance(config, dict)
    assert config["User"] == f"{APP_UID}:{APP_UID}"
    assert config["Entrypoint"] == ["alm-bridge"]
    assert config["Cmd"] == ["serve"]
    # Nothing from the build stage but the virtualenv, and no installer in it.
    done = image.podman(
        "run", "--rm", "--read-only", "--network=none", "--entrypoint", "python", image.tag, "-c",
        "import os, shutil; print(os.getuid(), os.getgid(), os.path.exists('/src'),"
        " shutil.which('gcc'), shutil.which('pip'), os.path.exists('/root/.cache/pip'))",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        str(APP_UID),
        str(APP_UID),
        "False",
        "None",
        "None",
        "False",
    ]


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


@dataclass
class Running:
    name: str
    port: int
    prefix: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def container(image: Image, kafka_bootstrap: str) -> Iterator[Running]:
    name = f"alm-bridge-test-{uuid.uuid4().hex[:10]}"
    (port,) = free_ports(1)
    prefix = unique_prefix("image")
    settings = {
        "BRIDGE_HOST": "127.0.0.1",
        "BRIDGE_PORT": str(port),
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "BRIDGE_RECEIVER_NAME": "alm",
        "BRIDGE_AUTH_METHOD": "hmac",
        "BRIDGE_HMAC_SECRET": SECRET,
        "BRIDGE_TOPIC_TEMPLATE": f"{prefix}.{{event}}",
        "BRIDGE_DEAD_LETTER_TOPIC": f"{prefix}.deadletter",
        "BRIDGE_KAFKA_TOPIC_PARTITIONS": "1",
        "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
    }
    env_args = [arg for key, value in settings.items() for arg in ("--env", f"{key}={value}")]
    done = image.podman(
        "run", "--detach", "--name", name, "--network=host", "--read-only",
        "--cap-drop=ALL", "--security-opt=no-new-privileges", f"--user={APP_UID}:{APP_UID}",
        *env_args, image.tag,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    try:
        running = Running(name, port, prefix)
        deadline = time.monotonic() + 60
        while _get(f"{running.base_url}/readyz") != 200:
            state = image.podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", image.podman("logs", name).stderr[-3000:]
            assert time.monotonic() < deadline, "not ready within 60s"
            time.sleep(0.5)
        yield running
    finally:
        image.podman("rm", "--force", "--time", "0", name)


async def test_signed_batch_reaches_kafka_and_sigterm_drains(
    image: Image, container: Running, kafka_bootstrap: str
) -> None:
    name = container.name
    # Runs as the image's user, on a read-only root filesystem, without capabilities.
    done = image.podman(
        "exec", name, "python", "-c",
        "import os\ntry:\n    open('/probe', 'w')\nexcept OSError as e:\n    print(e.strerror)\n"
        "print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["Read-only file system", f"{APP_UID} 0000000000000000"]

    body, _ = signed_batch(5, seed=7)
    status, answer = _post(f"{container.base_url}/webhooks/alm", body, signed(body))
    assert status == 200, answer
    contents = await read_prefix(kafka_bootstrap, container.prefix, timeout_s=30)
    assert contents.event_ids == Counter(event_ids_of(body)), "each event once"
    # A wrong signature is refused by the same container.
    status, _ = _post(f"{container.base_url}/webhooks/alm", body, signed(body + b" "))
    assert status == 401

    started = time.monotonic()
    done = image.podman("kill", "--signal", "TERM", name)
    assert done.returncode == 0, done.stderr
    done = image.podman("wait", name, timeout=GRACE_PERIOD_SECONDS + 20)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", image.podman("logs", name).stderr[-3000:]
    assert elapsed < GRACE_PERIOD_SECONDS, f"exit took {elapsed:.1f}s"
    logs = image.podman("logs", name)
    events = [
        json.loads(line)["event"]
        for line in (logs.stdout + logs.stderr).splitlines()
        if line.startswith("{")
    ]
    assert events, "the bridge logs JSON lines"
    # The drain ran to its end instead of being cut short by SIGKILL.
    assert "shutdown_started" in events, events[-10:]
    assert events[-1] == "bridge_stopped", events[-10:]
