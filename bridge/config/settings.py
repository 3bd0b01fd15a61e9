"""One frozen, typed settings object, read from ``BRIDGE_*`` variables and a YAML file.

Precedence: explicit arguments, then ``BRIDGE_*`` environment variables, then the YAML
file named by ``BRIDGE_CONFIG_FILE``. Receivers come from the file's ``receivers`` list;
without one, a single receiver is built from the ``BRIDGE_RECEIVER_*``/``BRIDGE_AUTH_*``
variables. Receivers in the file may use the Helm chart's camelCase names
(``topicTemplate``, ``deadLetter``, ``secretKeys``...) as well as the snake_case ones, so the
chart passes its ``receivers`` values through unchanged; an empty or null value means the
default.

Settings are data: nothing here reads secrets or builds objects. :mod:`bridge.config.receivers`
turns them into runtime receivers, and nothing here changes the process environment.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, cast, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from bridge.config import config_problems
from bridge.core.auth import (
    DEFAULT_ALGORITHM,
    DEFAULT_ENCODING,
    DEFAULT_HMAC_HEADER,
    Algorithm,
    Encoding,
)
from bridge.core.errors import ConfigError
from bridge.core.routing import (
    DEFAULT_CANARY_TOPIC,
    DEFAULT_CATCHALL_TOPIC,
    DEFAULT_DEAD_LETTER_TOPIC,
    DEFAULT_EVENT_NAME_PATTERN,
    DEFAULT_KEY,
    DEFAULT_TOPIC_TEMPLATE,
    DEFAULT_UNLISTED,
    KeyStrategy,
    UnlistedPolicy,
)

CONFIG_FILE_ENV = "BRIDGE_CONFIG_FILE"
_RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")

AuthMethod = Literal["none", "basic", "hmac"]
# The fields of AuthSettings that hold HMAC secrets, and those that hold Basic credentials.
HMAC_SECRET_FIELDS: Final = ("secrets", "secret_files", "secret_envs", "secret_keys")
BASIC_CREDENTIAL_FIELDS: Final = (
    "credentials",
    "credential_files",
    "credential_envs",
    "credential_keys",
)


class _Wording(NamedTuple):
    """How a conflict between method and credentials is told, in the form the operator used."""

    method: str  # the method as written, "{}" for its value
    set_method: str  # how to set it, "{}" for the value
    given: str  # "set" (variables) or "given" (keys)
    remove: str  # "unset" or "remove"


_ENVIRONMENT_WORDING: Final = _Wording(
    "BRIDGE_AUTH_METHOD: {!r}", "set BRIDGE_AUTH_METHOD={} (or leave it unset)", "set", "unset"
)
_FILE_WORDING: Final = _Wording("method {!r}", "set method {} (or leave it out)", "given", "remove")


def implied_method(
    method: AuthMethod | None,
    hmac: Sequence[str],
    basic: Sequence[str],
    wording: _Wording = _FILE_WORDING,
) -> AuthMethod | None:
    """The method a receiver authenticates with: the one given, else the one its credentials
    imply (an HMAC secret: hmac; Basic credentials: basic); None when there is neither.

    ``hmac`` and ``basic`` name what was given of each kind. Both kinds at once, or a method
    that contradicts what was given, is a :class:`ValueError` whose message names both.
    """
    if hmac and basic:
        raise ValueError(
            f"{_names(hmac)} (hmac) and {_names(basic)} (basic) are both {wording.given}: a "
            "receiver authenticates one way; keep only the one its ALM webhook uses"
        )
    implied: AuthMethod | None = "hmac" if hmac else "basic" if basic else None
    if method is None or implied is None or method == implied:
        return method or implied
    given = _names(hmac or basic)
    kind = "an hmac secret" if hmac else "basic credentials"
    other = (
        f"{wording.remove} {given}"
        if method == "none"
        else f"give {'an hmac secret' if method == 'hmac' else 'basic credentials'} in its place"
    )
    raise ValueError(
        f"{wording.method.format(method)} contradicts {given}, {kind}: "
        f"{wording.set_method.format(implied)}, or {other}"
    )


def _names(names: Sequence[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names)


def _given_keys(data: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """The keys of ``data`` (as written: snake_case or the chart's camelCase) that give a
    non-empty value to one of ``fields``."""
    names = {name for field in fields for name in (field, to_camel(field))}
    return [key for key, value in data.items() if key in names and value not in (None, "", [])]


class _Strict(BaseModel):
    # Both spellings are accepted (topic_template, topicTemplate); errors and dumps use the
    # snake_case field names.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        loc_by_alias=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """Null and "" leave a field at its default, as the chart's empty values mean."""
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None and value != ""}
        return data


