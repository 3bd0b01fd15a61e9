"""Live reload: receivers, secrets, allow-lists and routing change without a restart.

What a receiver is made of — its secrets and credentials, its accounts, its routing and
dead-letter policy, and the list of receivers itself — is read again when one of its files
changes (the configuration file, every secret and credential file, including Kubernetes'
swap of a mounted Secret's or ConfigMap's ``..data`` symlink) and on SIGHUP.

The whole new configuration is built first, exactly as at start (:func:`resolve`); only a
configuration that would start is applied, in one step. A bad one is refused with one log
line (``config_reload_refused``) and a metric, and the running one keeps serving. So is a
change to a setting that only applies at start (ports, Kafka connection, limits): the
refusal names it. A request keeps the receiver and routing it started with until it is
answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bridge.config.files import Identity, identities
from bridge.config.receivers import Receiver, resolve, secret_paths
from bridge.config.settings import Settings, load_settings
from bridge.core.errors import ConfigError
from bridge.telemetry.logs import get_logger

log = get_logger("bridge.reload")

# How often the files are looked at: one stat each, nothing read unless one changed.
CHECK_SECONDS: Final = 5.0

# The settings that describe receivers; every other one is read only at start.
LIVE_SETTINGS: Final = frozenset(
    {
        "receivers",
        "secrets_dir",
        "receiver_name",
        "auth_method",
        "hmac_secret",
        "hmac_secret_file",
        "hmac_header",
        "hmac_algorithm",
        "hmac_encoding",
        "basic_credentials",
        "basic_credentials_file",
        "account_ids",
        "dead_letter_policy",
        "dead_letter_topic",
        "topic_template",
        "unlisted_policy",
        "catchall_topic",
        "key_strategy",
        "event_name_pattern",
        "max_silence_seconds",
        "canary_topic",
    }
)


def fixed_changes(old: Settings, new: Settings) -> list[str]:
    """The variables of the settings read only at start whose value ``new`` changes."""
    return [
        f"BRIDGE_{name.upper()}"
        for name in Settings.model_fields
        if name not in LIVE_SETTINGS and getattr(old, name) != getattr(new, name)
    ]


def watched_files(settings: Settings) -> list[Path]:
    """The configuration file and every file a receiver's secrets are read from."""
    files = [settings.config_file] if settings.config_file is not None else []
    try:
        specs = settings.effective_receivers()
    except ConfigError:
        return files
    for spec in specs:
        paths = secret_paths(settings.secrets_dir, spec.name, spec.auth)
        files.extend(paths.secret_files)
        files.extend(paths.credential_files)
    return files


@dataclass(frozen=True, slots=True)
class Configuration:
    """What the receivers are built from, and which reload made it (1: the start)."""

    settings: Settings
    receivers: tuple[Receiver, ...]
    generation: int = 1


Fingerprint = tuple[tuple[str, Identity], ...]


class Reloader:
    """Builds the configuration again when its files change or when asked, and applies it
    only when it is whole and changes nothing that needs a restart."""

    def __init__(
        self,
        current: Configuration,
        *,
        apply: Callable[[Configuration], None],
        load: Callable[[Path | None], Settings] = load_settings,
        build: Callable[[Settings], list[Receiver]] = resolve,
        on_result: Callable[[bool], None] | None = None,
    ) -> None:
        self.current = current
        self._apply = apply
        self._load = load
        self._build = build
        self._on_result = on_result
        self._paths = watched_files(current.settings)
        self._seen = identities(self._paths)

    def changed(self) -> bool:
        """Whether a watched file changed since the last load or attempt."""
        return identities(self._paths) != self._seen

    def reload_if_changed(self) -> bool | None:
        """Load again if a file changed: True applied, False refused, None unchanged."""
        if not self.changed():
            return None
        return self.reload("files")

    def reload(self, cause: str) -> bool:
        """Build the configuration from its files and apply it, or refuse it as a whole."""
        # Taken before reading: a change made while reading is seen by the next check.
        seen = identities(self._paths)
        old = self.current
        try:
            settings = self._load(old.settings.config_file)
            self._paths = [*watched_files(old.settings), *watched_files(settings)]
            seen = identities(self._paths)
            fixed = fixed_changes(old.settings, settings)
            if fixed:
                raise ConfigError(
                    [
                        f"{', '.join(fixed)} changed, and only applies at start: restart "
                        "the bridge for it (nothing of this change was applied)"
                    ]
                )
            receivers = self._build(settings)
        except ConfigError as exc:
            self._seen = seen
            log.error(
                "config_reload_refused",
                cause=cause,
                generation=old.generation,
                problems=exc.problems,
            )
            self._report(False)
            return False
        except Exception as exc:  # a reload must never take the server down
            self._seen = seen
            log.error(
                "config_reload_refused",
                cause=cause,
                generation=old.generation,
                problems=[f"{type(exc).__name__}: {exc}"],
            )
            self._report(False)
            return False
        fresh = Configuration(settings, tuple(receivers), old.generation + 1)
        self._apply(fresh)
        self.current = fresh
        self._paths = watched_files(settings)
        watched = {str(path) for path in self._paths}
        self._seen = tuple(entry for entry in seen if entry[0] in watched)
        before = {r.name for r in old.receivers}
        after = {r.name for r in fresh.receivers}
        log.info(
            "config_reloaded",
            cause=cause,
            generation=fresh.generation,
            receivers=sorted(after),
            added=sorted(after - before),
            removed=sorted(before - after),
        )
        self._report(True)
        return True

    def _report(self, ok: bool) -> None:
        if self._on_result is not None:
            self._on_result(ok)

    async def watch(self, interval_seconds: float = CHECK_SECONDS) -> None:
        """Check the files every ``interval_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            self.reload_if_changed()
