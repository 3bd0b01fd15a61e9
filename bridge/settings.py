"""One frozen, typed settings object, read from ``BRIDGE_*`` variables and a YAML file.

Precedence: explicit arguments, then ``BRIDGE_*`` environment variables, then the YAML
file named by ``BRIDGE_CONFIG_FILE``. Receivers come from the file's ``receivers`` list;
without one, a single receiver is built from the ``BRIDGE_RECEIVER_*``/``BRIDGE_AUTH_*``
variables. :func:`resolve` turns settings into runtime receivers with their secrets
loaded and reports every problem at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from bridge.auth import BasicAuth, HmacAuth, NoAuth, Verifier, secret_from_text
from bridge.errors import ConfigError
from bridge.routing import DEFAULT_EVENT_NAME_PATTERN, RoutingPolicy, validate_topics

CONFIG_FILE_ENV = "BRIDGE_CONFIG_FILE"
_RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuthSettings(_Strict):
    """How a receiver checks that a request comes from ALM."""

    method: Literal["none", "basic", "hmac"] = "none"
    header: str = "X-ALM-Signature"
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    secret_files: list[Path] = Field(default_factory=list)
    secret_envs: list[str] = Field(default_factory=list)
    secrets: list[SecretStr] = Field(default_factory=list)
    credential_files: list[Path] = Field(default_factory=list)
    credential_envs: list[str] = Field(default_factory=list)
    credentials: list[SecretStr] = Field(default_factory=list)
    unauthenticated_challenge: bool = True


class RoutingSettings(_Strict):
    """Where a receiver's events go."""

    topic_template: str = "alm.{event}"
    overrides: dict[str, str] = Field(default_factory=dict)
    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)
    unlisted: Literal["template", "catchall", "deadletter"] = "template"
    catchall_topic: str = "alm.other"
    key: Literal["record", "eventId", "accountId", "none"] = "record"
    source_template: str = "https://learningmanager.adobe.com/accounts/{accountId}"
    event_name_pattern: str = DEFAULT_EVENT_NAME_PATTERN

    @field_validator("event_name_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class DeadLetterSettings(_Strict):
    """What happens to a batch that authenticated but can never be accepted."""

    policy: Literal["deadletter", "reject"] = "deadletter"
    topic: str = "alm.deadletter"


class ReceiverSettings(_Strict):
    """One ALM webhook target: ``/webhooks/<name>``."""

    name: str
    accounts: list[int] = Field(default_factory=list)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)

    @field_validator("name")
    @classmethod
    def _name_is_a_path_segment(cls, value: str) -> str:
        if not _RECEIVER_NAME.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '.', '_' or '-'")
        return value


