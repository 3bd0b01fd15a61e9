"""The image run as a pod by a real kubelet with containerd, end to end.

The kubelet is built from the same Kubernetes modules as the control plane
(deploy/k8s/localk8s.py, started here without kwok nodes), containerd and runc are Debian's,
and the image is the one tests/deploy/test_image.py builds, imported into containerd. No CNI
plugin is installed, so the pod uses the host's network (bound to 127.0.0.1), and its
namespace is not a `restricted` one (host networking is not allowed there); the chart itself
is installed by tests/deploy/test_k8s_install.py. The kubelet runs the pod's probes, so Ready
means /readyz answered 200 with Kafka reachable.

Everything lives under the test's temporary directory; containerd, the kubelet and their
children are stopped by recorded pids.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.k8s.localk8s import LocalK8s
from deploy.supervisor import Process, SupervisorError
from tests.deploy.conftest import Image
from tests.deploy.toolbox import find_tool, tools_bin
from tests.kafka_fixtures import free_ports
from tests.system.harness import SECRET, event_ids_of, read_prefix, signed, signed_batch

pytestmark = [pytest.mark.deploy, pytest.mark.kafka, pytest.mark.timeout(1500)]

NODE = "kubelet-node"
# The sandbox ("pause") image the kubelet asks containerd for; no registry serves it here, so
# it is built from the local base: a process that sleeps.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
GRACE_PERIOD_SECONDS = 30
SHUTDOWN_TIMEOUT_SECONDS = 6


def _daemon(name: str, args: list[str], directory: Path) -> Process:
    """A process in its own session, its pid recorded in ``<dir>/<name>.pid``."""
    process = Process(name, log=directory / f"{name}.log", pid_file=directory / f"{name}.pid")
    process.start(args, cwd=directory)
    return process


def _wait(process: Process, ready: Callable[[], bool], timeout_s: float, interval_s: float) -> None:
    try:
        process.wait_until(ready, timeout_s, what=f"{process.name} to serve", interval_s=interval_s)
    except SupervisorError as exc:
        raise AssertionError(f"{exc}:\n{process.log_tail(30)}") from None


def _unmount_under(directory: Path) -> None:
    prefix = str(directory) + "/"
    mounts = [
        line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]  # fmt: skip
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30, check=False)


def _run(args: list[str], *, timeout: float = 120) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


class Node:
    def __init__(self, k8s: LocalK8s, ctr: list[str], kubectl: str) -> None:
        self.k8s = k8s
        self.ctr = ctr
        self.kubectl_bin = kubectl

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_bin, *args], input=stdin, capture_output=True, text=True, timeout=60,
            env={**os.environ, "KUBECONFIG": str(self.k8s.kubeconfig)}, check=False,
        )  # fmt: skip

    def pod(self, name: str) -> dict[str, Any] | None:
        done = self.kubectl("get", "pod", name, "-o", "json")
        if done.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def tasks(self) -> list[str]:
        return _run([*self.ctr, "tasks", "ls", "-q"]).split()


@pytest.fixture(scope="module")
def node(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    for tool in ("containerd", "ctr", "runc", "kube-apiserver", "kwok", "etcd"):
        find_tool(tool)
    kubelet = find_tool("kubelet")
    kubectl = (
        str(tools_bin() / "kubectl")
        if (tools_bin() / "kubectl").is_file()
        else find_tool("kubectl")
    )
    base = tmp_path_factory.mktemp("kubelet")
    ctrd = base / "containerd"
    ctrd.mkdir()
    socket = ctrd / "containerd.sock"
    # restrict_oom_score_adj: the sandbox's containers get no lower oom_score_adj than
    # containerd itself; without it runc fails ("can't get final child's PID from pipe")
    # wherever lowering it is not allowed.
    (ctrd / "config.toml").write_text(
        f"""version = 2
