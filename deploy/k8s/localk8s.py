"""Run a local Kubernetes control plane on 127.0.0.1, with simulated nodes, for tests and demos.

Standard library only (with the ``deploy`` package's own stdlib modules), because
``make k8s-up`` runs it before the virtualenv exists. From the repository root:

    python3 -m deploy.k8s.localk8s up|down|status|kubeconfig [--state-dir DIR]

Five processes, each a :class:`deploy.supervisor.Process` (started in its own session and
stopped only through the pid recorded in ``<state_dir>/<name>.pid``): etcd (Debian's
etcd-server), kube-apiserver, kube-controller-manager and kube-scheduler (built from the
published Kubernetes Go modules by scripts/ensure-tools.sh) and kwok, which plays the
kubelets of the fake nodes: pods are scheduled, admitted and reported Running, but no
container runs. Every port is a free port on 127.0.0.1 (deploy/ports.py); the certificates
are made by deploy/pki.py into the state dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from deploy.pki import Authority, PkiError, new_key, public_key
from deploy.ports import free_ports
from deploy.supervisor import Exited, Process, SupervisorError, http_ok, wait_until

HERE: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = HERE.parent.parent
HOST: Final = "127.0.0.1"
# Addresses the API server hands out (Service cluster IPs, kwok's pod IPs) are bookkeeping
# only: nothing here routes to them, and the tests never connect to them.
SERVICE_CIDR: Final = "10.96.0.0/16"
KUBERNETES_SERVICE_IP: Final = "10.96.0.1"
POD_CIDR: Final = "10.244.0.0/16"
# The nodes kwok manages carry this annotation; kwok ignores every other node.
KWOK_NODE_ANNOTATION: Final = ("kwok.x-k8s.io/node", "fake")
COMPONENTS: Final = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class LocalK8sError(RuntimeError):
    """The control plane could not be set up, started or stopped."""


def tools_bin() -> Path:
    root = os.environ.get("ALM_BRIDGE_TOOLS")
    base = Path(root) if root else Path.home() / ".cache" / "alm-bridge" / "tools"
    return base / "bin"


def find_binary(name: str) -> str:
    """``name`` from the tools cache (built by scripts/ensure-tools.sh), else from PATH."""
    candidate = tools_bin() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise LocalK8sError(
        f"{name} not found in {tools_bin()} or on PATH; run scripts/ensure-tools.sh"
    )


# The API server's serving certificate is good for these names.
APISERVER_NAMES: Final = (
    f"IP:{HOST}", f"IP:{KUBERNETES_SERVICE_IP}", "DNS:localhost", "DNS:kubernetes",
    "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)  # fmt: skip
CERT_DAYS: Final = 30

# Client certificates: file stem -> subject. The components get their own identities and
# the roles the API server bootstraps for them; kwok acts as the kubelets' stand-in with the
# admin identity (it writes every node's and pod's status).
_CLIENTS: Final = {
    "admin": "/O=system:masters/CN=kubernetes-admin",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
}


def make_pki(pki: Path) -> None:
    """CA, API server serving certificate, client certificates and service-account keys."""
    ca = Authority(pki, suffix="crt")
    ca.create("/CN=localk8s-ca", days=CERT_DAYS, server_names=APISERVER_NAMES)
    ca.issue("apiserver", subject="/CN=kube-apiserver", usage="server", days=CERT_DAYS)
    for name, subject in _CLIENTS.items():
        ca.issue(name, subject=subject, usage="client", days=CERT_DAYS)
    public_key(new_key(pki / "sa.key"), pki / "sa.pub")
    (pki / "complete").write_text("1\n")


def kubeconfig_text(server: str, pki: Path, user: str) -> str:
    # JSON is YAML: no YAML library needed.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localk8s",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "localk8s", "context": {"cluster": "localk8s", "user": user}}],
        "current-context": "localk8s",
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def pick(cls, apiserver: int | None = None) -> Self:
        ports = free_ports(6)
        if apiserver:
            ports[2] = apiserver
        return cls(*ports)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


class LocalK8s:
    """A control plane under ``state_dir``; ``stop()`` then ``start()`` keeps etcd's data."""

    def __init__(
        self, state_dir: Path, *, apiserver_port: int | None = None, nodes: int = 2
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.apiserver_port = apiserver_port
        self.nodes = nodes
        self._processes = {
            name: Process(
                name,
                log=self.log_file(name),
                pid_file=self.pid_file(name),
                identity=self._identity(name),
            )
            for name in COMPONENTS
        }
        self._started: list[Process] = []

    # Paths ---------------------------------------------------------------------------

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig: ``KUBECONFIG=<this> kubectl get nodes``, ``helm install``."""
        return self.state_dir / "kubeconfig"

    @property
    def ports_file(self) -> Path:
        return self.state_dir / "ports.json"

    def pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    @property
    def server(self) -> str:
        return f"https://{HOST}:{self.ports().apiserver}"

    def ports(self) -> Ports:
        try:
            return Ports(**json.loads(self.ports_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise LocalK8sError(f"no ports recorded in {self.ports_file}") from exc

    # Process bookkeeping -------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The recorded pid if that process is alive and still runs this component."""
        return self._processes[name].pid()

    def _identity(self, name: str) -> Callable[[Sequence[str]], bool]:
        state_dir = str(self.state_dir)

        def runs_component(argv: Sequence[str]) -> bool:
            # Each component's executable is named like the component, and our processes
            # name the state dir on their command line; a recycled pid does not.
            return Path(argv[0]).name == name and any(state_dir in arg for arg in argv)

        return runs_component

    def running(self) -> dict[str, int]:
        return {name: pid for name in COMPONENTS if (pid := self.pid(name)) is not None}

    def is_running(self) -> bool:
        return len(self.running()) == len(COMPONENTS)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self._processes[name].log_tail(lines)

    def _spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        process = self._processes[name]
        process.start(args, env={**os.environ, **(env or {})}, cwd=self.state_dir, banner=True)
        self._started.append(process)

    # Lifecycle -----------------------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> None:
        """Start every component and wait until the nodes are Ready; no-op if running."""
        if self.is_running():
            return
        if self.running():
            self.stop()
        binaries = {name: find_binary(name) for name in COMPONENTS}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not (self.pki / "complete").is_file():
            shutil.rmtree(self.pki, ignore_errors=True)
            try:
                make_pki(self.pki)
            except PkiError as exc:
                raise LocalK8sError(str(exc)) from exc
        ports = Ports.pick(self.apiserver_port)
        self.ports_file.write_text(ports.to_json())
        server = f"https://{HOST}:{ports.apiserver}"
        kubeconfigs = {}
        for user in ("admin", *(_CLIENTS.keys() - {"admin"})):
            path = self.state_dir / f"{user}.kubeconfig"
            path.write_text(kubeconfig_text(server, self.pki, user))
            path.chmod(0o600)
            kubeconfigs[user] = path
        self.kubeconfig.write_text(kubeconfig_text(server, self.pki, "admin"))
        self.kubeconfig.chmod(0o600)
        deadline = time.monotonic() + timeout_s
        try:
            self._start_etcd(binaries["etcd"], ports)
            self._wait(
                deadline, "etcd", lambda: http_ok(f"http://{HOST}:{ports.etcd_client}/health", 2.0)
            )
            self._start_apiserver(binaries["kube-apiserver"], ports)
            self._wait(deadline, "kube-apiserver", lambda: self._api_ok("/readyz"))
            self._start_controller_manager(
                binaries["kube-controller-manager"], ports, kubeconfigs["controller-manager"]
            )
            self._start_scheduler(binaries["kube-scheduler"], ports, kubeconfigs["scheduler"])
            self._start_kwok(binaries["kwok"], ports)
            self._create_nodes()
            self._wait(deadline, "nodes Ready", self._nodes_ready)
            # Namespaces get their default ServiceAccount from the controller manager; pods
            # cannot be created before it exists.
            self._wait(
                deadline,
                "default ServiceAccount",
                lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            )
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM each component's process group (reverse start order), SIGKILL stragglers."""
        for name in reversed(COMPONENTS):
            try:
                self._processes[name].stop(timeout_s)
            except SupervisorError as exc:
                raise LocalK8sError(str(exc)) from exc
        self._started.clear()

    def _wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        """Until ``ready()``; a started component that exits ends the wait."""
        try:
            wait_until(ready, deadline=deadline, what=what, watch=self._started, interval_s=0.25)
        except Exited as exc:
            name = exc.process.name
            raise LocalK8sError(f"{name} exited:\n{self.log_tail(name)}") from None
        except SupervisorError as exc:
            raise LocalK8sError(str(exc)) from None

    # Components ----------------------------------------------------------------------

    def _start_etcd(self, etcd: str, ports: Ports) -> None:
        client = f"http://{HOST}:{ports.etcd_client}"
        peer = f"http://{HOST}:{ports.etcd_peer}"
        self._spawn(
            "etcd",
            [
                etcd,
                "--name=localk8s",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=localk8s={peer}",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self, binary: str, ports: Ports) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                binary,
                f"--etcd-servers=http://{HOST}:{ports.etcd_client}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={ports.apiserver}",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                # A loopback address is not a valid Endpoints address: the `kubernetes`
                # Service keeps no endpoints instead of logging an error every 10 s.
                "--endpoint-reconciler-type=none",
                # Streamed lists need etcd's progress notifications, which Debian's etcd 3.4
                # lacks: kwok's newer client-go asked for them anyway, its watches kept
                # ending, and pods waited tens of seconds to be reported Running or gone.
                # Refused up front, clients fall back to plain LIST and WATCH.
                "--feature-gates=WatchList=false",
                "--v=1",
            ],
        )

    def _start_controller_manager(self, binary: str, ports: Ports, kubeconfig: Path) -> None:
        pki = self.pki
        self._spawn(
            "kube-controller-manager",
            [
                binary,
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={HOST}",
                f"--secure-port={ports.controller_manager}",
                f"--cert-dir={self.state_dir / 'controller-manager-certs'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Pod logs and status are simulated: a HorizontalPodAutoscaler finds no
                # metrics API, keeps minReplicas and says so in its conditions.
                "--horizontal-pod-autoscaler-sync-period=5s",
                "--v=1",
            ],
        )

    def _start_scheduler(self, binary: str, ports: Ports, kubeconfig: Path) -> None:
        self._spawn(
            "kube-scheduler",
            [
                binary,
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={HOST}",
                f"--secure-port={ports.scheduler}",
                f"--cert-dir={self.state_dir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def _start_kwok(self, binary: str, ports: Ports) -> None:
        key, value = KWOK_NODE_ANNOTATION
        self._spawn(
            "kwok",
            [
                binary,
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                f"--cidr={POD_CIDR}",
                f"--server-address={HOST}:{ports.kwok}",
            ],
        )

    def _create_nodes(self) -> None:
        key, value = KWOK_NODE_ANNOTATION
        for index in range(self.nodes):
            name = f"kwok-node-{index}"
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "topology.kubernetes.io/zone": f"zone-{'abc'[index % 3]}",
                    },
                },
                "spec": {},
                "status": {
                    "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                    "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                },
            }
            status, body = self.api("POST", "/api/v1/nodes", node)
            if status not in (201, 409):
                raise LocalK8sError(f"creating node {name}: HTTP {status} {body[:500]!r}")

    def _nodes_ready(self) -> bool:
        status, body = self.api("GET", "/api/v1/nodes")
        if status != 200:
            return False
        items = json.loads(body)["items"]
        ready = [
            node
            for node in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= self.nodes

    # API access (admin client certificate) ----------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def api(
        self, method: str, path: str, body: object | None = None, *, timeout_s: float = 10.0
    ) -> tuple[int, bytes]:
        """One request as the admin; returns (HTTP status, body). Connection errors: 0."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - https to our own server
            self.server + path, data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, context=self._ssl_context(), timeout=timeout_s
            ) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except (OSError, ssl.SSLError):
            return 0, b""

    def _api_ok(self, path: str) -> bool:
        return self.api("GET", path, timeout_s=3.0)[0] == 200

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("K8S_STATE_DIR") or REPO_ROOT / ".local" / "k8s"),
    )
    common.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("K8S_API_PORT") or 0) or None,
        help="API server port (default: K8S_API_PORT, else a free port)",
    )
    common.add_argument("--nodes", type=int, default=2, help="simulated nodes (kwok)")
    common.add_argument("--timeout", type=float, default=180.0, help="seconds (up)")
    parser = argparse.ArgumentParser(
        prog="python3 -m deploy.k8s.localk8s",
        description="A local Kubernetes control plane with simulated nodes on 127.0.0.1.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", parents=[common], help="start it; prints the kubeconfig path")
    sub.add_parser("down", parents=[common], help="stop it (etcd's data stays)")
    sub.add_parser("status", parents=[common], help="exit 0 if every component runs")
    sub.add_parser("kubeconfig", parents=[common], help="print the admin kubeconfig's path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    k8s = LocalK8s(args.state_dir, apiserver_port=args.port, nodes=args.nodes)
    try:
        if args.command == "up":
            if k8s.is_running():
                print(f"already running: {k8s.server}", file=sys.stderr)
            else:
                started = time.monotonic()
                k8s.start(timeout_s=args.timeout)
                print(
                    f"control plane up in {time.monotonic() - started:.1f}s at {k8s.server}, "
                    f"{args.nodes} kwok nodes; logs in {k8s.logs_dir}",
                    file=sys.stderr,
                )
            print(f"export KUBECONFIG={k8s.kubeconfig}")
        elif args.command == "down":
            k8s.stop()
            print("control plane stopped", file=sys.stderr)
        elif args.command == "status":
            running = k8s.running()
            for name in COMPONENTS:
                state = f"pid {running[name]}" if name in running else "not running"
                print(f"{name:24} {state}")
            return 0 if k8s.is_running() else 1
        elif args.command == "kubeconfig":
            print(k8s.kubeconfig)
    except LocalK8sError as exc:
        print(f"localk8s: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
