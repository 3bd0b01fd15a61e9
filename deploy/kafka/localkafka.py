"""Run Apache Kafka (KRaft) on 127.0.0.1 from Maven-resolved jars: one node, or a cluster.

It runs in the project's virtualenv (the Makefile's ``make kafka-up`` installs the
service's dependencies first), from the repository root:

    .venv/bin/python -m deploy.kafka.localkafka up|down|status|node|run|classpath [--port N]

and the tests and the benchmark import it as ``deploy.kafka.localkafka``. Its readiness
probe asks the broker with aiokafka's connection, like any client.

Each broker is a :class:`deploy.supervisor.Process`: started in its own process group and
only ever stopped through the pid recorded in ``<state_dir>/kafka.pid``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from deploy.pki import Authority, PkiError
from deploy.ports import free_ports, port_free
from deploy.supervisor import Exited, Process, SupervisorError, log_tail

HERE: Final = Path(__file__).resolve().parent
POM: Final = HERE / "pom.xml"
LOG4J_CONFIG: Final = HERE / "log4j2.yaml"
TOPIC_POLICY_SOURCE: Final = HERE / "policy" / "MaxPartitionsPolicy.java"
TOPIC_POLICY_CLASS: Final = "localkafka.MaxPartitionsPolicy"
REPO_ROOT: Final = HERE.parent.parent
HOST: Final = "127.0.0.1"

MARKER_NAME: Final = ".complete"
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
STANDARD_AUTHORIZER: Final = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# The principal of every PLAINTEXT connection, the broker's own to its controller included.
ANONYMOUS: Final = "User:ANONYMOUS"
# Credentials end up inside JAAS strings, properties files and StorageTool's
# bracketed --add-scram syntax; a plain charset avoids three layers of escaping.
_CREDENTIAL_RE: Final = re.compile(r"[A-Za-z0-9._~-]+")


class LocalKafkaError(RuntimeError):
    """The local broker could not be set up, started or stopped."""


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version the pom resolves (its ``kafka.version`` property)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)  # noqa: S314
    if node is None or not node.text:
        raise LocalKafkaError(f"{pom} has no kafka.version property")
    return node.text.strip()


def default_jars_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "alm-bridge" / f"kafka-{kafka_version()}" / "jars"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _jars_complete(jars_dir: Path) -> bool:
    marker = jars_dir / MARKER_NAME
    return marker.is_file() and marker.read_text().strip() == _pom_digest()


def _has_kafka_jar(jars_dir: Path) -> bool:
    return any(jars_dir.glob("kafka_2.13-*.jar"))


def ensure_jars(jars_dir: Path | None = None, *, timeout_s: float = 900.0) -> Path:
    """Resolve the broker's runtime jars into ``jars_dir`` once; later calls reuse them.

    The marker file holds the pom's digest, so editing the pom re-resolves. Maven copies
    into a sibling temporary directory that is renamed into place, so an interrupted run
    never leaves a directory that looks complete.
    """
    explicit = jars_dir is not None
    target = (jars_dir or default_jars_dir()).resolve()
    if _jars_complete(target):
        return target
    if explicit and _has_kafka_jar(target):
        # A directory the user filled (e.g. a Kafka distribution's libs/) is taken as is.
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("Maven (mvn) is needed once to fetch the Kafka jars; not on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if _jars_complete(target):
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            cmd = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ]
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=timeout_s, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise LocalKafkaError(f"mvn did not finish within {timeout_s:.0f}s") from exc
            if done.returncode != 0 or not _has_kafka_jar(staging):
                output = (done.stdout + done.stderr).strip()[-4000:]
                raise LocalKafkaError(f"mvn failed ({done.returncode}):\n{output}")
            (staging / MARKER_NAME).write_text(_pom_digest() + "\n")
            if target.exists():
                if any(target.iterdir()) and not (target / MARKER_NAME).exists():
                    raise LocalKafkaError(f"{target} exists, is not empty and is not ours")
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def classpath(jars_dir: Path) -> str:
    """An explicit classpath (no ``dir/*`` wildcard, so shells cannot glob it)."""
    return os.pathsep.join(str(p) for p in sorted(jars_dir.glob("*.jar")))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def new_cluster_id() -> str:
    """A Kafka ``Uuid`` string, as ``StorageTool random-uuid`` prints it, without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def broker_ready(host: str, port: int, *, timeout_s: float = 2.0) -> bool:
    """True once the broker answers ApiVersions and lists itself in Metadata.

    A KRaft broker only processes requests after it has caught up with the metadata log
    and been unfenced, so an answer here means clients can produce. Blocking, like
    :meth:`LocalKafka.start`, even when called from a coroutine.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_broker_ready(host, port, timeout_s))
    # Inside a running event loop (a test's coroutine): the probe gets a loop of its own.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(_broker_ready(host, port, timeout_s))).result()


async def _broker_ready(host: str, port: int, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            # create_conn asks for the broker's ApiVersions before it returns.
            conn = await create_conn(
                host, port, client_id="localkafka", request_timeout_ms=int(timeout_s * 1000)
            )
            try:
                metadata = await conn.send(MetadataRequest([]))
            finally:
                conn.close()
    except (OSError, TimeoutError, KafkaError):
        return False
    return len(metadata.brokers) > 0


def issue_certificate(
    tls_dir: Path, name: str, *, cn: str = "localhost", extensions: str = "server_ext"
) -> tuple[Path, Path]:
    """A new key and certificate ``<name>.key``/``<name>.pem`` signed by the CA in ``tls_dir``.

    ``server_ext`` certificates are for 127.0.0.1 and localhost (``client_ext``: client
    certificates). Returns (certificate, key).
    """
    try:
        return Authority(tls_dir).issue(
            name, subject=f"/CN={cn}", usage="client" if extensions == "client_ext" else "server"
        )
    except PkiError as exc:
        raise LocalKafkaError(str(exc)) from exc


def make_tls_material(tls_dir: Path) -> None:
    """A throw-away CA plus a server cert for 127.0.0.1/localhost and a client cert (PEM)."""
    try:
        Authority(tls_dir).create("/CN=alm-bridge local Kafka CA", days=3650)
    except PkiError as exc:
        raise LocalKafkaError(str(exc)) from exc
    issue_certificate(tls_dir, "server", cn="localhost", extensions="server_ext")
    issue_certificate(tls_dir, "client", cn="client", extensions="client_ext")
    # Kafka's PEM key store wants the PKCS#8 key and the chain in one file.
    keystore = tls_dir / "server-keystore.pem"
    keystore.write_text(
        (tls_dir / "server.key").read_text()
        + (tls_dir / "server.pem").read_text()
        + (tls_dir / "ca.pem").read_text()
    )
    for path in tls_dir.iterdir():
        path.chmod(0o600)


class LocalKafka:
    """One KRaft broker+controller on 127.0.0.1, its data and logs under ``state_dir``.

    ``stop()`` then ``start()`` on the same state dir keeps all records. SCRAM users are
    written when the storage is formatted, i.e. on the first start of a state dir only;
    PLAIN users live in server.properties and follow every start.

    With ``authorizer=True`` the broker runs Kafka's ``StandardAuthorizer``: a SASL user may
    only do what an ACL allows (add them with :meth:`acls`), except the ``super_users``. The
    PLAINTEXT listener stays the admin side: its principal, ``User:ANONYMOUS``, is the
    broker's own towards its controller and therefore always a super user.
    ``broker_properties`` are written last into server.properties, over the defaults (e.g.
    ``{"auto.create.topics.enable": "false"}``).

    ``topic_policy_max_partitions=N`` installs a create-topic policy
    (``policy/MaxPartitionsPolicy.java``, compiled with ``javac`` on first start) that
    refuses any topic of more than N partitions with ``PolicyViolationException``.
    """

    def __init__(
        self,
        *,
        port: int = 9092,
        controller_port: int | None = None,
        state_dir: Path,
        jars_dir: Path | None = None,
        heap: str = "512m",
        sasl_plaintext_port: int | None = None,
        sasl_ssl_port: int | None = None,
        ssl_port: int | None = None,
        scram_users: Mapping[str, str] | None = None,
        plain_users: Mapping[str, str] | None = None,
        authorizer: bool = False,
        super_users: Sequence[str] = (),
        broker_properties: Mapping[str, str] | None = None,
        topic_policy_max_partitions: int | None = None,
        node_id: int = 1,
        voters: Mapping[int, int] | None = None,
        cluster_id: str | None = None,
        internal_port: int | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.state_dir = Path(state_dir).resolve()
        self._jars_dir_arg = jars_dir
        self.heap = heap
        self.sasl_plaintext_port = sasl_plaintext_port
        self.sasl_ssl_port = sasl_ssl_port
        self.ssl_port = ssl_port
        self.scram_users: dict[str, str] = dict(scram_users or {})
        self.plain_users: dict[str, str] = dict(plain_users or {})
        for name, password in (*self.scram_users.items(), *self.plain_users.items()):
            if not (_CREDENTIAL_RE.fullmatch(name) and _CREDENTIAL_RE.fullmatch(password)):
                raise ValueError(
                    f"user {name!r}: names and passwords must match {_CREDENTIAL_RE.pattern}"
                )
        self.authorizer = authorizer
        self.super_users: tuple[str, ...] = tuple(super_users)
        for name in self.super_users:
            if not _CREDENTIAL_RE.fullmatch(name):
                raise ValueError(f"super user {name!r}: names must match {_CREDENTIAL_RE.pattern}")
        if self.super_users and not authorizer:
            raise ValueError("super_users need authorizer=True")
        self.broker_properties: dict[str, str] = dict(broker_properties or {})
        for key, value in self.broker_properties.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", key) or "\n" in value:
                raise ValueError(f"broker property {key!r}={value!r} cannot be written as is")
        if topic_policy_max_partitions is not None and topic_policy_max_partitions < 1:
            raise ValueError("topic_policy_max_partitions must be at least 1")
        self.topic_policy_max_partitions = topic_policy_max_partitions
        if not re.fullmatch(r"\d+[kKmMgG]?", heap):
            raise ValueError(f"heap {heap!r} is not a JVM size such as 512m")
        self.node_id = node_id
        self.voters: dict[int, int] = dict(voters or {})
        if self.voters and self.voters.get(node_id) != self.controller_port:
            raise ValueError(f"voters must list node {node_id} at its controller port")
        if self.voters and cluster_id is None:
            raise ValueError("the nodes of a cluster share one cluster_id")
        self.cluster_id = cluster_id
        self.internal_port = internal_port
        self.advertised_port = advertised_port
        self._process = Process(
            "Kafka", log=self.console_log, pid_file=self.pid_file, identity=self._runs_this_broker
        )

    # Paths and addresses -------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def policy_classes_dir(self) -> Path:
        return self.state_dir / "policy-classes"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kafka.pid"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def server_log(self) -> Path:
        """The broker's own log (log4j2)."""
        return self.logs_dir / "server.log"

    @property
    def console_log(self) -> Path:
        """The JVM's stdout/stderr: start-up failures that happen before logging works."""
        return self.logs_dir / "kafka.out"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def client_cert_file(self) -> Path:
        return self.tls_dir / "client.pem"

    @property
    def client_key_file(self) -> Path:
        return self.tls_dir / "client.key"

    @property
    def jars_dir(self) -> Path:
        return (self._jars_dir_arg or default_jars_dir()).resolve()

    @property
    def bootstrap(self) -> str:
        """The PLAINTEXT address clients are told to use (a proxy's, if one is in front)."""
        return f"{HOST}:{self.advertised_port or self.port}"

    @property
    def direct_bootstrap(self) -> str:
        """The PLAINTEXT address the broker itself listens on."""
        return f"{HOST}:{self.port}"

    def recorded_bootstrap(self) -> str | None:
        """The PLAINTEXT address in the last written server.properties, if any."""
        try:
            text = self.properties_file.read_text()
        except OSError:
            return None
        found = re.search(r"^advertised\.listeners=.*?PLAINTEXT://([^,\s]+)", text, re.M)
        return found.group(1) if found else None

    @property
    def sasl_plaintext_bootstrap(self) -> str:
        return self._address("SASL_PLAINTEXT", self.sasl_plaintext_port)

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return self._address("SASL_SSL", self.sasl_ssl_port)

    @property
    def ssl_bootstrap(self) -> str:
        return self._address("SSL", self.ssl_port)

    def _address(self, listener: str, port: int | None) -> str:
        if port is None:
            raise LocalKafkaError(f"this broker has no {listener} listener")
        return f"{HOST}:{port}"

    @property
    def _uses_tls(self) -> bool:
        return self.sasl_ssl_port is not None or self.ssl_port is not None

    def _listeners(self) -> dict[str, int]:
        listeners = {"PLAINTEXT": self.port}
        if self.internal_port is not None:
            listeners["INTERNAL"] = self.internal_port
        for name, port in (
            ("SASL_PLAINTEXT", self.sasl_plaintext_port),
            ("SASL_SSL", self.sasl_ssl_port),
            ("SSL", self.ssl_port),
        ):
            if port is not None:
                listeners[name] = port
        return listeners

    # Process state -------------------------------------------------------------------

    def pid(self) -> int | None:
        """The recorded pid if that process is alive and is this state dir's broker."""
        return self._process.pid()

    def _runs_this_broker(self, argv: Sequence[str]) -> bool:
        return "kafka.Kafka" in argv and str(self.properties_file) in argv

    def is_running(self) -> bool:
        return self.pid() is not None

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.console_log, self.server_log):
            text = log_tail(path, lines)
            if text:
                parts.append(f"--- {path} ---\n{text}")
        return "\n".join(parts) or "(no log output)"

    # Kafka's own tools ---------------------------------------------------------------

    def run_tool(self, main_class: str, *args: str, timeout_s: float = 120.0) -> str:
        """Run one of Kafka's command-line tools from the jars and return its stdout.

        Its log goes to ``logs/tools/server.log``, apart from the broker's.
        """
        tools_logs = self.logs_dir / "tools"
        tools_logs.mkdir(parents=True, exist_ok=True)
        cmd = [
            _java(),
            "-Xmx256m",
            # A short-lived JVM: the C1 compiler alone starts it faster.
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={tools_logs}",
            "-cp",
            classpath(self.ensure_jars()),
            main_class,
            *args,
        ]
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(f"{main_class} did not finish within {timeout_s:g}s") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-4000:]
            raise LocalKafkaError(f"{main_class} failed ({done.returncode}):\n{output}")
        return done.stdout

    def acls(self, *args: str, timeout_s: float = 120.0) -> str:
        """``kafka-acls`` through the PLAINTEXT listener, whose principal is a super user.

        For example ``acls("--add", "--allow-principal", "User:bob", "--operation", "Write",
        "--topic", "orders")``; needs ``authorizer=True``.
        """
        if not self.authorizer:
            raise LocalKafkaError("this broker runs without an authorizer; ACLs mean nothing")
        return self.run_tool(
            "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server",
            self.bootstrap,
            *args,
            timeout_s=timeout_s,
        )

    # Lifecycle -----------------------------------------------------------------------

    def ensure_jars(self) -> Path:
        return ensure_jars(self._jars_dir_arg)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the broker and wait until clients can use it; no-op if already running.

        A node of a cluster is ready only once a majority of the controller quorum runs:
        start the first nodes of a cluster with :meth:`launch`, then :meth:`wait_ready`.
        """
        if self.is_running():
            return
        self.launch()
        self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Start the JVM without waiting for it to be ready; no-op if already running."""
        if self.is_running():
            return
        jars = self.ensure_jars()
        java = _java()
        for name, port in {**self._listeners(), "CONTROLLER": self.controller_port}.items():
            if not port_free(port):
                raise LocalKafkaError(f"{name} port {port} on {HOST} is already in use")
        for directory in (self.state_dir, self.data_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if self._uses_tls and not (self.tls_dir / "server-keystore.pem").is_file():
            make_tls_material(self.tls_dir)
        self.properties_file.write_text(self._server_properties())
        self.properties_file.chmod(0o600)
        cp = classpath(jars)
        if self.topic_policy_max_partitions is not None:
            # Before formatting too: the broker's config loads the policy class when parsed.
            cp = os.pathsep.join([str(self._compile_topic_policy(jars)), cp])
        if not (self.data_dir / "meta.properties").is_file():
            self._format(java, cp)

        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(self.properties_file),
        ]
        self._process.start(cmd, cwd=self.state_dir, banner=True)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the launched broker serves clients; stop it if it does not in time."""
        try:
            self._process.wait_until(
                lambda: broker_ready(HOST, self.port, timeout_s=1.0), timeout_s, what="Kafka"
            )
        except Exited as exc:
            self._process.stop()  # nothing runs: only the pid file goes
            if exc.code is None:
                raise LocalKafkaError("Kafka is not running") from None
            raise LocalKafkaError(
                f"Kafka exited with status {exc.code}:\n{self.log_tail()}"
            ) from None
        except SupervisorError:
            tail = self.log_tail()
            self.stop()
            raise LocalKafkaError(f"Kafka was not ready within {timeout_s:g}s:\n{tail}") from None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the broker's process group, SIGKILL it after ``timeout_s``; idempotent."""
        try:
            self._process.stop(timeout_s)
        except SupervisorError as exc:
            raise LocalKafkaError(str(exc)) from exc

    def terminate(self) -> None:
        """SIGTERM the broker's process group (thawed first), without waiting."""
        self._process.terminate()

    def kill(self) -> None:
        """SIGKILL the broker's process group (a crash: no controlled shutdown); idempotent."""
        try:
            self._process.kill()
        except SupervisorError as exc:
            raise LocalKafkaError(str(exc)) from exc

    def freeze(self) -> None:
        """SIGSTOP the broker's process group: it keeps its sockets but answers nothing."""
        if self.pid() is None:
            raise LocalKafkaError("Kafka is not running")
        self._process.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the broker's process group after :meth:`freeze`."""
        self._process.signal(signal.SIGCONT)

    def frozen(self) -> bool:
        """Whether the broker's JVM is stopped by a signal (state T in /proc)."""
        return self._process.frozen()

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

    def _compile_topic_policy(self, jars: Path) -> Path:
        """The policy's class directory, compiled against the broker's own jars once."""
        out = self.policy_classes_dir
        digest_file = out / ".source-sha256"
        digest = hashlib.sha256(TOPIC_POLICY_SOURCE.read_bytes()).hexdigest()
        if digest_file.is_file() and digest_file.read_text().strip() == digest:
            return out
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        cmd = [_javac(), "-d", str(out), "-cp", classpath(jars), str(TOPIC_POLICY_SOURCE)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-4000:]
            raise LocalKafkaError(f"javac failed ({done.returncode}):\n{output}")
        digest_file.write_text(digest + "\n")
        return out

    # Configuration -------------------------------------------------------------------

    def _format(self, java: str, cp: str) -> None:
        cmd = [
            java,
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            cp,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self.cluster_id or new_cluster_id(),
            "--config",
            str(self.properties_file),
        ]
        if not self.voters:
            # One node: a dynamic quorum of itself. A cluster's static quorum is written in
            # controller.quorum.voters, which every node reads at start.
            cmd.append("--standalone")
        for name, password in sorted(self.scram_users.items()):
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                cmd += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            # A half-formatted directory would be taken as formatted next time.
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            output = (done.stdout + done.stderr).strip()[-4000:]
            raise LocalKafkaError(f"StorageTool format failed ({done.returncode}):\n{output}")

    def _server_properties(self) -> str:
        listeners = self._listeners()
        advertised = dict(listeners)
        if self.advertised_port is not None:
            advertised["PLAINTEXT"] = self.advertised_port
        quorum = (
            {
                "controller.quorum.voters": ",".join(
                    f"{node}@{HOST}:{port}" for node, port in sorted(self.voters.items())
                )
            }
            if self.voters
            else {"controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}"}
        )
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.listener.names": "CONTROLLER",
            **quorum,
            "listeners": ",".join(
                [f"{n}://{HOST}:{p}" for n, p in listeners.items()]
                + [f"CONTROLLER://{HOST}:{self.controller_port}"]
            ),
            "advertised.listeners": ",".join(f"{n}://{HOST}:{p}" for n, p in advertised.items()),
            "listener.security.protocol.map": ",".join(
                f"{n}:{n}" for n in ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
            )
            + ",INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            # Replication on a listener of its own, so that a client listener behind a
            # fault proxy can be cut without cutting the brokers off from each other.
            "inter.broker.listener.name": "INTERNAL" if "INTERNAL" in listeners else "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            # One partition: a fresh consumer group does not wait for 50 to be created.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Close connections with bad credentials at once rather than after 100 ms, so a
            # rejected client's TLS close completes before a short-lived event loop ends.
            "connection.failed.authentication.delay.ms": "0",
        }
        sasl = [n for n in ("SASL_PLAINTEXT", "SASL_SSL") if n in listeners]
        plain_jaas = "".join(f' user_{u}="{p}"' for u, p in sorted(self.plain_users.items()))
        for name in sasl:
            prefix = f"listener.name.{name.lower()}"
            props[f"{prefix}.sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
            props[f"{prefix}.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required{plain_jaas};"
            )
            for mechanism in ("scram-sha-256", "scram-sha-512"):
                props[f"{prefix}.{mechanism}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        if self._uses_tls:
            props |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls_dir / "server-keystore.pem"),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.ca_file),
            }
        if "SSL" in listeners:
            # Client certificates are checked when offered, but TLS-only clients still connect.
            props["listener.name.ssl.ssl.client.auth"] = "requested"
        if self.authorizer:
            props |= {
                "authorizer.class.name": STANDARD_AUTHORIZER,
                "super.users": ";".join([ANONYMOUS, *(f"User:{u}" for u in self.super_users)]),
                # Kafka's default, spelled out: no ACL on a resource means no access.
                "allow.everyone.if.no.acl.found": "false",
            }
        if self.topic_policy_max_partitions is not None:
            props["create.topic.policy.class.name"] = TOPIC_POLICY_CLASS
            props["localkafka.policy.max.partitions"] = str(self.topic_policy_max_partitions)
        props |= self.broker_properties
        lines = ["# Written by deploy/kafka/localkafka.py on every start."]
        lines += [f"{key}={value}" for key, value in props.items()]
        return "\n".join(lines) + "\n"


CLUSTER_FILE: Final = "cluster.json"
# What a production cluster of three brokers sets: every partition on three brokers, and a
# write acknowledged (acks=all) only once two of them have it.
CLUSTER_DEFAULTS: Final[Mapping[str, str]] = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
}


@dataclass(frozen=True)
class NodePorts:
    """The ports of one node of a cluster; ``advertised`` is where clients are sent."""

    node_id: int
    port: int
    controller_port: int
    internal_port: int
    advertised_port: int | None = None


class LocalKafkaCluster:
    """N combined broker+controller KRaft nodes on 127.0.0.1, replicated like production.

    Each node is a :class:`LocalKafka` with its own state dir (``<state_dir>/node-<id>``),
    pid file and ports; the first ``min(N, 3)`` nodes are the controller quorum's voters
    (the others are brokers that also run a controller, as observers). The cluster's
    defaults are :data:`CLUSTER_DEFAULTS` (replication factor 3, ``min.insync.replicas=2``)
    unless ``broker_properties`` say otherwise. ``<state_dir>/cluster.json`` records the
    cluster id and the ports, so that the command line can stop or restart it later.

    Replication runs on a listener of its own (``INTERNAL``); a node's ``advertised_port``
    sends clients to another address (a fault proxy in front of its PLAINTEXT listener).
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        nodes: int | Sequence[NodePorts] = 3,
        jars_dir: Path | None = None,
        heap: str = "256m",
        broker_properties: Mapping[str, str] | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        if isinstance(nodes, int):
            if nodes < 1:
                raise ValueError("a cluster has at least one node")
            ports = free_ports(3 * nodes)
            layout = [
                NodePorts(i + 1, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
                for i in range(nodes)
            ]
        else:
            layout = list(nodes)
        if not layout or len({n.node_id for n in layout}) != len(layout):
            raise ValueError("a cluster needs nodes with distinct ids")
        self.layout: tuple[NodePorts, ...] = tuple(layout)
        self.cluster_id = cluster_id or new_cluster_id()
        voters = {n.node_id: n.controller_port for n in self.layout[:3]}
        properties = {**CLUSTER_DEFAULTS, **(broker_properties or {})}
        if len(self.layout) < 3:
            # Fewer brokers than replicas: topics could never be created.
            properties |= {
                key: str(min(int(value), len(self.layout)))
                for key, value in properties.items()
                if key.endswith(("replication.factor", "min.isr", "min.insync.replicas"))
            }
        self.nodes: tuple[LocalKafka, ...] = tuple(
            LocalKafka(
                port=n.port,
                controller_port=n.controller_port,
                internal_port=n.internal_port,
                advertised_port=n.advertised_port,
                state_dir=self.state_dir / f"node-{n.node_id}",
                jars_dir=jars_dir,
                heap=heap,
                node_id=n.node_id,
                voters=voters,
                cluster_id=self.cluster_id,
                broker_properties=properties,
            )
            for n in self.layout
        )

    @classmethod
    def recorded(
        cls, state_dir: Path, *, jars_dir: Path | None = None, heap: str = "256m"
    ) -> Self | None:
        """The cluster that ``<state_dir>/cluster.json`` describes, if any."""
        path = Path(state_dir) / CLUSTER_FILE
        try:
            doc = json.loads(path.read_text())
            layout = [NodePorts(**node) for node in doc["nodes"]]
            cluster_id = str(doc["cluster_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(
            state_dir=state_dir, nodes=layout, jars_dir=jars_dir, heap=heap, cluster_id=cluster_id
        )

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated, as clients are configured."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id}")

    def running(self) -> list[LocalKafka]:
        return [node for node in self.nodes if node.is_running()]

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def _record(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "cluster_id": self.cluster_id,
            "nodes": [dataclasses.asdict(n) for n in self.layout],
        }
        (self.state_dir / CLUSTER_FILE).write_text(json.dumps(doc, indent=2) + "\n")

    def start(self, timeout_s: float = 90.0) -> None:
        """Start every node that is not running (thaw a frozen one), wait until all serve.

        The nodes are launched together: none is ready before a majority of the voters run.
        On failure every node is stopped.
        """
        self._record()
        try:
            for node in self.nodes:
                node.thaw()
                node.launch()
            deadline = time.monotonic() + timeout_s
            for node in self.nodes:
                node.wait_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every node (SIGTERM, then SIGKILL after ``timeout_s``); idempotent.

        All are signalled first and then waited for, so that no node waits for a
        controlled shutdown that its stopped peers can no longer grant.
        """
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.stop(timeout_s)

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


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError("java (17 or newer) is needed to run Kafka; not on PATH")
    return java


def _javac() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "javac").is_file():
        return str(Path(java_home) / "bin" / "javac")
    javac = shutil.which("javac")
    if javac is None:
        raise LocalKafkaError("javac (a JDK 17 or newer) is needed for the topic policy")
    return javac


# Command line --------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--port", type=int, default=_env_int("KAFKA_PORT", 9092))
    common.add_argument(
        "--controller-port",
        type=int,
        default=_env_int("KAFKA_CONTROLLER_PORT", 0) or None,
        help="default: KAFKA_CONTROLLER_PORT, else --port + 1",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("KAFKA_STATE_DIR") or REPO_ROOT / ".local" / "kafka"),
    )
    common.add_argument(
        "--jars-dir",
        type=Path,
        default=Path(os.environ["KAFKA_JARS_DIR"]) if os.environ.get("KAFKA_JARS_DIR") else None,
        help="default: KAFKA_JARS_DIR, else ~/.cache/alm-bridge/kafka-<version>/jars",
    )
    common.add_argument(
        "--heap",
        default=os.environ.get("KAFKA_HEAP") or None,
        help="default: KAFKA_HEAP, else 512m for one node, 256m for each node of a cluster",
    )
    common.add_argument("--timeout", type=float, default=90.0, help="seconds (up/down)")

    parser = argparse.ArgumentParser(
        prog="python -m deploy.kafka.localkafka",
        description="Apache Kafka (KRaft) on 127.0.0.1 for development and tests: one node, "
        "or a replicated cluster of several.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", parents=[common], help="start the broker(s); prints the bootstrap address"
    )
    up.add_argument(
        "--nodes",
        type=int,
        default=_env_int("KAFKA_NODES", 1),
        help="default: KAFKA_NODES, else 1. With N > 1, a cluster of N broker+controller "
        "nodes (client ports --port .. --port+N-1), replication factor 3, "
        "min.insync.replicas 2",
    )
    sub.add_parser("down", parents=[common], help="stop the broker and every cluster node")
    sub.add_parser("status", parents=[common], help="exit 0 and print the address if running")
    node = sub.add_parser(
        "node", parents=[common], help="act on one node of the running cluster (fault drills)"
    )
    node.add_argument("action", choices=("stop", "kill", "start", "freeze", "thaw"))
    node.add_argument("node_id", type=int)
    sub.add_parser("classpath", parents=[common], help="print the Kafka jars classpath")
    run = sub.add_parser(
        "run",
        parents=[common],
        help="run a command against the broker (started and stopped around it if not running)",
    )
    run.add_argument("run_command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    return parser


def conflict(kafka: LocalKafka) -> str | None:
    """One line when a broker of this state dir runs at another address than asked for."""
    pid = kafka.pid()
    if pid is None:
        return None
    running = kafka.recorded_bootstrap() or kafka.bootstrap
    if running == kafka.bootstrap:
        return None
    port = running.rpartition(":")[2]
    return (
        f"Kafka already runs at {running} (pid {pid}, state in {kafka.state_dir}), not at "
        f"{kafka.bootstrap}: use KAFKA_PORT={port}, or stop it first with 'make kafka-down' "
        f"(KAFKA_PORT={port})"
    )


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ctrl-C is ignored while what was started is being stopped."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_or_undo(kafka: LocalKafka, timeout_s: float) -> bool:
    """Start the broker; on Ctrl-C stop what was started and return False (no traceback).

    The broker runs in its own session, so the terminal's Ctrl-C never reaches it: without
    this, an interrupted start would leave its JVM running.
    """
    try:
        kafka.start(timeout_s=timeout_s)
    except KeyboardInterrupt:
        with _no_interrupts():
            kafka.stop()
        print("localkafka: interrupted; the broker being started is stopped", file=sys.stderr)
        return False
    return True


def run_with_broker(kafka: LocalKafka, command: list[str], timeout_s: float) -> int:
    """Run ``command`` against the broker of ``kafka``'s state dir (``make run``).

    A broker already running at another address is refused with one line. A broker
    already running at this address is used and left running; one started here is stopped
    when the command ends, however it ends (Ctrl-C included). The command gets the address
    the broker actually listens on as ``BRIDGE_KAFKA_BOOTSTRAP_SERVERS``.
    """
    problem = conflict(kafka)
    if problem is not None:
        print(f"localkafka: {problem}", file=sys.stderr)
        return 2
    started_here = kafka.pid() is None
    if started_here:
        began = time.monotonic()
        if not start_or_undo(kafka, timeout_s):
            return 130
    try:
        if started_here:
            print(
                f"Kafka started in {time.monotonic() - began:.1f}s (pid {kafka.pid()}) at "
                f"{kafka.bootstrap}; it stops with this command",
                file=sys.stderr,
            )
        else:
            print(
                f"Kafka already runs at {kafka.bootstrap} (pid {kafka.pid()}); it keeps "
                "running afterwards ('make kafka-down' stops it)",
                file=sys.stderr,
            )
        address = kafka.recorded_bootstrap() or kafka.bootstrap
        env = {**os.environ, "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": address}
        # Same process group: the terminal's Ctrl-C reaches the command itself, which shuts
        # down on its own; this process only waits for it.
        child = subprocess.Popen(command, env=env)
        try:
            code = child.wait()
        except KeyboardInterrupt:
            with _no_interrupts():
                code = child.wait()
    except KeyboardInterrupt:
        code = 130
    finally:
        if started_here:
            with _no_interrupts():
                kafka.stop()
            print("Kafka stopped", file=sys.stderr)
    return code


def cluster_dir(state_dir: Path) -> Path:
    """Where the command line keeps a cluster's nodes: ``<state dir>/cluster``."""
    return state_dir / "cluster"


def cluster_layout(port: int, nodes: int) -> list[NodePorts]:
    """Fixed ports from ``port``: clients ``port+i``, controllers ``port+N+i``, replication
    ``port+2N+i`` (i from 0)."""
    return [
        NodePorts(i + 1, port + i, port + nodes + i, port + 2 * nodes + i) for i in range(nodes)
    ]


def cluster_up(args: argparse.Namespace) -> int:
    """``up --nodes N``: start (or find running) the cluster of ``<state dir>/cluster``."""
    folder = cluster_dir(args.state_dir)
    heap = args.heap or "256m"
    recorded = LocalKafkaCluster.recorded(folder, jars_dir=args.jars_dir, heap=heap)
    if recorded is not None and recorded.is_running():
        wanted = cluster_layout(args.port, args.nodes)
        if list(recorded.layout) != wanted:
            print(
                f"localkafka: a cluster of {len(recorded.nodes)} nodes already runs at "
                f"{recorded.bootstrap} (state in {folder}): stop it first with 'make kafka-down'",
                file=sys.stderr,
            )
            return 2
        print(
            f"Kafka cluster is already running ({len(recorded.running())} nodes)", file=sys.stderr
        )
        print(recorded.bootstrap)
        return 0
    cluster = LocalKafkaCluster(
        state_dir=folder,
        nodes=cluster_layout(args.port, args.nodes),
        jars_dir=args.jars_dir,
        heap=heap,
        cluster_id=recorded.cluster_id if recorded is not None else None,
    )
    started = time.monotonic()
    try:
        cluster.start(timeout_s=args.timeout)
    except KeyboardInterrupt:
        with _no_interrupts():
            cluster.stop()
        print("localkafka: interrupted; the nodes being started are stopped", file=sys.stderr)
        return 130
    pids = ", ".join(str(node.pid()) for node in cluster.nodes)
    print(
        f"Kafka cluster of {len(cluster.nodes)} nodes started in "
        f"{time.monotonic() - started:.1f}s (pids {pids}), state in {folder}",
        file=sys.stderr,
    )
    print(cluster.bootstrap)
    return 0


def cluster_node(args: argparse.Namespace) -> int:
    """``node ACTION ID``: stop, kill, start, freeze or thaw one node of the cluster."""
    cluster = LocalKafkaCluster.recorded(
        cluster_dir(args.state_dir), jars_dir=args.jars_dir, heap=args.heap or "256m"
    )
    if cluster is None:
        print(f"localkafka: no cluster in {cluster_dir(args.state_dir)}", file=sys.stderr)
        return 2
    try:
        node = cluster.node(args.node_id)
    except KeyError:
        print(f"localkafka: the cluster has no node {args.node_id}", file=sys.stderr)
        return 2
    action = args.action
    if action == "start":
        node.start(timeout_s=args.timeout)
    elif action == "stop":
        node.stop(timeout_s=args.timeout)
    elif action == "kill":
        node.kill()
    elif action == "freeze":
        node.freeze()
    else:
        node.thaw()
    print(f"node {node.node_id}: {action} done (pid {node.pid()})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kafka = LocalKafka(
        port=args.port,
        controller_port=args.controller_port,
        state_dir=args.state_dir,
        jars_dir=args.jars_dir,
        heap=args.heap or "512m",
    )
    try:
        if args.command == "up" and args.nodes > 1:
            return cluster_up(args)
        if args.command == "node":
            return cluster_node(args)
        if args.command == "classpath":
            print(classpath(kafka.ensure_jars()))
        elif args.command == "status":
            cluster = LocalKafkaCluster.recorded(cluster_dir(args.state_dir))
            if cluster is not None and cluster.is_running():
                states = ", ".join(
                    f"node {n.node_id} "
                    + ("frozen" if n.frozen() else f"pid {n.pid()}" if n.is_running() else "down")
                    for n in cluster.nodes
                )
                print(f"Kafka cluster: {states}, state in {cluster.state_dir}", file=sys.stderr)
                print(cluster.bootstrap)
                return 0
            pid = kafka.pid()
            if pid is None:
                print("Kafka is not running", file=sys.stderr)
                return 1
            print(f"Kafka is running (pid {pid}), state in {kafka.state_dir}", file=sys.stderr)
            print(kafka.recorded_bootstrap() or kafka.bootstrap)
        elif args.command == "run":
            command = [c for c in args.run_command if c != "--"] if args.run_command else []
            if not command:
                print(
                    "localkafka: run needs a command, e.g. run -- alm-bridge serve", file=sys.stderr
                )
                return 2
            return run_with_broker(kafka, command, args.timeout)
        elif args.command == "up":
            problem = conflict(kafka)
            if problem is not None:
                print(f"localkafka: {problem}", file=sys.stderr)
                return 2
            pid = kafka.pid()
            if pid is not None:
                print(f"Kafka is already running (pid {pid})", file=sys.stderr)
                print(kafka.recorded_bootstrap() or kafka.bootstrap)
                return 0
            started = time.monotonic()
            if not start_or_undo(kafka, args.timeout):
                return 130
            print(
                f"Kafka started in {time.monotonic() - started:.1f}s (pid {kafka.pid()}), "
                f"logs in {kafka.logs_dir}",
                file=sys.stderr,
            )
            print(kafka.bootstrap)
        else:
            was_running = kafka.is_running()
            kafka.stop(timeout_s=args.timeout)
            cluster = LocalKafkaCluster.recorded(cluster_dir(args.state_dir))
            nodes = 0
            if cluster is not None:
                nodes = len(cluster.running())
                cluster.stop(timeout_s=args.timeout)
            if nodes:
                print(f"Kafka cluster stopped ({nodes} nodes)", file=sys.stderr)
            if was_running or not nodes:
                print("Kafka stopped" if was_running else "Kafka was not running", file=sys.stderr)
    except LocalKafkaError as exc:
        print(f"localkafka: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # e.g. while the jars download: nothing is running yet.
        print("localkafka: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
