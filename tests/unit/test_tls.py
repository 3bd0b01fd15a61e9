"""The HTTPS settings and the certificate that follows its files, with real PEM files."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from bridge.config.settings import Settings
from bridge.config.tls import ServerCertificate, tls_problems
from deploy.kafka.localkafka import issue_certificate, make_tls_material


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    make_tls_material(folder)
    return folder


def _settings(**kw: object) -> Settings:
    return Settings(hmac_secret="x" * 16, **kw)  # type: ignore[arg-type]


def test_tls_is_off_without_files() -> None:
    assert tls_problems(_settings()) == []


def test_one_file_without_the_other_is_named(tls_dir: Path) -> None:
    problems = tls_problems(_settings(tls_cert_file=tls_dir / "server.pem"))

    assert problems == [
        "BRIDGE_TLS_CERT_FILE is set but BRIDGE_TLS_KEY_FILE is not: HTTPS needs both"
    ]


def test_a_key_of_another_certificate_is_refused(tls_dir: Path) -> None:
    problems = tls_problems(
        _settings(tls_cert_file=tls_dir / "server.pem", tls_key_file=tls_dir / "client.key")
    )

    assert len(problems) == 1
    assert "not a certificate and its private key" in problems[0]


def test_a_missing_file_is_named(tls_dir: Path) -> None:
    problems = tls_problems(
        _settings(tls_cert_file=tls_dir / "nope.pem", tls_key_file=tls_dir / "server.key")
    )

    assert len(problems) == 1
    assert "No such file" in problems[0]


def test_reload_follows_a_symlink_swap_and_refuses_a_half_written_pair(
    tls_dir: Path, tmp_path: Path
) -> None:
    mount = tmp_path / "mount"
    first = mount / "..v1"
    first.mkdir(parents=True)
    for name, source in (("tls.crt", "server.pem"), ("tls.key", "server.key")):
        (first / name).write_bytes((tls_dir / source).read_bytes())
        (mount / name).symlink_to(Path("..data") / name)
    (mount / "..data").symlink_to("..v1")
    results: list[bool] = []
    certificate = ServerCertificate(mount / "tls.crt", mount / "tls.key", on_reload=results.append)
    served = certificate.current

    assert certificate.reload_if_changed() is None, "nothing changed yet"

    # A renewal written in place, certificate first: refused, the old pair keeps serving.
    pem, key = issue_certificate(tls_dir, "renewed")
    (first / "tls.crt").write_bytes(pem.read_bytes())
    assert certificate.reload_if_changed() is False
    assert certificate.current is served

    # Kubernetes' way: a new folder, then the ..data symlink swapped at once.
    second = mount / "..v2"
    second.mkdir()
    (second / "tls.crt").write_bytes(pem.read_bytes())
    (second / "tls.key").write_bytes(key.read_bytes())
    (mount / "..data.tmp").symlink_to("..v2")
    os.replace(mount / "..data.tmp", mount / "..data")

    assert certificate.reload_if_changed() is True
    assert certificate.current is not served
    assert certificate.generation == 2
    assert results == [False, True]
    assert certificate.context.minimum_version >= ssl.TLSVersion.TLSv1_2
