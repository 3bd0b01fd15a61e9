"""The Helm chart: lint, schema-valid manifests, and what an operator relies on in them."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from bridge.config.receivers import SecretPaths, resolve, secret_paths
from bridge.config.settings import (
    DeadLetterSettings,
    ReceiverSettings,
    RoutingSettings,
    Settings,
    load_settings,
)
from deploy.kafka.localkafka import make_tls_material
from tests.deploy.toolbox import (
    ALERTS,
    CHART,
    CHART_ALERTS,
    CI_VALUES,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    REPO,
    Manifest,
    RenderError,
    bridge_container,
    env_of,
    find_tool,
    helm_template_args,
    kinds,
    only,
    receivers_yaml,
    render,
    run,
)

pytestmark = pytest.mark.deploy

# The chart's defaults do not render (a receiver's authentication must be chosen); the
# default-values.yaml scenario is the defaults with auth.method none written out.
VALUE_SETS: list[tuple[Path, ...]] = [(path,) for path in CI_VALUES]
VALUE_IDS = [path.stem for path in CI_VALUES]
DEFAULTS = (CHART / "ci" / "default-values.yaml",)
EVERYTHING_ON = (CHART / "ci" / "everything-on-values.yaml",)
# --set values for one receiver "alm" that accepts unauthenticated batches, said explicitly.
UNAUTHENTICATED = {"receivers[0].name": "alm", "receivers[0].auth.method": "none"}
SASL_SSL = (CHART / "ci" / "sasl-ssl-values.yaml",)
MTLS = (CHART / "ci" / "mtls-values.yaml",)
FULLNAME = f"{RELEASE}-alm-kafka-bridge"
SELECTOR = {"app.kubernetes.io/name": "alm-kafka-bridge", "app.kubernetes.io/instance": RELEASE}
SECRETS_DIR = PurePosixPath("/etc/alm-bridge/secrets")
CRD_GROUP = "monitoring.coreos.com/"
SECRET_LIKE_ENV = re.compile(r"PASSWORD|SECRET|CREDENTIAL|TOKEN", re.IGNORECASE)


def bridge_receivers(docs: list[Manifest]) -> dict[str, tuple[ReceiverSettings, SecretPaths]]:
    """The rendered receivers as the bridge reads them, with the files of their secrets."""
    loaded = receivers_yaml(docs)
    secrets_dir = Path(loaded["secrets_dir"])
    found = {}
    for item in loaded["receivers"]:
        spec = ReceiverSettings.model_validate(item)
        found[spec.name] = (spec, secret_paths(secrets_dir, spec.name, spec.auth))
    return found


@pytest.fixture(params=VALUE_SETS, ids=VALUE_IDS)
def values_files(request: pytest.FixtureRequest) -> tuple[Path, ...]:
    files: tuple[Path, ...] = request.param
    return files


def test_ci_values_cover_the_required_scenarios() -> None:
    assert {path.name for path in CI_VALUES} >= {
        "default-values.yaml",
        "everything-on-values.yaml",
        "sasl-ssl-values.yaml",
    }


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_helm_lint_strict(values_files: tuple[Path, ...], kube_version: str) -> None:
    args = [find_tool("helm"), "lint", "--strict", "--kube-version", kube_version, str(CHART)]
    for path in values_files:
        args += ["--values", str(path)]
    result = run(args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output
    assert "[ERROR]" not in output


def _validate_crd(doc: Manifest) -> list[str]:
    problems: list[str] = []
    spec = doc.get("spec", {})
    if doc["kind"] == "ServiceMonitor":
        if spec.get("selector", {}).get("matchLabels") != SELECTOR:
            problems.append("ServiceMonitor selector does not match the Service's labels")
        for endpoint in spec.get("endpoints", []):
            if not endpoint.get("port") or endpoint.get("path") != "/metrics":
                problems.append(f"ServiceMonitor endpoint {endpoint} lacks port or /metrics path")
        if not spec.get("endpoints"):
            problems.append("ServiceMonitor has no endpoints")
    elif doc["kind"] == "PrometheusRule":
        for group in spec.get("groups", []):
            for rule in group.get("rules", []):
                if not isinstance(rule.get("expr"), str) or not rule.get("alert"):
                    problems.append(f"PrometheusRule rule without alert/expr: {rule}")
        if not spec.get("groups"):
            problems.append("PrometheusRule has no groups")
    else:
        problems.append(f"unexpected custom resource {doc['kind']}")
    return problems


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_manifests_pass_kubernetes_schemas(
    values_files: tuple[Path, ...], kube_version: str
) -> None:
    import kubernetes_validate

    problems: list[str] = []
    docs = render(values_files, kube_version=kube_version)
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith(CRD_GROUP):
            problems += [f"{name}: {p}" for p in _validate_crd(doc)]
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_one_resource_per_template(values_files: tuple[Path, ...]) -> None:
    result = run(helm_template_args(values_files))
    assert result.returncode == 0, result.stderr
    sources = re.findall(r"^# Source: (\S+)$", result.stdout, flags=re.MULTILINE)
    assert sources
    assert len(sources) == len(set(sources)), sources


def test_optional_resources_are_off_by_default() -> None:
    assert kinds(render(set_values=UNAUTHENTICATED)) == {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
    }


def test_everything_on_renders_every_optional_resource() -> None:
    docs = render(EVERYTHING_ON)
    assert kinds(docs) >= {
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "Ingress",
    }
    assert "replicas" not in only(docs, "Deployment")["spec"], "the HPA owns the replica count"


def test_no_secret_values_in_manifests(values_files: tuple[Path, ...]) -> None:
    docs = render(values_files)
    assert "Secret" not in kinds(docs)
    container = bridge_container(docs)
    for name, item in env_of(container).items():
        if SECRET_LIKE_ENV.search(name):
            assert "value" not in item, f"{name} is inlined"
            assert "secretKeyRef" in item["valueFrom"], f"{name} is not read from a Secret"
    for spec, _ in bridge_receivers(docs).values():
        auth = spec.auth
        assert not any([auth.secrets, auth.credentials, auth.secret_envs, auth.credential_envs])


def _mounts_by_path(docs: list[Manifest]) -> dict[PurePosixPath, Manifest]:
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounted: dict[PurePosixPath, Manifest] = {}
    for mount in bridge_container(docs)["volumeMounts"]:
        mounted[PurePosixPath(mount["mountPath"])] = {"mount": mount, **volumes[mount["name"]]}
    return mounted


def _assert_secret_file(mounted: dict[PurePosixPath, Manifest], file: str) -> str:
    """The file is a key of a mounted, read-only Secret volume; returns the Secret's name."""
    path = PurePosixPath(file)
    assert path.parent in mounted, f"{file} is not under a mounted volume"
    volume = mounted[path.parent]
    assert "secret" in volume, f"{file} is not in a Secret volume"
    assert volume["mount"].get("readOnly") is True
    if "items" in volume["secret"]:
        assert path.name in {item["path"] for item in volume["secret"]["items"]}
    secret_name = volume["secret"]["secretName"]
    assert isinstance(secret_name, str)
    return secret_name