class AuthSettings(_Strict):
    """How a receiver checks that a request comes from ALM.

    A secret implies ``hmac`` and credentials imply ``basic``; a receiver with neither has
    no method (None), which :func:`bridge.config.receivers.resolve` refuses: accepting
    unauthenticated batches takes an explicit ``method: none``.
    """

    method: AuthMethod | None = None
    header: str = DEFAULT_HMAC_HEADER
    algorithm: Algorithm = DEFAULT_ALGORITHM
    encoding: Encoding = DEFAULT_ENCODING
    secret_files: list[Path] = Field(default_factory=list)
    secret_envs: list[str] = Field(default_factory=list)
    secrets: list[SecretStr] = Field(default_factory=list)
    credential_files: list[Path] = Field(default_factory=list)
    credential_envs: list[str] = Field(default_factory=list)
    credentials: list[SecretStr] = Field(default_factory=list)
    # Files named by key in <secrets_dir>/<receiver name>/, where the chart mounts the keys
    # of existing_secret.
    secret_keys: list[str] = Field(default_factory=list)
    credential_keys: list[str] = Field(default_factory=list)
    # The Kubernetes Secret the chart mounts; the bridge reads only the mounted files.
    existing_secret: str = ""
    # The chart's acknowledgement that method none is meant even behind an Ingress.
    allow_unauthenticated: bool = False
    unauthenticated_challenge: bool = True

    @model_validator(mode="before")
    @classmethod
    def _method_follows_credentials(cls, data: Any) -> Any:
        """Without a method, the credentials given say which; with one, they must agree."""
        if not isinstance(data, Mapping):
            return data
        method = data.get("method") or None
        if method is not None and method not in get_args(AuthMethod):
            return data  # the field's own check names the value
        implied = implied_method(
            method,
            _given_keys(data, HMAC_SECRET_FIELDS),
            _given_keys(data, BASIC_CREDENTIAL_FIELDS),
        )
        if implied is None or method is not None:
            return data
        return {**data, "method": implied}


class RoutingSettings(_Strict):
    """Where a receiver's events go."""

    topic_template: str = DEFAULT_TOPIC_TEMPLATE
    overrides: dict[str, str] = Field(default_factory=dict)
    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)
    unlisted: UnlistedPolicy = DEFAULT_UNLISTED
    catchall_topic: str = DEFAULT_CATCHALL_TOPIC
    key: KeyStrategy = DEFAULT_KEY
    source_template: str = "https://learningmanager.adobe.com/accounts/{accountId}"
    event_name_pattern: str = DEFAULT_EVENT_NAME_PATTERN
    # Where ``alm-bridge canary``'s events go: never a topic of the consumers.
    canary_topic: str = DEFAULT_CANARY_TOPIC

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

    policy: DeadLetterPolicy = "deadletter"
    topic: str = DEFAULT_DEAD_LETTER_TOPIC


DeadLetterPolicy = Literal["deadletter", "reject"]
# ALM delivers as learners act: a working account is rarely silent for a whole day, while
# ALM disables a failing webhook only after 7 days.
DEFAULT_MAX_SILENCE_SECONDS: Final = 86_400.0


class LivenessSettings(_Strict):
    """How long a receiver's accounts may stay silent before it is worth an alert."""

    # 0: no expectation.
    max_silence_seconds: float = Field(default=DEFAULT_MAX_SILENCE_SECONDS, ge=0)


