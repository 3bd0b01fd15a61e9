"""Records read back from Kafka checked against the AsyncAPI document of the bridge's config.

Every test that reads the bridge's records back calls :meth:`Contract.check_records`, so
the document (``alm-bridge asyncapi``) cannot drift from what the code publishes. A record
matches its topic's channel when one of the channel's messages accepts its headers, its key
(``bindings.kafka.key``) and its value (``payload``) — JSON Schema draft 7, checked with
jsonschema-rs (the pure-Python ``jsonschema`` checked 150-350 records a second here, too
slow for the tens of thousands the system tests read) — and, for event messages, the
cross-field rules the document states in words: ``ce_id`` is the eventId,
``alm_account_id`` the accountId, ``ce_type`` the event name with its prefix, the key is
built by the first ``x-alm-key`` template whose ids are present, and a topic made from the
template holds the event name as its ``{event}`` parameter says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import jsonschema_rs
import orjson
from aiokafka.structs import ConsumerRecord

from bridge.config.settings import Settings
from bridge.contract import CE_TYPE_PREFIX, build_document

_MAX_TOPIC_CHARS: Final = 249
_TEMPLATE_FIELD: Final = re.compile(r"\{(\w+)\}")


class ContractViolation(AssertionError):
    """A record the document does not describe."""


class Contract:
    """The document of one configuration, ready to check records against."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        channels: list[Mapping[str, Any]] = list(document["channels"].values())
        self._exact = {c["address"]: c for c in channels if "{" not in c["address"]}
        self._patterns = [
            (re.compile(_address_regex(c["address"])), c) for c in channels if "{" in c["address"]
        ]
        self._validators: dict[str, jsonschema_rs.Draft7Validator] = {}

    def channel_for(self, topic: str) -> Mapping[str, Any]:
        channel = self._exact.get(topic)
        if channel is not None:
            return channel
        for pattern, candidate in self._patterns:
            if pattern.fullmatch(topic):
                return candidate
        raise ContractViolation(f"topic {topic!r} is not a channel of the AsyncAPI document")

    def check_records(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            self.check(record.topic, record.key, record.value, record.headers)

    def check(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Raise :class:`ContractViolation` unless a message of the topic's channel fits."""
        channel = self.channel_for(topic)
        names = [h for h, _ in headers]
        if len(set(names)) != len(names):
            raise ContractViolation(f"{topic}: a header appears twice: {names}")
        try:
            decoded = {h: v.decode("utf-8") for h, v in headers}
            key_text = None if key is None else key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractViolation(f"{topic}: a key or header is not UTF-8: {exc}") from None
        if "{event}" in channel["address"] and "alm_event_name" in decoded:
            wrong = _parameter_problem(channel["address"], topic, decoded["alm_event_name"])
            if wrong is not None:
                raise ContractViolation(wrong)
        problems: list[str] = []
        for name, ref in channel["messages"].items():
            pointer = ref["$ref"].removeprefix("#")
            message = _resolve(self.document, pointer)
            problem = self._problem(pointer, message, key_text, value, decoded)
            if problem is None:
                return
            problems.append(f"{name}: {problem}")
        raise ContractViolation(
            f"record on {topic} (key {key_text!r}, headers {decoded}) matches no message of "
            f"channel {channel['address']!r}:\n  " + "\n  ".join(problems)
        )

    def _validator(self, pointer: str) -> jsonschema_rs.Draft7Validator:
        validator = self._validators.get(pointer)
        if validator is None:
            # The document's references point inside it and never in a cycle: inlined, each
            # schema stands alone. The meta-schema check also compiles every pattern.
            schema = _inline(self.document, _resolve(self.document, pointer))
            jsonschema_rs.meta.validate(schema)
            validator = self._validators[pointer] = jsonschema_rs.Draft7Validator(schema)
        return validator

    def _first_error(self, pointer: str, instance: Any) -> str | None:
        validator = self._validator(pointer)
        if validator.is_valid(instance):
            return None
        error = next(iter(validator.iter_errors(instance)))
        where = "/".join(str(p) for p in error.instance_path)
        return f"{pointer.rsplit('/', 1)[-1]} at '{where}': {error.message}"

    def _problem(
        self,
        pointer: str,
        message: Mapping[str, Any],
        key: str | None,
        value: bytes | None,
        headers: Mapping[str, str],
    ) -> str | None:
        error = self._first_error(f"{pointer}/headers", headers)
        if error is None:
            error = self._first_error(f"{pointer}/bindings/kafka/key", key)
        if error is not None:
            return error
        if message["contentType"] != "application/json":
            return None if value is not None else "no value"
        try:
            payload = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            return f"value is not JSON: {exc}"
        error = self._first_error(f"{pointer}/payload", payload)
        if error is not None:
            return error
        return _cross_field_problem(message, key, payload, headers)


def _cross_field_problem(
    message: Mapping[str, Any], key: str | None, payload: Any, headers: Mapping[str, str]
) -> str | None:
    name = payload["eventName"]
    expected = {
        "ce_id": str(payload["eventId"]),
        "alm_account_id": str(payload["accountId"]),
        "alm_event_name": name,
        "ce_type": f"{CE_TYPE_PREFIX}{name}",
    }
    for header, wanted in expected.items():
        if headers[header] != wanted:
            return f"header {header} is {headers[header]!r}, the value says {wanted!r}"
    rules = [r for r in message.get("x-alm-key", ()) if r["receiver"] == headers["alm_receiver"]]
    for rule in rules:
        wanted_key = _key_from_templates(rule["templates"], payload)
        if key != wanted_key:
            return (
                f"key {key!r}, but strategy {rule['strategy']!r} with templates "
                f"{rule['templates']} builds {wanted_key!r}"
            )
    return None


def _key_from_templates(templates: Sequence[str], payload: Mapping[str, Any]) -> str | None:
    data = payload.get("data")
    if data is None:
        data = payload.get("eventData")
    ids: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    ids["accountId"] = payload["accountId"]
    ids["eventId"] = str(payload["eventId"])
    for template in templates:
        fields = _TEMPLATE_FIELD.findall(template)
        if all(_is_id(ids.get(f)) for f in fields):
            return _TEMPLATE_FIELD.sub(lambda m: str(ids[m.group(1)]), template)
    return None


def _is_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value != "")


def _parameter_problem(address: str, topic: str, event_name: str) -> str | None:
    """The documented rule for ``{event}``: the name, lower-case, other characters '_'."""
    expected = address.replace("{event}", re.sub(r"[^a-z0-9._-]", "_", event_name.lower()))
    if len(expected) > _MAX_TOPIC_CHARS:  # cut, and ended with a hash of the full name
        matches = topic.startswith(expected[: _MAX_TOPIC_CHARS - 17])
    else:
        matches = topic == expected
    if matches:
        return None
    return f"{event_name!r} belongs on {expected!r} by the {address!r} rule, not on {topic!r}"


def _address_regex(address: str) -> str:
    parts = re.split(r"\{\w+\}", address)
    return "[a-z0-9._-]+".join(re.escape(p) for p in parts)


def _resolve(document: Mapping[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _inline(document: Mapping[str, Any], node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            target = _inline(document, _resolve(document, ref.removeprefix("#")))
            return {"allOf": [target, _inline(document, rest)]} if rest else target
        return {k: _inline(document, v) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(document, v) for v in node]
    return node


_CONTRACTS: dict[str, Contract] = {}


def contract_for(settings: Settings) -> Contract:
    """The contract of ``settings`` (cached: tests build the same settings many times)."""
    cache_key = settings.model_dump_json()
    contract = _CONTRACTS.get(cache_key)
    if contract is None:
        contract = _CONTRACTS[cache_key] = Contract(build_document(settings))
    return contract
