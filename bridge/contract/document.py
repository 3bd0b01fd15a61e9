"""The AsyncAPI 3.0 document, built from the effective routing configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bridge import __version__
from bridge.config.receivers import policy_for
from bridge.config.settings import Settings
from bridge.contract.model import (
    ASYNCAPI_VERSION,
    DEAD_LETTERED_BATCH,
    DEAD_LETTERED_EVENT,
    FAMILIES,
    KAFKA_BINDING_VERSION,
    Channel,
    Channels,
    Family,
    collect_channels,
    unique_channel_id,
)
from bridge.contract.schemas import (
    data_schemas,
    dlq_properties,
    envelope_schema,
    event_headers,
    family_payload,
    key_binding,
    message_examples,
    time_schema,
    trace_properties,
    x_key,
)
from bridge.core.routing import (
    KNOWN_EVENT_NAMES,
    RoutingPolicy,
)

# ------------------------------------------------------------------------ document


def build_document(settings: Settings, *, samples: Sequence[bytes] = ()) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the records the bridge publishes with ``settings``.

    ``samples`` are ALM batch bodies; what the first receiver makes of them becomes the
    messages' examples.
    """
    specs = settings.effective_receivers()
    policies = [policy_for(spec) for spec in specs]
    examples = message_examples(policies, samples)
    messages = _family_messages(policies, examples)
    messages[DEAD_LETTERED_EVENT] = _dead_lettered_event(policies, examples)
    messages[DEAD_LETTERED_BATCH] = _dead_lettered_batch(policies, examples)
    schemas: dict[str, Any] = {"almTime": time_schema(), "almEvent": envelope_schema()}
    schemas.update(data_schemas())
    for fam in FAMILIES.values():
        schemas[fam.message] = family_payload(fam)
    channel_docs, operations = _channels_and_operations(settings, collect_channels(policies))
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


def _family_messages(
    policies: Sequence[RoutingPolicy], examples: Mapping[str, list[Any]]
) -> dict[str, Any]:
    """One message per event family: its headers, payload, key and examples."""
    receivers = [p.receiver for p in policies]
    sources = [p.source_template for p in policies]
    messages: dict[str, Any] = {}
    for family_name, fam in FAMILIES.items():
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
            "headers": event_headers(receivers, sources, names),
            "payload": {"$ref": f"#/components/schemas/{fam.message}"},
            "bindings": key_binding(policies, family_name),
            "x-alm-key": x_key(policies, family_name),
        }
        if fam.message in examples:
            message["examples"] = examples[fam.message]
        messages[fam.message] = message
    return messages


def _dead_lettered_event(
    policies: Sequence[RoutingPolicy], examples: Mapping[str, list[Any]]
) -> dict[str, Any]:
    """An event's record redirected to the dead-letter topic, with the ``dlq_*`` headers."""
    receivers = [p.receiver for p in policies]
    sources = [p.source_template for p in policies]
    dead_event_headers = event_headers(receivers, sources, {})
    dead_event_headers["properties"].update(dlq_properties())
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
    message: dict[str, Any] = {
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
        "bindings": key_binding(policies, None),
    }
    if DEAD_LETTERED_EVENT in examples:
        message["examples"] = examples[DEAD_LETTERED_EVENT]
    return message


def _dead_lettered_batch(
    policies: Sequence[RoutingPolicy], examples: Mapping[str, list[Any]]
) -> dict[str, Any]:
    """The raw body of a batch that can never be accepted."""
    receivers = [p.receiver for p in policies]
    return {
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
            "required": ["alm_receiver", "dlq_reason", "dlq_error", "dlq_time", "traceparent"],
            "additionalProperties": False,
            "properties": {
                "alm_receiver": {
                    "description": "The receiver the batch came through.",
                    "type": "string",
                    "enum": receivers,
                },
                **dlq_properties(),
                **trace_properties(),
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


def _channels_and_operations(
    settings: Settings, channels: Channels
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A channel per topic (template topics as one parameterized channel) and its
    publish operation."""
    channel_docs: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    taken: set[str] = set()
    order = sorted(
        channels.by_address.values(),
        key=lambda c: (bool(c.dead_letter_for), c.parameterized, c.address),
    )
    for channel in order:
        channel_id = unique_channel_id(channel, taken)
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
    return channel_docs, operations


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


def _family_summary(fam: Family) -> str:
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


def _channel_description(channel: Channel) -> str:
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
