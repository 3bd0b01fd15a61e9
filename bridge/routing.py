"""Sans-I/O routing: each ALM event becomes one Kafka record (topic, key, value, headers).

Headers follow the CloudEvents Kafka protocol binding in binary mode, so consumers that
speak CloudEvents read the id, type, source and time without opening the value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

import orjson

from bridge.alm import Batch, Event
from bridge.errors import InvalidBatch

UnlistedPolicy = Literal["template", "catchall", "deadletter"]
KeyStrategy = Literal["record", "eventId", "accountId", "none"]
Headers = list[tuple[str, bytes]]

MAX_TOPIC_CHARS: Final = 249
_ILLEGAL_TOPIC_CHARS: Final = re.compile(r"[^a-z0-9._-]")
_LEGAL_TOPIC: Final = re.compile(r"[a-zA-Z0-9._-]{1,249}")

ENROLLMENT: Final = frozenset(
    {"COURSE_ENROLLMENT", "LEARNING_PATH_ENROLLMENT", "CERTIFICATION_ENROLLMENT"}
)
COMPLETION: Final = frozenset(
    {"COURSE_COMPLETED", "LEARNING_PATH_COMPLETED", "CERTIFICATION_COMPLETED"}
)
UNENROLLMENT: Final = frozenset(
    {"COURSE_UNENROLLMENT", "LEARNING_PATH_UNENROLLMENT", "CERTIFICATION_UNENROLLMENT"}
)
LEARNING_OBJECT: Final = frozenset(
    {"LEARNING_OBJECT_DRAFT", "LEARNING_OBJECT_MODIFICATION", "LEARNING_OBJECT_DELETION"}
)
LEARNING_OBJECT_INSTANCE: Final = frozenset(
    {"LEARNING_OBJECT_INSTANCE_MODIFICATION", "LEARNING_OBJECT_INSTANCE_DELETION"}
)
ROLLBACK: Final = frozenset({"LEARNING_PATH_COMPLETION_ROLLBACK"})
ASYNC_RESPONSE: Final = frozenset(
    {"RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED", "RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED"}
)
# The families of documented event names, in the order the sender's generator knows them;
# the one list for metric labels, keys and generated traffic.
KNOWN_FAMILIES: Final[tuple[str, ...]] = (
    "enrollment",
    "completion",
    "unenrollment",
    "progress",
    "ci_stats",
    "learning_object",
    "learning_object_instance",
    "rollback",
    "async_response",
)
# Every value :func:`family` returns: the known families and "other" for the rest.
FAMILIES: Final[tuple[str, ...]] = (*KNOWN_FAMILIES, "other")
_BATCHABLE: Final = (
    ENROLLMENT
    | COMPLETION
    | UNENROLLMENT
    | ROLLBACK
    | {
        "LEARNING_OBJECT_MODIFICATION",
        "LEARNING_OBJECT_INSTANCE_MODIFICATION",
    }
)
# Every event name Adobe documents; names outside it follow the unlisted policy.
KNOWN_EVENT_NAMES: Final = frozenset(
    ENROLLMENT
    | COMPLETION
    | UNENROLLMENT
    | LEARNING_OBJECT
    | LEARNING_OBJECT_INSTANCE
    | ROLLBACK
    | ASYNC_RESPONSE
    | {"CI_STATS", "LEARNER_PROGRESS"}
    | {f"{name}_BATCH" for name in _BATCHABLE}
)
_RECORD_FAMILIES: Final = frozenset(
    {"enrollment", "completion", "unenrollment", "progress", "rollback"}
)


def family(name: str) -> str:
    """The event family, a closed set used for keys and metric labels."""
    base = name.removesuffix("_BATCH")
    if base in ENROLLMENT:
        return "enrollment"
    if base in COMPLETION:
        return "completion"
    if base in UNENROLLMENT:
        return "unenrollment"
    if base == "LEARNER_PROGRESS":
        return "progress"
    if base in ROLLBACK:
        return "rollback"
    if base == "CI_STATS":
        return "ci_stats"
    if base in LEARNING_OBJECT_INSTANCE:
        return "learning_object_instance"
    if base in LEARNING_OBJECT:
        return "learning_object"
    if base.startswith("RESPONSE:ASYNCAPI_"):
        return "async_response"
    return "other"


def sanitize_topic_part(name: str) -> str:
    """Lower-case, every character outside ``[a-z0-9._-]`` replaced by ``_``."""
    return _ILLEGAL_TOPIC_CHARS.sub("_", name.lower())


def legal_topic(topic: str) -> str:
    """A topic name Kafka accepts, derived deterministically from ``topic``."""
    cleaned = re.sub(r"[^a-zA-Z0-9._-]", "_", topic)
    if cleaned in {"", ".", ".."}:
        cleaned = f"_{cleaned}"
    if len(cleaned) > MAX_TOPIC_CHARS:
        digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        cleaned = f"{cleaned[: MAX_TOPIC_CHARS - 17]}-{digest}"
    return cleaned


def is_legal_topic(topic: str) -> bool:
    """Whether Kafka accepts ``topic`` as a topic name."""
    return bool(_LEGAL_TOPIC.fullmatch(topic)) and topic not in {".", ".."}


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """How one receiver turns events into records."""

    receiver: str
    topic_template: str = "alm.{event}"
    overrides: Mapping[str, str] = field(default_factory=dict)
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    unlisted: UnlistedPolicy = "template"
    catchall_topic: str = "alm.other"
    key: KeyStrategy = "record"
    source_template: str = "https://learningmanager.adobe.com/accounts/{accountId}"
    dead_letter_topic: str = "alm.deadletter"

    def is_listed(self, name: str) -> bool:
        if self.allow is not None:
            return name in self.allow
        return name in KNOWN_EVENT_NAMES


_HEADERS_MARGIN: Final = 65_536


class Record(NamedTuple):
    """One Kafka record ready to produce (a named tuple: one is made per event)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    event_id: str | None = None
    family: str = "other"
    dead_letter: bool = False

    @property
    def size(self) -> int:
        """Bytes the record occupies, close to what the broker counts against its limit."""
        header_bytes = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.value) + len(self.key or b"") + header_bytes + 64

    def exceeds(self, limit: int) -> bool:
        """``size > limit``, measured only when the value and key come near the limit.

        The headers are the bridge's own (CloudEvents, ids, a bounded error text), far
        below the margin, so the check is exact and costs nothing for ordinary records.
        """
        near = len(self.value) + len(self.key or b"") + _HEADERS_MARGIN > limit
        return near and self.size > limit


