"""Settings from arguments, BRIDGE_* variables and the YAML file; resolve() and its errors."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bridge.config.config_problems import unknown_variable
from bridge.config.receivers import Receiver, resolve
from bridge.config.settings import (
    CONFIG_FILE_ENV,
    AuthSettings,
    ReceiverSettings,
    Settings,
    kafka_problems,
    load_settings,
    plaintext_secrets,
    sasl_password,
    unknown_environment,
)
from bridge.core.auth import BasicAuth, HmacAuth, NoAuth, basic_authorization, sign_hmac
from bridge.core.errors import AuthError, ConfigError

HMAC_SECRET = "prod-signing-secret-7f3a"
INLINE_SECRET = "inline-yaml-secret-91bc"
BASIC_PASSWORD = "basic-password-c0ffee"
SASL_PASSWORD = "sasl-password-d00d"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))
    return path


def config_problems(environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolve(load_settings(), environ=environ if environ is not None else {})
    assert caught.value.problems
    assert caught.value.code == "invalid_config"
    return caught.value.problems


def has_problem(problems: list[str], *fragments: str) -> bool:
    return any(all(f in p for f in fragments) for p in problems)


def hmac_verifier(receiver: Receiver) -> HmacAuth:
    assert isinstance(receiver.verifier, HmacAuth)
    return receiver.verifier


def make_settings(**values: Any) -> Settings:
    # Through a mapping: mypy takes the Field(default, ...) fields for required arguments.
    return Settings(**values)


def basic_verifier(receiver: Receiver) -> BasicAuth:
    assert isinstance(receiver.verifier, BasicAuth)
    return receiver.verifier


class TestExplicitSettings:
    def test_defaults(self) -> None:
        settings = make_settings(auth_method="none")
        assert settings.host == "127.0.0.1"
        assert settings.port == 8080
        assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
        (receiver,) = resolve(settings, environ={})
        assert receiver.name == "alm"
        assert isinstance(receiver.verifier, NoAuth)
        assert receiver.accounts == frozenset()
        assert receiver.dead_letter_policy == "deadletter"
        assert receiver.routing.dead_letter_topic == "alm.deadletter"

    def test_explicit_values(self) -> None:
        settings = make_settings(
            port=9001,
            kafka_bootstrap_servers="k1:9092,k2:9092",
            kafka_compression_type="zstd",
            receiver_name="hr",
            auth_method="basic",
            basic_credentials=f"alm:{BASIC_PASSWORD}",
            account_ids="1234, 1010",
            unlisted_policy="catchall",
            key_strategy="eventId",
        )
        assert settings.port == 9001
        assert settings.kafka_compression_type == "zstd"
        (receiver,) = resolve(settings, environ={})
        assert receiver.name == "hr"
        assert receiver.accounts == frozenset({1234, 1010})
        assert receiver.routing.unlisted == "catchall"
        assert receiver.routing.key == "eventId"
        basic_verifier(receiver).precheck(
            {"Authorization": basic_authorization("alm", BASIC_PASSWORD)}
        )

    def test_explicit_values_beat_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_PORT", "9100")
        assert make_settings(port=9200).port == 9200

    def test_settings_are_frozen(self) -> None:
        settings = make_settings()
        with pytest.raises(ValueError, match="frozen"):
            settings.port = 1


class TestEnvironment:
    def test_hmac_receiver_from_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_RECEIVER_NAME", "prod")
        monkeypatch.setenv("BRIDGE_AUTH_METHOD", "hmac")
        monkeypatch.setenv("BRIDGE_HMAC_SECRET", "old-secret, new-secret")
        monkeypatch.setenv("BRIDGE_HMAC_HEADER", "X-Signature")
        monkeypatch.setenv("BRIDGE_HMAC_ALGORITHM", "sha512")
        monkeypatch.setenv("BRIDGE_HMAC_ENCODING", "base64")
        monkeypatch.setenv("BRIDGE_ACCOUNT_IDS", "1234,1010")
        monkeypatch.setenv("BRIDGE_DEAD_LETTER_POLICY", "reject")
        monkeypatch.setenv("BRIDGE_DEAD_LETTER_TOPIC", "alm.parked")
        settings = load_settings()
        (spec,) = settings.effective_receivers()
        assert spec.name == "prod"
        assert spec.accounts == [1234, 1010]
        assert [s.get_secret_value() for s in spec.auth.secrets] == ["old-secret", "new-secret"]
        (receiver,) = resolve(settings, environ={})
        assert receiver.dead_letter_policy == "reject"
        assert receiver.routing.dead_letter_topic == "alm.parked"
        verifier = hmac_verifier(receiver)
        assert verifier.header == "X-Signature"
        body = b'{"accountId": 1234, "events": []}'
        for secret in (b"old-secret", b"new-secret"):
            signature = sign_hmac(body, secret, algorithm="sha512", encoding="base64")
            verifier.verify({"X-Signature": signature}, body)

    def test_hmac_secret_file_variable(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        secret_file = tmp_path / "signing-secret.json"
        secret_file.write_text(json.dumps({"name": "prod", "signingSecret": HMAC_SECRET}))
        monkeypatch.setenv("BRIDGE_AUTH_METHOD", "hmac")
        monkeypatch.setenv("BRIDGE_HMAC_SECRET_FILE", str(secret_file))
        (receiver,) = resolve(load_settings(), environ={})
        body = b"{}"
        hmac_verifier(receiver).verify(
            {"X-ALM-Signature": sign_hmac(body, HMAC_SECRET.encode())}, body
        )

    def test_basic_receiver_from_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_AUTH_METHOD", "basic")
        monkeypatch.setenv("BRIDGE_BASIC_CREDENTIALS", "alm:pw1,ops:pw:with:colons")
        (receiver,) = resolve(load_settings(), environ={})
        verifier = basic_verifier(receiver)
        verifier.precheck({"Authorization": basic_authorization("alm", "pw1")})
        verifier.precheck({"Authorization": basic_authorization("ops", "pw:with:colons")})

    def test_kafka_variables(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        password_file = tmp_path / "sasl-password"
        password_file.write_text(SASL_PASSWORD + "\n")
        monkeypatch.setenv("BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "broker-1:9093")
        monkeypatch.setenv("BRIDGE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        monkeypatch.setenv("BRIDGE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        monkeypatch.setenv("BRIDGE_KAFKA_SASL_USERNAME", "bridge")
        monkeypatch.setenv("BRIDGE_KAFKA_SASL_PASSWORD_FILE", str(password_file))
        monkeypatch.setenv("BRIDGE_KAFKA_AUTO_CREATE_TOPICS", "false")
        monkeypatch.setenv("BRIDGE_HMAC_SECRET", HMAC_SECRET)
        settings = load_settings()
        resolve(settings, environ={})
        assert settings.kafka_bootstrap_servers == "broker-1:9093"
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
        assert settings.kafka_auto_create_topics is False
        assert sasl_password(settings) == SASL_PASSWORD

    @pytest.mark.parametrize(
        ("name", "value", "field"),
        [
            ("BRIDGE_PORT", "70000", "port"),
            ("BRIDGE_AUTH_METHOD", "oauth", "auth_method"),
            ("BRIDGE_KAFKA_SECURITY_PROTOCOL", "TLS", "kafka_security_protocol"),
            ("BRIDGE_PUBLISH_TIMEOUT_MS", "soon", "publish_timeout_ms"),
            ("BRIDGE_KAFKA_COMPRESSION_TYPE", "brotli", "kafka_compression_type"),
        ],
    )
    def test_invalid_variables(
        self, monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
    ) -> None:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        # The variable the operator set, and the value it holds; not pydantic's field path.
        assert has_problem(caught.value.problems, f"{name}: {value!r} is not valid")
        assert not has_problem(caught.value.problems, f"{field}:")

    def test_every_invalid_variable_is_listed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_PORT", "-1")
        monkeypatch.setenv("BRIDGE_LOG_LEVEL", "loud")
        monkeypatch.setenv("BRIDGE_MAX_INFLIGHT_BATCHES", "0")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        problems = caught.value.problems
        assert len(problems) == 3
        assert has_problem(problems, "BRIDGE_PORT: '-1' is not valid")
        assert has_problem(problems, "BRIDGE_LOG_LEVEL: 'loud' is not valid")
        assert has_problem(problems, "BRIDGE_MAX_INFLIGHT_BATCHES: '0' is not valid")

    def test_a_near_miss_value_gets_a_suggestion(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_LOG_LEVEL", "warn")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert caught.value.problems == [
            "BRIDGE_LOG_LEVEL: 'warn' is not valid: input should be 'debug', 'info', 'warning' "
            "or 'error'; did you mean 'warning'?"
        ]

    def test_secrets_are_not_echoed_in_problems(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_config(
            tmp_path,
            monkeypatch,
            "receivers:\n  - name: prod\n    auth: {method: hmac, secrets: [[nested-secret-42]]}\n",
        )
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert has_problem(caught.value.problems, "receiver 'prod'", "(hidden)")
        assert "nested-secret-42" not in str(caught.value)

    def test_bad_account_ids_are_a_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_ACCOUNT_IDS", "1234,abc")
        assert any("account" in problem.lower() for problem in config_problems())

    def test_bad_receiver_name_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_RECEIVER_NAME", "prod/../admin")
        assert has_problem(config_problems(), "BRIDGE_RECEIVER_NAME")

    def test_topic_with_trailing_newline_is_a_config_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BRIDGE_DEAD_LETTER_TOPIC", "alm.deadletter\n")
        assert has_problem(config_problems(), "illegal Kafka topic name")

    def test_hmac_without_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_AUTH_METHOD", "hmac")
        assert has_problem(config_problems(), "'alm'", "at least one secret")

    def test_basic_without_credentials(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_AUTH_METHOD", "basic")
        monkeypatch.setenv("BRIDGE_BASIC_CREDENTIALS", "no-colon")
        problems = config_problems()
        assert has_problem(problems, "user:password")


class TestAuthenticationMethod:
    """A secret implies its method; no credentials and no method is refused; none is explicit."""

    @pytest.mark.parametrize(
        ("variable", "value", "method"),
        [
            ("BRIDGE_HMAC_SECRET", HMAC_SECRET, "hmac"),
            ("BRIDGE_BASIC_CREDENTIALS", f"alm:{BASIC_PASSWORD}", "basic"),
        ],
    )
    def test_a_secret_variable_implies_its_method(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, method: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        settings = load_settings()
        (spec,) = settings.effective_receivers()
        assert spec.auth.method == method
        (receiver,) = resolve(settings, environ={})
        assert receiver.auth_method == method
        assert not isinstance(receiver.verifier, NoAuth)

    def test_an_hmac_secret_alone_makes_an_authenticated_receiver(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BRIDGE_HMAC_SECRET", HMAC_SECRET)
        (receiver,) = resolve(load_settings(), environ={})
        body = b'{"accountId": 1234, "events": []}'
        verifier = hmac_verifier(receiver)
        verifier.verify({"X-ALM-Signature": sign_hmac(body, HMAC_SECRET.encode())}, body)
        with pytest.raises(AuthError):
            verifier.verify({}, body)

    @pytest.mark.parametrize(
        ("variable", "method"),
        [("BRIDGE_HMAC_SECRET_FILE", "hmac"), ("BRIDGE_BASIC_CREDENTIALS_FILE", "basic")],
    )
    def test_a_secret_file_variable_implies_its_method(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, method: str
    ) -> None:
        secret_file = tmp_path / "secret"
        secret_file.write_text(f"alm:{BASIC_PASSWORD}\n" if method == "basic" else HMAC_SECRET)
        monkeypatch.setenv(variable, str(secret_file))
        (receiver,) = resolve(load_settings(), environ={})
        assert receiver.auth_method == method

    def test_no_credentials_and_no_method_is_refused(self) -> None:
        assert config_problems() == [
            "receiver 'alm': no authentication is configured: set BRIDGE_HMAC_SECRET (or "
            "BRIDGE_HMAC_SECRET_FILE, or BRIDGE_BASIC_CREDENTIALS), or BRIDGE_AUTH_METHOD=none "
            "to accept unauthenticated batches deliberately"
        ]

    def test_an_empty_secret_variable_is_no_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_HMAC_SECRET", " , ")
        assert has_problem(config_problems(), "no authentication is configured")

    def test_a_misspelt_secret_variable_does_not_open_the_receiver(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BRIDGE_SECRET", HMAC_SECRET)
        assert has_problem(config_problems(), "no authentication is configured")

    def test_explicit_none_is_accepted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BRIDGE_AUTH_METHOD", "none")
        (receiver,) = resolve(load_settings(), environ={})
        assert isinstance(receiver.verifier, NoAuth)
        assert receiver.auth_method == "none"

    @pytest.mark.parametrize(
        ("environ", "problem"),
        [
            (
                {"BRIDGE_AUTH_METHOD": "none", "BRIDGE_HMAC_SECRET": HMAC_SECRET},
                "BRIDGE_AUTH_METHOD: 'none' contradicts BRIDGE_HMAC_SECRET, an hmac secret: set "
                "BRIDGE_AUTH_METHOD=hmac (or leave it unset), or unset BRIDGE_HMAC_SECRET",
            ),
            (
                {"BRIDGE_AUTH_METHOD": "basic", "BRIDGE_HMAC_SECRET": HMAC_SECRET},
                "BRIDGE_AUTH_METHOD: 'basic' contradicts BRIDGE_HMAC_SECRET, an hmac secret: set "
                "BRIDGE_AUTH_METHOD=hmac (or leave it unset), or give basic credentials in its "
                "place",
            ),
            (
                {"BRIDGE_AUTH_METHOD": "hmac", "BRIDGE_BASIC_CREDENTIALS": f"alm:{BASIC_PASSWORD}"},
                "BRIDGE_AUTH_METHOD: 'hmac' contradicts BRIDGE_BASIC_CREDENTIALS, basic "
                "credentials: set BRIDGE_AUTH_METHOD=basic (or leave it unset), or give an hmac "
                "secret in its place",
            ),
            (
                {"BRIDGE_AUTH_METHOD": "none", "BRIDGE_BASIC_CREDENTIALS_FILE": "/run/creds"},
                "BRIDGE_AUTH_METHOD: 'none' contradicts BRIDGE_BASIC_CREDENTIALS_FILE, basic "
                "credentials: set BRIDGE_AUTH_METHOD=basic (or leave it unset), or unset "
                "BRIDGE_BASIC_CREDENTIALS_FILE",
            ),
            (
                {"BRIDGE_HMAC_SECRET": HMAC_SECRET, "BRIDGE_BASIC_CREDENTIALS": "alm:pw"},
                "BRIDGE_HMAC_SECRET (hmac) and BRIDGE_BASIC_CREDENTIALS (basic) are both set: a "
                "receiver authenticates one way; keep only the one its ALM webhook uses",
            ),
            (
                {
                    "BRIDGE_AUTH_METHOD": "hmac",
                    "BRIDGE_HMAC_SECRET_FILE": "/run/secret",
                    "BRIDGE_BASIC_CREDENTIALS": "alm:pw",
                },
                "BRIDGE_HMAC_SECRET_FILE (hmac) and BRIDGE_BASIC_CREDENTIALS (basic) are both set",
            ),
        ],
    )
    def test_a_contradiction_is_one_problem_naming_the_variables(
        self, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], problem: str
    ) -> None:
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        problems = config_problems()
        assert len(problems) == 1
        assert problems[0].startswith(problem)
        assert HMAC_SECRET not in problems[0]
        assert BASIC_PASSWORD not in problems[0]

    @pytest.mark.parametrize(
        ("auth", "method"),
        [
            ("{secrets: [s3cret-a]}", "hmac"),
            ("{secret_envs: [PROD_SECRET]}", "hmac"),
            ("{secretKeys: [signing-secret]}", "hmac"),
            ("{secret_files: [/run/secret], header: X-Signature}", "hmac"),
            ("{credentials: ['alm:pw']}", "basic"),
            ("{credentialKeys: [credentials], secretKeys: []}", "basic"),
            ("{method: '', credential_envs: [PROD_CREDENTIALS]}", "basic"),
            ("{method: none}", "none"),
        ],
    )
    def test_receiver_credentials_in_the_file_imply_the_method(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str, method: str
    ) -> None:
        write_config(tmp_path, monkeypatch, f"receivers:\n  - name: prod\n    auth: {auth}\n")
        (spec,) = load_settings().effective_receivers()
        assert spec.auth.method == method

    def test_a_receiver_in_the_file_without_authentication_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_config(
            tmp_path,
            monkeypatch,
            "receivers:\n  - name: prod\n  - name: open\n    auth: {method: none}\n"
            "  - name: signed\n    auth: {secrets: [s3cret-a]}\n",
        )
        problems = config_problems()
        assert problems == [
            "receiver 'prod': no authentication is configured: give auth a secret "
            "(secret_files, secret_envs, secrets or secret_keys) or basic credentials "
            "(credential_files, credential_envs, credentials or credential_keys), or set "
            "auth: {method: none} to accept unauthenticated batches deliberately"
        ]

    @pytest.mark.parametrize(
        ("auth", "problem"),
        [
            (
                "{method: none, secretKeys: [signing-secret]}",
                "auth: method 'none' contradicts secretKeys, an hmac secret: set method hmac "
                "(or leave it out), or remove secretKeys",
            ),
            (
                "{method: basic, secrets: [nested-secret-42]}",
                "auth: method 'basic' contradicts secrets, an hmac secret: set method hmac "
                "(or leave it out), or give basic credentials in its place",
            ),
            (
                "{method: hmac, credential_files: [/run/creds]}",
                "auth: method 'hmac' contradicts credential_files, basic credentials: set "
                "method basic (or leave it out), or give an hmac secret in its place",
            ),
            (
                "{secret_envs: [A], credentials: ['alm:nested-secret-42']}",
                "auth: secret_envs (hmac) and credentials (basic) are both given: a receiver "
                "authenticates one way; keep only the one its ALM webhook uses",
            ),
        ],
    )
    def test_a_contradiction_in_the_file_names_the_receiver_and_the_keys(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str, problem: str
    ) -> None:
        path = write_config(
            tmp_path, monkeypatch, f"receivers:\n  - name: prod\n    auth: {auth}\n"
        )
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert caught.value.problems == [f"receiver 'prod' in {path}: {problem}"]
        assert "nested-secret-42" not in str(caught.value)


class TestSuggestions:
    """An unknown BRIDGE_* variable names the setting the operator most likely meant."""

    @pytest.mark.parametrize(
        ("name", "meant"),
        [
            ("BRIDGE_SECRET", "BRIDGE_HMAC_SECRET"),
            ("BRIDGE_HMAC", "BRIDGE_HMAC_SECRET"),
            ("BRIDGE_SIGNING_SECRET", "BRIDGE_HMAC_SECRET"),
            ("BRIDGE_WEBHOOK_SECRET", "BRIDGE_HMAC_SECRET"),
            ("BRIDGE_HMAC_KEY", "BRIDGE_HMAC_SECRET"),
            ("BRIDGE_SECRET_FILE", "BRIDGE_HMAC_SECRET_FILE"),
            ("BRIDGE_PASSWORD", "BRIDGE_BASIC_CREDENTIALS"),
            ("BRIDGE_USERNAME", "BRIDGE_BASIC_CREDENTIALS"),
            ("BRIDGE_BASIC_AUTH", "BRIDGE_BASIC_CREDENTIALS"),
            ("BRIDGE_CREDENTIALS_FILE", "BRIDGE_BASIC_CREDENTIALS_FILE"),
            ("BRIDGE_AUTH", "BRIDGE_AUTH_METHOD"),
            ("BRIDGE_AUTH_TYPE", "BRIDGE_AUTH_METHOD"),
            ("BRIDGE_AUTHENTICATION", "BRIDGE_AUTH_METHOD"),
            # Typos of real settings keep their suggestion.
            ("BRIDGE_SECRETS_DIRS", "BRIDGE_SECRETS_DIR"),
            ("BRIDGE_HMAC_SECRT", "BRIDGE_HMAC_SECRET"),
            ("BRIDGE_KAFKA_SASL_PASWORD", "BRIDGE_KAFKA_SASL_PASSWORD"),
            ("BRIDGE_PROT", "BRIDGE_PORT"),
        ],
    )
    def test_the_intended_variable_is_suggested(self, name: str, meant: str) -> None:
        known = [f"BRIDGE_{field.upper()}" for field in Settings.model_fields]
        assert unknown_variable(name, known) == (
            f"{name} is not a setting and is ignored; did you mean {meant}?"
        )
        assert unknown_environment({name: "x"}) == [name]

    def test_a_top_level_key_of_the_file_gets_the_intended_setting(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_config(tmp_path, monkeypatch, "secret: s3cret-a\n")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert caught.value.problems == [
            f"secret in {path}: unknown key; did you mean 'hmac_secret'?"
        ]


YAML_TWO_RECEIVERS = """\
port: 9000
kafka_client_id: from-yaml
receivers:
  - name: prod
    accounts: [1234]
    auth:
      method: hmac
      header: X-ALM-Signature
      secret_files: [{secret_file}]
    routing:
      overrides: {{LEARNER_PROGRESS: alm.progress}}
      deny: [CI_STATS]
      unlisted: catchall
      catchall_topic: alm.misc
    dead_letter:
      policy: reject
      topic: alm.prod.dlq
  - name: partner-b
    accounts: [1010, 2020]
    auth:
      method: basic
      credential_envs: [PARTNER_B_CREDENTIALS]