class ReceiverSettings(_Strict):
    """One ALM webhook target: ``/webhooks/<name>``."""

    name: str
    accounts: list[int] = Field(default_factory=list)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    liveness: LivenessSettings = Field(default_factory=LivenessSettings)

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
    # Both set: the webhook port serves HTTPS, following renewals of these files.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    config_file: Path | None = None
    # OTLP/HTTP endpoint (http://collector:4318): spans exported there (the "otel" extra).
    otel_exporter_otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://\S+$")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    publish_timeout_ms: int = Field(default=3000, ge=100, le=60_000)
    shutdown_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_inflight_batches: int = Field(default=64, ge=1)
    max_queue_delay_ms: int = Field(default=1000, ge=10, le=60_000)
    body_timeout_ms: int = Field(default=2000, ge=100, le=60_000)
    max_body_reads: int = Field(default=256, ge=1)
    # Every byte held for requests that have not authenticated: headers still arriving,
    # bodies read before verification, bodies being inflated (docs/operations.md, Memory).
    max_unauthenticated_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    # Estimated memory of the authenticated batches in flight (bridge.core.alm.estimated_memory).
    max_inflight_bytes: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024)
    header_timeout_ms: int = Field(default=5000, ge=100, le=60_000)
    accept_compressed_bodies: bool = False
    http_idle_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_events_per_batch: int = Field(default=5000, ge=1)
    max_json_depth: int = Field(default=32, ge=4, le=512)
    max_string_chars: int = Field(default=65_536, ge=64)
    max_record_bytes: int = Field(default=1_000_000, ge=1024)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    dedupe_max_entries: int = Field(default=100_000, ge=0)
    dedupe_max_age_seconds: float = Field(default=86_400.0, gt=0)
    # A compacted topic the replicas share their acknowledged event digests through
    # (bridge.kafka.fleet); empty: each process remembers only its own.
    dedupe_fleet_topic: str = ""
    dedupe_fleet_load_timeout_seconds: float = Field(default=30.0, ge=0, le=3600)

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
    # Where receivers' secret_keys and credential_keys are found: <secrets_dir>/<name>/<key>.
    secrets_dir: Path | None = None

    receiver_name: str = "alm"
    # Unset: implied by BRIDGE_HMAC_SECRET(_FILE) or BRIDGE_BASIC_CREDENTIALS(_FILE).
    auth_method: AuthMethod | None = None
    hmac_secret: SecretStr | None = None
    hmac_secret_file: Path | None = None
    hmac_header: str = DEFAULT_HMAC_HEADER
    hmac_algorithm: Algorithm = DEFAULT_ALGORITHM
    hmac_encoding: Encoding = DEFAULT_ENCODING
    basic_credentials: SecretStr | None = None
    basic_credentials_file: Path | None = None
    account_ids: str = ""
    dead_letter_policy: DeadLetterPolicy = "deadletter"
    dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC
    topic_template: str = DEFAULT_TOPIC_TEMPLATE
    unlisted_policy: UnlistedPolicy = DEFAULT_UNLISTED
    catchall_topic: str = DEFAULT_CATCHALL_TOPIC
    key_strategy: KeyStrategy = DEFAULT_KEY
    event_name_pattern: str = DEFAULT_EVENT_NAME_PATTERN
    canary_topic: str = DEFAULT_CANARY_TOPIC
    max_silence_seconds: float = Field(default=DEFAULT_MAX_SILENCE_SECONDS, ge=0)

    @field_validator("dedupe_fleet_topic")
    @classmethod
    def _a_kafka_topic_name(cls, value: str) -> str:
        if (value and not _TOPIC_NAME.fullmatch(value)) or value in (".", ".."):
            raise ValueError(
                "must be a Kafka topic name: 1-249 characters of letters, digits, '.', '_' or '-'"
            )
        return value

    @model_validator(mode="after")
    def _budgets_hold_a_body(self) -> Settings:
        if self.max_unauthenticated_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_unauthenticated_bytes ({self.max_unauthenticated_bytes}) must be at "
                f"least max_body_bytes ({self.max_body_bytes}): a body of that size could "
                "never be read"
            )
        if self.max_inflight_bytes < 2 * self.max_body_bytes:
            raise ValueError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) must be at least twice "
                f"max_body_bytes ({self.max_body_bytes})"
            )
        return self

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
        # load_settings names the file in the class's config; Settings() alone reads the
        # variable, like any other setting.
        configured = settings_cls.model_config.get("yaml_file")
        config_file = (
            configured if isinstance(configured, str | Path) else os.environ.get(CONFIG_FILE_ENV)
        )
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
                    raise ConfigError(
                        [
                            f"BRIDGE_ACCOUNT_IDS: {item.strip()!r} is not an account id "
                            "(a comma-separated list of integers)"
                        ]
                    )
                accounts.append(int(item))
        secrets = [SecretStr(s) for s in _split(self.hmac_secret)]
        credentials = [SecretStr(c) for c in _split(self.basic_credentials)]
        hmac = [
            name
            for name, given in (
                ("BRIDGE_HMAC_SECRET", secrets),
                ("BRIDGE_HMAC_SECRET_FILE", self.hmac_secret_file),
            )
            if given
        ]
        basic = [
            name
            for name, given in (
                ("BRIDGE_BASIC_CREDENTIALS", credentials),
                ("BRIDGE_BASIC_CREDENTIALS_FILE", self.basic_credentials_file),
            )
            if given
        ]
        try:
            method = implied_method(self.auth_method, hmac, basic, _ENVIRONMENT_WORDING)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
        return [
            ReceiverSettings(
                name=self.receiver_name,
                accounts=accounts,
                auth=AuthSettings(
                    method=method,
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
                    canary_topic=self.canary_topic,
                ),
                dead_letter=DeadLetterSettings(
                    policy=self.dead_letter_policy, topic=self.dead_letter_topic
                ),
                liveness=LivenessSettings(max_silence_seconds=self.max_silence_seconds),
            )
        ]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting's default, as :meth:`masked` would show it."""
        return cls.model_construct().model_dump(mode="json")

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


