"""Event families and the channels (topics) the routing configuration publishes to."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from bridge.core.routing import (
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
    TopicRegistry,
    family,
    legal_topic,
)

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
CE_TYPE_PREFIX: Final = "com.adobe.learningmanager."
DEAD_LETTERED_BATCH: Final = "deadLetteredBatch"
DEAD_LETTERED_EVENT: Final = "deadLetteredEvent"
# Channel and operation ids: AsyncAPI 3 allows only these characters.
_ID_ILLEGAL: Final = re.compile(r"[^\w.\-]")
EXAMPLES_PER_MESSAGE: Final = 2


@dataclass(frozen=True)
class Family:
    message: str
    title: str
    names: frozenset[str]
    data_schema: str | None
    name_pattern: str | None = None


def _with_batch(names: frozenset[str]) -> frozenset[str]:
    # ``family()`` gives ``X_BATCH`` the family of ``X``, documented by Adobe or not.
    return names | {f"{n}_BATCH" for n in names}


FAMILIES: Final[Mapping[str, Family]] = {
    "enrollment": Family(
        "enrollmentEvent",
        "Enrollment",
        _with_batch(ENROLLMENT),
        "enrollmentData",
    ),
    "completion": Family(
        "completionEvent",
        "Completion",
        _with_batch(COMPLETION),
        "completionData",
    ),
    "unenrollment": Family(
        "unenrollmentEvent",
        "Unenrollment",
        _with_batch(UNENROLLMENT),
        "unenrollmentData",
    ),
    "progress": Family(
        "learnerProgressEvent",
        "Learner progress",
        _with_batch(frozenset({"LEARNER_PROGRESS"})),
        "learnerProgressData",
    ),
    "rollback": Family(
        "completionRollbackEvent",
        "Learning path completion rollback",
        _with_batch(ROLLBACK),
        "enrollmentData",
    ),
    "ci_stats": Family(
        "ciStatsEvent",
        "Course instance statistics",
        _with_batch(frozenset({"CI_STATS"})),
        "ciStatsData",
    ),
    "learning_object": Family(
        "learningObjectEvent",
        "Learning object",
        _with_batch(LEARNING_OBJECT),
        "learningObjectData",
    ),
    "learning_object_instance": Family(
        "learningObjectInstanceEvent",
        "Learning object instance",
        _with_batch(LEARNING_OBJECT_INSTANCE),
        "learningObjectInstanceData",
    ),
    "async_response": Family(
        "asyncResponseEvent",
        "Response of an asynchronous API",
        ASYNC_RESPONSE,
        "asyncResponseData",
        name_pattern="^RESPONSE:ASYNCAPI_",
    ),
    "other": Family("otherEvent", "Any other event", frozenset(), None),
}
# Names outside the documented ones may belong to any family: ``family()`` sorts an
# undocumented ``X_BATCH`` with ``X`` and any ``RESPONSE:ASYNCAPI_*`` with the responses.
_OPEN_SET_FAMILIES: Final = tuple(FAMILIES)


@dataclass
class Channel:
    address: str
    parameterized: bool = False
    messages: set[str] = field(default_factory=set)
    # receiver -> event names routed here (documented names and names from the config)
    names: dict[str, list[str]] = field(default_factory=dict)
    # receiver -> what reaches the channel from the open set of event names
    open_set: dict[str, str] = field(default_factory=dict)
    dead_letter_for: list[str] = field(default_factory=list)


class Channels:
    def __init__(self) -> None:
        self.by_address: dict[str, Channel] = {}

    def get(self, address: str, *, parameterized: bool = False) -> Channel:
        channel = self.by_address.get(address)
        if channel is None:
            channel = self.by_address[address] = Channel(address, parameterized)
        return channel


def collect_channels(policies: Sequence[RoutingPolicy]) -> Channels:
    channels = Channels()
    # The process's registry: a documented topic another receiver reserved first is not
    # this receiver's channel.
    topics = TopicRegistry(policies)
    for policy in policies:
        router = Router(policy, topics)
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
                "onto a dead-letter, catch-all or override topic, onto one reserved for "
                "another receiver's documented names or colliding with another, past the "
                "receiver's topic limit), with their family's message"
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


def unique_channel_id(channel: Channel, taken: set[str]) -> str:
    base = channel.address.replace("{event}", "EVENT") if channel.parameterized else channel.address
    candidate = _ID_ILLEGAL.sub("_", base)
    suffix = 2
    unique = candidate
    while unique in taken:
        unique = f"{candidate}_{suffix}"
        suffix += 1
    taken.add(unique)
    return unique
