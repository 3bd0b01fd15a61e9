"""The consumers' contract: an AsyncAPI 3.0 document of what the bridge publishes.

Built from the effective routing configuration, with no I/O: one channel per topic (the
template, overrides, the catch-all and the dead-letter topic), the record key and how it
is built, the CloudEvents and ``alm_*`` headers, and one message per event family whose
JSON Schema accepts both payload dialects ALM sends. ``alm-bridge asyncapi`` prints it;
``docs/asyncapi.yaml`` is the copy for the defaults, and :func:`render_markdown` turns it
into the page in ``docs/asyncapi.md``.

Extensions (allowed by AsyncAPI on messages): ``x-alm-key`` lists, per receiver, the key
strategy and the templates tried in order — the first whose fields are all present ids in
the event's ``data`` (or ``eventData``) builds the key — so consumers and the tests can
check a key against its value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

import orjson
import yaml

from bridge import __version__
from bridge.alm import Batch, parse_body
from bridge.receivers import policy_for
from bridge.routing import (
    ASYNC_RESPONSE,
    COMPLETION,
    ENROLLMENT,
    KNOWN_EVENT_NAMES,
    LEARNING_OBJECT,
    LEARNING_OBJECT_INSTANCE,
    ROLLBACK,
    UNENROLLMENT,
    Router,
    RoutingPolicy,
    family,
    legal_topic,
)
from bridge.settings import Settings

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
CE_TYPE_PREFIX: Final = "com.adobe.learningmanager."
DEAD_LETTERED_BATCH: Final = "deadLetteredBatch"
DEAD_LETTERED_EVENT: Final = "deadLetteredEvent"
# Channel and operation ids: AsyncAPI 3 allows only these characters.
_ID_ILLEGAL: Final = re.compile(r"[^\w.\-]")
_EXAMPLES_PER_MESSAGE: Final = 2


@dataclass(frozen=True)
class _Family:
    message: str
    title: str
    names: frozenset[str]
    data_schema: str | None
    key_fields: tuple[str, ...] = ()
    name_pattern: str | None = None


def _with_batch(names: frozenset[str]) -> frozenset[str]:
    # ``family()`` gives ``X_BATCH`` the family of ``X``, documented by Adobe or not.
    return names | {f"{n}_BATCH" for n in names}


FAMILIES: Final[Mapping[str, _Family]] = {
    "enrollment": _Family(
        "enrollmentEvent",
        "Enrollment",
        _with_batch(ENROLLMENT),
        "enrollmentData",
        ("userId", "loInstanceId"),
    ),
    "completion": _Family(
        "completionEvent",
        "Completion",
        _with_batch(COMPLETION),
        "completionData",
        ("userId", "loInstanceId"),
    ),
    "unenrollment": _Family(
        "unenrollmentEvent",
        "Unenrollment",
        _with_batch(UNENROLLMENT),
        "unenrollmentData",
        ("userId", "loInstanceId"),
    ),
    "progress": _Family(
        "learnerProgressEvent",
        "Learner progress",
        _with_batch(frozenset({"LEARNER_PROGRESS"})),
        "learnerProgressData",
        ("userId", "loInstanceId"),
    ),
    "rollback": _Family(
        "completionRollbackEvent",
        "Learning path completion rollback",
        _with_batch(ROLLBACK),
        "enrollmentData",
        ("userId", "loInstanceId"),
    ),
    "ci_stats": _Family(
        "ciStatsEvent",
        "Course instance statistics",
        _with_batch(frozenset({"CI_STATS"})),
        "ciStatsData",
        ("loInstanceId",),
    ),
    "learning_object": _Family(
        "learningObjectEvent",
        "Learning object",
        _with_batch(LEARNING_OBJECT),
        "learningObjectData",
        ("loId",),
    ),
    "learning_object_instance": _Family(
        "learningObjectInstanceEvent",
        "Learning object instance",
        _with_batch(LEARNING_OBJECT_INSTANCE),
        "learningObjectInstanceData",
        ("loInstanceId",),
    ),
    "async_response": _Family(
        "asyncResponseEvent",
        "Response of an asynchronous API",
        ASYNC_RESPONSE,
        "asyncResponseData",
        name_pattern="^RESPONSE:ASYNCAPI_",
    ),
    "other": _Family("otherEvent", "Any other event", frozenset(), None),
}
# Names outside the documented ones may belong to any family: ``family()`` sorts an
# undocumented ``X_BATCH`` with ``X`` and any ``RESPONSE:ASYNCAPI_*`` with the responses.
_OPEN_SET_FAMILIES: Final = tuple(FAMILIES)


@dataclass
class _Channel:
    address: str
    parameterized: bool = False
    messages: set[str] = field(default_factory=set)
    # receiver -> event names routed here (documented names and names from the config)
    names: dict[str, list[str]] = field(default_factory=dict)
    # receiver -> what reaches the channel from the open set of event names
    open_set: dict[str, str] = field(default_factory=dict)
    dead_letter_for: list[str] = field(default_factory=list)


class _Channels:
    def __init__(self) -> None:
        self.by_address: dict[str, _Channel] = {}

    def get(self, address: str, *, parameterized: bool = False) -> _Channel:
        channel = self.by_address.get(address)
        if channel is None:
            channel = self.by_address[address] = _Channel(address, parameterized)
        return channel


def _collect(policies: Sequence[RoutingPolicy]) -> _Channels:
    channels = _Channels()
    for policy in policies:
        router = Router(policy)
        receiver = policy.receiver
        dead = channels.get(policy.dead_letter_topic)
        dead.messages |= {DEAD_LETTERED_BATCH, DEAD_LETTERED_EVENT}
        dead.dead_letter_for.append(receiver)
        explicit = set(KNOWN_EVENT_NAMES) | set(policy.allow or ()) | set(policy.overrides)
        for name in sorted(explicit - policy.deny):
            topic = router.topic_for(name)
            target = dead if topic is None else channels.get(topic)
            if topic is not None:
                target.messages.add(FAMILIES[family(name)].message)
            target.names.setdefault(receiver, []).append(name)
        open_messages = {FAMILIES[f].message for f in _OPEN_SET_FAMILIES}
        if policy.unlisted == "template":
            template = policy.topic_template
            if "{event}" in template:
                target = channels.get(template, parameterized=True)
            else:
                target = channels.get(legal_topic(template))
            target.messages |= open_messages
            target.open_set[receiver] = (
                "every other event name (unlisted policy `template`), with its family's message"
            )
            fallback = channels.get(policy.catchall_topic)
            fallback.messages |= open_messages
            fallback.open_set[receiver] = (
                "event names that cannot use the template (outside `event_name_pattern`, "
                "onto the dead-letter, catch-all or an override topic or one colliding with "
                "another, past the topic limit), with their family's message"
            )
        elif policy.unlisted == "catchall":
            target = channels.get(policy.catchall_topic)
            target.messages |= open_messages
            target.open_set[receiver] = (
                "every other event name (unlisted policy `catchall`), with its family's message"
            )
        else:
            dead.open_set[receiver] = (
                "every other event name, as a dead-lettered event (unlisted policy `deadletter`)"
            )
    return channels


def _channel_id(channel: _Channel, taken: set[str]) -> str:
    base = channel.address.replace("{event}", "EVENT") if channel.parameterized else channel.address
    candidate = _ID_ILLEGAL.sub("_", base)
    suffix = 2
    unique = candidate
    while unique in taken:
        unique = f"{candidate}_{suffix}"
        suffix += 1
    taken.add(unique)
    return unique


# ------------------------------------------------------------------------- schemas


def _time_schema() -> dict[str, Any]:
    return {
        "description": (
            "An ALM time: epoch seconds, epoch milliseconds (as a number or a string of "
            "digits) or ISO-8601."
        ),
        "anyOf": [
            {"type": "number"},
            {"type": "string", "pattern": "^-?[0-9]+$"},
            {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}"},
        ],
    }


def _id_schema(description: str) -> dict[str, Any]:
    return {"description": description, "type": ["integer", "string"], "minLength": 1}


def _lo_id(description: str) -> dict[str, Any]:
    return {"description": description, "type": "string", "pattern": "^[A-Za-z_]+:[\\s\\S]"}


def _data_schemas() -> dict[str, Any]:
    user_id = _id_schema("The learner's user id (an integer in ALM's documentation).")
    lo_id = _lo_id("The learning object, `<type>:<id>` (e.g. `course:123`).")
    lo_instance_id = _lo_id("The learning object instance, `<loId>_<instance id>`.")
    lo_type = {
        "description": (
            "`course`, `learningProgram`, `certification`, `jobAid`; ALM's own samples "
            "spell it differently at times, so no closed list."
        ),
        "type": "string",
    }
    enrollment_source = {
        "description": "How the learner was enrolled (`SELF_ENROLL`, `ADMIN_ENROLL`, ...).",
        "type": "string",
    }
    time = {"$ref": "#/components/schemas/almTime"}
    record_ids = {
        "userId": user_id,
        "loId": lo_id,
        "loInstanceId": lo_instance_id,
        "loType": lo_type,
    }

    def data(title: str, properties: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "title": title,
            "description": "Fields are typed as ALM documents them; unknown fields are kept.",
            "type": "object",
            "properties": dict(properties),
        }

    count = {"type": "integer", "minimum": 0}
    return {
        "enrollmentData": data(
            "Enrollment data",
            {**record_ids, "enrollmentSource": enrollment_source, "dateEnrolled": time},
        ),
        "completionData": data(
            "Completion data",
            {
                **record_ids,
                "enrollmentSource": enrollment_source,
                "dateCompleted": time,
                "hasPassed": {"type": "boolean", "description": "May be missing."},
            },
        ),
        "unenrollmentData": data(
            "Unenrollment data", {**record_ids, "enrollmentSource": enrollment_source}
        ),
        "learnerProgressData": data(
            "Learner progress data",
            {
                **record_ids,
                "dateStarted": time,
                "progressPercent": {"type": "number", "minimum": 0, "maximum": 100},
            },
        ),
        "ciStatsData": data(
            "Course instance statistics",
            {
                "loInstanceId": lo_instance_id,
                "waitlistCount": count,
                "enrollmentCount": count,
                "seatLimit": count,
            },
        ),
        "learningObjectData": data("Learning object data", {"loId": lo_id, "loType": lo_type}),
        "learningObjectInstanceData": data(
            "Learning object instance data",
            {"loInstanceId": lo_instance_id, "loId": lo_id, "loType": lo_type},
        ),
        "asyncResponseData": data(
            "Response of an asynchronous API",
            {
                "status": {"type": "string", "description": "e.g. `SUCCESS`."},
                "request": {"description": "The original API request, echoed."},
            },
        ),
    }


def _envelope_schema() -> dict[str, Any]:
    return {
        "title": "ALM event (either dialect), with the batch's accountId",
        "description": (
            "The event exactly as ALM sent it, unknown fields included, plus `accountId` "
            "from the batch. The bridge checks these fields before publishing."
        ),
        "type": "object",
        "required": ["eventId", "eventName", "accountId"],
        "properties": {
            "accountId": {
                "description": "The ALM account, added by the bridge from the batch.",
                "type": "integer",
                "minimum": 0,
            },
            "eventId": {
                "description": (
                    "Unique per account; usually a UUID, but asynchronous user-group "
                    "events reuse the caller's id. Integers are taken as strings for "
                    "`ce_id`."
                ),
                "type": ["string", "integer"],
                "minLength": 1,
                "maxLength": 512,
                "pattern": "\\S",
            },
            "eventName": {
                "description": "An open set: new names appear, and names may contain `:`.",
                "type": "string",
                "minLength": 1,
                "maxLength": 512,
                "pattern": "\\S",
            },
            "eventInfo": {"description": "Opaque; sometimes absent.", "type": "string"},
            "timestamp": {"$ref": "#/components/schemas/almTime"},
            "eventTime": {"$ref": "#/components/schemas/almTime"},
            "eventInitiator": {
                "description": "The user who caused the event (setup guide's dialect).",
                "type": ["string", "integer"],
            },
            "data": {"type": "object"},
            "eventData": {"type": "object"},
        },
    }


def _family_payload(fam: _Family) -> dict[str, Any]:
    name_schema: dict[str, Any]
    if fam.name_pattern is not None:
        name_schema = {"pattern": fam.name_pattern}
    elif fam.names:
        name_schema = {"enum": sorted(fam.names)}
    else:
        name_schema = {}
    parts: list[dict[str, Any]] = [{"$ref": "#/components/schemas/almEvent"}]
    if name_schema:
        parts.append({"properties": {"eventName": name_schema}})
    if fam.data_schema is not None:
        data_ref = {"$ref": f"#/components/schemas/{fam.data_schema}"}
        parts.append(
            {
                "anyOf": [
                    {
                        "title": "Usage guide dialect: timestamp + data",
                        "required": ["data"],
                        "properties": {"data": data_ref},
                    },
                    {
                        "title": "Setup guide dialect: eventTime + eventInitiator + eventData",
                        "required": ["eventData"],
                        "properties": {"eventData": data_ref},
                    },
                ]
            }
        )
    return {"title": f"{fam.title} event", "allOf": parts}


def _escape(text: str) -> str:
    """``text`` as a literal in a JSON Schema (ECMA-262) pattern; Python's ``re.escape``
    also escapes characters such as ``-`` that ECMA-262's unicode mode refuses escaped."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)


