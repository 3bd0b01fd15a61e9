"""Sans-I/O reading of ALM webhook bodies: bytes in, a validated batch (or a challenge) out.

The envelope is validated strictly and the event bodies loosely: both dialects ALM is
known to send are accepted (``timestamp``/``data`` of the usage guide and
``eventTime``/``eventInitiator``/``eventData`` of the setup guide), and every event keeps
all its fields, unknown ones included, as parsed (:attr:`Event.raw`). The Kafka record's
value is not these bytes: :mod:`bridge.core.routing` re-encodes ``raw`` as compact JSON and sets
``accountId`` to the batch's, replacing any ``accountId`` the event carried.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import orjson

from bridge.core.errors import AccountNotAccepted, InvalidBatch
from bridge.core.reasons import DeadLetterReason, ErrorCode

_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
_FLOAT_AMBIGUOUS: Final = float(2**63)
# eventId and eventName: at most 512 bytes in UTF-8 (512 ASCII characters, 128 of four
# bytes). ALM's ids are UUIDs, or the caller's id for asynchronous user-group events.
_MAX_ID_BYTES: Final = 512
# Epoch values at or above this are milliseconds (1e11 seconds is the year 5138).
_EPOCH_MS_THRESHOLD: Final = 100_000_000_000
_CHALLENGE_MAX_CHARS: Final = 256
_CACHED_TIME_CHARS: Final = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one body may hold, beyond its size in bytes."""

    max_events: int = 5000
    max_depth: int = 32
    max_string_chars: int = 65_536


class Event(NamedTuple):
    """One ALM event: the parsed object with every field (``raw``) plus what the bridge needs.

    A named tuple rather than a frozen dataclass: one is made per event, and a tuple is
    built several times faster.
    """

    raw: Mapping[str, Any]
    event_id: str
    name: str
    time: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Batch:
    """A validated ALM webhook batch."""

    account_id: int
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Challenge:
    """A verification challenge sent in a POST body."""

    value: str


def _reject_constant(name: str) -> Any:
    raise InvalidBatch(f"{name} is not valid JSON", code=DeadLetterReason.INVALID_JSON)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidBatch(
                    f"duplicate JSON key {key[:64]!r}", code=DeadLetterReason.DUPLICATE_KEY
                )
            seen.add(key)
    return obj


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant
)


def decode_json(body: bytes, limits: Limits) -> Any:
    """Strict JSON: UTF-8 only, no duplicate keys, bounded depth, strings and numbers.

    orjson reads the body first; it keeps the last of duplicate keys silently, so its
    result is used only when the body provably has none: every ``:`` in the raw bytes is
    either a key's separator or inside a string, so the raw count equals the parsed keys
    plus the colons in parsed strings exactly when no key was dropped (``\\u003a``, the one
    escape that hides a colon, sends the body to the strict parser). Anything orjson
    rejects is read again by the strict parser, which names the problem.
    """
    if b"\\u003" not in body:
        try:
            value = orjson.loads(body)
            if body.count(b":") == _check_tree(value, limits, fast=True):
                return value
        except (orjson.JSONDecodeError, _Ambiguous):
            pass
    return _decode_strict(body, limits)


class _Ambiguous(Exception):
    """orjson's reading may differ from the strict parser's: read the body again."""


def _decode_strict(body: bytes, limits: Limits) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBatch(
            f"body is not UTF-8 (byte {exc.start})", code=DeadLetterReason.INVALID_UTF8
        ) from None
    try:
        value, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    except json.JSONDecodeError as exc:
        raise InvalidBatch(
            f"invalid JSON: {exc.msg} at {exc.pos}", code=DeadLetterReason.INVALID_JSON
        ) from None
    except RecursionError:
        raise InvalidBatch("JSON nested too deeply", code=DeadLetterReason.TOO_DEEP) from None
    except ValueError as exc:  # integers longer than Python's digit limit
        raise InvalidBatch(
            f"number out of range: {exc}", code=DeadLetterReason.NUMBER_OUT_OF_RANGE
        ) from None
    if _skip_ws(text, end) != len(text):
        raise InvalidBatch(f"extra data after JSON at {end}", code=DeadLetterReason.INVALID_JSON)
    _check_tree(value, limits)
    return value


