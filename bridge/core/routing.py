"""Sans-I/O routing: each ALM event becomes one Kafka record (topic, key, value, headers).

Headers follow the CloudEvents Kafka protocol binding in binary mode, so consumers that
speak CloudEvents read the id, type, source and time without opening the value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

import orjson

from bridge.core.alm import Batch, Event
from bridge.core.errors import InvalidBatch
from bridge.core.reasons import DeadLetterReason, FallbackReason
from bridge.core.records import Headers, Record

UnlistedPolicy = Literal["template", "catchall", "deadletter"]
KeyStrategy = Literal["record", "eventId", "accountId", "none"]
# Why an event name does not go to its template topic.
RouteReason = FallbackReason | Literal[DeadLetterReason.UNLISTED_EVENT]
MAX_TOPIC_CHARS: Final = 249
# ALM's event names: upper-case words joined by '_', optionally prefixed ("RESPONSE:...").
DEFAULT_EVENT_NAME_PATTERN: Final = r"[A-Z][A-Z0-9_]*(:[A-Z0-9_]+)*"
# The default topics of a receiver, the one definition the settings and policies share.
DEFAULT_TOPIC_TEMPLATE: Final = "alm.{event}"
DEFAULT_CATCHALL_TOPIC: Final = "alm.other"
DEFAULT_DEAD_LETTER_TOPIC: Final = "alm.deadletter"
DEFAULT_CANARY_TOPIC: Final = "alm.canary"
DEFAULT_UNLISTED: Final = "template"
DEFAULT_KEY: Final = "record"
MAX_EVENT_NAME_CHARS: Final = 128
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
# The key rule of the ``record`` strategy, the one definition routing and the AsyncAPI
# document share: the ids in ``data`` (or ``eventData``) that name the record an event of
# the family is about, keyed ``{accountId}:{id}...`` when every one is present; every
# other event (and one missing an id) is keyed ``{accountId}:{eventId}``.
RECORD_KEY_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "enrollment": ("userId", "loInstanceId"),
    "completion": ("userId", "loInstanceId"),
    "unenrollment": ("userId", "loInstanceId"),
    "progress": ("userId", "loInstanceId"),
    "rollback": ("userId", "loInstanceId"),
    "ci_stats": ("loInstanceId",),
    "learning_object_instance": ("loInstanceId",),
    "learning_object": ("loId",),
}


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


def collision_key(topic: str) -> str:
    """Kafka refuses a topic whose name equals another's once '.' is read as '_'."""
    return topic.replace(".", "_")


class TopicBudget:
    """The topics one receiver derives for names nobody reserved: at most ``max_topics``.

    Each receiver has its own, so one receiver's invented names never spend another's.
    """

    def __init__(self, max_topics: int) -> None:
        self.max_topics = max_topics
        self._keys: set[str] = set()

    def spend(self, key: str) -> bool:
        """Whether the topic with collision key ``key`` may be used (counted once)."""
        keys = self._keys
        if key in keys:
            return True
        if len(keys) >= self.max_topics:
            return False
        keys.add(key)
        return True

    def __len__(self) -> int:
        return len(self._keys)