def _source_pattern(templates: Iterable[str]) -> str:
    alternatives = sorted(
        _escape(t).replace(_escape("{accountId}"), "[0-9]+") for t in set(templates)
    )
    return "^(" + "|".join(alternatives) + ")$"


def _event_headers(
    receivers: Sequence[str], sources: Sequence[str], names: Mapping[str, Any]
) -> dict[str, Any]:
    ce_type: dict[str, Any] = {
        "description": f"`{CE_TYPE_PREFIX}` followed by the event name.",
        "type": "string",
    }
    if "enum" in names:
        ce_type["enum"] = [f"{CE_TYPE_PREFIX}{n}" for n in names["enum"]]
    elif "pattern" in names:
        ce_type["pattern"] = "^" + _escape(CE_TYPE_PREFIX) + names["pattern"].lstrip("^")
    else:
        ce_type["pattern"] = "^" + _escape(CE_TYPE_PREFIX) + "[\\s\\S]"
    return {
        "type": "object",
        "description": (
            "CloudEvents Kafka protocol binding, binary mode, plus the bridge's `alm_*` "
            "headers. Header values are UTF-8 strings."
        ),
        "required": [
            "ce_specversion",
            "ce_id",
            "ce_source",
            "ce_type",
            "content-type",
            "alm_account_id",
            "alm_event_name",
            "alm_receiver",
        ],
        "additionalProperties": False,
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {
                "description": "The eventId. Deduplicate on it together with `alm_account_id`.",
                "type": "string",
                "minLength": 1,
            },
            "ce_source": {
                "description": "The receiver's source template with the account id.",
                "type": "string",
                "pattern": _source_pattern(sources),
            },
            "ce_type": ce_type,
            "ce_time": {
                "description": (
                    "The event time (`timestamp` or `eventTime`) as RFC 3339 UTC with "
                    "milliseconds; absent when the event has none or it cannot be read."
                ),
                "type": "string",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
            },
            "content-type": {"type": "string", "const": "application/json"},
            "alm_account_id": {
                "description": "The batch's accountId, in decimal.",
                "type": "string",
                "pattern": "^[0-9]+$",
            },
            "alm_event_name": {
                "description": "The event name as received.",
                "type": "string",
                "minLength": 1,
                **names,
            },
            "alm_receiver": {
                "description": "The receiver (webhook URL `/webhooks/<name>`) it came through.",
                "type": "string",
                "enum": list(receivers),
            },
        },
    }