@dataclass(frozen=True, slots=True)
class Plan:
    """What a batch becomes: records to produce (in batch order) and events left out."""

    records: tuple[Record, ...]
    filtered: int


class _NameInfo(NamedTuple):
    topic: str | None
    family: str
    ce_type: bytes
    name: bytes


class Router:
    """Builds records for one receiver; caches per-name topic and header bytes."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        self._names: dict[str, _NameInfo] = {}
        self._receiver = policy.receiver.encode()

    def topic_for(self, name: str) -> str | None:
        """The topic for an event name, or None when it goes to the dead-letter topic."""
        policy = self.policy
        if name in policy.overrides:
            return policy.overrides[name]
        if policy.is_listed(name) or policy.unlisted == "template":
            return legal_topic(policy.topic_template.replace("{event}", sanitize_topic_part(name)))
        if policy.unlisted == "catchall":
            return policy.catchall_topic
        return None

    def key_for(self, account_id: int, event: Event, fam: str) -> bytes | None:
        strategy = self.policy.key
        if strategy == "none":
            return None
        if strategy == "accountId":
            return str(account_id).encode()
        if strategy == "eventId":
            return event.event_id.encode()
        data = event.data
        if fam in _RECORD_FAMILIES:
            user, instance = data.get("userId"), data.get("loInstanceId")
            if _is_id(user) and _is_id(instance):
                return f"{account_id}:{user}:{instance}".encode()
        elif fam in {"ci_stats", "learning_object_instance"}:
            instance = data.get("loInstanceId")
            if _is_id(instance):
                return f"{account_id}:{instance}".encode()
        elif fam == "learning_object":
            lo = data.get("loId")
            if _is_id(lo):
                return f"{account_id}:{lo}".encode()
        return f"{account_id}:{event.event_id}".encode()

    def _name_info(self, name: str) -> _NameInfo:
        # Bounded: event names are an open set and come from the senders.
        info = self._names.get(name)
        if info is None:
            info = _NameInfo(
                self.topic_for(name),
                family(name),
                f"com.adobe.learningmanager.{name}".encode("utf-8", "surrogatepass"),
                name.encode("utf-8", "surrogatepass"),
            )
            if len(self._names) < 10_000:
                self._names[name] = info
        return info

    def plan(self, batch: Batch) -> Plan:
        """One record per event in batch order; denied names are counted, not produced."""
        records: list[Record] = []
        filtered = 0
        account = batch.account_id
        account_bytes = str(account).encode()
        source = self.policy.source_template.replace("{accountId}", str(account)).encode()
        deny = self.policy.deny
        receiver = self._receiver
        for event in batch.events:
            name = event.name
            if name in deny:
                filtered += 1
                continue
            topic, fam, ce_type, name_bytes = self._name_info(name)
            value = _value(event.raw, account)
            headers: Headers = [
                ("ce_specversion", b"1.0"),
                ("ce_id", event.event_id.encode("utf-8", "surrogatepass")),
                ("ce_source", source),
                ("ce_type", ce_type),
            ]
            if event.time is not None:
                headers.append(("ce_time", event.time.encode()))
            headers += (
                ("content-type", b"application/json"),
                ("alm_account_id", account_bytes),
                ("alm_event_name", name_bytes),
                ("alm_receiver", receiver),
            )
            key = self.key_for(account, event, fam)
            if topic is None:
                headers.extend(dead_letter_headers("unlisted_event", f"event name {name!r}"))
                records.append(
                    Record(
                        self.policy.dead_letter_topic,
                        key,
                        value,
                        headers,
                        event.event_id,
                        fam,
                        dead_letter=True,
                    )
                )
                continue
            records.append(Record(topic, key, value, headers, event.event_id, fam))
        return Plan(tuple(records), filtered)

    def dead_letter(self, body: bytes, reason: str, error: str) -> Record:
        """The raw body of a batch that can never be accepted, with why in headers."""
        headers = [("alm_receiver", self._receiver), *dead_letter_headers(reason, error)]
        return Record(
            self.policy.dead_letter_topic, self._receiver, body, headers, dead_letter=True
        )


def dead_letter_headers(reason: str, error: str) -> Headers:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        ("dlq_reason", reason.encode()),
        ("dlq_error", error[:1000].encode("utf-8", "replace")),
        ("dlq_time", now.encode()),
    ]


def _is_id(value: object) -> bool:
    return (isinstance(value, str) and value != "") or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def _value(raw: Mapping[str, Any], account_id: int) -> bytes:
    try:
        return orjson.dumps({**raw, "accountId": account_id})
    except orjson.JSONEncodeError as exc:
        raise InvalidBatch(
            f"event cannot be encoded as JSON: {exc}", code="invalid_event"
        ) from None


def validate_topics(topics: Sequence[str]) -> list[str]:
    """Problems with configured topic names (empty when all are legal)."""
    return [f"illegal Kafka topic name {t!r}" for t in topics if not is_legal_topic(t)]