class TopicRegistry:
    """The template topics of every receiver of one process, by Kafka collision key.

    Built from every receiver's policy before any event arrives, it reserves:

    - the operator topics (dead-letter, catch-all, overrides) of every receiver: no
      receiver's event name reaches them through its template (``reserved_topic``);
    - the template topic of each name a receiver lists or documents
      (:meth:`RoutingPolicy.reserved_names`), for that receiver: such a topic is never
      spent from a budget, and another receiver's name cannot take it, neither the same
      topic nor one colliding with it in Kafka (``topic_collision``).

    Other topics are derived on first use and charged to the receiver's own
    :class:`TopicBudget`; the first topic to claim a collision key keeps it. So the
    process derives at most the reserved topics plus ``max_topics`` per receiver.
    """

    def __init__(self, policies: Iterable[RoutingPolicy] = ()) -> None:
        policies = tuple(policies)
        self._operator = frozenset(
            collision_key(topic) for policy in policies for topic in policy.reserved_topics()
        )
        self._reserved: dict[str, tuple[str, set[str]]] = {}
        self._derived: dict[str, str] = {}
        # (receiver, topic, the topic it collides with): reserved topics that collide in
        # Kafka with one reserved before them (receivers in configuration order).
        self.conflicts: list[tuple[str, str, str]] = []
        for policy in policies:
            # Listed names first: an allow-listed name keeps its topic against a
            # documented one it collides with.
            names = sorted(policy.reserved_names(), key=lambda n: (not policy.is_listed(n), n))
            for name in names:
                topic = policy.template_topic(name)
                key = collision_key(topic)
                if key in self._operator:
                    continue
                owner = self._reserved.get(key)
                if owner is None:
                    self._reserved[key] = (topic, {policy.receiver})
                elif owner[0] == topic:
                    owner[1].add(policy.receiver)
                else:
                    self.conflicts.append((policy.receiver, topic, owner[0]))

    def inherit(self, earlier: TopicRegistry) -> None:
        """Keep the topics ``earlier`` derived (a reload): a topic in use keeps its
        collision key, unless the new configuration reserves it."""
        for key, topic in earlier._derived.items():
            if key not in self._operator and key not in self._reserved:
                self._derived.setdefault(key, topic)

    def claim(self, receiver: str, topic: str, budget: TopicBudget) -> FallbackReason | None:
        """None when ``receiver`` may publish to template topic ``topic``, else why not."""
        key = collision_key(topic)
        if key in self._operator:
            return DeadLetterReason.RESERVED_TOPIC
        reserved = self._reserved.get(key)
        if reserved is not None:
            owner, receivers = reserved
            return (
                None
                if owner == topic and receiver in receivers
                else DeadLetterReason.TOPIC_COLLISION
            )
        derived = self._derived.get(key)
        if derived is not None and derived != topic:
            return DeadLetterReason.TOPIC_COLLISION
        if not budget.spend(key):
            return DeadLetterReason.TOPIC_LIMIT
        if derived is None:
            self._derived[key] = topic
        return None

    @property
    def reserved(self) -> int:
        """How many topics are reserved for listed and documented names."""
        return len(self._reserved)

    def __len__(self) -> int:
        """How many topics were derived for names nobody reserved, in every receiver."""
        return len(self._derived)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """How one receiver turns events into records."""

    receiver: str
    topic_template: str = DEFAULT_TOPIC_TEMPLATE
    overrides: Mapping[str, str] = field(default_factory=dict)
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    unlisted: UnlistedPolicy = DEFAULT_UNLISTED
    catchall_topic: str = DEFAULT_CATCHALL_TOPIC
    key: KeyStrategy = DEFAULT_KEY
    source_template: str = "https://learningmanager.adobe.com/accounts/{accountId}"
    dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC
    event_name_pattern: str = DEFAULT_EVENT_NAME_PATTERN
    canary_topic: str = DEFAULT_CANARY_TOPIC

    def is_listed(self, name: str) -> bool:
        if self.allow is not None:
            return name in self.allow
        return name in KNOWN_EVENT_NAMES

    def reserved_topics(self) -> frozenset[str]:
        """Topics an event name must never reach through the template."""
        return frozenset(
            {
                self.dead_letter_topic,
                self.catchall_topic,
                self.canary_topic,
                *self.overrides.values(),
            }
        )

    def template_topic(self, name: str) -> str:
        """The topic the template makes of an event name."""
        return legal_topic(self.topic_template.replace("{event}", sanitize_topic_part(name)))

    def reserved_names(self) -> frozenset[str]:
        """Names whose template topic is reserved for this receiver before any event.

        The listed names (``allow``, or ALM's documented names) and, under the
        ``template`` policy, ALM's documented names that match the name pattern: the
        names the configuration sends to the template. Overridden and denied names are
        not, as they never use it.
        """
        names = set(KNOWN_EVENT_NAMES if self.allow is None else self.allow)
        if self.unlisted == "template":
            pattern = re.compile(self.event_name_pattern)
            names |= {n for n in KNOWN_EVENT_NAMES if pattern.fullmatch(n)}
        return frozenset(names - self.overrides.keys() - self.deny)


# The event name of ``alm-bridge canary``: always on the receiver's canary topic, never on a
# topic of the consumers, whatever the routing lists, denies or overrides.
CANARY_EVENT_NAME: Final = "ALM_BRIDGE_CANARY"


@dataclass(frozen=True, slots=True)
class Plan:
    """What a batch becomes: records to produce (in batch order) and events left out."""

    records: tuple[Record, ...]
    filtered: int
    fallbacks: Mapping[FallbackReason, int] = field(default_factory=dict)
    # Events of ``alm-bridge canary``, on the canary topic.
    canaries: int = 0


