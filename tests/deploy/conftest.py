"""Fixtures shared by tests/deploy: the container image, built once per session with podman."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.deploy.toolbox import REPO, find_tool

# A cold build (debootstrap of the base, then the two stages) on a busy 2-core machine.
BUILD_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class Image:
    tag: str
    env: dict[str, str]
    build_seconds: float

    def podman(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [find_tool("podman"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def inspect(self) -> dict[str, object]:
        done = self.podman("image", "inspect", self.tag)
        assert done.returncode == 0, done.stderr
        [doc] = json.loads(done.stdout)
        assert isinstance(doc, dict)
        return doc


def _script_env() -> dict[str, str]:
    """CONTAINERS_CONF and friends, as scripts/image.sh sets them for podman."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "image.sh"), "env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    env = dict(os.environ)
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


@pytest.fixture(scope="session")
def image() -> Image:
    """scripts/image.sh build: the image on the local Debian base, and podman's settings."""
    for tool in ("podman", "debootstrap", "runc"):
        find_tool(tool)
    env = _script_env()
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "image.sh"), "build"],
            capture_output=True,
            text=True,
            env=env,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/image.sh build took over {BUILD_TIMEOUT_S:g}s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Image(env["IMAGE"], env, time.monotonic() - started)
