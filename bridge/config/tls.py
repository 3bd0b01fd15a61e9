"""HTTPS for the webhook port: a server context that follows its certificate files.

ALM only delivers to HTTPS URLs. A bridge behind an ingress or a TLS-terminating load
balancer needs none of this; one on a VM or behind a plain TCP load balancer serves TLS
itself with ``BRIDGE_TLS_CERT_FILE`` and ``BRIDGE_TLS_KEY_FILE``.

Renewals need no restart. The listening socket keeps one :class:`ssl.SSLContext` for its
whole life, so the certificate is not loaded into it: its ``sni_callback``, which OpenSSL
calls for every client hello (with or without a server name), hands each new connection
the context of the newest certificate that loaded cleanly. A renewal is a new context
built from the files, never a change to one in use, so a certificate written before its
key (or half-written) is refused as a whole and the previous one keeps serving;
connections already open keep the certificate they started with.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bridge.config.files import Identity, identities
from bridge.config.settings import Settings
from bridge.telemetry.logs import get_logger

log = get_logger("bridge.tls")

# How often the files are looked at: a stat of each, nothing read unless one changed.
CHECK_SECONDS: Final = 5.0


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context with the certificate chain and key of these files.

    Modern defaults: TLS 1.2 or later, Python's default cipher list (forward secrecy,
    AEAD ciphers), no compression, no renegotiation, HTTP/1.1 offered through ALPN.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def tls_problems(settings: Settings) -> list[str]:
    """Why the TLS settings cannot serve, one line each (empty when TLS is off or fine)."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return []
    if cert is None or key is None:
        given, missing = (
            ("BRIDGE_TLS_CERT_FILE", "BRIDGE_TLS_KEY_FILE")
            if cert is not None
            else ("BRIDGE_TLS_KEY_FILE", "BRIDGE_TLS_CERT_FILE")
        )
        return [f"{given} is set but {missing} is not: HTTPS needs both"]
    try:
        server_context(cert, key)
    except (OSError, ssl.SSLError) as exc:
        return [f"BRIDGE_TLS_CERT_FILE/BRIDGE_TLS_KEY_FILE ({cert}, {key}): {_why(exc)}"]
    return []


def _why(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a certificate and its private key ({exc.reason or exc})"
    return exc.strerror or str(exc)


class ServerCertificate:
    """The listening socket's context, and the newest good certificate behind it."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._on_reload = on_reload
        self._identity = self._files()
        self.current = server_context(cert_file, key_file)
        # The context of the socket: its own certificate is only the one served before
        # the first reload (a client hello always goes through the callback first).
        self.context = server_context(cert_file, key_file)
        self.context.sni_callback = self._choose
        self.generation = 1

    def _choose(self, connection: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        connection.context = self.current

    def _files(self) -> tuple[tuple[str, Identity], ...] | None:
        files = identities((self.cert_file, self.key_file))
        return None if any(found is None for _, found in files) else files

    def reload_if_changed(self) -> bool | None:
        """Load the files again if they changed: True loaded, False refused, None unchanged.

        A swapped ``..data`` symlink (Kubernetes' update of a mounted Secret) is a change.
        """
        files = self._files()
        if files is None or files == self._identity:
            return None
        self._identity = files
        try:
            fresh = server_context(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            # Perhaps half-way through a renewal: the next change is tried again.
            log.warning("tls_certificate_refused", cert_file=str(self.cert_file), error=_why(exc))
            self._report(False)
            return False
        self.current = fresh
        self.generation += 1
        log.info("tls_certificate_reloaded", cert_file=str(self.cert_file))
        self._report(True)
        return True

    def _report(self, ok: bool) -> None:
        if self._on_reload is not None:
            self._on_reload(ok)

    async def watch(self, interval_seconds: float = CHECK_SECONDS) -> None:
        """Check the files every ``interval_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            self.reload_if_changed()