class Route(NamedTuple):
    """Where an event name goes: a topic (None: the dead-letter topic), and why there.

    ``reason`` is set when the name could not use the topic template (a fallback) or,
    for the dead-letter topic, says why the event is dead-lettered.
    """

    topic: str | None
    reason: RouteReason | None = None


class _NameInfo(NamedTuple):
    topic: str | None
    reason: RouteReason | None
    family: str
    ce_type: bytes
    name: bytes


class Router:
    """Builds records for one receiver; caches per-name topic and header bytes."""

    def __init__(
        self,
        policy: RoutingPolicy,
        topics: TopicRegistry | None = None,
        *,
        max_topics: int = 1_000,
        budget: TopicBudget | None = None,
    ) -> None:
        """``topics`` is the process's registry, built from every receiver's policy;
        ``budget`` the receiver's topics derived so far (kept across a reload)."""
        self.policy = policy
        self.topics = topics if topics is not None else TopicRegistry([policy])
        self.budget = budget if budget is not None else TopicBudget(max_topics)
        self._names: dict[str, _NameInfo] = {}
        self._receiver = policy.receiver.encode()
        self._pattern = re.compile(policy.event_name_pattern)
        self._reserved = {collision_key(t) for t in policy.reserved_topics()}

    def route(self, name: str) -> Route:
        """The topic for an event name, or the dead-letter topic (``topic`` None).

        Overrides win. Listed names, and unlisted ones under the ``template`` policy, use
        the template unless that cannot be trusted: a name outside the event-name pattern,
        a template topic that is (or collides in Kafka with) a dead-letter, catch-all or
        override topic of any receiver, one that is or collides with a topic reserved for
        another receiver's documented names, one that collides with another template
        topic, or a new topic past the receiver's budget. Those fall back to the catch-all
        topic, or to the dead-letter topic under the ``deadletter`` policy.
        """
        policy = self.policy
        if name == CANARY_EVENT_NAME:
            # The canary's own topic, whatever the rest of the routing says.
            return Route(policy.canary_topic)
        if name in policy.overrides:
            return Route(policy.overrides[name])
        listed = policy.is_listed(name)
        if not listed and policy.unlisted == "catchall":
            return Route(policy.catchall_topic)
        if not listed and policy.unlisted == "deadletter":
            return Route(None, DeadLetterReason.UNLISTED_EVENT)
        if not listed and (len(name) > MAX_EVENT_NAME_CHARS or not self._pattern.fullmatch(name)):
            return self._fallback(DeadLetterReason.NAME_PATTERN)
        topic = policy.template_topic(name)
        if collision_key(topic) in self._reserved:
            return self._fallback(DeadLetterReason.RESERVED_TOPIC)
        refused = self.topics.claim(policy.receiver, topic, self.budget)
        if refused is not None:
            return self._fallback(refused)
        return Route(topic)

    def _fallback(self, reason: FallbackReason) -> Route:
        if self.policy.unlisted == "deadletter":
            return Route(None, reason)
        return Route(self.policy.catchall_topic, reason)

    def topic_for(self, name: str) -> str | None:
        """The topic for an event name, or None when it goes to the dead-letter topic."""
        return self._name_info(name).topic

    def key_for(self, account_id: int, event: Event, fam: str) -> bytes | None:
        strategy = self.policy.key
        if strategy == "none":
            return None
        if strategy == "accountId":
            return str(account_id).encode()
        if strategy == "eventId":
            return event.event_id.encode()
        fields = RECORD_KEY_FIELDS.get(fam)
        if fields is not None:
            # One and two ids spelled out: this runs for every event.
            data = event.data
            if len(fields) == 1:
                only = data.get(fields[0])
                if _is_id(only):
                    return f"{account_id}:{only}".encode()
            elif len(fields) == 2:
                first, second = data.get(fields[0]), data.get(fields[1])
                if _is_id(first) and _is_id(second):
                    return f"{account_id}:{first}:{second}".encode()
            else:
                ids = [data.get(f) for f in fields]
                if all(_is_id(i) for i in ids):
                    return ":".join([str(account_id), *map(str, ids)]).encode()
        return f"{account_id}:{event.event_id}".encode()

    def _name_info(self, name: str) -> _NameInfo:
        # Bounded: event names are an open set and come from the senders.
        info = self._names.get(name)
        if info is None:
            route = self.route(name)
            info = _NameInfo(
                route.topic,
                route.reason,
                family(name),
                f"com.adobe.learningmanager.{name}".encode("utf-8", "surrogatepass"),
                name.encode("utf-8", "surrogatepass"),
            )
            if len(self._names) < 10_000:
                self._names[name] = info
        return info

    def plan(self, batch: Batch, extra: Sequence[tuple[str, bytes]] = ()) -> Plan:
        """One record per event in batch order; denied names are counted, not produced.

        ``extra`` headers (the request's trace context) are added to every record.
        """
        records: list[Record] = []
        filtered = 0
        fallbacks: dict[FallbackReason, int] = {}
        account = batch.account_id
        account_bytes = str(account).encode()
        source = self.policy.source_template.replace("{accountId}", str(account)).encode()
        deny = self.policy.deny
        receiver = self._receiver
        canaries = 0
        for event in batch.events:
            name = event.name
            if name in deny:
                filtered += 1
                continue
            if name == CANARY_EVENT_NAME:
                canaries += 1
            topic, reason, fam, ce_type, name_bytes = self._name_info(name)
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
                *extra,
            )
            key = self.key_for(account, event, fam)
            if reason is not None and reason is not DeadLetterReason.UNLISTED_EVENT:
                fallbacks[reason] = fallbacks.get(reason, 0) + 1
            if topic is None:
                reason = reason or DeadLetterReason.UNLISTED_EVENT
                headers.extend(dead_letter_headers(reason, f"event name {name[:200]!r}"))
                records.append(
                    Record(
                        self.policy.dead_letter_topic,
                        key,
                        value,
                        headers,
                        event.event_id,
                        fam,
                        dead_letter=True,
                        reason=reason,
                    )
                )
                continue
            # Positional: keywords cost a NamedTuple more, and this runs for every event.
            records.append(
                Record(topic, key, value, headers, event.event_id, fam, False, None, event.time)
            )
        return Plan(tuple(records), filtered, fallbacks, canaries)

    def dead_letter(
        self,
        body: bytes,
        reason: DeadLetterReason,
        error: str,
        extra: Sequence[tuple[str, bytes]] = (),
    ) -> Record:
        """The raw body of a batch that can never be accepted, with why in headers."""
        headers = [
            ("alm_receiver", self._receiver),
            *dead_letter_headers(reason, error),
            *extra,
        ]
        return Record(
            self.policy.dead_letter_topic,
            self._receiver,
            body,
            headers,
            dead_letter=True,
            reason=reason,
        )

    def dead_letter_event(
        self, record: Record, reason: DeadLetterReason, error: str, *, max_value_bytes: int
    ) -> Record:
        """An event's record that Kafka refused for good, redirected to the dead-letter topic.

        Key, value and headers are kept (the value cut to ``max_value_bytes``, with
        ``dlq_truncated_from_bytes``), plus why and ``dlq_topic``, the topic it was meant for.
        """
        value = record.value
        headers = [
            *record.headers,
            *dead_letter_headers(reason, error),
            ("dlq_topic", record.topic.encode()),
        ]
        if len(value) > max_value_bytes:
            headers.append(("dlq_truncated_from_bytes", str(len(value)).encode()))
            value = value[:max_value_bytes]
        return record._replace(
            topic=self.policy.dead_letter_topic,
            value=value,
            headers=headers,
            dead_letter=True,
            reason=reason,
        )


def dead_letter_headers(reason: DeadLetterReason, error: str) -> Headers:
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
    """The event as the record's value, in a bytes object of its own size.

    orjson returns its output in the buffer it wrote to, about 4 KiB for any event of a
    few hundred bytes. A record lives until Kafka acknowledges it, so 100 such values made
    a batch in flight ten times larger than its events: the copy costs a fraction of a
    microsecond and keeps the memory per batch in flight proportional to its bytes.
    """
    try:
        return bytes(memoryview(orjson.dumps({**raw, "accountId": account_id})))
    except orjson.JSONEncodeError as exc:
        raise InvalidBatch(
            f"event cannot be encoded as JSON: {exc}", code=DeadLetterReason.INVALID_EVENT
        ) from None


def validate_topics(topics: Sequence[str]) -> list[str]:
    """Problems with configured topic names (empty when all are legal)."""
    return [f"illegal Kafka topic name {t!r}" for t in topics if not is_legal_topic(t)]