class Settings(BaseSettings):
    """Everything the process reads at start. Secrets are hidden from ``repr``."""

    model_config = SettingsConfigDict(env_prefix="BRIDGE_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    config_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    publish_timeout_ms: int = Field(default=3000, ge=100, le=60_000)
    shutdown_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_inflight_batches: int = Field(default=128, ge=1)
    max_queue_delay_ms: int = Field(default=1500, ge=10, le=60_000)
    body_timeout_ms: int = Field(default=2000, ge=100, le=60_000)
    max_body_reads: int = Field(default=256, ge=1)
    http_idle_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_events_per_batch: int = Field(default=5000, ge=1)
    max_json_depth: int = Field(default=32, ge=4, le=512)
    max_string_chars: int = Field(default=65_536, ge=64)
    max_record_bytes: int = Field(default=1_000_000, ge=1024)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    dedupe_max_entries: int = Field(default=100_000, ge=0)
    dedupe_max_age_seconds: float = Field(default=86_400.0, gt=0)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_client_id: str = "alm-kafka-bridge"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    kafka_linger_ms: int = Field(default=0, ge=0, le=1000)
    kafka_request_timeout_ms: int = Field(default=2500, ge=100)
    kafka_max_batch_bytes: int = Field(default=1_048_576, ge=1024)
    kafka_auto_create_topics: bool = True
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_topic_replication_factor: int = Field(default=1, ge=1)
    kafka_max_topics: int = Field(default=200, ge=1, le=100_000)

    receivers: list[ReceiverSettings] = Field(default_factory=list)

    receiver_name: str = "alm"
    auth_method: Literal["none", "basic", "hmac"] = "none"
    hmac_secret: SecretStr | None = None
    hmac_secret_file: Path | None = None
    hmac_header: str = "X-ALM-Signature"
    hmac_algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    hmac_encoding: Literal["hex", "base64"] = "hex"
    basic_credentials: SecretStr | None = None
    basic_credentials_file: Path | None = None
    account_ids: str = ""
    dead_letter_policy: Literal["deadletter", "reject"] = "deadletter"
    dead_letter_topic: str = "alm.deadletter"
    topic_template: str = "alm.{event}"
    unlisted_policy: Literal["template", "catchall", "deadletter"] = "template"
    catchall_topic: str = "alm.other"
    key_strategy: Literal["record", "eventId", "accountId", "none"] = "record"
    event_name_pattern: str = DEFAULT_EVENT_NAME_PATTERN

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=Path(config_file)))
        return tuple(sources)

    def effective_receivers(self) -> list[ReceiverSettings]:
        """The YAML receivers, or the single one described by environment variables."""
        if self.receivers:
            return list(self.receivers)
        try:
            return self._receiver_from_environment()
        except ValidationError as exc:
            raise ConfigError(_problems(exc, prefix="BRIDGE_RECEIVER")) from None

    def _receiver_from_environment(self) -> list[ReceiverSettings]:
        accounts: list[int] = []
        for item in self.account_ids.split(","):
            if item.strip():
                if not item.strip().isdigit():
                    raise ConfigError([f"account_ids: {item.strip()!r} is not an account id"])
                accounts.append(int(item))
        secrets = [SecretStr(s) for s in _split(self.hmac_secret)]
        credentials = [SecretStr(c) for c in _split(self.basic_credentials)]
        return [
            ReceiverSettings(
                name=self.receiver_name,
                accounts=accounts,
                auth=AuthSettings(
                    method=self.auth_method,
                    header=self.hmac_header,
                    algorithm=self.hmac_algorithm,
                    encoding=self.hmac_encoding,
                    secrets=secrets,
                    secret_files=[self.hmac_secret_file] if self.hmac_secret_file else [],
                    credentials=credentials,
                    credential_files=(
                        [self.basic_credentials_file] if self.basic_credentials_file else []
                    ),
                ),
                routing=RoutingSettings(
                    topic_template=self.topic_template,
                    unlisted=self.unlisted_policy,
                    catchall_topic=self.catchall_topic,
                    key=self.key_strategy,
                    event_name_pattern=self.event_name_pattern,
                ),
                dead_letter=DeadLetterSettings(
                    policy=self.dead_letter_policy, topic=self.dead_letter_topic
                ),
            )
        ]

    def masked(self) -> dict[str, Any]:
        """The effective configuration, safe to print or log."""
        dumped = self.model_dump(mode="json", exclude={"receivers"})
        dumped["receivers"] = [r.model_dump(mode="json") for r in self.effective_receivers()]
        for key in ("receiver_name", "auth_method", "hmac_secret", "basic_credentials"):
            dumped.pop(key, None)
        return dumped


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """``BRIDGE_*`` variables that name no setting (typos are otherwise silently ignored)."""
    env = os.environ if environ is None else environ
    known = {f"BRIDGE_{name.upper()}" for name in Settings.model_fields}
    return sorted(k for k in env if k.upper().startswith("BRIDGE_") and k.upper() not in known)