"""


class TestYamlFile:
    def two_receivers(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
        secret_file = tmp_path / "prod-signing-secret.json"
        secret_file.write_text(
            json.dumps({"webhookName": "prod", "signingSecret": HMAC_SECRET}, indent=2)
        )
        write_config(tmp_path, monkeypatch, YAML_TWO_RECEIVERS.format(secret_file=secret_file))
        return load_settings()

    def test_two_receivers_resolved(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = self.two_receivers(tmp_path, monkeypatch)
        environ = {"PARTNER_B_CREDENTIALS": f"alm:{BASIC_PASSWORD},backup:second-pw"}
        prod, partner = resolve(settings, environ=environ)

        assert prod.name == "prod"
        assert prod.accounts == frozenset({1234})
        assert prod.dead_letter_policy == "reject"
        assert prod.routing.overrides == {"LEARNER_PROGRESS": "alm.progress"}
        assert prod.routing.deny == frozenset({"CI_STATS"})
        assert prod.routing.unlisted == "catchall"
        assert prod.routing.catchall_topic == "alm.misc"
        assert prod.routing.dead_letter_topic == "alm.prod.dlq"
        body = b'{"accountId": 1234, "events": []}'
        hmac_verifier(prod).verify({"X-ALM-Signature": sign_hmac(body, HMAC_SECRET.encode())}, body)

        assert partner.name == "partner-b"
        assert partner.accounts == frozenset({1010, 2020})
        assert partner.routing.receiver == "partner-b"
        verifier = basic_verifier(partner)
        verifier.precheck({"Authorization": basic_authorization("alm", BASIC_PASSWORD)})
        verifier.precheck({"Authorization": basic_authorization("backup", "second-pw")})

    def test_top_level_keys_from_yaml(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings = self.two_receivers(tmp_path, monkeypatch)
        assert settings.port == 9000
        assert settings.kafka_client_id == "from-yaml"

    def test_environment_overrides_yaml(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BRIDGE_PORT", "9100")
        settings = self.two_receivers(tmp_path, monkeypatch)
        assert settings.port == 9100
        assert settings.kafka_client_id == "from-yaml"

    def test_config_file_argument(self, tmp_path: Path) -> None:
        path = tmp_path / "bridge.yaml"
        path.write_text("port: 9300\n")
        assert load_settings(config_file=path).port == 9300

    def test_config_file_argument_leaves_the_environment_alone(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        other = tmp_path / "other.yaml"
        other.write_text("port: 9400\n")
        monkeypatch.setenv(CONFIG_FILE_ENV, str(other))
        path = tmp_path / "bridge.yaml"
        path.write_text("port: 9300\n")
        before = dict(os.environ)

        settings = load_settings(config_file=path)

        assert settings.port == 9300
        assert settings.config_file == path
        assert dict(os.environ) == before
        assert load_settings().port == 9400

    def test_the_charts_receiver_values_are_accepted_as_they_are(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        secrets = tmp_path / "secrets"
        (secrets / "emea").mkdir(parents=True)
        (secrets / "emea" / "signing-secret").write_text(HMAC_SECRET + "\n")
        (secrets / "sandbox").mkdir()
        (secrets / "sandbox" / "credentials").write_text(f"alm:{BASIC_PASSWORD}\n")
        write_config(
            tmp_path,
            monkeypatch,
            f"""