root = "{ctrd / "root"}"
state = "{ctrd / "state"}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "{PAUSE_IMAGE}"
"""
    )
    pause_dir = base / "pause"
    pause_dir.mkdir()
    (pause_dir / "Containerfile").write_text(
        f'FROM {image.env["BASE_IMAGE"]}\nUSER 65535:65535\nENTRYPOINT ["sleep", "infinity"]\n'
    )
    image.podman("build", "--quiet", "--tag", PAUSE_IMAGE, str(pause_dir), timeout=300)
    archives = {}
    for tag in (PAUSE_IMAGE, image.tag):
        archive = base / (tag.replace("/", "_").replace(":", "_") + ".tar")
        done = image.podman(
            "save", "--format", "docker-archive", "-o", str(archive), tag, timeout=300
        )
        assert done.returncode == 0, done.stderr
        archives[tag] = archive

    daemons: list[Process] = []
    k8s = LocalK8s(base / "control-plane", nodes=0)
    ctr = [find_tool("ctr"), "--address", str(socket), "--namespace", "k8s.io"]
    try:
        containerd = _daemon(
            "containerd", [find_tool("containerd"), "--config", str(ctrd / "config.toml")], base
        )
        daemons.append(containerd)
        _wait(
            containerd,
            lambda: (
                subprocess.run([*ctr, "version"], capture_output=True, check=False).returncode == 0
            ),
            30,
            0.3,
        )
        for archive in archives.values():
            _run([*ctr, "images", "import", str(archive)], timeout=300)

        k8s.start(timeout_s=180)
        port, healthz = free_ports(2)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(k8s.pki / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            # No QoS cgroup tree and no node-allocatable enforcement: the kubelet creates
            # no cgroups of its own, only runc does for each container.
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": False,
            "containerRuntimeEndpoint": f"unix://{socket}",
            "podLogsDir": str(base / "pod-logs"),
        }
        (base / "kubelet.json").write_text(json.dumps(config))
        kubelet_daemon = _daemon(
            "kubelet",
            [
                kubelet, f"--kubeconfig={k8s.state_dir / 'admin.kubeconfig'}",
                f"--config={base / 'kubelet.json'}", f"--root-dir={base / 'kubelet-root'}",
                f"--hostname-override={NODE}", "--node-ip=127.0.0.1", "--v=1",
            ],
            base,
        )  # fmt: skip
        daemons.append(kubelet_daemon)
        found = Node(k8s, ctr, kubectl)

        def ready() -> bool:
            done = found.kubectl("get", "node", NODE, "-o", "json")
            if done.returncode != 0:
                return False
            conditions = json.loads(done.stdout)["status"].get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        _wait(kubelet_daemon, ready, 120, 1.0)
        yield found
        # The kubelet stops what it started once the pods are gone.
        found.kubectl("delete", "pods", "--all", "--grace-period=0", "--force", "--wait=false")
        deadline = time.monotonic() + 60
        while found.tasks() and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        for daemon in reversed(daemons):
            if daemon.name == "containerd":
                # Kill whatever containers are left, then containerd (its shims exit with
                # their containers).
                for task in subprocess.run(
                    [*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, check=False
                ).stdout.split():
                    subprocess.run(
                        [*ctr, "tasks", "kill", "-s", "SIGKILL", task],
                        capture_output=True,
                        check=False,
                    )
            daemon.stop(30)
        k8s.stop()
        _unmount_under(base)


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=15) as response:
        return int(response.status)


async def test_a_pod_on_a_real_kubelet_serves_a_signed_batch_and_stops_on_sigterm(
    node: Node,
    image: Image,
    kafka_bootstrap: str,
) -> None:
    port = free_ports(1)[0]
    prefix = f"kubelet.{os.getpid()}.{port}"

    def probe(path: str) -> dict[str, Any]:
        return {"httpGet": {"host": "127.0.0.1", "port": port, "path": path}, "periodSeconds": 2}

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bridge", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": GRACE_PERIOD_SECONDS,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "bridge",
                    "image": image.tag,
                    "imagePullPolicy": "Never",
                    "args": ["serve"],
                    "env": [
                        {"name": k, "value": v}
                        for k, v in {
                            "BRIDGE_HOST": "127.0.0.1",
                            "BRIDGE_PORT": str(port),
                            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                            "BRIDGE_RECEIVER_NAME": "alm",
                            "BRIDGE_AUTH_METHOD": "hmac",
                            "BRIDGE_HMAC_SECRET": SECRET,
                            "BRIDGE_TOPIC_TEMPLATE": f"{prefix}.{{event}}",
                            "BRIDGE_KAFKA_TOPIC_PARTITIONS": "1",
                            "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
                        }.items()
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "readinessProbe": probe("/readyz"),
                    "livenessProbe": probe("/healthz"),
                }
            ],
        },
    }
    done = node.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    assert done.returncode == 0, done.stderr

    def ready() -> bool:
        live = node.pod("bridge")
        conditions = (live or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    deadline = time.monotonic() + 120
    while not ready():
        assert time.monotonic() < deadline, json.dumps((node.pod("bridge") or {}).get("status"))
        await asyncio.sleep(1)
    live = node.pod("bridge")
    assert live is not None
    [status] = live["status"]["containerStatuses"]
    assert status["ready"] is True
    assert status["restartCount"] == 0
    assert _get(f"http://127.0.0.1:{port}/readyz") == 200

    body, _ = signed_batch(4, seed=11)
    assert _post(f"http://127.0.0.1:{port}/webhooks/alm", body, signed(body)) == 200
    contents = await read_prefix(kafka_bootstrap, prefix, timeout_s=30)
    assert contents.event_ids == Counter(event_ids_of(body))

    # Deleting the pod makes the kubelet send SIGTERM; a process that ignored it would be
    # killed only at the end of the 30 s grace period.
    started = time.monotonic()
    done = node.kubectl("delete", "pod", "bridge", "--wait=true", "--timeout=60s")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < GRACE_PERIOD_SECONDS / 2, f"the pod took {elapsed:.1f}s to stop"
    assert _get(f"http://127.0.0.1:{port}/readyz") is None