def _dlq_properties() -> dict[str, Any]:
    return {
        "dlq_reason": {
            "description": (
                "A short code: the error code of a malformed body (`invalid_json`, "
                "`invalid_envelope`, `invalid_event`, `record_too_large`, ...) or why an "
                "event was not published to its topic (`unlisted_event`, `name_pattern`, "
                "`reserved_topic`, `topic_collision`, `topic_limit`, `topic_invalid`, "
                "`topic_not_authorized`, `topic_policy`, `topic_config`, `topic_missing`, "
                "`kafka_refused`, ...). An open set: new reasons may appear."
            ),
            "type": "string",
            "pattern": "^[a-z0-9_]+$",
        },
        "dlq_error": {
            "description": "A human-readable detail, at most 1000 characters.",
            "type": "string",
        },
        "dlq_time": {
            "description": "When the bridge dead-lettered it, RFC 3339 UTC.",
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$",
        },
    }


def _key_templates(strategy: str, fam: _Family) -> list[str]:
    if strategy == "none":
        return []
    if strategy == "accountId":
        return ["{accountId}"]
    if strategy == "eventId":
        return ["{eventId}"]
    fallback = "{accountId}:{eventId}"
    if fam.key_fields:
        fields = ":".join(f"{{{f}}}" for f in fam.key_fields)
        return [f"{{accountId}}:{fields}", fallback]
    return [fallback]