secrets_dir: {secrets}
receivers:
  - name: emea
    accounts: [1010]
    auth:
      method: hmac
      existingSecret: alm-emea-webhook
      secretKeys: [signing-secret]
      header: ""
      algorithm: sha512
      encoding: ""
      allowUnauthenticated: false
    routing:
      topicTemplate: "alm.emea.{{event}}"
      catchallTopic: alm.emea.other
      allow: null
    deadLetter:
      policy: reject
  - name: sandbox
    auth:
      method: basic
      existingSecret: alm-sandbox-webhook
      credentialKeys: [credentials]
""",
        )

        emea, sandbox = resolve(load_settings(), environ={})

        verifier = hmac_verifier(emea)
        assert (verifier.header, verifier.algorithm, verifier.encoding) == (
            "X-ALM-Signature",
            "sha512",
            "hex",
        )
        body = b'{"accountId":1010,"events":[]}'
        verifier.verify(
            {"X-ALM-Signature": sign_hmac(body, HMAC_SECRET.encode(), algorithm="sha512")}, body
        )
        assert emea.routing.topic_template == "alm.emea.{event}"
        assert emea.routing.catchall_topic == "alm.emea.other"
        assert emea.routing.allow is None
        assert emea.dead_letter_policy == "reject"
        basic_verifier(sandbox).precheck(
            {"Authorization": basic_authorization("alm", BASIC_PASSWORD)}
        )

    def test_secret_keys_need_the_secrets_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_config(
            tmp_path,
            monkeypatch,
            "receivers:\n  - name: emea\n    auth: {method: hmac, secretKeys: [signing-secret]}\n",
        )

        assert has_problem(config_problems(), "'emea'", "secrets_dir", "BRIDGE_SECRETS_DIR")

    def test_missing_credential_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.two_receivers(tmp_path, monkeypatch)
        assert has_problem(config_problems({}), "'partner-b'", "PARTNER_B_CREDENTIALS")

    def test_yaml_validation_problems_are_all_listed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_config(
            tmp_path,
            monkeypatch,
            """\
