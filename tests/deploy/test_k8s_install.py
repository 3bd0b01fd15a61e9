"""The chart installed with helm into a real Kubernetes API server, as a platform team does.

The control plane is deploy/k8s/localk8s.py: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler (Kubernetes built from its Go modules) with kwok playing the kubelets of
two nodes. So everything up to the kubelet is real: admission (Pod Security `restricted`),
schema validation (the published prometheus-operator CRDs included), the Deployment,
ReplicaSet, HPA, PDB and EndpointSlice controllers, the scheduler and helm's own waiting.
Containers do not run: kwok reports the scheduled pods Running and Ready. What the image
does when it runs is tests/deploy/test_image.py's part.

Every namespace enforces, warns about and audits the `restricted` Pod Security Standard.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.k8s.localk8s import LocalK8s, LocalK8sError
from tests.deploy.toolbox import (
    CHART,
    CI_VALUES,
    Manifest,
    find_tool,
    tools_bin,
)

# Cold start of the control plane on a busy 2-core machine, then helm's waits.
pytestmark = [pytest.mark.deploy, pytest.mark.timeout(300)]

PROMETHEUS_OPERATOR_VERSION = os.environ.get("PROMETHEUS_OPERATOR_VERSION", "v0.85.0")
EVERYTHING_ON = CHART / "ci" / "everything-on-values.yaml"
RELEASE = "alm"
INSTANCE = "app.kubernetes.io/instance"
HELM_WAIT = "150s"
RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}


@dataclass
class Cluster:
    k8s: LocalK8s
    kubectl_bin: str
    helm_bin: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.k8s.kubeconfig)}

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.run([self.kubectl_bin, *args], stdin=stdin, timeout=timeout)

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        done = self.kubectl(*args, stdin=stdin, timeout=timeout)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.ok("get", *args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return self.run([self.helm_bin, *args], timeout=timeout)

    def apply(self, doc: Manifest) -> None:
        self.ok("apply", "--server-side", "-f", "-", stdin=json.dumps(doc))

    def restricted_namespace(self, name: str) -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": RESTRICTED},
            }
        )
        # Pods need the namespace's default ServiceAccount; the controller manager also
        # publishes the cluster CA there. Both belong to the namespace, not to a release.
        wait_for(
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", name).returncode == 0
                and self.kubectl("get", "configmap", "kube-root-ca.crt", "-n", name).returncode == 0
            ),
            what=f"namespace {name} to be set up",
        )


def wait_for(condition: Any, *, timeout_s: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.5)


def wait_equal(get: Any, want: Any, *, timeout_s: float = 90.0, what: str = "state") -> None:
    """Polls ``get()`` until it equals ``want``; on time-out, fails with the difference."""
    try:
        wait_for(lambda: get() == want, timeout_s=timeout_s, what=what)
    except AssertionError:
        assert get() == want, f"{what} after {timeout_s:g}s"


def crd_files() -> list[Path]:
    directory = tools_bin().parent / "crds" / f"prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}"
    files = [
        directory / f"monitoring.coreos.com_{kind}.yaml"
        for kind in ("servicemonitors", "prometheusrules")
    ]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        message = f"prometheus-operator CRDs missing ({missing}); run scripts/ensure-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return files


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "etcd"):
        find_tool(binary)
    crds = crd_files()
    k8s = LocalK8s(tmp_path_factory.mktemp("k8s"))
    try:
        k8s.start(timeout_s=180)
    except LocalK8sError as exc:
        pytest.fail(f"the local control plane did not start: {exc}")
    try:
        # The kubectl built with the server (an older one on PATH may lack what we use).
        kubectl = tools_bin() / "kubectl"
        found = Cluster(
            k8s, str(kubectl) if kubectl.is_file() else find_tool("kubectl"), find_tool("helm")
        )
        for path in crds:
            found.ok("apply", "--server-side", "-f", str(path))
        for plural in ("servicemonitors", "prometheusrules"):
            found.ok(
                "wait", "--for=condition=Established", f"crd/{plural}.monitoring.coreos.com",
                "--timeout=60s",
            )  # fmt: skip
        yield found
    finally:
        k8s.stop()


# ------------------------------------------------------------------------------ helpers


def rendered(cluster: Cluster, values: Path, namespace: str) -> list[Manifest]:
    done = cluster.helm(
        "template", RELEASE, str(CHART), "--namespace", namespace, "--values", str(values)
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def referenced_secrets(docs: Sequence[Manifest]) -> dict[str, set[str]]:
    """Secret name -> keys, for every Secret the Deployment's pods read or pull with."""
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    wanted: dict[str, set[str]] = {}
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            keys = {item["key"] for item in volume["secret"].get("items", [])}
            wanted.setdefault(volume["secret"]["secretName"], set()).update(keys)
    for container in pod["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                wanted.setdefault(ref["name"], set()).add(ref["key"])
    for pull in pod.get("imagePullSecrets", []):
        wanted.setdefault(pull["name"], set()).add(".dockerconfigjson")
    # A receiver's Secret is mounted whole: its keys are the ones the receivers file lists.
    for doc in docs:
        if doc["kind"] == "ConfigMap" and "receivers.yaml" in doc.get("data", {}):
            for receiver in yaml.safe_load(doc["data"]["receivers.yaml"])["receivers"]:
                auth = receiver.get("auth") or {}
                if auth.get("existingSecret"):
                    listed = [*auth.get("secretKeys", []), *auth.get("credentialKeys", [])]
                    wanted.setdefault(auth["existingSecret"], set()).update(listed)
    return wanted


def create_secrets(cluster: Cluster, namespace: str, wanted: Mapping[str, set[str]]) -> None:
    """What the platform team creates before installing: every Secret the values name."""
    for name, keys in sorted(wanted.items()):
        if ".dockerconfigjson" in keys:
            secret_type = "kubernetes.io/dockerconfigjson"
            data = {".dockerconfigjson": json.dumps({"auths": {}})}
        else:
            secret_type = "Opaque"
            data = {key: f"value-of-{key}" for key in sorted(keys)}
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": secret_type,
                "metadata": {"name": name, "namespace": namespace},
                "stringData": data,
            }
        )


