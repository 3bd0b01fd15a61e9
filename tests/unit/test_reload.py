"""Live reload with real files laid out as Kubernetes mounts them (``..data`` swaps)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from bridge.config.receivers import Receiver, resolve
from bridge.config.reload import Configuration, Reloader, fixed_changes, watched_files
from bridge.config.settings import Settings, load_settings
from bridge.core.auth import DEFAULT_HMAC_HEADER, sign_hmac
from bridge.core.errors import AuthError
from tests.mounts import Mount

OLD = b"the-old-signing-secret"
NEW = b"the-new-signing-secret"


@pytest.fixture(autouse=True)
def _no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("BRIDGE_")]:
        monkeypatch.delenv(name)


def _config(keys: list[str], *, extra: dict[str, object] | None = None) -> bytes:
    document: dict[str, object] = {
        "secrets_dir": "SECRETS",
        "receivers": [{"name": "alm", "auth": {"method": "hmac", "secret_keys": keys}}],
        **(extra or {}),
    }
    return yaml.safe_dump(document).encode()


class Setup:
    def __init__(self, root: Path) -> None:
        self.secrets = Mount(root / "secrets" / "alm", {"current": OLD})
        self.root = root
        self.config = Mount(root / "config", {"receivers.yaml": self._text(["current"])})
        self.applied: list[Configuration] = []
        self.results: list[bool] = []
        settings = load_settings(self.config.folder / "receivers.yaml")
        self.reloader = Reloader(
            Configuration(settings, tuple(resolve(settings))),
            apply=self.applied.append,
            on_result=self.results.append,
        )

    def _text(self, keys: list[str], **extra: object) -> bytes:
        return _config(keys, extra=dict(extra)).replace(
            b"SECRETS", str(self.root / "secrets").encode()
        )

    def configure(self, keys: list[str], **extra: object) -> None:
        self.config.publish({"receivers.yaml": self._text(keys, **extra)})

    def receiver(self) -> Receiver:
        [receiver] = self.reloader.current.receivers
        return receiver


def _accepts(receiver: Receiver, secret: bytes) -> bool:
    body = b'{"events": []}'
    try:
        receiver.verifier.verify({DEFAULT_HMAC_HEADER: sign_hmac(body, secret)}, body)
    except AuthError:
        return False
    return True


def test_nothing_changed_is_not_a_reload(tmp_path: Path) -> None:
    setup = Setup(tmp_path)

    assert setup.reloader.reload_if_changed() is None
    assert setup.applied == []


def test_a_rotation_in_three_steps_with_no_moment_refusing_either_secret(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    assert _accepts(setup.receiver(), OLD)

    # 1. The new secret joins the Secret: nothing lists it yet, nothing changes.
    setup.secrets.publish({"current": OLD, "next": NEW})
    assert setup.reloader.reload_if_changed() is True  # the swap is seen; same receivers
    assert _accepts(setup.receiver(), OLD)
    assert not _accepts(setup.receiver(), NEW)
    # 2. The configuration lists both: both verify.
    setup.configure(["current", "next"])
    assert setup.reloader.reload_if_changed() is True
    assert _accepts(setup.receiver(), OLD)
    assert _accepts(setup.receiver(), NEW)
    # 3. ALM switched; the old one is removed from the configuration, then from the Secret.
    setup.configure(["next"])
    assert setup.reloader.reload_if_changed() is True
    setup.secrets.publish({"next": NEW})
    assert setup.reloader.reload_if_changed() is True
    assert not _accepts(setup.receiver(), OLD)
    assert _accepts(setup.receiver(), NEW)
    assert [c.generation for c in setup.applied] == [2, 3, 4, 5]
    assert setup.results == [True] * 4


def test_a_configuration_that_would_not_start_is_refused_whole_and_retried_on_the_next_change(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path)
    before = setup.reloader.current

    # The configuration names a key the Secret does not hold yet (the kubelet updates the
    # ConfigMap and the Secret independently).
    setup.configure(["current", "next"])
    with capture_logs() as logs:
        assert setup.reloader.reload_if_changed() is False
    assert setup.reloader.current is before
    assert setup.applied == []
    [line] = [e for e in logs if e["event"] == "config_reload_refused"]
    assert line["log_level"] == "error"
    assert any("next" in problem for problem in line["problems"])
    # Refused once, not again at every check.
    assert setup.reloader.reload_if_changed() is None
    # The Secret catches up: the same configuration is now whole.
    setup.secrets.publish({"current": OLD, "next": NEW})
    assert setup.reloader.reload_if_changed() is True
    assert _accepts(setup.receiver(), NEW)
    assert setup.results == [False, True]


def test_a_file_that_is_not_yaml_keeps_the_running_configuration(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    setup.config.publish({"receivers.yaml": b"receivers: [unclosed\n"})

    assert setup.reloader.reload_if_changed() is False
    assert _accepts(setup.receiver(), OLD)


def test_a_setting_read_only_at_start_is_named_and_nothing_is_applied(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    setup.configure(["current"], port=9999, publish_timeout_ms=2000)

    with capture_logs() as logs:
        assert setup.reloader.reload("SIGHUP") is False
    [line] = [e for e in logs if e["event"] == "config_reload_refused"]
    assert line["cause"] == "SIGHUP"
    [problem] = line["problems"]
    assert "BRIDGE_PORT" in problem
    assert "BRIDGE_PUBLISH_TIMEOUT_MS" in problem
    assert "restart" in problem
    assert setup.applied == []


def test_a_receiver_added_by_a_reload(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    text = yaml.safe_load(setup._text(["current"]))
    text["receivers"].append(
        {"name": "emea", "accounts": [42], "auth": {"method": "hmac", "secrets": ["s" * 16]}}
    )
    setup.config.publish({"receivers.yaml": yaml.safe_dump(text).encode()})

    with capture_logs() as logs:
        assert setup.reloader.reload_if_changed() is True
    assert [r.name for r in setup.reloader.current.receivers] == ["alm", "emea"]
    assert setup.reloader.current.receivers[1].accounts == frozenset({42})
    [line] = [e for e in logs if e["event"] == "config_reloaded"]
    assert line["added"] == ["emea"]
    assert line["removed"] == []


def test_an_error_while_building_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    settings = Settings(hmac_secret="x" * 16)  # type: ignore[arg-type]

    def broken(_: Settings) -> list[Receiver]:
        raise RuntimeError("boom")

    results: list[bool] = []
    reloader = Reloader(
        Configuration(settings, tuple(resolve(settings))),
        apply=lambda _: None,
        load=lambda _: settings,
        build=broken,
        on_result=results.append,
    )

    assert reloader.reload("SIGHUP") is False
    assert results == [False]


def test_only_settings_read_at_start_count_as_fixed() -> None:
    old = Settings(hmac_secret="a" * 16)  # type: ignore[arg-type]
    live = Settings(hmac_secret="b" * 16, account_ids="1,2", topic_template="x.{event}")  # type: ignore[arg-type]
    fixed = Settings(hmac_secret="a" * 16, kafka_bootstrap_servers="other:9092")  # type: ignore[arg-type]

    assert fixed_changes(old, live) == []
    assert fixed_changes(old, fixed) == ["BRIDGE_KAFKA_BOOTSTRAP_SERVERS"]


def test_the_watched_files_are_the_configuration_and_every_secret_file(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    settings = setup.reloader.current.settings

    assert set(watched_files(settings)) == {
        setup.config.folder / "receivers.yaml",
        tmp_path / "secrets" / "alm" / "current",
    }
