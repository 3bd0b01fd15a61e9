"""The container image definition and the Compose stack (no Docker engine needed)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import sys
from typing import Any

import pytest
import yaml

from bridge.config.settings import Settings
from tests.deploy.toolbox import COMPOSE, DOCKERFILE, REPO, find_tool, run

pytestmark = pytest.mark.deploy

APP_UID = "10001"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _args(instruction: str) -> list[str]:
    return [arguments for name, arguments in _instructions() if name == instruction]


def test_hadolint_passes() -> None:
    result = run([find_tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_multistage_on_the_same_python_slim_base() -> None:
    # Users get the official slim image; BASE swaps it (tests/deploy/test_image.py).
    assert "PYTHON_VERSION=3.11" in _args("ARG")
    assert "BASE=python:${PYTHON_VERSION}-slim" in _args("ARG")
    froms = _args("FROM")
    assert froms == ["${BASE} AS builder", "${BASE} AS runtime"]
    copies = _args("COPY")
    assert "--from=builder /opt/venv /opt/venv" in copies


def test_runtime_stage_settings() -> None:
    instructions = _instructions()
    runtime = instructions[[i for i, (name, _) in enumerate(instructions) if name == "FROM"][-1] :]
    env = " ".join(arguments for name, arguments in runtime if name == "ENV")
    for setting in ("PYTHONUNBUFFERED=1", "BRIDGE_HOST=0.0.0.0", "PATH=/opt/venv/bin:$PATH"):
        assert setting in env
    assert [a for n, a in runtime if n == "ARG" and a.startswith("APP_UID=")] == [
        f"APP_UID={APP_UID}"
    ]
    assert [a for n, a in runtime if n == "USER"] == ["${APP_UID}:${APP_UID}"]
    assert [a for n, a in runtime if n == "EXPOSE"] == ["8080"]
    assert json.loads(_args("ENTRYPOINT")[-1]) == ["alm-bridge"]
    assert json.loads(_args("CMD")[-1]) == ["serve"]
    assert any("compileall" in a for n, a in instructions if n == "RUN")


def test_dependency_list_command_reads_pyproject() -> None:
    [command] = [a for a in _args("RUN") if "tomllib" in a]
    python_call = command.split(">", 1)[0].strip()
    argv = shlex.split(python_call)
    assert argv[:2] == ["python", "-c"]
    result = run([sys.executable, "-c", argv[2]])
    assert result.returncode == 0, result.stderr
    requirements = result.stdout.split("\n")
    assert any(r.startswith("aiokafka") for r in requirements)
    assert any(r.startswith("uvloop") for r in requirements)


def _dockerignore_allows(path: str) -> bool:
    allowed = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


def test_build_context_holds_exactly_what_the_dockerfile_copies() -> None:
    sources = []
    for arguments in _args("COPY"):
        if arguments.startswith("--from"):
            continue
        sources += arguments.split()[:-1]
    assert sources == ["pyproject.toml", "requirements.lock", "README.md", "bridge"]
    for source in sources:
        assert (REPO / source).exists(), f"{source} is copied but missing"
        assert _dockerignore_allows(source), f".dockerignore excludes {source}"
    for excluded in (".venv", ".git", "tests/unit", "helm/alm-kafka-bridge/values.yaml", ".env"):
        assert not _dockerignore_allows(excluded), f".dockerignore lets {excluded} in"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_kafka_and_the_bridge_image() -> None:
    services = _compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "broker,controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    bridge = services["bridge"]
    context = (COMPOSE.parent / bridge["build"]["context"]).resolve()
    assert context == REPO
    assert (context / bridge["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert bridge["depends_on"]["kafka"]["condition"] == "service_healthy"
    env = bridge["environment"]
    bootstrap = env["BRIDGE_KAFKA_BOOTSTRAP_SERVERS"]
    assert f"PLAINTEXT://{bootstrap}" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert bridge["read_only"] is True
    assert bridge["user"] == f"{APP_UID}:{APP_UID}"
    grace = re.fullmatch(r"(\d+)s", bridge["stop_grace_period"])
    assert grace, "stop_grace_period in whole seconds"
    assert int(grace.group(1)) > float(env["BRIDGE_SHUTDOWN_TIMEOUT_SECONDS"])


def test_compose_sets_only_variables_the_bridge_reads() -> None:
    env = _compose()["services"]["bridge"]["environment"]
    unknown = {
        name for name in env if name.removeprefix("BRIDGE_").lower() not in Settings.model_fields
    }
    assert not unknown