def test_every_referenced_secret_file_is_a_mounted_secret_key(
    values_files: tuple[Path, ...],
) -> None:
    docs = render(values_files)
    mounted = _mounts_by_path(docs)
    for name, (_, paths) in bridge_receivers(docs).items():
        for file in (*paths.secret_files, *paths.credential_files):
            assert PurePosixPath(file).parent == SECRETS_DIR / name
            _assert_secret_file(mounted, str(file))
    env = env_of(bridge_container(docs))
    for name in (
        "BRIDGE_KAFKA_SSL_CAFILE",
        "BRIDGE_KAFKA_SSL_CERTFILE",
        "BRIDGE_KAFKA_SSL_KEYFILE",
    ):
        if name in env:
            _assert_secret_file(mounted, env[name]["value"])


def test_sasl_ssl_secrets_come_from_existing_secrets() -> None:
    docs = render(SASL_SSL)
    env = env_of(bridge_container(docs))
    assert env["BRIDGE_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["BRIDGE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert env["BRIDGE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-bridge-credentials",
        "key": "password",
    }
    assert env["BRIDGE_KAFKA_SASL_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-bridge-credentials",
        "key": "username",
    }
    mounted = _mounts_by_path(docs)
    assert _assert_secret_file(mounted, env["BRIDGE_KAFKA_SSL_CAFILE"]["value"]) == "kafka-ca"
    receivers = bridge_receivers(docs)
    assert set(receivers) == {"prod", "emea", "sandbox"}
    assert [str(p) for p in receivers["prod"][1].secret_files] == [
        "/etc/alm-bridge/secrets/prod/signing-secret",
        "/etc/alm-bridge/secrets/prod/signing-secret-next",
    ]
    assert _assert_secret_file(mounted, str(receivers["emea"][1].secret_files[0])) == (
        "alm-emea-webhook"
    )
    assert _assert_secret_file(mounted, str(receivers["sandbox"][1].credential_files[0])) == (
        "alm-sandbox-webhook"
    )
    emea = receivers["emea"][0]
    assert emea.routing == RoutingSettings(
        topic_template="alm.emea.{event}", deny=["CI_STATS"], key="eventId"
    )
    assert emea.dead_letter == DeadLetterSettings(policy="reject")


def test_mutual_tls_mounts_ca_cert_and_key() -> None:
    docs = render(MTLS)
    env = env_of(bridge_container(docs))
    mounted = _mounts_by_path(docs)
    for name in (
        "BRIDGE_KAFKA_SSL_CAFILE",
        "BRIDGE_KAFKA_SSL_CERTFILE",
        "BRIDGE_KAFKA_SSL_KEYFILE",
    ):
        assert _assert_secret_file(mounted, env[name]["value"]) == "kafka-client-tls"
    assert "BRIDGE_KAFKA_SASL_PASSWORD" not in env


def test_https_serves_the_certificate_of_a_whole_secret_mount() -> None:
    docs = render(MTLS)
    container = bridge_container(docs)
    env = env_of(container)
    mounted = _mounts_by_path(docs)
    for name in ("BRIDGE_TLS_CERT_FILE", "BRIDGE_TLS_KEY_FILE"):
        assert _assert_secret_file(mounted, env[name]["value"]) == "webhook-tls"
    # A subPath mount would never see a renewal.
    assert not [m for m in container["volumeMounts"] if m.get("subPath")]
    off = env_of(bridge_container(render(DEFAULTS)))
    assert "BRIDGE_TLS_CERT_FILE" not in off


def test_metrics_on_the_https_port_are_scraped_over_https() -> None:
    sets = {"serviceMonitor.enabled": "true", "config.metricsPort": "0"}
    [endpoint] = only(render(MTLS, sets), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["scheme"] == "https"
    [endpoint] = only(render(EVERYTHING_ON), "ServiceMonitor")["spec"]["endpoints"]
    assert "scheme" not in endpoint, "metricsPort serves plain HTTP"
    refused = run(helm_template_args(MTLS, {"https.existingSecret": ""}))
    assert refused.returncode != 0
    assert "existingSecret" in refused.stderr


def test_the_canary_signs_with_its_receivers_secret_and_reads_kafka_like_the_bridge() -> None:
    docs = render(MTLS)
    [cron] = [d for d in docs if d["kind"] == "CronJob"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["canary", "https://alm.example.com/webhooks/alm"]
    secret_file = PurePosixPath(args[args.index("--secret-file") + 1])
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "signing-secret"]
    assert volume["secret"]["secretName"] == "alm-signed-webhook"
    assert [i["key"] for i in volume["secret"]["items"]] == [secret_file.name]
    assert args[args.index("--topic") + 1] == "alm.canary"
    bridge_kafka = {
        k: v for k, v in env_of(bridge_container(docs)).items() if k.startswith("BRIDGE_KAFKA_")
    }
    assert env_of(container) == bridge_kafka, "the canary reads Kafka as the bridge writes it"
    # The Service and the PDB select the bridge's pods only.
    assert not pod["metadata"]["labels"].items() >= SELECTOR.items()
    assert (
        pod["spec"]["securityContext"]
        == only(docs, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    )
    wrong = run(helm_template_args(MTLS, {"canary.receiver": "alm"}))
    assert wrong.returncode != 0
    assert "hmac receiver" in wrong.stderr


def test_probes_use_health_endpoints(values_files: tuple[Path, ...]) -> None:
    container = bridge_container(render(values_files))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    https = "BRIDGE_TLS_CERT_FILE" in env_of(container)
    scheme = {"scheme": "HTTPS"} if https else {}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", **scheme}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", **scheme}
    assert str(ports["http"]) == env_of(container)["BRIDGE_PORT"]["value"]


def test_pods_are_hardened(values_files: tuple[Path, ...]) -> None:
    docs = render(values_files)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]["memory"]
    service_accounts = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    assert all(sa["automountServiceAccountToken"] is False for sa in service_accounts)


def _prestop_seconds(container: Manifest) -> int:
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0
    match = re.fullmatch(r"import time; time\.sleep\((\d+)\)", hook["exec"]["command"][-1])
    assert match, hook
    assert hook["exec"]["command"][:2] == ["python", "-c"]
    return int(match.group(1))


def test_grace_period_covers_prestop_and_shutdown(values_files: tuple[Path, ...]) -> None:
    docs = render(values_files)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    container = bridge_container(docs)
    shutdown = float(env_of(container)["BRIDGE_SHUTDOWN_TIMEOUT_SECONDS"]["value"])
    prestop = _prestop_seconds(container)
    assert prestop > 0
    assert pod["terminationGracePeriodSeconds"] > shutdown + prestop


def test_the_fleet_topic_is_set_only_when_named() -> None:
    default = env_of(bridge_container(render(set_values=UNAUTHENTICATED)))
    assert not {n for n in default if n.startswith("BRIDGE_DEDUPE_FLEET")}
    values = {
        **UNAUTHENTICATED,
        "config.dedupeFleetTopic": "alm.dedupe.fleet",
        "config.dedupeFleetLoadTimeoutSeconds": "45",
    }
    env = env_of(bridge_container(render(set_values=values)))
    assert env["BRIDGE_DEDUPE_FLEET_TOPIC"]["value"] == "alm.dedupe.fleet"
    assert env["BRIDGE_DEDUPE_FLEET_LOAD_TIMEOUT_SECONDS"]["value"] == "45"


def test_prestop_hook_can_be_disabled() -> None:
    values = {**UNAUTHENTICATED, "lifecycle.preStopSleepSeconds": "0"}
    container = bridge_container(render(set_values=values))
    assert "lifecycle" not in container


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        ({"terminationGracePeriodSeconds": "20"}, "terminationGracePeriodSeconds (20)"),
        (
            {"config.shutdownTimeoutSeconds": "30", "lifecycle.preStopSleepSeconds": "5"},
            "terminationGracePeriodSeconds (30)",
        ),
        ({"receivers[0].name": "alm", "receivers[0].auth.method": "hmac"}, "auth.secretKeys"),
        ({"receivers[0].name": "alm", "receivers[0].auth.method": "basic"}, "credentialKeys"),
        (
            {"receivers[0].auth.method": "", "receivers[0].auth.secretKeys[0]": "signing-secret"},
            "auth.method hmac needs auth.existingSecret",
        ),
        ({"receivers[1].name": "alm"}, "used twice"),
        ({"ingress.enabled": "true"}, "allowUnauthenticated"),
        ({"kafka.securityProtocol": "SASL_SSL"}, "kafka.sasl.existingSecret"),
        (
            {
                "kafka.securityProtocol": "SSL",
                "kafka.tls.existingSecret": "ca",
                "kafka.tls.certKey": "c",
            },
            "go together",
        ),
        ({"kafka.tls.existingSecret": "ca"}, "use SSL or SASL_SSL"),
        ({"kafka.bootstrapServer": "typo:9092"}, "'bootstrapServer' not allowed"),
        (
            {"receivers[0].name": "alm", "receivers[0].auth.method": "signature"},
            "/receivers/0/auth/method",
        ),
        ({"receivers[0].name": "Not/A/Path"}, "/receivers/0/name"),
    ],
)
def test_invalid_values_stop_the_render(set_values: dict[str, str], message: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(set_values={**UNAUTHENTICATED, **set_values})
    assert message in str(caught.value)


def test_the_defaults_refuse_a_receiver_without_authentication() -> None:
    with pytest.raises(RenderError) as caught:
        render()
    assert (
        "receivers[alm]: no authentication is configured: set auth.existingSecret and "
        'auth.secretKeys (hmac, ALM\'s "Signature") or auth.credentialKeys (basic), or '
        "auth.method: none to accept unauthenticated batches deliberately"
    ) in str(caught.value)


SIGNING = {
    "receivers[0].auth.existingSecret": "alm-webhook",
    "receivers[0].auth.secretKeys[0]": "k",
}
CREDENTIALS = {
    "receivers[0].auth.existingSecret": "alm-webhook",
    "receivers[0].auth.credentialKeys[0]": "k",
}


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (
            {**SIGNING, "receivers[0].auth.method": "none"},
            "receivers[alm]: auth.method none contradicts auth.secretKeys",
        ),
        (
            {**CREDENTIALS, "receivers[0].auth.method": "none"},
            "receivers[alm]: auth.method none contradicts auth.credentialKeys",
        ),
        (
            {**SIGNING, "receivers[0].auth.method": "basic"},
            "receivers[alm]: auth.method basic contradicts auth.secretKeys",
        ),
        (
            {**CREDENTIALS, "receivers[0].auth.method": "hmac"},
            "receivers[alm]: auth.method hmac contradicts auth.credentialKeys",
        ),
        (
            {**SIGNING, "receivers[0].auth.credentialKeys[0]": "c"},
            "receivers[alm]: auth.secretKeys (hmac) and auth.credentialKeys (basic) are both set",
        ),
    ],
)
def test_a_method_that_contradicts_the_keys_stops_the_render(
    set_values: dict[str, str], message: str
) -> None:
    with pytest.raises(RenderError) as caught:
        render(set_values={"receivers[0].name": "alm", **set_values})
    assert message in str(caught.value)