prot: 9000
receivers:
  - name: "bad name!"
  - name: ok
    auth:
      method: hmac
      secrets_file: [/x]
""",
        )
        with pytest.raises(ConfigError) as caught:
            load_settings()
        problems = caught.value.problems
        path = tmp_path / "bridge.yaml"
        assert has_problem(problems, f"prot in {path}: unknown key; did you mean 'port'?")
        assert has_problem(problems, f"receiver 'bad name!' in {path}: name: 'bad name!'")
        assert has_problem(
            problems,
            f"receiver 'ok' in {path}: auth.secrets_file: unknown key; "
            "did you mean 'secret_files'?",
        )
        assert len(problems) == 3
        for problem in problems:
            assert problem in str(caught.value)

    def test_resolve_problems_are_all_listed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        missing = tmp_path / "no-such-secret.json"
        write_config(
            tmp_path,
            monkeypatch,
            f"""\
kafka_security_protocol: SASL_SSL
kafka_sasl_mechanism: PLAIN
receivers:
  - name: twice
  - name: twice
  - name: no-secret
    auth:
      method: hmac
  - name: unreadable
    auth:
      method: hmac
      secret_files: [{missing}]
  - name: bad-topic
    routing:
      catchall_topic: "alm other"
""",
        )
        problems = config_problems()
        assert has_problem(problems, "'twice'", "used twice")
        assert has_problem(problems, "'no-secret'", "at least one secret")
        assert has_problem(problems, "'unreadable'", str(missing))
        assert has_problem(problems, "'bad-topic'", "alm other")
        assert has_problem(problems, "kafka_sasl_username")
        assert has_problem(problems, "kafka_sasl_password")

    def test_missing_config_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "absent.yaml"))
        with pytest.raises(ConfigError, match=r"absent\.yaml"):
            load_settings()

    def test_yaml_syntax_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        write_config(tmp_path, monkeypatch, "receivers: [\n  - name: x\n")
        with pytest.raises(ConfigError, match=r"bridge\.yaml"):
            load_settings()


class TestSecretsStayHidden:
    SECRETS = (HMAC_SECRET, INLINE_SECRET, BASIC_PASSWORD, SASL_PASSWORD, "env-secret-a77")

    @pytest.mark.parametrize(
        ("variable", "value", "method"),
        [
            ("BRIDGE_HMAC_SECRET", f"env-secret-a77,{HMAC_SECRET}", "hmac"),
            ("BRIDGE_BASIC_CREDENTIALS", f"alm:{BASIC_PASSWORD}", "basic"),
        ],
    )
    def test_masked_and_repr_from_environment(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, method: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        monkeypatch.setenv("BRIDGE_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
        settings = load_settings()
        self.assert_hidden(settings)
        assert settings.masked()["receivers"][0]["auth"]["method"] == method

    def test_masked_and_repr_from_yaml(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_config(
            tmp_path,
            monkeypatch,
            f"""\