_KEY_SCHEMAS: Final[Mapping[str, dict[str, Any]]] = {
    "record": {"type": "string", "pattern": "^[0-9]+:[\\s\\S]"},
    "eventId": {"type": "string", "minLength": 1},
    "accountId": {"type": "string", "pattern": "^[0-9]+$"},
    "none": {"type": "null"},
}
_KEY_TEXT: Final[Mapping[str, str]] = {
    "record": (
        "the identity of the record the event is about, so that events about it stay "
        "ordered in one partition"
    ),
    "eventId": "the eventId",
    "accountId": "the account id",
    "none": "no key (records spread over the partitions)",
}


def _key_binding(policies: Sequence[RoutingPolicy], fam: _Family | None) -> dict[str, Any]:
    strategies = sorted({p.key for p in policies})
    schemas = [_KEY_SCHEMAS[s] for s in strategies]
    key: dict[str, Any] = dict(schemas[0]) if len(schemas) == 1 else {"anyOf": schemas}
    if fam is None:
        key["description"] = "The event's key, built as for its family's topic."
    else:
        parts = []
        for strategy in strategies:
            templates = " or else ".join(f"`{t}`" for t in _key_templates(strategy, fam))
            parts.append(
                f"`{strategy}`: {_KEY_TEXT[strategy]}" + (f", {templates}" if templates else "")
            )
        key["description"] = (
            "UTF-8. Key strategy " + "; ".join(parts) + ". Ids come from `data` (or "
            "`eventData`); a template is used only when all its ids are present."
        )
    return {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}}