def helm_install(
    cluster: Cluster, namespace: str, values: Path
) -> subprocess.CompletedProcess[str]:
    return cluster.helm(
        "install", RELEASE, str(CHART), "--namespace", namespace, "--values", str(values),
        "--wait", "--timeout", HELM_WAIT,
    )  # fmt: skip


def release_pods(cluster: Cluster, namespace: str) -> list[Manifest]:
    """The bridge's pods of the release (the canary's Job pods have a name of their own)."""
    selector = f"{INSTANCE}={RELEASE},app.kubernetes.io/name=alm-kafka-bridge"
    pods: list[Manifest] = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
    return pods


def live_pods(cluster: Cluster, namespace: str) -> list[Manifest]:
    return [
        p for p in release_pods(cluster, namespace) if not p["metadata"].get("deletionTimestamp")
    ]


def is_ready(pod: Manifest) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def namespace_objects(cluster: Cluster, namespace: str) -> set[tuple[str, str]]:
    """(resource, name) of every object in the namespace, of every listable kind."""
    names = cluster.ok("api-resources", "--verbs=list", "--namespaced", "-o", "name").split()
    # Events describe what happened; they are not left-behind resources.
    kinds = [n for n in names if n not in ("events", "events.events.k8s.io")]
    listing = cluster.get(",".join(kinds), "-n", namespace)
    return {(item["kind"], item["metadata"]["name"]) for item in listing["items"]}