def _skip_ws(text: str, pos: int) -> int:
    length = len(text)
    while pos < length and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _check_tree(root: Any, limits: Limits, *, fast: bool = False) -> int:
    """Enforce the limits; returns the number of keys plus the colons inside strings.

    With ``fast`` (orjson's result), integers need no check: orjson reads any integer
    beyond 64 bits as a float, and such a float raises :class:`_Ambiguous`, because the
    strict parser rejects that integer as out of range. The walk only sorts the values;
    keys and strings are measured and searched for colons all at once at the end.
    """
    max_depth = limits.max_depth
    keys: list[str] = []
    strings: list[str] = []
    keep = strings.append
    numbers: list[Any] = []
    stack: list[tuple[Any, int]] = [(root, 1)]
    push = stack.append
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if depth > max_depth:
                raise InvalidBatch(
                    f"JSON nested deeper than {max_depth}", code=DeadLetterReason.TOO_DEEP
                )
            keys.extend(node)
            values = node.values()
        elif kind is list:
            if depth > max_depth:
                raise InvalidBatch(
                    f"JSON nested deeper than {max_depth}", code=DeadLetterReason.TOO_DEEP
                )
            values = node
        else:
            values = (node,)
            depth = 0
        for child in values:
            child_kind = type(child)
            if child_kind is str:
                keep(child)
            elif child_kind is dict or child_kind is list:
                push((child, depth + 1))
            elif child is None or child_kind is bool or (fast and child_kind is int):
                continue
            else:
                numbers.append(child)
    max_chars = limits.max_string_chars
    if keys and max(map(len, keys)) > max_chars:
        raise InvalidBatch("a JSON key is too long", code=DeadLetterReason.STRING_TOO_LONG)
    if strings and max(map(len, strings)) > max_chars:
        raise _too_long(max_chars)
    for number in numbers:
        if type(number) is int:
            if not _INT64_MIN <= number <= _UINT64_MAX:
                raise InvalidBatch(
                    "an integer is outside 64 bits", code=DeadLetterReason.NUMBER_OUT_OF_RANGE
                )
        elif type(number) is float:
            if not math.isfinite(number):
                raise InvalidBatch(
                    "a number is too large", code=DeadLetterReason.NUMBER_OUT_OF_RANGE
                )
            if fast and abs(number) >= _FLOAT_AMBIGUOUS:
                raise _Ambiguous
        else:  # pragma: no cover - both parsers build only the JSON types above
            raise InvalidBatch(
                f"unexpected JSON value {type(number).__name__}", code=DeadLetterReason.INVALID_JSON
            )
    return len(keys) + "\x00".join(keys).count(":") + "\x00".join(strings).count(":")


def _too_long(max_chars: int) -> InvalidBatch:
    return InvalidBatch(
        f"a string is longer than {max_chars} characters", code=DeadLetterReason.STRING_TOO_LONG
    )


# What parsing a body and publishing its records holds at most, per byte of the body
# and per JSON value (an upper bound on the values: commas, braces and brackets).
# tests/unit/test_admission_memory.py measures both against this estimate.
MEMORY_PER_BODY_BYTE: Final = 16
MEMORY_PER_VALUE: Final = 48
MEMORY_PER_BATCH: Final = 128 * 1024
_LEADING_ACCOUNT = re.compile(rb'\s*\{\s*"accountId"\s*:\s*(\d{1,19})\s*[,}]')


def estimated_memory(body: bytes) -> int:
    """An upper bound of the bytes that parsing ``body`` and publishing its events hold.

    Counted over the raw bytes, before any parsing (a few milliseconds for 5 MiB), so that
    a batch can be admitted by what it will cost: realistic events cost about 15 times
    their size, a body of many small JSON values (``[{},{},...]``) about 35 times.
    """
    values = body.count(b",") + body.count(b"{") + body.count(b"[")
    return estimated_memory_of_size(len(body)) + MEMORY_PER_VALUE * values


def estimated_memory_of_size(size: int) -> int:
    """The part of :func:`estimated_memory` known from a body's size alone."""
    return MEMORY_PER_BATCH + MEMORY_PER_BODY_BYTE * size


def leading_account_id(body: bytes) -> int | None:
    """The ``accountId`` when it is the body's first key (as ALM sends it), else None.

    For a body too costly to parse: the account is judged without parsing it.
    """
    match = _LEADING_ACCOUNT.match(body)
    return int(match.group(1)) if match else None


def parse_body(
    body: bytes, limits: Limits | None = None, *, accounts: frozenset[int] = frozenset()
) -> Batch | Challenge:
    """Read an ALM POST body. Raises :class:`InvalidBatch` with a field-naming detail.

    With ``accounts``, the account is judged before anything else: a body whose
    ``accountId`` is not provably one of them (unreadable JSON, a missing id, a string or
    a float) raises :class:`AccountNotAccepted`, even when the body is also malformed, so
    that nothing a foreign account sends is stored, not even as a dead letter. A challenge
    (a ``challenge`` and no ``events``) publishes nothing and is read either way.
    """
    limits = limits or Limits()
    try:
        doc = decode_json(body, limits)
    except InvalidBatch as exc:
        if accounts:
            raise AccountNotAccepted(f"the accountId cannot be read: {exc.detail}") from None
        raise
    is_object = isinstance(doc, dict)
    if is_object and "challenge" in doc and "events" not in doc:
        return Challenge(check_challenge(doc["challenge"]))
    if accounts:
        account_id = doc.get("accountId") if is_object else None
        if type(account_id) is not int or account_id not in accounts:
            shown = "missing" if account_id is None else repr(account_id)[:40]
            raise AccountNotAccepted(f"accountId {shown} is not accepted by this receiver")
    if not is_object:
        raise InvalidBatch("the body must be a JSON object", code=DeadLetterReason.INVALID_ENVELOPE)
    return _batch(doc, limits)