def _x_key(policies: Sequence[RoutingPolicy], fam: _Family) -> list[dict[str, Any]]:
    return [
        {"receiver": p.receiver, "strategy": p.key, "templates": _key_templates(p.key, fam)}
        for p in policies
    ]


# ------------------------------------------------------------------------ examples


def _examples(
    policies: Sequence[RoutingPolicy], samples: Sequence[bytes]
) -> dict[str, list[dict[str, Any]]]:
    """What the first receiver makes of the sample batches, per message."""
    examples: dict[str, list[dict[str, Any]]] = {}
    if not policies:
        return examples
    router = Router(policies[0])
    for body in samples:
        batch = parse_body(body)
        if not isinstance(batch, Batch):
            continue
        for record in router.plan(batch).records:
            headers = {k: v.decode() for k, v in record.headers}
            fam = FAMILIES[family(headers["alm_event_name"])]
            message = DEAD_LETTERED_EVENT if record.dead_letter else fam.message
            if record.dead_letter:
                headers["dlq_time"] = "2026-11-02T10:15:00.000Z"
            found = examples.setdefault(message, [])
            if len(found) < _EXAMPLES_PER_MESSAGE and not any(
                e["headers"]["alm_event_name"] == headers["alm_event_name"] for e in found
            ):
                found.append(
                    {
                        "name": headers["alm_event_name"].lower().replace(":", "_"),
                        "summary": (
                            f"A {headers['alm_event_name']} event; {_key_text(record.key)}"
                        ),
                        "headers": headers,
                        "payload": orjson.loads(record.value),
                    }
                )
    body = b'{"accountId": 1234, "events": [{"eventId": "", "eventName": "COURSE_ENROLLMENT"}]}'
    dead = router.dead_letter(body, "invalid_event", "events[0].eventId must be a non-empty string")
    headers = {k: v.decode() for k, v in dead.headers}
    headers["dlq_time"] = "2026-11-02T10:15:00.000Z"
    examples[DEAD_LETTERED_BATCH] = [
        {
            "name": "invalid_event",
            "summary": f"A batch whose event has an empty eventId; {_key_text(dead.key)}",
            "headers": headers,
            "payload": body.decode(),
        }
    ]
    return examples


def _key_text(key: bytes | None) -> str:
    return "no key" if key is None else f"key `{key.decode()}`"


# ------------------------------------------------------------------------ document