def assert_subset(expected: Any, actual: Any, path: str = "") -> None:
    """Every field of ``expected`` is in ``actual`` with the same value (defaults may be added)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not a mapping"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing from the live object"
            assert_subset(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{path}: {actual!r}"
        for index, (want, have) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(want, have, f"{path}[{index}]")
    else:
        assert expected == actual, f"{path}: rendered {expected!r}, live {actual!r}"


# -------------------------------------------------------------------------------- tests


def test_restricted_namespace_rejects_a_plain_pod(cluster: Cluster) -> None:
    """The policy the chart is held to is really enforced here."""
    cluster.restricted_namespace("psa-check")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": "psa-check"},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]},
    }
    done = cluster.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    assert done.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in done.stderr
    assert "runAsNonRoot != true" in done.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem.removesuffix("-values"))
def test_each_ci_values_file_installs_into_a_restricted_namespace(
    cluster: Cluster, values: Path
) -> None:
    namespace = "ci-" + values.stem.removesuffix("-values")
    cluster.restricted_namespace(namespace)
    before = namespace_objects(cluster, namespace)
    docs = rendered(cluster, values, namespace)
    create_secrets(cluster, namespace, referenced_secrets(docs))
    with_secrets = namespace_objects(cluster, namespace)

    done = helm_install(cluster, namespace, values)
    assert done.returncode == 0, done.stderr
    # The API server's admission warnings reach helm's output: there must be none.
    assert "PodSecurity" not in done.stderr, done.stderr
    assert "Warning" not in done.stderr, done.stderr

    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    live = cluster.get("deployment", deployment["metadata"]["name"], "-n", namespace)
    want = live["spec"]["replicas"]
    assert want == deployment["spec"].get("replicas", want) >= 1
    assert live["status"].get("readyReplicas") == want
    pods = live_pods(cluster, namespace)
    assert len(pods) == want
    assert all(is_ready(p) for p in pods), [p["status"] for p in pods]
    # Scheduled by the real scheduler onto the (simulated) nodes.
    assert all(p["spec"].get("nodeName", "").startswith("kwok-node-") for p in pods)

    done = cluster.helm(
        "uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "90s"
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not release_pods(cluster, namespace), what="the pods to go")
    # EndpointSlices and the like go with their owners, asynchronously.
    wait_equal(
        lambda: namespace_objects(cluster, namespace),
        with_secrets,
        what="only what was there before the install",
    )
    assert with_secrets - before == {("Secret", name) for name in referenced_secrets(docs)}


# The everything-on release: one install, then what a platform team checks, in order.


@dataclass
class Release:
    namespace: str
    docs: list[Manifest]
    install_output: str

    def one(self, kind: str) -> Manifest:
        [doc] = [d for d in self.docs if d["kind"] == kind]
        return doc


@pytest.fixture(scope="module")
def everything(cluster: Cluster) -> Release:
    namespace = "alm"
    cluster.restricted_namespace(namespace)
    docs = rendered(cluster, EVERYTHING_ON, namespace)
    create_secrets(cluster, namespace, referenced_secrets(docs))
    done = helm_install(cluster, namespace, EVERYTHING_ON)
    assert done.returncode == 0, done.stderr
    return Release(namespace, docs, done.stdout + done.stderr)


def test_pods_admitted_running_and_spread_by_the_hpa_minimum(
    cluster: Cluster, everything: Release
) -> None:
    assert "PodSecurity" not in everything.install_output
    hpa = everything.one("HorizontalPodAutoscaler")
    assert "replicas" not in everything.one("Deployment")["spec"], "the HPA owns the count"
    minimum = hpa["spec"]["minReplicas"]
    # The HPA controller raised the Deployment from its default of 1 to minReplicas.
    wait_for(
        lambda: (
            len([p for p in live_pods(cluster, everything.namespace) if is_ready(p)]) == minimum
        ),
        what=f"{minimum} ready pods",
    )

    def hpa_status() -> Manifest:
        found: Manifest = cluster.get("hpa", hpa["metadata"]["name"], "-n", everything.namespace)
        return found

    # The HPA reports what it did on its next sync.
    wait_for(
        lambda: hpa_status()["status"].get("currentReplicas") == minimum,
        what="the HPA's status",
    )
    live = hpa_status()
    assert live["apiVersion"] == "autoscaling/v2"
    assert live["status"]["desiredReplicas"] == minimum
    assert live["spec"]["metrics"] == hpa["spec"]["metrics"]
    pods = live_pods(cluster, everything.namespace)
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-node-0", "kwok-node-1"}


def test_probes_and_security_context_as_rendered(cluster: Cluster, everything: Release) -> None:
    template = everything.one("Deployment")["spec"]["template"]["spec"]
    [container] = [c for c in template["containers"] if c["name"] == "bridge"]
    for pod in live_pods(cluster, everything.namespace):
        spec = pod["spec"]
        assert_subset(template["securityContext"], spec["securityContext"], "pod.securityContext")
        [live] = [c for c in spec["containers"] if c["name"] == "bridge"]
        for field in ("securityContext", "livenessProbe", "readinessProbe", "lifecycle", "ports"):
            assert_subset(container[field], live[field], f"bridge.{field}")
        assert spec["automountServiceAccountToken"] is False
        assert not any(v.get("projected") for v in spec["volumes"]), "no service-account token"


def test_service_selects_the_pods(cluster: Cluster, everything: Release) -> None:
    service = everything.one("Service")
    name = service["metadata"]["name"]
    live = cluster.get("service", name, "-n", everything.namespace)
    pods = {p["metadata"]["name"]: p for p in live_pods(cluster, everything.namespace)}
    selector = live["spec"]["selector"]
    assert all(selector.items() <= p["metadata"]["labels"].items() for p in pods.values())

    def endpoint_pods() -> set[str]:
        slices = cluster.get(
            "endpointslices", "-n", everything.namespace, "-l", f"kubernetes.io/service-name={name}"
        )["items"]
        return {
            e["targetRef"]["name"]
            for s in slices
            for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready")
        }

    wait_for(lambda: endpoint_pods() == set(pods), what="the EndpointSlices to list the pods")
    ports = {p["name"]: p["targetPort"] for p in live["spec"]["ports"]}
    assert ports == {"http": "http", "metrics": "metrics"}


def test_pdb_counts_the_pods(cluster: Cluster, everything: Release) -> None:
    pdb = everything.one("PodDisruptionBudget")
    name = pdb["metadata"]["name"]
    minimum = everything.one("HorizontalPodAutoscaler")["spec"]["minReplicas"]

    def status() -> Manifest:
        found: Manifest = cluster.get("pdb", name, "-n", everything.namespace).get("status", {})
        return found

    wait_for(lambda: status().get("currentHealthy") == minimum, what="the PDB to see the pods")
    assert status()["expectedPods"] == minimum
    assert status()["disruptionsAllowed"] == minimum - pdb["spec"]["minAvailable"]


def test_network_policy_selects_the_pods(cluster: Cluster, everything: Release) -> None:
    policy = everything.one("NetworkPolicy")
    live = cluster.get("networkpolicy", policy["metadata"]["name"], "-n", everything.namespace)
    assert live["apiVersion"] == "networking.k8s.io/v1"
    assert live["spec"]["policyTypes"] == ["Ingress", "Egress"]
    selector = live["spec"]["podSelector"]["matchLabels"]
    selected = cluster.get(
        "pods", "-n", everything.namespace, "-l", ",".join(f"{k}={v}" for k, v in selector.items())
    )["items"]
    assert {p["metadata"]["name"] for p in selected} == {
        p["metadata"]["name"] for p in release_pods(cluster, everything.namespace)
    }
    assert_subset(policy["spec"], live["spec"], "networkpolicy.spec")


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_monitoring_resources_accepted_by_the_prometheus_operator_crds(
    cluster: Cluster, everything: Release, kind: str
) -> None:
    doc = everything.one(kind)
    live = cluster.get(kind.lower(), doc["metadata"]["name"], "-n", everything.namespace)
    # The CRDs' structural schemas prune unknown fields (and add defaults): every rendered
    # field is still there, with its value, only if the operator knows it.
    assert_subset(doc["spec"], live["spec"], f"{kind}.spec")
    assert live["metadata"]["labels"]["release"] == "prometheus"


def test_the_crds_validate(cluster: Cluster, everything: Release) -> None:
    """A malformed ServiceMonitor is refused, so the acceptance above means something."""
    broken = json.loads(json.dumps(everything.one("ServiceMonitor")))
    broken["metadata"]["name"] = "broken"
    broken["spec"]["endpoints"][0]["scheme"] = "gopher"
    done = cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(broken))
    assert done.returncode != 0
    assert "spec.endpoints[0].scheme" in done.stderr


def _checksum(cluster: Cluster, release: Release) -> str:
    name = release.one("Deployment")["metadata"]["name"]
    live = cluster.get("deployment", name, "-n", release.namespace)
    value: str = live["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    return value


def _rolled_to(cluster: Cluster, release: Release, checksum: str) -> bool:
    name = release.one("Deployment")["metadata"]["name"]
    live = cluster.get("deployment", name, "-n", release.namespace)
    status = live["status"]
    pods = release_pods(cluster, release.namespace)
    return (
        status.get("observedGeneration") == live["metadata"]["generation"]
        and status.get("updatedReplicas") == status.get("replicas") == status.get("readyReplicas")
        and all(p["metadata"]["annotations"]["checksum/config"] == checksum for p in pods)
        and all(is_ready(p) for p in pods)
    )


def test_config_change_rolls_the_pods_then_rollback_restores_them(
    cluster: Cluster, everything: Release, tmp_path: Path
) -> None:
    namespace = everything.namespace
    first_checksum = _checksum(cluster, everything)
    first_pods = {p["metadata"]["name"] for p in live_pods(cluster, namespace)}
    configmap = everything.one("ConfigMap")["metadata"]["name"]
    first_config = cluster.get("configmap", configmap, "-n", namespace)["data"]

    # A change that reaches only the receivers file (the ConfigMap), not the pod's env.
    values = yaml.safe_load(EVERYTHING_ON.read_text())
    values["receivers"][0]["routing"]["catchallTopic"] = "alm.other.v2"
    changed = tmp_path / "changed-values.yaml"
    changed.write_text(yaml.safe_dump(values))
    done = cluster.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", namespace, "--values", str(changed),
        "--wait", "--timeout", HELM_WAIT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    second_config = cluster.get("configmap", configmap, "-n", namespace)["data"]
    assert "alm.other.v2" in second_config["receivers.yaml"]
    second_checksum = _checksum(cluster, everything)
    assert second_checksum != first_checksum
    wait_for(lambda: _rolled_to(cluster, everything, second_checksum), what="the new pods")
    second_pods = {p["metadata"]["name"] for p in release_pods(cluster, namespace)}
    assert second_pods.isdisjoint(first_pods), "every pod was replaced"

    done = cluster.helm(
        "rollback", RELEASE, "1", "--namespace", namespace, "--wait", "--timeout", HELM_WAIT
    )
    assert done.returncode == 0, done.stderr
    assert cluster.get("configmap", configmap, "-n", namespace)["data"] == first_config
    assert _checksum(cluster, everything) == first_checksum
    wait_for(lambda: _rolled_to(cluster, everything, first_checksum), what="the rolled-back pods")
    third_pods = {p["metadata"]["name"] for p in release_pods(cluster, namespace)}
    assert third_pods.isdisjoint(second_pods)

    history = json.loads(
        cluster.helm("history", RELEASE, "--namespace", namespace, "-o", "json").stdout
    )
    assert [(h["revision"], h["status"]) for h in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    assert history[-1]["description"] == "Rollback to 1"


def test_uninstall_leaves_nothing_behind(cluster: Cluster, everything: Release) -> None:
    namespace = everything.namespace
    secrets = set(referenced_secrets(everything.docs))
    done = cluster.helm(
        "uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "90s"
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not release_pods(cluster, namespace), what="the pods to go")
    # What the namespace had before the install: its default ServiceAccount, the cluster CA
    # ConfigMap, and the platform team's own Secrets.
    before = {
        ("ServiceAccount", "default"),
        ("ConfigMap", "kube-root-ca.crt"),
        *{("Secret", name) for name in secrets},
    }
    wait_equal(lambda: namespace_objects(cluster, namespace), before, what="nothing else")
    assert cluster.helm("status", RELEASE, "--namespace", namespace).returncode != 0