@functools.lru_cache(maxsize=8)
def _reading(config_file: Path) -> type[Settings]:
    """Settings whose YAML source is ``config_file``, whatever ``BRIDGE_CONFIG_FILE`` says.

    One class per file (a reload reads the same file again): the file is read when the
    class is instantiated, never when it is made.
    """
    config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})
    return cast(
        "type[Settings]",
        type("Settings", (Settings,), {"model_config": config, "__module__": __name__}),
    )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (and the YAML file), or a :class:`ConfigError`.

    ``config_file`` (``serve --config``) wins over ``BRIDGE_CONFIG_FILE``; the process
    environment is read, never written.
    """
    path = str(config_file) if config_file is not None else os.environ.get(CONFIG_FILE_ENV)
    if path and not Path(path).is_file():
        raise ConfigError([f"{CONFIG_FILE_ENV}: {path} is not a readable file"])
    if path:
        _check_top_level(path)
    try:
        if config_file is not None:
            return _reading(config_file)(**{"config_file": config_file, **overrides})
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_file_problems(exc, path)) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


def _check_top_level(path: str) -> None:
    """A file whose top level is not a mapping of settings, as one line."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return  # named by the settings source itself
    if data is None or isinstance(data, dict):
        return
    kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
    raise ConfigError(
        [
            f"{path}: the file must be a mapping of settings (key: value, e.g. "
            f"'receivers:' at the top level), not {kind}"
        ]
    )


def _file_problems(exc: ValidationError, path: str | None) -> list[str]:
    """Problems named by variable, or by key and receiver name in the YAML file."""
    data: Any = None
    if path:
        with contextlib.suppress(OSError, ValueError, yaml.YAMLError):
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    file_data = data if isinstance(data, dict) else None
    problems = config_problems.describe(
        exc,
        model=Settings,
        environ=os.environ,
        config_file=Path(path) if path else None,
        file_data=file_data,
    )
    return problems + duplicate_receivers(file_data, path)


def duplicate_receivers(file_data: Mapping[str, Any] | None, path: str | None) -> list[str]:
    """Receiver names given twice in the file, found even when other keys are invalid."""
    receivers = (file_data or {}).get("receivers")
    if not isinstance(receivers, list):
        return []
    names = [r.get("name") for r in receivers if isinstance(r, dict)]
    twice = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    where = f" in {path}" if path else ""
    return [f"receiver {name!r}{where}: the name is used twice" for name in twice]


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """Problems of the receiver built from ``{prefix}_*`` variables."""
    return config_problems.describe(
        exc,
        model=ReceiverSettings,
        environ=os.environ,
        config_file=None,
        file_data=None,
        env_prefix=f"{prefix}_",
    )


def variable(field: str) -> str:
    """The ``BRIDGE_*`` variable of a setting."""
    return f"{config_problems.ENV_PREFIX}{field.upper()}"


def _file_keys(path: Path | str | None) -> set[str]:
    """The top-level keys of the YAML file (none if it cannot be read as a mapping)."""
    if not path:
        return set()
    with contextlib.suppress(OSError, ValueError, yaml.YAMLError):
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return {str(key) for key in data}
    return set()


def _source(settings: Settings, field: str, environ: Mapping[str, str] | None) -> str:
    """``env``, ``file`` or ``default``: where the operator gave ``field``."""
    env = os.environ if environ is None else environ
    if variable(field) in env:
        return "env"
    if field in _file_keys(settings.config_file or env.get(CONFIG_FILE_ENV)):
        return "file"
    return "default"


def _config_path(settings: Settings, environ: Mapping[str, str] | None) -> str:
    env = os.environ if environ is None else environ
    return str(settings.config_file or env.get(CONFIG_FILE_ENV) or "")


def setting_name(
    settings: Settings, field: str, *, environ: Mapping[str, str] | None = None
) -> str:
    """A setting as the operator wrote it: ``BRIDGE_X``, or ``x in <file>``."""
    if _source(settings, field, environ) == "file":
        return f"{field} in {_config_path(settings, environ)}"
    return variable(field)


