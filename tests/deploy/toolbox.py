"""Finding the deployment tools and rendering the Helm chart, shared by tests/deploy.

helm and promtool are installed by scripts/ensure-tools.sh into a cache outside the repository
($ALM_BRIDGE_TOOLS/bin, default ~/.cache/alm-bridge/tools/bin); hadolint lives in the project
venv. A missing tool fails the test under CI and skips it elsewhere, naming the install command.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "alm-kafka-bridge"
CI_VALUES = tuple(sorted((CHART / "ci").glob("*.yaml")))
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
CHART_ALERTS = CHART / "files" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "alm-kafka-bridge.json"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
OPERATIONS_DOC = REPO / "docs" / "operations.md"

INSTALL_HINT = "bash scripts/ensure-tools.sh"
# The chart's minimum (Chart.yaml kubeVersion) and a current release: both must accept it.
KUBE_VERSIONS = ("1.25.0", "1.30.0")
RELEASE = "alm"
NAMESPACE = "alm"

Manifest = dict[str, Any]


def tools_bin() -> Path:
    root = os.environ.get("ALM_BRIDGE_TOOLS")
    base = Path(root) if root else Path.home() / ".cache" / "alm-bridge" / "tools"
    return base / "bin"


def find_tool(name: str) -> str:
    """The tool's path: PATH first, then the tools cache, then the venv running the tests."""
    found = shutil.which(name)
    if found:
        return found
    for directory in (tools_bin(), Path(sys.executable).parent):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    message = (
        f"{name} not found on PATH, in {tools_bin()} or in the venv; install it: {INSTALL_HINT}"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(
    args: Sequence[str], *, cwd: Path = REPO, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _set_args(values: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in sorted(values.items()):
        args += ["--set", f"{key}={value}"]
    return args


def helm_template_args(
    values_files: Iterable[Path] = (),
    set_values: Mapping[str, str] | None = None,
    kube_version: str = KUBE_VERSIONS[-1],
    chart: Path = CHART,
) -> list[str]:
    args = [
        find_tool("helm"),
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
    ]
    for path in values_files:
        args += ["--values", str(path)]
    return args + _set_args(set_values or {})


@functools.lru_cache(maxsize=64)
def _render_cached(
    values_files: tuple[Path, ...], set_items: tuple[tuple[str, str], ...], kube_version: str
) -> tuple[Manifest, ...]:
    result = run(helm_template_args(values_files, dict(set_items), kube_version))
    if result.returncode != 0:
        raise RenderError(result.stderr)
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return tuple(docs)


class RenderError(Exception):
    """helm template failed; the message is helm's stderr."""


def render(
    values_files: Iterable[Path] = (),
    set_values: Mapping[str, str] | None = None,
    kube_version: str = KUBE_VERSIONS[-1],
) -> list[Manifest]:
    """The chart rendered by `helm template`, one dict per manifest (fresh copies)."""
    docs = _render_cached(
        tuple(values_files), tuple(sorted((set_values or {}).items())), kube_version
    )
    return [yaml.safe_load(yaml.safe_dump(doc)) for doc in docs]


def only(docs: Iterable[Manifest], kind: str) -> Manifest:
    matches = [doc for doc in docs if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def kinds(docs: Iterable[Manifest]) -> set[str]:
    return {doc["kind"] for doc in docs}


def bridge_container(docs: Iterable[Manifest]) -> Manifest:
    containers = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(containers, list)
    [container] = [c for c in containers if c["name"] == "bridge"]
    assert isinstance(container, dict)
    return container


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {item["name"]: item for item in container.get("env", [])}


def receivers_yaml(docs: Iterable[Manifest]) -> dict[str, Any]:
    config = only(docs, "ConfigMap")["data"]["receivers.yaml"]
    loaded = yaml.safe_load(config)
    assert isinstance(loaded, dict)
    return loaded
