"""The log line that says why a receiver refused a request for authentication.

On the day a real ALM account is connected, the first delivery is often refused because
the signature header, hash or encoding is not the one configured (Adobe does not publish
them). ``auth_diagnosis`` names the headers that arrived (names only, never values) and,
for an HMAC receiver whose request body was read, which header would verify with the
configured secret and what to set (:func:`bridge.core.auth.diagnose_hmac`). Anyone can cause a
401, so the line is written at most once per receiver per :data:`WINDOW_SECONDS`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson
from multidict import CIMultiDict

from bridge.core.auth import MAX_DIAGNOSED_HEADERS, HmacAuth, Verifier, diagnose_hmac
from bridge.core.errors import AuthError
from bridge.telemetry.logs import escaped, get_logger

log = get_logger("bridge.diagnosis")
WINDOW_SECONDS: Final = 5.0
_REQUEST_LINE = re.compile(r"^[A-Z]+ \S+ HTTP/\d(\.\d)?$")


class Throttle:
    """At most one event per key and window; the keys are receiver names (a bounded set)."""

    def __init__(
        self, window_seconds: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window_seconds:
            return False
        self._last[key] = now
        return True


def diagnosis_fields(
    verifier: Verifier, headers: Iterable[tuple[str, str]], body: bytes | None
) -> dict[str, Any]:
    """The fields of an ``auth_diagnosis`` line: header names, and a hint for HMAC."""
    if isinstance(verifier, HmacAuth):
        diagnosis = diagnose_hmac(headers, body, verifier)
        names: Iterable[str] = diagnosis.header_names
        fields: dict[str, Any] = {"hint": diagnosis.hint}
    else:
        names = dict.fromkeys(name for name, _ in headers)
        fields = {}
    shown = [escaped(name) for name in list(names)[:MAX_DIAGNOSED_HEADERS]]
    return {"header_names": shown, **fields}


def log_refusal(
    throttle: Throttle,
    receiver: str,
    verifier: Verifier,
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
) -> None:
    """Write an ``auth_diagnosis`` line for this refusal, unless one was written lately."""
    if not throttle.allow(receiver):
        return
    log.warning("auth_diagnosis", **diagnosis_fields(verifier, headers, body))


def parse_headers(text: str) -> list[tuple[str, str]]:
    """Headers from a capture: ``Name: value`` lines (a request line first is skipped),
    or a JSON object of names to values."""
    stripped = text.lstrip("\ufeff").strip()
    if stripped.startswith("{"):
        parsed = orjson.loads(stripped)
        if not isinstance(parsed, dict):
            raise ValueError("a JSON headers file must be an object of names to values")
        return [(str(name), str(value)) for name, value in parsed.items()]
    headers: list[tuple[str, str]] = []
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            break  # the end of the headers: a body may follow
        if number == 1 and _REQUEST_LINE.match(line):
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise ValueError(f"line {number} is not 'Name: value'")
        headers.append((name, value.strip()))
    return headers


def offline_report(
    verifier: Verifier, headers: list[tuple[str, str]], body: bytes
) -> tuple[bool, list[str]]:
    """(accepted, lines to print) for a captured request checked against a receiver."""
    lookup = CIMultiDict(headers)
    try:
        verifier.precheck(lookup)
        verifier.verify(lookup, body)
    except AuthError as exc:
        fields = diagnosis_fields(verifier, headers, body)
        lines = [f"refused: {exc.reason} ({exc.detail})"]
        lines.append("headers: " + ", ".join(fields["header_names"]))
        if "hint" in fields:
            lines.append(f"hint: {fields['hint']}")
        return False, lines
    return True, ["accepted: the receiver verifies this request as it is configured"]
