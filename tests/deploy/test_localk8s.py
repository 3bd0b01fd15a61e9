"""`make k8s-up` / `make k8s-down`: the command line of deploy/k8s/localk8s.py, run as the
Makefile runs it (``python3 -m deploy.k8s.localk8s`` from the repository root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.toolbox import REPO, find_tool

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(240)]


def localk8s(*args: str, state_dir: Path, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.k8s.localk8s", *args, "--state-dir", str(state_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_up_serves_kubectl_on_loopback_and_down_stops_every_recorded_pid(tmp_path: Path) -> None:
    for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "etcd"):
        find_tool(binary)
    kubectl = find_tool("kubectl")
    up = localk8s("up", state_dir=tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"export KUBECONFIG={tmp_path / 'kubeconfig'}"
        status = localk8s("status", state_dir=tmp_path)
        assert status.returncode == 0, status.stdout
        pids = {
            name: int(pid) for name, _, pid in (line.split() for line in status.stdout.splitlines())
        }
        assert set(pids) == {
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"
        }  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig")}
        nodes = subprocess.run(
            [kubectl, "get", "nodes", "-o", "name"],
            capture_output=True, text=True, env=env, timeout=30, check=False,
        )  # fmt: skip
        assert nodes.stdout.split() == ["node/kwok-node-0", "node/kwok-node-1"], nodes.stderr
        server = subprocess.run(
            [kubectl, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"],
            capture_output=True, text=True, env=env, timeout=30, check=False,
        )  # fmt: skip
        assert server.stdout.startswith("https://127.0.0.1:")
        # A second `up` finds it running and starts nothing.
        again = localk8s("up", state_dir=tmp_path)
        assert again.returncode == 0
        assert "already running" in again.stderr
    finally:
        down = localk8s("down", state_dir=tmp_path, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not any(alive(pid) for pid in pids.values())
    assert not list(tmp_path.glob("*.pid"))
    assert localk8s("status", state_dir=tmp_path).returncode == 1