def _split(secret: SecretStr | None) -> list[str]:
    if secret is None:
        return []
    return [part.strip() for part in secret.get_secret_value().split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class Receiver:
    """A receiver ready to serve: verifier with secrets loaded, routing policy, limits."""

    name: str
    accounts: frozenset[int]
    verifier: Verifier
    routing: RoutingPolicy
    dead_letter_policy: Literal["deadletter", "reject"]
    unauthenticated_challenge: bool
    auth_method: str


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (and the YAML file), or a :class:`ConfigError`."""
    if config_file is not None:
        os.environ[CONFIG_FILE_ENV] = str(config_file)
    path = os.environ.get(CONFIG_FILE_ENV)
    if path and not Path(path).is_file():
        raise ConfigError([f"{CONFIG_FILE_ENV}: {path} is not a readable file"])
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        if prefix:
            where = f"{prefix}_{where}".upper()
        problems.append(f"{where}: {error['msg']}")
    return problems


def resolve(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Receiver]:
    """Runtime receivers with their secrets loaded; every problem reported at once."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    receivers: list[Receiver] = []
    seen: set[str] = set()
    for spec in settings.effective_receivers():
        where = f"receiver {spec.name!r}"
        if spec.name in seen:
            problems.append(f"{where}: the name is used twice")
        seen.add(spec.name)
        verifier = _verifier(spec.auth, env, where, problems)
        routing = spec.routing
        topics = [routing.catchall_topic, spec.dead_letter.topic, *routing.overrides.values()]
        problems.extend(f"{where}: {p}" for p in validate_topics(topics))
        if "{event}" not in routing.topic_template and not routing.overrides:
            problems.append(f"{where}: topic_template must contain {{event}}")
        policy = RoutingPolicy(
            receiver=spec.name,
            topic_template=routing.topic_template,
            overrides=dict(routing.overrides),
            allow=frozenset(routing.allow) if routing.allow is not None else None,
            deny=frozenset(routing.deny),
            unlisted=routing.unlisted,
            catchall_topic=routing.catchall_topic,
            key=routing.key,
            source_template=routing.source_template,
            dead_letter_topic=spec.dead_letter.topic,
            event_name_pattern=routing.event_name_pattern,
        )
        if verifier is not None:
            receivers.append(
                Receiver(
                    name=spec.name,
                    accounts=frozenset(spec.accounts),
                    verifier=verifier,
                    routing=policy,
                    dead_letter_policy=spec.dead_letter.policy,
                    unauthenticated_challenge=spec.auth.unauthenticated_challenge,
                    auth_method=spec.auth.method,
                )
            )
    if not receivers and not problems:
        problems.append("no receiver is configured")
    problems.extend(_kafka_problems(settings))
    if problems:
        raise ConfigError(problems)
    return receivers


def _read(path: Path, where: str, problems: list[str]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{where}: cannot read {path}: {exc.__class__.__name__}")
        return None


def _verifier(
    auth: AuthSettings, env: Mapping[str, str], where: str, problems: list[str]
) -> Verifier | None:
    if auth.method == "none":
        return NoAuth()
    if auth.method == "hmac":
        texts: list[str] = [s.get_secret_value() for s in auth.secrets]
        for path in auth.secret_files:
            text = _read(path, where, problems)
            if text is not None:
                texts.append(text)
        for name in auth.secret_envs:
            if env.get(name):
                texts.append(env[name])
            else:
                problems.append(f"{where}: environment variable {name} is empty or unset")
        secrets: list[bytes] = []
        for text in texts:
            try:
                secrets.append(secret_from_text(text))
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
        if not secrets:
            problems.append(f"{where}: hmac authentication needs at least one secret")
            return None
        return HmacAuth(secrets, auth.header, auth.algorithm, auth.encoding)
    lines: list[str] = []
    for secret in auth.credentials:
        lines.extend(secret.get_secret_value().split(","))
    for path in auth.credential_files:
        text = _read(path, where, problems)
        if text is not None:
            lines.extend(text.splitlines())
    for name in auth.credential_envs:
        if env.get(name):
            lines.extend(env[name].split(","))
        else:
            problems.append(f"{where}: environment variable {name} is empty or unset")
    pairs: list[tuple[str, str]] = []
    for line in (item.strip() for item in lines):
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            problems.append(f"{where}: a basic credential is not 'user:password'")
            continue
        pairs.append((user, password))
    if not pairs:
        problems.append(f"{where}: basic authentication needs at least one user:password")
        return None
    return BasicAuth(pairs)


def _kafka_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL"):
        if settings.kafka_sasl_mechanism is None:
            problems.append("kafka_sasl_mechanism: required with a SASL security protocol")
        if not settings.kafka_sasl_username:
            problems.append("kafka_sasl_username: required with a SASL security protocol")
        if settings.kafka_sasl_password is None and settings.kafka_sasl_password_file is None:
            problems.append(
                "kafka_sasl_password: required with a SASL security protocol "
                "(or kafka_sasl_password_file)"
            )
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if path is not None and not Path(path).is_file():
            problems.append(f"{name}: {path} is not a readable file")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        problems.append("kafka_ssl_certfile and kafka_ssl_keyfile go together")
    if not settings.kafka_bootstrap_servers.strip():
        problems.append("kafka_bootstrap_servers: empty")
    return problems


def sasl_password(settings: Settings) -> str | None:
    """The SASL password from the setting or its file."""
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_sasl_password_file is not None:
        return settings.kafka_sasl_password_file.read_text(encoding="utf-8").strip()
    return None
