"""Configuration problems in the operator's words, not pydantic's.

Each problem names where the value came from (the ``BRIDGE_*`` variable, or the key in the
YAML file and the receiver it belongs to), shows the offending value (never a secret's) and,
for a name that is almost a known one, suggests it. A name that says what the operator
meant rather than misspelling a setting (``BRIDGE_SECRET``, ``BRIDGE_PASSWORD``) gets the
setting for that intent (:data:`INTENTS`), not the setting it happens to look like.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Final, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

ENV_PREFIX: Final = "BRIDGE_"
_SECRET_WORDS: Final = ("secret", "password", "credential")
_VALUE_CHARS: Final = 60
_QUOTED: Final = re.compile(r"'([^']*)'")
_WORD: Final = re.compile(r"[A-Z][A-Z0-9]*")

# Likely intents, checked before the string similarity, which would take BRIDGE_SECRET for
# a typo of BRIDGE_SECRETS_DIR. A name made only of the words below means the setting of the
# first row that has one of its words (BRIDGE_AUTH_SECRET: a secret; BRIDGE_AUTH_USER:
# credentials); _FILLER words only qualify (BRIDGE_SIGNING_KEY_FILE: the secret's file). A
# name with any other word (BRIDGE_SECRETS_DIRS, BRIDGE_KAFKA_SASL_PASWORD) is left to the
# similarity.
INTENTS: Final[tuple[tuple[frozenset[str], str], ...]] = (
    (
        frozenset({"BASIC", "CREDENTIAL", "CREDENTIALS", "CREDS", "PASS", "PASSWD", "PASSWORD"})
        | frozenset({"PASSWORDS", "USER", "USERNAME", "USERS"}),
        "BASIC_CREDENTIALS",
    ),
    (frozenset({"HMAC", "SECRET", "SECRETS", "SIGNATURE", "SIGNING"}), "HMAC_SECRET"),
    (frozenset({"AUTH", "AUTHENTICATION"}), "AUTH_METHOD"),
)
_FILLER: Final = frozenset(
    {"ALM", "FILE", "KEY", "METHOD", "MODE", "PATH", "RECEIVER", "SHARED", "TYPE", "WEBHOOK"}
)
_FILE_WORDS: Final = frozenset({"FILE", "PATH"})


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The known name ``name`` most likely means: its intent, else the closest if one is
    close enough to be a typo."""
    known = list(candidates)
    intended = _intended(name, known)
    if intended is not None:
        return intended
    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    return matches[0] if matches else None


def _intended(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate for the intent of ``name`` (see :data:`INTENTS`), if there is one."""
    upper = name.upper()
    prefix = ENV_PREFIX if upper.startswith(ENV_PREFIX) else ""
    words = set(_WORD.findall(upper.removeprefix(prefix)))
    vocabulary = _FILLER.union(*(row for row, _ in INTENTS))
    if not words or not words <= vocabulary:
        return None
    for row, setting in INTENTS:
        if words & row:
            target = prefix + setting + ("_FILE" if words & _FILE_WORDS else "")
            return next((c for c in candidates if c.upper() == target), None)
    return None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` or nothing."""
    match = suggest(name, candidates)
    return f"; did you mean {match!r}?" if match else ""


def unknown_variable(name: str, known: Iterable[str]) -> str:
    """The warning for a ``BRIDGE_*`` variable that names no setting."""
    match = suggest(name.upper(), known)
    hint = f"; did you mean {match}?" if match else ""
    return f"{name} is not a setting and is ignored{hint}"


def describe(
    exc: ValidationError,
    *,
    model: type[BaseModel],
    environ: Mapping[str, str],
    config_file: Path | None,
    file_data: Mapping[str, Any] | None,
    env_prefix: str = ENV_PREFIX,
) -> list[str]:
    """One line per error of ``exc``, raised while building ``model``."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = _where(loc, environ, config_file, file_data, env_prefix)
        problems.append(f"{where}: {_what(error, loc, model)}")
    return problems


def _where(
    loc: Sequence[int | str],
    environ: Mapping[str, str],
    config_file: Path | None,
    file_data: Mapping[str, Any] | None,
    env_prefix: str,
) -> str:
    if not loc:
        return "settings"
    variable = f"{env_prefix}{str(loc[0]).upper()}"
    if len(loc) == 1 and variable in environ:
        return variable
    key = _dotted(loc)
    if loc[0] == "receivers" and len(loc) >= 2 and isinstance(loc[1], int):
        name = _receiver_name(file_data, loc[1])
        receiver = f"receiver {name!r}" if name else f"receiver #{loc[1] + 1}"
        inner = _dotted(loc[2:]) or "(the receiver itself)"
        return f"{receiver}{_in(config_file)}: {inner}"
    return f"{key}{_in(config_file)}" if config_file else variable if len(loc) == 1 else key


def _in(config_file: Path | None) -> str:
    return f" in {config_file}" if config_file else ""


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _receiver_name(file_data: Mapping[str, Any] | None, index: int) -> str | None:
    receivers = (file_data or {}).get("receivers")
    if isinstance(receivers, list) and index < len(receivers):
        entry = receivers[index]
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            return str(entry["name"])
    return None


def _what(error: Mapping[str, Any], loc: Sequence[int | str], model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        return f"unknown key{did_you_mean(str(loc[-1]), known)}"
    if kind == "missing":
        return "required, but not set"
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    value = error.get("input")
    if isinstance(value, Mapping):
        # A whole section's own check (e.g. auth's method and credentials): the message names
        # the keys, and the section's values may hold secrets.
        return message
    secret = any(word in str(part).lower() for part in loc for word in _SECRET_WORDS)
    shown = "(hidden)" if secret else _short(value)
    hint = ""
    if kind in ("literal_error", "enum") and isinstance(value, str) and not secret:
        hint = did_you_mean(value, _QUOTED.findall(str(error.get("ctx", {}).get("expected", ""))))
    return f"{shown} is not valid: {message}{hint}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names of the model found at ``loc`` under ``model`` (empty if unknown)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The model class inside ``list[M]``, ``M | None`` and the like, or the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, tuple, Union, UnionType) or get_args(annotation):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
    return annotation