def build_document(settings: Settings, *, samples: Sequence[bytes] = ()) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the records the bridge publishes with ``settings``.

    ``samples`` are ALM batch bodies; what the first receiver makes of them becomes the
    messages' examples.
    """
    specs = settings.effective_receivers()
    policies = [policy_for(spec) for spec in specs]
    receivers = [p.receiver for p in policies]
    sources = [p.source_template for p in policies]
    channels = _collect(policies)
    examples = _examples(policies, samples)

    messages: dict[str, Any] = {}
    for fam in FAMILIES.values():
        if fam.name_pattern is not None:
            names: dict[str, Any] = {"pattern": fam.name_pattern}
        elif fam.names:
            names = {"enum": sorted(fam.names)}
        else:
            names = {}
        message: dict[str, Any] = {
            "name": fam.message,
            "title": f"{fam.title} event",
            "summary": _family_summary(fam),
            "contentType": "application/json",
            "headers": _event_headers(receivers, sources, names),
            "payload": {"$ref": f"#/components/schemas/{fam.message}"},
            "bindings": _key_binding(policies, fam),
            "x-alm-key": _x_key(policies, fam),
        }
        if fam.message in examples:
            message["examples"] = examples[fam.message]
        messages[fam.message] = message
    dead_event_headers = _event_headers(receivers, sources, {})
    dead_event_headers["properties"].update(_dlq_properties())
    dead_event_headers["properties"].update(
        {
            "dlq_topic": {
                "description": (
                    "Present when Kafka refused the event for good (the topic cannot be "
                    "created or written, the record is too large, ...): the topic it was "
                    "meant for."
                ),
                "type": "string",
            },
            "dlq_truncated_from_bytes": {
                "description": (
                    "Present when the value was cut to fit the dead-letter topic (an event "
                    "Kafka refused for its size): the value holds its first bytes, and "
                    "this its full size."
                ),
                "type": "string",
                "pattern": "^[0-9]+$",
            },
        }
    )
    dead_event_headers["required"] += ["dlq_reason", "dlq_error", "dlq_time"]
    messages[DEAD_LETTERED_EVENT] = {
        "name": DEAD_LETTERED_EVENT,
        "title": "Dead-lettered event",
        "summary": (
            "One event the bridge did not publish to a topic of its own (an event name "
            "not listed, with unlisted policy `deadletter`; or a topic or record Kafka "
            "refused for good): the record it would have published, with the `dlq_*` "
            "headers added."
        ),
        "contentType": "application/json",
        "headers": dead_event_headers,
        "payload": {"$ref": "#/components/schemas/otherEvent"},
        "bindings": _key_binding(policies, None),
    }
    if DEAD_LETTERED_EVENT in examples:
        messages[DEAD_LETTERED_EVENT]["examples"] = examples[DEAD_LETTERED_EVENT]
    messages[DEAD_LETTERED_BATCH] = {
        "name": DEAD_LETTERED_BATCH,
        "title": "Dead-lettered batch",
        "summary": (
            "The raw body of a batch that authenticated but can never be accepted (bad "
            "JSON, a bad envelope, an event that fails validation, a record too large). "
            "Replay: fix the cause, then post the value back to the bridge."
        ),
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": ["alm_receiver", "dlq_reason", "dlq_error", "dlq_time"],
            "additionalProperties": False,
            "properties": {
                "alm_receiver": {
                    "description": "The receiver the batch came through.",
                    "type": "string",
                    "enum": receivers,
                },
                **_dlq_properties(),
                "dlq_truncated_from_bytes": {
                    "description": (
                        "Present when the body was larger than a record may be: the value "
                        "holds its first bytes, and this its full size."
                    ),
                    "type": "string",
                    "pattern": "^[0-9]+$",
                },
            },
        },
        "payload": {
            "description": (
                "The request body exactly as received: bytes, usually but not always "
                "JSON or even UTF-8."
            ),
            "type": "string",
        },
        "bindings": {
            "kafka": {
                "key": {
                    "description": "The receiver's name, UTF-8.",
                    "type": "string",
                    "enum": receivers,
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "examples": examples.get(DEAD_LETTERED_BATCH, []),
    }

    schemas: dict[str, Any] = {"almTime": _time_schema(), "almEvent": _envelope_schema()}
    schemas.update(_data_schemas())
    for fam in FAMILIES.values():
        schemas[fam.message] = _family_payload(fam)

    channel_docs: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    taken: set[str] = set()
    order = sorted(
        channels.by_address.values(),
        key=lambda c: (bool(c.dead_letter_for), c.parameterized, c.address),
    )
    for channel in order:
        channel_id = _channel_id(channel, taken)
        doc: dict[str, Any] = {
            "address": channel.address,
            "title": channel.address,
            "description": _channel_description(channel),
            "messages": {
                name: {"$ref": f"#/components/messages/{name}"} for name in sorted(channel.messages)
            },
        }
        if channel.parameterized:
            doc["parameters"] = {
                "event": {
                    "description": (
                        "The event name, lower-case, every character outside "
                        "`[a-z0-9._-]` replaced by `_` (`RESPONSE:ASYNCAPI_X` → "
                        "`response_asyncapi_x`). A topic name longer than Kafka allows is "
                        "cut and ends in a hash of the full name."
                    )
                }
            }
        kafka: dict[str, Any] = {}
        if not channel.parameterized:
            kafka["topic"] = channel.address
        if settings.kafka_auto_create_topics:
            kafka["partitions"] = settings.kafka_topic_partitions
            kafka["replicas"] = settings.kafka_topic_replication_factor
        kafka["bindingVersion"] = KAFKA_BINDING_VERSION
        doc["bindings"] = {"kafka": kafka}
        channel_docs[channel_id] = doc
        operations[f"publish.{channel_id}"] = {
            "action": "send",
            "title": f"Publish to {channel.address}",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [
                {"$ref": f"#/channels/{channel_id}/messages/{name}"}
                for name in sorted(channel.messages)
            ],
        }

    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "alm-kafka-bridge: the records it publishes",
            "version": __version__,
            "description": _INFO_DESCRIPTION,
            "externalDocs": {
                "description": "Adobe Learning Manager webhooks",
                "url": (
                    "https://experienceleague.adobe.com/docs/learning-manager/using/"
                    "integration/webhooks/webhooks.html"
                ),
            },
        },
        "defaultContentType": "application/json",
        "servers": _servers(settings),
        "channels": channel_docs,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    security = _security_schemes(settings)
    if security:
        document["components"]["securitySchemes"] = security
    return document


_INFO_DESCRIPTION: Final = """\
What the bridge publishes to Kafka: one record per ALM webhook event, in batch order.