kafka_sasl_password: {SASL_PASSWORD}
receivers:
  - name: inline
    auth:
      method: hmac
      secrets: [{INLINE_SECRET}, {HMAC_SECRET}]
  - name: basic
    auth:
      method: basic
      credentials: ["alm:{BASIC_PASSWORD}"]
""",
        )
        settings = load_settings()
        resolve(settings, environ={})
        self.assert_hidden(settings)
        names = [r["name"] for r in settings.masked()["receivers"]]
        assert names == ["inline", "basic"]

    def assert_hidden(self, settings: Settings) -> None:
        dumped = json.dumps(settings.masked())
        shown = (dumped, repr(settings), str(settings))
        for secret in self.SECRETS:
            for text in shown:
                assert secret not in text
        receivers = resolve(settings, environ={})
        for receiver in receivers:
            for secret in self.SECRETS:
                assert secret not in repr(receiver)


def test_a_file_whose_top_level_is_a_list_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, monkeypatch, "- name: alm\n- name: other\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == [
        f"{path}: the file must be a mapping of settings (key: value, e.g. 'receivers:' at "
        "the top level), not a list"
    ]


def test_a_name_used_twice_is_reported_with_the_other_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path,
        monkeypatch,
        "receivers:\n  - name: alm\n    typo_key: 1\n  - name: alm\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings()
    problems = caught.value.problems
    assert has_problem(problems, "'alm'", "typo_key", "unknown key")
    assert f"receiver 'alm' in {path}: the name is used twice" in problems


def test_sasl_problems_name_the_variables_that_were_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BRIDGE_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("BRIDGE_KAFKA_SSL_CAFILE", "/nonexistent/ca.pem")
    problems = kafka_problems(load_settings())
    assert problems == [
        "BRIDGE_KAFKA_SASL_USERNAME: required with BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        "BRIDGE_KAFKA_SASL_PASSWORD: required with BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL "
        "(or BRIDGE_KAFKA_SASL_PASSWORD_FILE)",
        "BRIDGE_KAFKA_SSL_CAFILE: /nonexistent/ca.pem is not a readable file",
    ]
    assert not any("kafka_sasl" in p for p in problems)


def test_sasl_problems_name_the_keys_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, monkeypatch, "kafka_security_protocol: SASL_PLAINTEXT\n")
    problems = kafka_problems(load_settings())
    assert problems[0] == (
        f"kafka_sasl_mechanism in {path}: required with kafka_security_protocol: "
        f"SASL_PLAINTEXT in {path} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
    )


def test_secrets_written_in_the_file_are_warned_about_by_receiver_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path,
        monkeypatch,
        f"""\
