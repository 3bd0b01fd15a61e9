"""Wiring of receivers: settings (data) in, objects that serve requests out.

:func:`resolve` turns each :class:`~bridge.config.settings.ReceiverSettings` into a
:class:`Receiver`: its verifier with the secrets read from files and variables, its routing
policy and its dead-letter policy. Every problem is reported at once. Called by
:func:`bridge.service.app.create_app` and by ``check-config``; :mod:`bridge.config.settings`
itself builds no objects and reads no secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge.config.settings import (
    AuthSettings,
    DeadLetterPolicy,
    ReceiverSettings,
    Settings,
    kafka_problems,
)
from bridge.config.tls import tls_problems
from bridge.core.auth import BasicAuth, HmacAuth, NoAuth, Verifier, secret_from_text
from bridge.core.errors import ConfigError
from bridge.core.routing import RoutingPolicy, validate_topics


@dataclass(frozen=True, slots=True)
class Receiver:
    """A receiver ready to serve: verifier with secrets loaded, routing policy, limits."""

    name: str
    accounts: frozenset[int]
    verifier: Verifier
    routing: RoutingPolicy
    dead_letter_policy: DeadLetterPolicy
    unauthenticated_challenge: bool
    auth_method: str
    # How long its accounts may stay silent (0: no expectation); exported for the alert.
    max_silence_seconds: float = 0.0

    def account_label(self, account_id: int | None) -> str:
        """The ``account`` label: a configured account, else ``other`` (bounded)."""
        return str(account_id) if account_id in self.accounts else "other"


@dataclass(frozen=True, slots=True)
class SecretPaths:
    """The files a receiver's secrets are read from: listed ones, then mounted keys."""

    secret_files: tuple[Path, ...]
    credential_files: tuple[Path, ...]


def secret_paths(secrets_dir: Path | None, receiver: str, auth: AuthSettings) -> SecretPaths:
    """``secret_files`` and ``credential_files``, plus ``secret_keys``/``credential_keys``
    found in ``<secrets_dir>/<receiver>/`` (where the Helm chart mounts them)."""
    folder = secrets_dir / receiver if secrets_dir is not None else None

    def mounted(keys: list[str]) -> tuple[Path, ...]:
        return tuple(folder / key for key in keys) if folder is not None else ()

    return SecretPaths(
        secret_files=(*auth.secret_files, *mounted(auth.secret_keys)),
        credential_files=(*auth.credential_files, *mounted(auth.credential_keys)),
    )


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
        if (spec.auth.secret_keys or spec.auth.credential_keys) and settings.secrets_dir is None:
            problems.append(
                f"{where}: secret_keys and credential_keys need secrets_dir "
                "(BRIDGE_SECRETS_DIR), the folder with one sub-folder per receiver"
            )
        if spec.auth.method is None:
            problems.append(
                f"{where}: {_no_authentication(from_environment=not settings.receivers)}"
            )
        paths = secret_paths(settings.secrets_dir, spec.name, spec.auth)
        verifier = _verifier(spec.auth, paths, env, where, problems)
        routing = spec.routing
        topics = [
            routing.catchall_topic,
            spec.dead_letter.topic,
            routing.canary_topic,
            *routing.overrides.values(),
        ]
        problems.extend(f"{where}: {p}" for p in validate_topics(topics))
        if "{event}" not in routing.topic_template and not routing.overrides:
            problems.append(f"{where}: topic_template must contain {{event}}")
        policy = policy_for(spec)
        if verifier is not None and spec.auth.method is not None:
            receivers.append(
                Receiver(
                    name=spec.name,
                    accounts=frozenset(spec.accounts),
                    verifier=verifier,
                    routing=policy,
                    dead_letter_policy=spec.dead_letter.policy,
                    unauthenticated_challenge=spec.auth.unauthenticated_challenge,
                    auth_method=spec.auth.method,
                    max_silence_seconds=spec.liveness.max_silence_seconds,
                )
            )
    if not receivers and not problems:
        problems.append("no receiver is configured")
    problems.extend(kafka_problems(settings))
    problems.extend(tls_problems(settings))
    if problems:
        raise ConfigError(problems)
    return receivers


def _no_authentication(*, from_environment: bool) -> str:
    """What to write when a receiver was given neither credentials nor a method."""
    if from_environment:
        return (
            "no authentication is configured: set BRIDGE_HMAC_SECRET (or "
            "BRIDGE_HMAC_SECRET_FILE, or BRIDGE_BASIC_CREDENTIALS), or BRIDGE_AUTH_METHOD=none "
            "to accept unauthenticated batches deliberately"
        )
    return (
        "no authentication is configured: give auth a secret (secret_files, secret_envs, "
        "secrets or secret_keys) or basic credentials (credential_files, credential_envs, "
        "credentials or credential_keys), or set auth: {method: none} to accept "
        "unauthenticated batches deliberately"
    )


def _read(path: Path, where: str, problems: list[str]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{where}: cannot read {path}: {exc.__class__.__name__}")
        return None


def _verifier(
    auth: AuthSettings,
    paths: SecretPaths,
    env: Mapping[str, str],
    where: str,
    problems: list[str],
) -> Verifier | None:
    if auth.method is None:
        return None
    if auth.method == "none":
        return NoAuth()
    if auth.method == "hmac":
        texts: list[str] = [s.get_secret_value() for s in auth.secrets]
        for path in paths.secret_files:
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
    for path in paths.credential_files:
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


def policy_for(spec: ReceiverSettings) -> RoutingPolicy:
    """The routing policy of one receiver (no secrets needed: the AsyncAPI document uses it)."""
    routing = spec.routing
    return RoutingPolicy(
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
        canary_topic=routing.canary_topic,
    )
