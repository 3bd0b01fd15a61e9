"""Configuration problems in the operator's words, not pydantic's.

Each problem names where the value came from (the ``BRIDGE_*`` variable, or the key in the
YAML file and the receiver it belongs to), shows the offending value (never a secret's) and,
for a name that is almost a known one, suggests it.
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


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The known name closest to ``name``, if one is close enough to be a typo."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    return matches[0] if matches else None


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
