"""The command line as an operator meets it: --version, configuration mistakes, typos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bridge import __version__
from bridge.cli.main import app
from bridge.config.settings import CONFIG_FILE_ENV


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)
    # Recorded as "unset" so that undo also removes what load_settings(config_file=...) sets.
    monkeypatch.setenv(CONFIG_FILE_ENV, "")
    monkeypatch.delenv(CONFIG_FILE_ENV)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, err = run("--version")
    assert code == 0
    assert out == f"alm-bridge {__version__}\n"
    assert __version__ != "0.0.0+source"  # the installed package's version, not a fallback
    assert err == ""


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_a_missing_config_file_is_named_as_the_option_given(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "bridge.yaml"
    code, _, err = run(command, "-c", str(missing))
    assert code == 2
    assert err == f"alm-bridge: invalid configuration:\n  - --config {missing}: no such file\n"


def test_a_directory_given_as_config_file(tmp_path: Path) -> None:
    code, _, err = run("check-config", "--config", str(tmp_path))
    assert code == 2
    assert f"--config {tmp_path}: not a file" in err


def test_a_misspelt_variable_gets_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_AUTH_METHOD", "none")
    monkeypatch.setenv("BRIDGE_PROT", "9000")
    monkeypatch.setenv("BRIDGE_SOMETHING_ELSE", "1")
    code, _, err = run("check-config")
    assert code == 0
    assert (
        "alm-bridge: warning: BRIDGE_PROT is not a setting and is ignored; did you mean "
        "BRIDGE_PORT?\n" in err
    )
    assert "BRIDGE_SOMETHING_ELSE is not a setting and is ignored\n" in err


def test_an_invalid_variable_is_named_with_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_PORT", "eighty")
    code, out, err = run("serve")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        "alm-bridge: invalid configuration:",
        "  - BRIDGE_PORT: 'eighty' is not valid: input should be a valid integer, "
        "unable to parse string as an integer",
    ]


def test_a_misspelt_receiver_key_names_the_receiver(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "receivers:\n"
        "  - name: prod\n"
        "    acounts: [1234]\n"
        "    auth: {method: hmac, secrets: [s3cret-value-0001]}\n"
    )
    code, _, err = run("check-config", "-c", str(config))
    assert code == 2
    assert err.splitlines() == [
        "alm-bridge: invalid configuration:",
        f"  - receiver 'prod' in {config}: acounts: unknown key; did you mean 'accounts'?",
    ]


NO_AUTHENTICATION = (
    "  - receiver 'alm': no authentication is configured: set BRIDGE_HMAC_SECRET (or "
    "BRIDGE_HMAC_SECRET_FILE, or BRIDGE_BASIC_CREDENTIALS), or BRIDGE_AUTH_METHOD=none to "
    "accept unauthenticated batches deliberately"
)


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_a_receiver_without_authentication_is_refused(command: str) -> None:
    code, out, err = run(command)
    assert code == 2
    assert out == ""
    assert err.splitlines() == ["alm-bridge: invalid configuration:", NO_AUTHENTICATION]


def test_a_misspelt_secret_is_named_and_the_receiver_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_SECRET", "s3cret-value-0001")
    code, _, err = run("serve")
    assert code == 2
    assert err.splitlines() == [
        "alm-bridge: warning: BRIDGE_SECRET is not a setting and is ignored; did you mean "
        "BRIDGE_HMAC_SECRET?",
        "alm-bridge: invalid configuration:",
        NO_AUTHENTICATION,
    ]
    assert "s3cret-value-0001" not in err


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_a_method_that_contradicts_the_secret_is_refused(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_AUTH_METHOD", "none")
    monkeypatch.setenv("BRIDGE_HMAC_SECRET", "s3cret-value-0001")
    code, _, err = run(command)
    assert code == 2
    assert err.splitlines() == [
        "alm-bridge: invalid configuration:",
        "  - BRIDGE_AUTH_METHOD: 'none' contradicts BRIDGE_HMAC_SECRET, an hmac secret: set "
        "BRIDGE_AUTH_METHOD=hmac (or leave it unset), or unset BRIDGE_HMAC_SECRET",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "method"),
    [
        ("BRIDGE_HMAC_SECRET", "s3cret-value-0001", "hmac"),
        ("BRIDGE_BASIC_CREDENTIALS", "alm:pw-0001", "basic"),
        ("BRIDGE_AUTH_METHOD", "none", "none"),
    ],
)
def test_check_config_shows_the_method_a_secret_implies(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, method: str
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = run("check-config")
    assert code == 0, err
    assert err == ""
    (receiver,) = json.loads(out)["receivers"]
    assert receiver["auth"]["method"] == method
    assert value not in out or method == "none"


def test_a_file_receiver_without_authentication_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("receivers:\n  - name: prod\n  - name: lab\n    auth: {method: none}\n")
    code, _, err = run("check-config", "-c", str(config))
    assert code == 2
    assert err.splitlines() == [
        "alm-bridge: invalid configuration:",
        "  - receiver 'prod': no authentication is configured: give auth a secret (secret_files, "
        "secret_envs, secrets or secret_keys) or basic credentials (credential_files, "
        "credential_envs, credentials or credential_keys), or set auth: {method: none} to "
        "accept unauthenticated batches deliberately",
    ]


def test_foreign_kafka_variables_are_named_with_the_bridges_own() -> None:
    from bridge.cli.main import foreign_variables

    warnings = foreign_variables(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "KAFKA_SASL_PASSWORD": "pw",
            "BRIDGE_KAFKA_SASL_PASSWORD": "other",
        }
    )
    assert warnings == [
        "KAFKA_BOOTSTRAP_SERVERS is ignored by the bridge; it reads BRIDGE_KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SASL_PASSWORD is ignored by the bridge; it reads BRIDGE_KAFKA_SASL_PASSWORD",
    ]
    assert foreign_variables({}) == []


@pytest.mark.parametrize(
    ("args", "variable"),
    [
        (["serve", "--port", "9000"], "BRIDGE_PORT=9000"),
        (["serve", "--port=9000"], "BRIDGE_PORT=9000"),
        (
            ["check-config", "--bootstrap-servers", "k:9092"],
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS=k:9092",
        ),
        (["serve", "--hmac-secret", "do-not-echo"], "BRIDGE_HMAC_SECRET=…"),
    ],
)
def test_an_option_named_like_a_setting_points_to_its_variable(
    args: list[str], variable: str
) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert f"{args[1].partition('=')[0]} is not an option" in err
    assert f"set {variable} " in err
    assert "do-not-echo" not in err


def test_an_unknown_option_that_is_no_setting_is_clicks_error() -> None:
    code, _, err = run("serve", "--nope")
    assert code == 2
    assert "No such option: --nope" in err


def test_check_config_warns_about_a_secret_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("receivers:\n  - name: alm\n    auth: {secrets: [inline-secret-0a1b2c3d]}\n")
    code, out, err = run("check-config", "--config", str(path))
    assert code == 0, err
    assert err == (
        f"alm-bridge: warning: receiver 'alm' in {path}: auth.secrets holds a secret in plain "
        "text; keep it in secret_files, secret_envs or secret_keys instead\n"
    )
    assert "inline-secret-0a1b2c3d" not in out + err