@pytest.mark.parametrize(("keys", "method"), [(SIGNING, "hmac"), (CREDENTIALS, "basic")])
def test_the_keys_imply_the_method(
    keys: dict[str, str], method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(set_values={"receivers[0].name": "alm", **keys})
    (spec, _) = bridge_receivers(docs)["alm"]
    assert spec.auth.method == method
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"receivers": [{"name": "alm", "auth": _auth(keys)}]}))
    assert f"(auth: {method})" in _notes((values,), tmp_path / "chart")


def _auth(keys: dict[str, str]) -> dict[str, Any]:
    auth: dict[str, Any] = {}
    for key, value in keys.items():
        name = key.removeprefix("receivers[0].auth.")
        if name.endswith("[0]"):
            auth[name.removesuffix("[0]")] = [value]
        else:
            auth[name] = value
    return auth


def test_method_none_behind_the_ingress_needs_the_acknowledgement() -> None:
    ingress = {
        **UNAUTHENTICATED,
        "ingress.enabled": "true",
        "ingress.hosts[0]": "alm-bridge.example.com",
    }
    with pytest.raises(RenderError, match="allowUnauthenticated"):
        render(set_values=ingress)
    acknowledged = {**ingress, "receivers[0].auth.allowUnauthenticated": "true"}
    assert "Ingress" in kinds(render(set_values=acknowledged))


