"""A throw-away certificate authority made with the openssl command (standard library only).

One folder holds the CA's key and certificate, the ``openssl.cnf`` its certificates are
issued with, and the keys and certificates it issued: ``<name>.key`` (EC P-256, PKCS#8,
which both Kafka's PEM key store and the Kubernetes components read) and
``<name>.<suffix>``. Server certificates are for the names given when the CA was made
(127.0.0.1 and localhost by default). Used by the local Kafka's TLS listeners
(deploy/kafka/localkafka.py) and the local Kubernetes control plane (deploy/k8s/localk8s.py).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

LOOPBACK_NAMES: Final = ("IP:127.0.0.1", "DNS:localhost")

_OPENSSL_CNF: Final = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {names}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


class PkiError(RuntimeError):
    """openssl is missing or failed."""


def openssl(*args: str, cwd: Path | None = None) -> None:
    """Run ``openssl args…``; :class:`PkiError` with its stderr when it fails."""
    if shutil.which("openssl") is None:
        raise PkiError("openssl is needed for the certificates; not on PATH")
    try:
        done = subprocess.run(
            ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PkiError(f"openssl {args[0]} did not finish within 60s") from exc
    if done.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def new_key(path: Path) -> Path:
    """A new EC P-256 private key (PKCS#8 PEM) at ``path``."""
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    return path


def public_key(key: Path, path: Path) -> Path:
    """The public half of ``key``, PEM, at ``path``."""
    openssl("pkey", "-in", str(key), "-pubout", "-out", str(path))
    return path


@dataclass(frozen=True)
class Authority:
    """The CA of ``folder``; certificates are named ``*.<suffix>`` (``pem`` or ``crt``)."""

    folder: Path
    suffix: str = "pem"

    @property
    def cert(self) -> Path:
        return self.folder / f"ca.{self.suffix}"

    @property
    def key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def config(self) -> Path:
        return self.folder / "openssl.cnf"

    def create(
        self, subject: str, *, days: int, server_names: Sequence[str] = LOOPBACK_NAMES
    ) -> None:
        """A new CA key and self-signed certificate; the folder is made private (0700).

        ``server_names`` (``IP:…``, ``DNS:…``) are the subject alternative names of every
        server certificate it issues.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self.config.write_text(_OPENSSL_CNF.format(names=", ".join(server_names)))
        new_key(self.key)
        openssl(
            "req", "-new", "-x509", "-config", str(self.config), "-extensions", "ca_ext",
            "-key", str(self.key), "-subj", subject, "-days", str(days), "-out", str(self.cert),
        )  # fmt: skip

    def issue(
        self,
        name: str,
        *,
        subject: str,
        usage: Literal["server", "client"] = "server",
        days: int = 825,
    ) -> tuple[Path, Path]:
        """A new key ``<name>.key`` and certificate ``<name>.<suffix>`` signed by this CA.

        Returns (certificate, key).
        """
        key = new_key(self.folder / f"{name}.key")
        csr, cert = self.folder / f"{name}.csr", self.folder / f"{name}.{self.suffix}"
        openssl(
            "req", "-new", "-config", str(self.config), "-key", str(key), "-subj", subject,
            "-out", str(csr),
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(days),
            "-extfile", str(self.config), "-extensions", f"{usage}_ext", "-out", str(cert),
        )  # fmt: skip
        csr.unlink()
        return cert, key