def setting_said(
    settings: Settings, field: str, *, environ: Mapping[str, str] | None = None
) -> str:
    """A setting and its value as the operator wrote them (``BRIDGE_X=value``, ``x: value
    in <file>``), or ``BRIDGE_X=value (the default)``. Never for a secret's value."""
    value = getattr(settings, field)
    shown = "unset" if value is None else str(value)
    source = _source(settings, field, environ)
    if source == "file":
        return f"{field}: {shown} in {_config_path(settings, environ)}"
    return f"{variable(field)}={shown}" + (" (the default)" if source == "default" else "")


def setting_to(
    settings: Settings, field: str, value: str, *, environ: Mapping[str, str] | None = None
) -> str:
    """How to set ``field`` to ``value`` where the operator sets it."""
    if _source(settings, field, environ) == "file":
        return f"{field}: {value} in {_config_path(settings, environ)}"
    return f"{variable(field)}={value}"


def kafka_problems(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """The Kafka settings that cannot work together, each named as the operator wrote it."""
    problems: list[str] = []
    protocol = settings.kafka_security_protocol

    def name(field: str) -> str:
        return setting_name(settings, field, environ=environ)

    def missing(field: str) -> str:
        # A setting that was not given: its key in the file if the protocol came from
        # there, else its variable.
        if _source(settings, "kafka_security_protocol", environ) == "file":
            return f"{field} in {_config_path(settings, environ)}"
        return variable(field)

    if protocol.startswith("SASL"):
        needs = (
            f"required with {setting_said(settings, 'kafka_security_protocol', environ=environ)}"
        )
        if settings.kafka_sasl_mechanism is None:
            problems.append(
                f"{missing('kafka_sasl_mechanism')}: {needs} (PLAIN, SCRAM-SHA-256 or "
                "SCRAM-SHA-512)"
            )
        if not settings.kafka_sasl_username:
            problems.append(f"{missing('kafka_sasl_username')}: {needs}")
        if settings.kafka_sasl_password is None and settings.kafka_sasl_password_file is None:
            problems.append(
                f"{missing('kafka_sasl_password')}: {needs} "
                f"(or {missing('kafka_sasl_password_file')})"
            )
    for field in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, field)
        if path is not None and not Path(path).is_file():
            problems.append(f"{name(field)}: {path} is not a readable file")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        given, other = (
            ("kafka_ssl_certfile", "kafka_ssl_keyfile")
            if settings.kafka_ssl_keyfile is None
            else ("kafka_ssl_keyfile", "kafka_ssl_certfile")
        )
        problems.append(f"{name(given)}: needs {missing(other)} too (they go together)")
    if not settings.kafka_bootstrap_servers.strip():
        problems.append(f"{name('kafka_bootstrap_servers')}: empty")
    return problems


# Settings that hold a secret's value, and where else the operator can keep it.
_SECRET_SETTINGS: Final = {
    "hmac_secret": "BRIDGE_HMAC_SECRET or hmac_secret_file",
    "basic_credentials": "BRIDGE_BASIC_CREDENTIALS or basic_credentials_file",
    "kafka_sasl_password": "BRIDGE_KAFKA_SASL_PASSWORD or kafka_sasl_password_file",
}


def plaintext_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for secrets written into the configuration file itself (never their values)."""
    path = _config_path(settings, environ)
    where = f" in {path}" if path else ""
    warnings = [
        f"{field}{where} holds a secret in plain text; keep it in {instead} instead"
        for field, instead in _SECRET_SETTINGS.items()
        if _source(settings, field, environ) == "file"
    ]
    for receiver in settings.receivers:
        auth = receiver.auth
        for key, instead, given in (
            ("secrets", "secret_files, secret_envs or secret_keys", auth.secrets),
            (
                "credentials",
                "credential_files, credential_envs or credential_keys",
                auth.credentials,
            ),
        ):
            if given:
                warnings.append(
                    f"receiver {receiver.name!r}{where}: auth.{key} holds "
                    f"{'a secret' if len(given) == 1 else f'{len(given)} secrets'} in plain "
                    f"text; keep {'it' if len(given) == 1 else 'them'} in {instead} instead"
                )
    return warnings


def sasl_password(settings: Settings) -> str | None:
    """The SASL password from the setting or its file."""
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_sasl_password_file is not None:
        return settings.kafka_sasl_password_file.read_text(encoding="utf-8").strip()
    return None