def test_prometheus_rule_is_the_alerts_file() -> None:
    assert CHART_ALERTS.read_bytes() == ALERTS.read_bytes(), (
        "helm/alm-kafka-bridge/files/alerts.yml must be a copy of deploy/prometheus/alerts.yml"
    )
    rule = only(render(EVERYTHING_ON), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_prometheus_rule_values_adjust_the_alerts() -> None:
    rule = only(
        render(
            EVERYTHING_ON,
            set_values={
                "prometheusRule.noEventsWindow": "12h",
                "prometheusRule.runbookBaseUrl": "https://git.example.com/alm/blob/main/",
                "prometheusRule.additionalRuleLabels.team": "learning",
            },
        ),
        "PrometheusRule",
    )
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    no_events = alerts["AlmBridgeNoEvents"]
    assert "[12h]" in no_events["expr"]
    assert "offset 12h" in no_events["expr"]
    assert "6h" not in no_events["expr"] + no_events["annotations"]["summary"]
    for alert in alerts.values():
        assert alert["annotations"]["runbook_url"].startswith(
            "https://git.example.com/alm/blob/main/docs/operations.md#"
        )
        assert alert["labels"]["team"] == "learning"
        assert alert["labels"]["severity"] in {"critical", "warning"}


def _checksum(docs: list[Manifest]) -> str:
    annotations = only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    checksum = annotations["checksum/config"]
    assert isinstance(checksum, str)
    return checksum


def test_config_checksum_follows_the_receivers_when_asked_to_roll() -> None:
    roll = {**UNAUTHENTICATED, "rollOnConfigChange": "true"}
    base = _checksum(render(set_values=roll))
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert _checksum(render(set_values={**roll, "replicaCount": "5"})) == base
    assert _checksum(render(set_values={**roll, "receivers[0].name": "other"})) != base
    accounts = {**roll, "receivers[0].accounts[0]": "1234"}
    assert _checksum(render(set_values=accounts)) != base


def test_a_rotation_changes_no_pod_by_default(tmp_path: Path) -> None:
    """Listing a new key of a receiver's Secret changes the ConfigMap, not the pods: they
    reload it live, and the whole Secret is mounted, so the new key is already there."""
    values = yaml.safe_load(EVERYTHING_ON[0].read_text())
    values.pop("rollOnConfigChange")
    both = json.loads(json.dumps(values))
    both["receivers"][0]["auth"]["secretKeys"] = ["signing-secret", "signing-secret-next"]

    def pod_and_config(chosen: dict[str, Any], folder: Path) -> tuple[Manifest, str]:
        folder.mkdir()
        path = folder / "values.yaml"
        path.write_text(yaml.safe_dump(chosen))
        docs = render((path,))
        pod = only(docs, "Deployment")["spec"]["template"]
        return pod, only(docs, "ConfigMap")["data"]["receivers.yaml"]

    before, config_before = pod_and_config(values, tmp_path / "one")
    after, config_after = pod_and_config(both, tmp_path / "two")
    assert config_after != config_before
    assert after == before
    assert "checksum/config" not in before["metadata"].get("annotations", {})


CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())