kafka_sasl_password: {SASL_PASSWORD}
receivers:
  - name: alm
    auth: {{secrets: [{INLINE_SECRET}, {HMAC_SECRET}]}}
  - name: partner
    auth: {{credentials: ["user:{BASIC_PASSWORD}"]}}
  - name: mounted
    auth: {{secret_envs: [SOME_VARIABLE]}}
""",
    )
    warnings = plaintext_secrets(load_settings())
    assert warnings == [
        f"kafka_sasl_password in {path} holds a secret in plain text; keep it in "
        "BRIDGE_KAFKA_SASL_PASSWORD or kafka_sasl_password_file instead",
        f"receiver 'alm' in {path}: auth.secrets holds 2 secrets in plain text; keep them in "
        "secret_files, secret_envs or secret_keys instead",
        f"receiver 'partner' in {path}: auth.credentials holds a secret in plain text; keep "
        "it in credential_files, credential_envs or credential_keys instead",
    ]
    text = "\n".join(warnings)
    for secret in (SASL_PASSWORD, INLINE_SECRET, HMAC_SECRET, BASIC_PASSWORD):
        assert secret not in text


def test_every_setting_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    # receivers: the YAML file only; the SASL password file is written "(or _PASSWORD_FILE)".
    told_otherwise = {"receivers", "kafka_sasl_password_file"}
    missing = [
        f"BRIDGE_{name.upper()}"
        for name in Settings.model_fields
        if name not in told_otherwise and f"`BRIDGE_{name.upper()}`" not in readme
    ]
    assert not missing, f"README.md does not describe {missing}"


def test_the_single_receiver_of_the_environment_has_the_defaults_of_a_yaml_receiver() -> None:
    """The flat variables and the nested models share one definition of each default."""
    flat = Settings(hmac_secret="a-secret-0123456789").effective_receivers()[0]  # type: ignore[arg-type]
    nested = ReceiverSettings(name="alm", auth=AuthSettings(secrets=["a-secret-0123456789"]))  # type: ignore[list-item]

    assert flat.routing == nested.routing
    assert flat.dead_letter == nested.dead_letter
    assert flat.liveness == nested.liveness
    assert (flat.auth.header, flat.auth.algorithm, flat.auth.encoding) == (
        nested.auth.header,
        nested.auth.algorithm,
        nested.auth.encoding,
    )