- **Delivery is at least once.** The bridge drops re-sent events it has seen within a
  window (per process, in memory), but a re-send after a restart, to another replica or
  after the window is published again. Deduplicate on `ce_id` + `alm_account_id`.
- **Order** is kept for records that share a key (same partition). `LEARNER_PROGRESS`
  comes from another source in ALM and may arrive late: use the event time (`ce_time`).
- **Value**: the event as ALM sent it, unknown fields kept, plus `accountId`. ALM sends
  two dialects (`timestamp` + `data`, or `eventTime` + `eventInitiator` + `eventData`):
  read the data from `data`, else `eventData`.
- **Event names are an open set**: new names appear; they follow the unlisted policy of
  the receiver (a topic from the template, a catch-all topic, or the dead-letter topic).
- The bridge validates the envelope (`eventId`, `eventName`, `accountId`, and that
  `data`/`eventData` are objects); the fields inside `data` are typed here as ALM
  documents them and passed through unchanged, so a consumer that validates strictly
  should park what does not match rather than stop.
"""


def _family_summary(fam: _Family) -> str:
    if fam.name_pattern is not None:
        return f"Events whose name starts with `{fam.name_pattern.lstrip('^')}`."
    if fam.names:
        documented = sorted(fam.names & KNOWN_EVENT_NAMES)
        return (
            "Events "
            + ", ".join(f"`{n}`" for n in documented)
            + "; an undocumented `_BATCH` form of one of them belongs here too."
        )
    return "Any other event name (the set is open): the envelope is checked, the rest is open."


def _channel_description(channel: _Channel) -> str:
    lines: list[str] = []
    if channel.dead_letter_for:
        lines.append(
            "Dead-letter topic of receiver(s) "
            + ", ".join(f"`{r}`" for r in channel.dead_letter_for)
            + ": batches that can never be accepted, and events not published elsewhere."
        )
    for receiver, names in sorted(channel.names.items()):
        lines.append(f"From receiver `{receiver}`: " + ", ".join(f"`{n}`" for n in names) + ".")
    for receiver, what in sorted(channel.open_set.items()):
        lines.append(f"From receiver `{receiver}`: {what}.")
    return "\n\n".join(lines)


def _servers(settings: Settings) -> dict[str, Any]:
    protocol = settings.kafka_security_protocol
    secure = protocol in {"SSL", "SASL_SSL"}
    hosts = [h.strip() for h in settings.kafka_bootstrap_servers.split(",") if h.strip()]
    server: dict[str, Any] = {
        "host": hosts[0] if hosts else "127.0.0.1:9092",
        "protocol": "kafka-secure" if secure else "kafka",
        "description": (
            f"Bootstrap servers: {', '.join(hosts)} (security protocol {protocol}). "
            "Consumers use their own credentials."
        ),
    }
    schemes = _security_schemes(settings)
    if schemes:
        server["security"] = [{"$ref": f"#/components/securitySchemes/{n}"} for n in schemes]
    return {"kafka": server}


def _security_schemes(settings: Settings) -> dict[str, Any]:
    schemes: dict[str, Any] = {}
    mechanism = settings.kafka_sasl_mechanism
    if settings.kafka_security_protocol.startswith("SASL") and mechanism is not None:
        kind = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}
        schemes["sasl"] = {"type": kind[mechanism], "description": f"SASL {mechanism}."}
    if settings.kafka_ssl_certfile is not None:
        schemes["mutualTls"] = {"type": "X509", "description": "TLS client certificates."}
    return schemes


def render_yaml(document: Mapping[str, Any]) -> str:
    """The document as YAML, keys in the order they were built."""
    header = "# Generated by `alm-bridge asyncapi` from the routing configuration; do not edit.\n"
    # A JSON round trip gives every node its own object, so YAML writes no aliases.
    plain = orjson.loads(orjson.dumps(document))
    return header + yaml.dump(plain, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, which read like the Markdown they hold."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_json(document: Mapping[str, Any]) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


# ------------------------------------------------------------------------ Markdown


def render_markdown(document: Mapping[str, Any]) -> str:
    """A page for people, generated from the document (``docs/asyncapi.md``)."""
    info = document["info"]
    components = document["components"]
    out: list[str] = [
        f"# {info['title']}",
        "",
        "<!-- Generated by `alm-bridge asyncapi --format markdown`; do not edit. -->",
        "",
        f"AsyncAPI {document['asyncapi']}, bridge version {info['version']}. The machine-"
        "readable document, with the full JSON Schemas, is [asyncapi.yaml](asyncapi.yaml).",
        "",
        info["description"].rstrip(),
        "",
        "## Server",
        "",
    ]
    for name, server in document["servers"].items():
        out.append(
            f"- `{name}`: `{server['host']}` ({server['protocol']}). {server['description']}"
        )
    out += ["", "## Topics", "", "| topic | messages | what arrives |", "|---|---|---|"]
    for channel in document["channels"].values():
        messages = ", ".join(f"[{m}](#{m.lower()})" for m in channel["messages"])
        what = channel["description"].replace("\n\n", " ")
        out.append(f"| `{channel['address']}` | {messages} | {what} |")
    for channel in document["channels"].values():
        for name, parameter in channel.get("parameters", {}).items():
            out += ["", f"`{{{name}}}` in `{channel['address']}`: {parameter['description']}"]
    out += ["", "## Messages"]
    for name, message in components["messages"].items():
        out += [
            "",
            f"### {name}",
            "",
            f"**{message['title']}** ({message['contentType']}). {message['summary']}",
            "",
        ]
        headers = message["headers"]
        required = set(headers.get("required", ()))
        out += ["| header | required | value |", "|---|---|---|"]
        for header, schema in headers["properties"].items():
            yes = "yes" if header in required else "no"
            out.append(f"| `{header}` | {yes} | {_describe(schema)} |")
        key = message["bindings"]["kafka"]["key"]
        out += ["", f"**Key**: {key.get('description', _describe(key))}", ""]
        payload = message["payload"]
        if "$ref" in payload:
            target = payload["$ref"].rsplit("/", 1)[-1]
            out.append(f"**Value**: JSON, schema `#/components/schemas/{target}`.")
            out += _payload_fields(components["schemas"], target)
        else:
            out.append(f"**Value**: {payload['description']}")
        for example in message.get("examples", ()):
            shown = {"headers": example["headers"], "payload": example["payload"]}
            out += [
                "",
                f"Example: {example['summary']}.",
                "",
                "```json",
                orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode(),
                "```",
            ]
    return "\n".join(out) + "\n"


def _payload_fields(schemas: Mapping[str, Any], name: str) -> list[str]:
    payload = schemas[name]
    envelope = schemas["almEvent"]
    lines = ["", "| field | required | value |", "|---|---|---|"]
    names: dict[str, Any] = {}
    data_ref: str | None = None
    for part in payload.get("allOf", ()):
        names.update(part.get("properties", {}).get("eventName", {}))
        for alternative in part.get("anyOf", ()):
            for prop in alternative["properties"].values():
                data_ref = prop["$ref"].rsplit("/", 1)[-1]
    for field_name, schema in envelope["properties"].items():
        if field_name == "eventName" and names:
            schema = {**schema, **names}
        yes = "yes" if field_name in envelope["required"] else "no"
        lines.append(f"| `{field_name}` | {yes} | {_describe(schema)} |")
    if data_ref is not None:
        lines.append(
            "| `data` or `eventData` | one of them | the fields below, by ALM's documentation |"
        )
        for field_name, schema in schemas[data_ref]["properties"].items():
            lines.append(f"| `data.{field_name}` | no | {_describe(schema)} |")
    return lines


def _describe(schema: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if "$ref" in schema:
        parts.append(f"see `{schema['$ref'].rsplit('/', 1)[-1]}`")
    kind = schema.get("type")
    if isinstance(kind, list):
        parts.append(" or ".join(kind))
    elif kind is not None:
        parts.append(str(kind))
    if "const" in schema:
        parts.append(f"`{schema['const']}`")
    if "enum" in schema:
        values = ", ".join(f"`{v}`" for v in schema["enum"])
        parts.append(f"one of {values}")
    if "pattern" in schema and "const" not in schema:
        parts.append(f"matching `{schema['pattern']}`".replace("|", "\\|"))
    if "anyOf" in schema and "$ref" not in schema:
        parts.append("; ".join(_describe(s) for s in schema["anyOf"]))
    if "description" in schema:
        parts.append(schema["description"])
    return ", ".join(parts).replace("\n", " ")


FORMATS: Final = ("yaml", "json", "markdown")


def render(document: Mapping[str, Any], output_format: str) -> str:
    """The document in one of :data:`FORMATS`."""
    if output_format == "yaml":
        return render_yaml(document)
    if output_format == "json":
        return render_json(document)
    if output_format == "markdown":
        return render_markdown(document)
    raise ValueError(f"unknown format {output_format!r}; use one of {', '.join(FORMATS)}")


def sample_bodies() -> list[bytes]:
    """The sample batches shipped with the package (``bridge/samples``), by file name."""
    folder = resources.files("bridge") / "samples"
    return [
        entry.read_bytes()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]