def test_labels_and_selectors(values_files: tuple[Path, ...]) -> None:
    docs = render(values_files)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, (doc["kind"], key)
        assert labels["helm.sh/chart"] == f"alm-kafka-bridge-{CHART_META['version']}"
        assert doc["metadata"]["namespace"] == NAMESPACE
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == SELECTOR
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= SELECTOR.items()
    assert only(docs, "Service")["spec"]["selector"] == SELECTOR
    for doc in docs:
        if doc["kind"] in {"PodDisruptionBudget", "ServiceMonitor"}:
            assert doc["spec"]["selector"]["matchLabels"] == SELECTOR
        if doc["kind"] == "NetworkPolicy":
            assert doc["spec"]["podSelector"]["matchLabels"] == SELECTOR


def test_service_monitor_scrapes_as_the_job_the_alerts_expect() -> None:
    docs = render(EVERYTHING_ON)
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert f'up{{job="{job}"}}' in ALERTS.read_text()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics", "config.metricsPort is set in everything-on"


def test_ingress_publishes_only_the_webhooks_over_tls() -> None:
    ingress = only(render(EVERYTHING_ON), "Ingress")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts <= {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["path"] == "/webhooks"
            assert path["pathType"] == "Prefix"
            assert path["backend"]["service"]["name"] == FULLNAME


def test_network_policy_limits_ingress_and_egress() -> None:
    policy = only(render(EVERYTHING_ON), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert all(rule.get("from") for rule in policy["ingress"])
    egress_ports = {port["port"] for rule in policy["egress"] for port in rule["ports"]}
    # DNS, the brokers, and the OTLP collector of config.otlpEndpoint.
    assert egress_ports == {53, 9092, 4318}
    without = only(render(EVERYTHING_ON, {"config.otlpEndpoint": ""}), "NetworkPolicy")
    assert {p["port"] for r in without["spec"]["egress"] for p in r["ports"]} == {53, 9092}


def _bridge_env(container: Manifest, root: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, item in env_of(container).items():
        value = item.get("value", "from-a-secret")
        env[name] = value.replace("/etc/alm-bridge", str(root))
    return env


def _materialize_secret_files(receivers: dict[str, Any], env: dict[str, str]) -> None:
    secrets_dir = Path(receivers["secrets_dir"])
    for item in receivers["receivers"]:
        spec = ReceiverSettings.model_validate(item)
        paths = secret_paths(secrets_dir, spec.name, spec.auth)
        for file in paths.secret_files:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text("a-signing-secret-for-tests\n")
        for file in paths.credential_files:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text("alm:a-password-for-tests\n")
    for name in (
        "BRIDGE_KAFKA_SSL_CAFILE",
        "BRIDGE_KAFKA_SSL_CERTFILE",
        "BRIDGE_KAFKA_SSL_KEYFILE",
    ):
        if name in env:
            Path(env[name]).parent.mkdir(parents=True, exist_ok=True)
            Path(env[name]).write_text("-----BEGIN CERTIFICATE-----\n")
    if "BRIDGE_TLS_CERT_FILE" in env:
        # The bridge loads the serving certificate with its configuration: a real one.
        cert, key = Path(env["BRIDGE_TLS_CERT_FILE"]), Path(env["BRIDGE_TLS_KEY_FILE"])
        material = cert.parent / "pki"
        make_tls_material(material)
        cert.write_bytes((material / "server.pem").read_bytes())
        key.write_bytes((material / "server.key").read_bytes())


def test_bridge_accepts_the_rendered_configuration(
    values_files: tuple[Path, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(values_files)
    env = _bridge_env(bridge_container(docs), tmp_path)
    unknown = {
        name
        for name in env
        if name.startswith("BRIDGE_")
        and name.removeprefix("BRIDGE_").lower() not in Settings.model_fields
    }
    assert not unknown, f"the chart sets variables the bridge does not read: {unknown}"
    config_text = only(docs, "ConfigMap")["data"]["receivers.yaml"]
    config_text = config_text.replace("/etc/alm-bridge", str(tmp_path))
    config_file = Path(env["BRIDGE_CONFIG_FILE"])
    config_file.parent.mkdir(parents=True)
    config_file.write_text(config_text)
    _materialize_secret_files(yaml.safe_load(config_text), env)
    for name in [name for name in os.environ if name.startswith("BRIDGE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    receivers = resolve(settings)
    rendered_names = [r["name"] for r in yaml.safe_load(config_text)["receivers"]]
    assert [r.name for r in receivers] == rendered_names


def _notes(values_files: tuple[Path, ...], tmp_path: Path) -> str:
    """NOTES.txt as `helm install` would print it, rendered through a probe template."""
    chart = tmp_path / "alm-kafka-bridge"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\ndata:\n"
        '  notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | toJson }}\n'
    )
    values = [
        chart / "ci" / path.name if path.parent == CHART / "ci" else path for path in values_files
    ]
    probe = ["--show-only", "templates/zz-notes-probe.yaml"]
    args = [*helm_template_args(values, chart=chart), *probe]
    result = run(args)
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["data"]["notes"]
    assert isinstance(notes, str)
    return notes


def test_notes_print_the_webhook_urls(tmp_path: Path) -> None:
    notes = _notes(SASL_SSL, tmp_path / "sasl")
    for name in ("prod", "emea", "sandbox"):
        assert f"https://webhooks.example.com/webhooks/{name}" in notes
    assert "WARNING" not in notes
    notes = _notes(DEFAULTS, tmp_path / "defaults")
    assert f"port-forward service/{FULLNAME} 8080:8080" in notes
    assert "http://127.0.0.1:8080/webhooks/alm" in notes
    assert 'receiver "alm" accepts unauthenticated requests' in notes
    assert "runbookBaseUrl" not in notes  # no PrometheusRule, no runbook links


def test_notes_say_when_runbook_links_are_relative(tmp_path: Path) -> None:
    assert "prometheusRule.runbookBaseUrl is empty" in _notes(EVERYTHING_ON, tmp_path)
    base = "https://git.example.com/platform/alm-kafka-bridge/-/blob/v1/"
    args = helm_template_args(EVERYTHING_ON, {"prometheusRule.runbookBaseUrl": base})
    rendered = run([*args, "--show-only", "templates/prometheusrule.yaml"])
    assert rendered.returncode == 0, rendered.stderr
    rule = yaml.safe_load(rendered.stdout)
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls
    assert all(url.startswith(f"{base}docs/operations.md#") for url in urls), urls


def _walk_schema(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of object blocks declaring their own properties but not closed."""
    open_blocks = []
    if "properties" in schema and schema.get("additionalProperties") is not False:
        open_blocks.append(path or "<root>")
    for key, sub in schema.get("properties", {}).items():
        open_blocks += _walk_schema(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        open_blocks += _walk_schema(schema["items"], f"{path}[]")
    return open_blocks


def test_values_schema_closes_every_block_of_ours() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert not _walk_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
    assert set(schema["properties"]) - set(values) <= {"global"}


_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?:- )?(?P<key>[A-Za-z][A-Za-z0-9]*):")


def test_every_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        if not match:
            continue
        block_start = number
        while block_start > 0 and lines[block_start - 1].strip().startswith("#"):
            block_start -= 1
        comment = lines[block_start].strip() if block_start < number else ""
        # helm-docs reads "# -- <description>", or "# <path> -- <description>" where the
        # key cannot carry its own comment (the first key of a list item).
        if not re.match(rf"# (?:-- (?:\(\w+\) )?|\S+ -- ){match['key']}\b", comment):
            undocumented.append(f"values.yaml:{number + 1}: {match['key']}")
    assert not undocumented, "\n".join(undocumented)


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert (
        chart["appVersion"]
        == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    )
    templates = sorted(p.name for p in (CHART / "templates").iterdir())
    assert templates == sorted(
        [
            "NOTES.txt",
            "_helpers.tpl",
            "canary-cronjob.yaml",
            "configmap.yaml",
            "deployment.yaml",
            "hpa.yaml",
            "ingress.yaml",
            "networkpolicy.yaml",
            "pdb.yaml",
            "prometheusrule.yaml",
            "service.yaml",
            "serviceaccount.yaml",
            "servicemonitor.yaml",
        ]
    )
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    defined = re.findall(r'define "([^"]+)"', helpers)
    assert defined
    assert all(name.startswith("alm-kafka-bridge.") for name in defined), defined


def test_the_schema_offers_exactly_what_the_bridge_accepts() -> None:
    from typing import get_args

    from pydantic import BaseModel
    from pydantic.alias_generators import to_snake

    from bridge.config.settings import AuthMethod, AuthSettings
    from bridge.core.auth import ALGORITHMS, ENCODINGS

    schema = json.loads((CHART / "values.schema.json").read_text())
    receiver = schema["properties"]["receivers"]["items"]["properties"]
    blocks: dict[str, type[BaseModel]] = {
        "auth": AuthSettings,
        "routing": RoutingSettings,
        "deadLetter": DeadLetterSettings,
    }
    for block, model in blocks.items():
        unknown = {to_snake(name) for name in receiver[block]["properties"]} - set(
            model.model_fields
        )
        assert not unknown, f"receivers[].{block} has fields the bridge rejects: {unknown}"
    assert set(receiver) - {"deadLetter"} <= set(ReceiverSettings.model_fields)

    def choices(model: type[BaseModel], field: str) -> list[str]:
        return list(get_args(model.model_fields[field].annotation))

    auth = receiver["auth"]["properties"]
    assert auth["algorithm"]["enum"] == ["", *ALGORITHMS]
    assert auth["encoding"]["enum"] == ["", *ENCODINGS]
    # Empty: the method the keys imply.
    assert auth["method"]["enum"] == ["", *get_args(AuthMethod)]
    assert choices(AuthSettings, "method") == [AuthMethod, type(None)]
    routing = receiver["routing"]["properties"]
    assert routing["unlisted"]["enum"] == choices(RoutingSettings, "unlisted")
    assert routing["key"]["enum"] == choices(RoutingSettings, "key")
    policy = receiver["deadLetter"]["properties"]["policy"]["enum"]
    assert policy == choices(DeadLetterSettings, "policy")
