"""JSON Schemas, headers, keys and examples of the messages in the AsyncAPI document."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from bridge.contract.model import (
    CE_TYPE_PREFIX,
    DEAD_LETTERED_BATCH,
    DEAD_LETTERED_EVENT,
    EXAMPLES_PER_MESSAGE,
    FAMILIES,
    KAFKA_BINDING_VERSION,
    Family,
)
from bridge.core.alm import Batch, parse_body
from bridge.core.reasons import FALLBACK_REASONS, DeadLetterReason
from bridge.core.routing import (
    RECORD_KEY_FIELDS,
    Router,
    RoutingPolicy,
    family,
)

# ------------------------------------------------------------------------- schemas


def time_schema() -> dict[str, Any]:
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


def data_schemas() -> dict[str, Any]:
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


def envelope_schema() -> dict[str, Any]:
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
                    "events reuse the caller's id. At most 512 bytes in UTF-8. Integers "
                    "are taken as strings for `ce_id`."
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


def family_payload(fam: Family) -> dict[str, Any]:
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


def event_headers(
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
            "traceparent",
        ],
        "additionalProperties": False,
        "properties": {
            **trace_properties(),
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
            **replay_properties(),
        },
    }


def replay_properties() -> dict[str, Any]:
    """Headers of a record put back from the dead-letter topic by ``alm-bridge replay``."""
    return {
        "replay_source": {
            "description": (
                "Present only on a record put back from the dead-letter topic by "
                "`alm-bridge replay`: the dead letter it came from, `topic:partition:offset` "
                "(with `#eventId` for an event of a batch's body). The event itself is the "
                "same: deduplicate on `ce_id` and `alm_account_id` as usual."
            ),
            "type": "string",
            "pattern": "^[a-zA-Z0-9._-]+:[0-9]+:[0-9]+(#[\\s\\S]+)?$",
        },
        "replay_dlq_reason": {
            "description": "On a replayed record: the `dlq_reason` of its dead letter.",
            "type": "string",
            "pattern": "^[a-z0-9_]+$",
        },
        "replay_dlq_error": {
            "description": "On a replayed record: the `dlq_error` of its dead letter.",
            "type": "string",
        },
        "replay_dlq_time": {
            "description": "On a replayed record: when it was dead-lettered, RFC 3339 UTC.",
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$",
        },
    }


# The trace context of the examples: the W3C specification's own example.
EXAMPLE_TRACE: Final = (
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
)


def trace_properties() -> dict[str, Any]:
    """W3C trace context: the webhook request's trace, continued into every record."""
    return {
        "traceparent": {
            "description": (
                "W3C trace context of the webhook request that brought the event: the "
                "request's own `traceparent` continued (same trace id and flags, the "
                "bridge's span as parent), or a new trace when it sent none. A consumer "
                "continues it as the parent of its own span; every record of one request "
                "carries the same value."
            ),
            "type": "string",
            "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        },
        "tracestate": {
            "description": (
                "The request's `tracestate`, passed on unchanged with its `traceparent` "
                "(at most 512 characters)."
            ),
            "type": "string",
            "maxLength": 512,
        },
    }


# The reasons the ``dlq_reason`` description names as examples; the enum has them all.
_BODY_REASONS_NAMED: Final = (
    DeadLetterReason.INVALID_JSON,
    DeadLetterReason.INVALID_ENVELOPE,
    DeadLetterReason.INVALID_EVENT,
    DeadLetterReason.RECORD_TOO_LARGE,
)
_EVENT_REASONS_NAMED: Final = (
    DeadLetterReason.UNLISTED_EVENT,
    *FALLBACK_REASONS,
    DeadLetterReason.TOPIC_INVALID,
    DeadLetterReason.TOPIC_NOT_AUTHORIZED,
    DeadLetterReason.TOPIC_POLICY,
    DeadLetterReason.TOPIC_CONFIG,
    DeadLetterReason.TOPIC_MISSING,
    DeadLetterReason.KAFKA_REFUSED,
)


def _codes(reasons: Sequence[DeadLetterReason]) -> str:
    return ", ".join(f"`{r}`" for r in reasons)


def dlq_properties() -> dict[str, Any]:
    return {
        "dlq_reason": {
            "description": (
                "A short code: the error code of a malformed body "
                f"({_codes(_BODY_REASONS_NAMED)}, ...) or why an event was not published to "
                f"its topic ({_codes(_EVENT_REASONS_NAMED)}, ...). An open set: new reasons "
                "may appear."
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


def _key_templates(strategy: str, fam: str) -> list[str]:
    """The keys of family ``fam``'s records under ``strategy``, as templates, from the
    rule routing keys them by (:data:`bridge.core.routing.RECORD_KEY_FIELDS`)."""
    if strategy == "none":
        return []
    if strategy == "accountId":
        return ["{accountId}"]
    if strategy == "eventId":
        return ["{eventId}"]
    fallback = "{accountId}:{eventId}"
    key_fields = RECORD_KEY_FIELDS.get(fam)
    if key_fields:
        fields = ":".join(f"{{{f}}}" for f in key_fields)
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


def key_binding(policies: Sequence[RoutingPolicy], fam: str | None) -> dict[str, Any]:
    """The Kafka key binding of family ``fam``'s message (None: the dead-lettered event)."""
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


def x_key(policies: Sequence[RoutingPolicy], fam: str) -> list[dict[str, Any]]:
    return [
        {"receiver": p.receiver, "strategy": p.key, "templates": _key_templates(p.key, fam)}
        for p in policies
    ]


# ------------------------------------------------------------------------ examples


def message_examples(
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
        for record in router.plan(batch, EXAMPLE_TRACE).records:
            headers = {k: v.decode() for k, v in record.headers}
            fam = FAMILIES[family(headers["alm_event_name"])]
            message = DEAD_LETTERED_EVENT if record.dead_letter else fam.message
            if record.dead_letter:
                headers["dlq_time"] = "2026-11-02T10:15:00.000Z"
            found = examples.setdefault(message, [])
            if len(found) < EXAMPLES_PER_MESSAGE and not any(
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
    dead = router.dead_letter(
        body,
        DeadLetterReason.INVALID_EVENT,
        "events[0].eventId must be a non-empty string",
        EXAMPLE_TRACE,
    )
    headers = {k: v.decode() for k, v in dead.headers}
    headers["dlq_time"] = "2026-11-02T10:15:00.000Z"
    examples[DEAD_LETTERED_BATCH] = [
        {
            "name": DeadLetterReason.INVALID_EVENT.value,
            "summary": f"A batch whose event has an empty eventId; {_key_text(dead.key)}",
            "headers": headers,
            "payload": body.decode(),
        }
    ]
    return examples


def _key_text(key: bytes | None) -> str:
    return "no key" if key is None else f"key `{key.decode()}`"