def check_challenge(value: object) -> str:
    """A challenge value that is safe to echo: a short printable string."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > _CHALLENGE_MAX_CHARS
        or not value.isprintable()
    ):
        raise InvalidBatch(
            f"challenge must be a printable string of 1 to {_CHALLENGE_MAX_CHARS} characters",
            code=ErrorCode.INVALID_CHALLENGE,
        )
    return value


def _batch(doc: dict[str, Any], limits: Limits) -> Batch:
    account_id = doc.get("accountId")
    if isinstance(account_id, bool) or not isinstance(account_id, int) or account_id < 0:
        raise InvalidBatch(
            "accountId must be a non-negative integer", code=DeadLetterReason.INVALID_ENVELOPE
        )
    events = doc.get("events")
    if not isinstance(events, list):
        raise InvalidBatch("events must be an array", code=DeadLetterReason.INVALID_ENVELOPE)
    if len(events) > limits.max_events:
        raise InvalidBatch(
            f"events holds {len(events)} events, more than {limits.max_events}",
            code=DeadLetterReason.TOO_MANY_EVENTS,
        )
    return Batch(account_id, tuple(_event(e, i) for i, e in enumerate(events)))


def _blank(text: str) -> bool:
    """Empty or only white space, U+FEFF included: the contract's pattern ``\\S`` is
    read as ECMAScript, whose white space has U+FEFF, and Python's has not."""
    if not text or text.isspace():
        return True
    return "\ufeff" in text and not text.replace("\ufeff", "").strip()


def _over_id_bytes(text: str) -> bool:
    """More than ``_MAX_ID_BYTES`` in UTF-8; an ASCII string's length is its size."""
    if len(text) > _MAX_ID_BYTES:
        return True
    return not text.isascii() and len(text.encode("utf-8", "surrogatepass")) > _MAX_ID_BYTES


def _event(raw: object, index: int) -> Event:
    # Both JSON parsers build exact dicts, lists and strs: ``type(...) is`` is exact here.
    if type(raw) is not dict:
        raise InvalidBatch(
            f"events[{index}] must be an object", code=DeadLetterReason.INVALID_EVENT
        )
    event_id = raw.get("eventId")
    if type(event_id) is int:
        event_id = str(event_id)
    if type(event_id) is not str or _blank(event_id) or _over_id_bytes(event_id):
        raise InvalidBatch(
            f"events[{index}].eventId must be a non-empty string of at most "
            f"{_MAX_ID_BYTES} UTF-8 bytes",
            code=DeadLetterReason.INVALID_EVENT,
        )
    name = raw.get("eventName")
    if type(name) is not str or _blank(name) or _over_id_bytes(name):
        raise InvalidBatch(
            f"events[{index}].eventName must be a non-empty string of at most "
            f"{_MAX_ID_BYTES} UTF-8 bytes",
            code=DeadLetterReason.INVALID_EVENT,
        )
    data = raw.get("data")
    if data is None:
        data = raw.get("eventData")
        if data is None:
            data = {}
        elif type(data) is not dict:
            raise InvalidBatch(
                f"events[{index}].eventData must be an object", code=DeadLetterReason.INVALID_EVENT
            )
    elif type(data) is not dict:
        raise InvalidBatch(
            f"events[{index}].data must be an object", code=DeadLetterReason.INVALID_EVENT
        )
    when = raw.get("timestamp")
    if when is None:
        when = raw.get("eventTime")
    return Event(raw, event_id, name, normalize_time(when), data)


def normalize_time(value: object) -> str | None:
    """An ALM time (epoch s or ms, number or digits, or ISO-8601) as RFC 3339 UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and len(value) > _CACHED_TIME_CHARS:
        return _normalize_time.__wrapped__(value)
    return _normalize_time(value)


@functools.lru_cache(maxsize=4096)
def _normalize_time(value: float | str) -> str | None:
    # Events of one batch usually share their time; parsing it once saves most of the work.
    try:
        if isinstance(value, int | float):
            moment = _from_epoch(value)
        elif isinstance(value, str):
            text = value.strip()
            if text.lstrip("-").isdigit():
                moment = _from_epoch(int(text))
            else:
                moment = datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
        else:
            return None
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None


@functools.lru_cache(maxsize=1024)
def epoch_seconds(normalized: str) -> float | None:
    """Unix seconds of a time :func:`normalize_time` wrote (events of a batch share theirs)."""
    try:
        return datetime.fromisoformat(normalized).timestamp()
    except ValueError:
        return None


def _from_epoch(value: float) -> datetime:
    seconds = value / 1000 if abs(value) >= _EPOCH_MS_THRESHOLD else value
    return datetime.fromtimestamp(seconds, UTC)
