"""The real process serving HTTPS, its certificate renewed under ALM-like load.

The certificate files are mounted like a Kubernetes Secret (``tls.crt`` and ``tls.key``
through a ``..data`` symlink that a renewal swaps), the clients verify the server against
the test's own CA, and every acknowledged event is read back from the real broker.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import warnings
from pathlib import Path

import aiohttp
import pytest

from bridge.cli.sender.engine import client_context
from bridge.config.tls import CHECK_SECONDS
from deploy.kafka.localkafka import issue_certificate, make_tls_material
from tests.mounts import Mount
from tests.system.harness import (
    ALM_RESPONSE_LIMIT_MS,
    HOST,
    BridgeFactory,
    BridgeProcess,
    Load,
    load_options,
    read_prefix,
    signed_batch,
    tally,
    unique_prefix,
)

pytestmark = [pytest.mark.system, pytest.mark.kafka]

HANDSHAKE_TIMEOUT_MS = 1000


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Mount]:
    material = tmp_path / "pki"
    make_tls_material(material)
    mount = Mount(tmp_path / "mount")
    _renew(mount, material / "server.pem", material / "server.key")
    return material, mount


def _renew(mount: Mount, cert: Path, key: Path) -> None:
    """The certificate and key as Kubernetes writes a renewed kubernetes.io/tls Secret."""
    mount.publish({"tls.crt": cert.read_bytes(), "tls.key": key.read_bytes()})


def _spawn(bridges: BridgeFactory, bootstrap: str, mount: Mount, prefix: str) -> BridgeProcess:
    return bridges.spawn(
        bootstrap,
        prefix=prefix,
        env={
            "BRIDGE_TLS_CERT_FILE": str(mount / "tls.crt"),
            "BRIDGE_TLS_KEY_FILE": str(mount / "tls.key"),
            "BRIDGE_HEADER_TIMEOUT_MS": str(HANDSHAKE_TIMEOUT_MS),
        },
    )


def _url(bridge: BridgeProcess, path: str) -> str:
    return f"https://{HOST}:{bridge.port}{path}"


async def _wait_ready(bridge: BridgeProcess, ca: Path, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    connector = aiohttp.TCPConnector(ssl=client_context(ca))
    async with aiohttp.ClientSession(connector=connector) as session:
        while True:
            assert bridge.running(), f"the bridge exited:\n{bridge.log_tail()}"
            try:
                async with session.get(_url(bridge, "/readyz")) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert loop.time() < deadline, f"not ready over HTTPS:\n{bridge.log_tail()}"
            await asyncio.sleep(0.2)


def _served_certificate(port: int, ca: Path) -> bytes:
    """The DER certificate a new, verified connection is given."""
    context = client_context(ca)
    assert isinstance(context, ssl.SSLContext)
    with (
        socket.create_connection((HOST, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as conn,
    ):
        served = conn.getpeercert(binary_form=True)
    assert served is not None
    return served


def _der(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


async def _metric(bridge: BridgeProcess, ca: Path, name: str) -> float:
    connector = aiohttp.TCPConnector(ssl=client_context(ca))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(_url(bridge, "/metrics")) as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.timeout(240)
async def test_certificate_renewed_under_load_without_a_failed_request(
    kafka_bootstrap: str, bridges: BridgeFactory, tls: tuple[Path, Mount]
) -> None:
    material, mount = tls
    ca = material / "ca.pem"
    prefix = unique_prefix("tls")
    bridge = _spawn(bridges, kafka_bootstrap, mount, prefix)
    await _wait_ready(bridge, ca)
    pid = bridge.pid
    assert _served_certificate(bridge.port, ca) == _der(material / "server.pem")
    options = load_options(_url(bridge, "/webhooks/alm"), count=240, concurrency=4, rate=12.0)
    load = Load(options.model_copy(update={"ca_file": ca}))
    sending = asyncio.create_task(load.run_for(150))
    await asyncio.sleep(2)
    assert not sending.done(), "the load ended before the renewal"

    # Half-way through a renewal done in place: the certificate without its key.
    renewed_pem, renewed_key = issue_certificate(material, "renewed")
    current = mount.folder / "..data" / "tls.crt"
    current.write_bytes(renewed_pem.read_bytes())
    # Then the renewal as Kubernetes writes it.
    _renew(mount, renewed_pem, renewed_key)
    renewed = _der(renewed_pem)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3 * CHECK_SECONDS + 10
    while await asyncio.to_thread(_served_certificate, bridge.port, ca) != renewed:
        assert loop.time() < deadline, "the renewed certificate is not served"
        await asyncio.sleep(0.25)
    renewed_at = time.monotonic()
    summary = await sending
    contents = await read_prefix(kafka_bootstrap, prefix)
    row = tally("certificate renewed", load.results, contents)

    assert summary is not None, "the load did not finish in time"
    assert summary.all_acknowledged, f"{summary.batches_failed} batches never acknowledged"
    assert load.statuses() == {200: len(load.answers)}, load.statuses()
    assert all(r.acknowledged for r in load.results), "a request failed"
    assert any(a.at > renewed_at for a in load.answers), "no request after the renewal"
    assert row.lost == 0, row.lost_ids
    assert not load.slow(), f"answers of {ALM_RESPONSE_LIMIT_MS:g} ms or more"
    assert bridge.running(), "the bridge exited"
    assert bridge.pid == pid, "the bridge restarted"
    loaded = await _metric(bridge, ca, 'almbridge_tls_certificate_reloads_total{result="loaded"}')
    refused = await _metric(bridge, ca, 'almbridge_tls_certificate_reloads_total{result="refused"}')
    assert loaded == 1
    # The in-place write is seen only when a check falls between it and the swap.
    assert refused in (0, 1)


@pytest.mark.timeout(120)
async def test_plain_http_old_tls_and_stalled_handshakes_are_refused(
    kafka_bootstrap: str, bridges: BridgeFactory, tls: tuple[Path, Mount]
) -> None:
    material, mount = tls
    ca = material / "ca.pem"
    bridge = _spawn(bridges, kafka_bootstrap, mount, unique_prefix("tlsrefuse"))
    await _wait_ready(bridge, ca)
    body, headers = signed_batch(2, seed=7)

    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            await plain.post(
                f"http://{HOST}:{bridge.port}/webhooks/alm", data=body, headers=headers
            )

    old = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():
        # Setting an old version is deprecated: here that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    # The client's own OpenSSL may refuse TLS 1.1 before the server does: either way no
    # connection is made.
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, OSError)):
        await asyncio.to_thread(_handshake, bridge.port, old)

    # A client that connects and never starts its handshake is closed at the deadline.
    reader, writer = await asyncio.open_connection(HOST, bridge.port)
    started = time.monotonic()
    try:
        assert (
            await asyncio.wait_for(reader.read(1), timeout=HANDSHAKE_TIMEOUT_MS / 1000 + 10) == b""
        )
    finally:
        writer.close()
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT_MS / 1000 + 5

    verified = aiohttp.TCPConnector(ssl=client_context(ca))
    async with (
        aiohttp.ClientSession(connector=verified) as session,
        session.post(_url(bridge, "/webhooks/alm"), data=body, headers=headers) as ok,
    ):
        assert ok.status == 200, await ok.text()
    assert bridge.running()


def _handshake(port: int, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection((HOST, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST),
    ):
        pass
