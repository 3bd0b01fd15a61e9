"""Realistic ALM traffic: generated events and batches in both payload dialects.

Pure functions over a :class:`random.Random`: the same seed and ``now`` give the same bytes.
The families are :data:`bridge.core.routing.KNOWN_FAMILIES`, the names the bridge routes by.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import orjson

from bridge.core.routing import KNOWN_FAMILIES

Dialect = Literal["guide", "setup"]
DialectChoice = Literal["guide", "setup", "mixed"]

FAMILIES: Final = KNOWN_FAMILIES

# Roughly what a busy account produces: learner activity dominates, catalogue and
# user-group traffic is rare. Weights count picks; a pick of a learner family is sometimes
# a *_BATCH run of several events, so those families get slightly lower weights.
DEFAULT_MIX_WEIGHTS: Final[Mapping[str, int]] = {
    "enrollment": 22,
    "completion": 15,
    "progress": 34,
    "unenrollment": 5,
    "ci_stats": 5,
    "learning_object": 3,
    "learning_object_instance": 3,
    "rollback": 1,
    "async_response": 2,
}
DEFAULT_ACCOUNT_ID: Final = 1234
# Share of events in a batch-capable family that arrive as a *_BATCH run, as ALM sends
# them after an admin, manager or platform action.
_BATCH_RUN_SHARE: Final = 0.1
_BATCH_RUN_MAX: Final = 8
# (id prefix in loId, event-name stem, loType)
_LO_KINDS: Final[tuple[tuple[str, str, str], ...]] = (
    ("course", "COURSE", "course"),
    ("learningProgram", "LEARNING_PATH", "learningProgram"),
    ("certification", "CERTIFICATION", "certification"),
)
_LO_KIND_WEIGHTS: Final = (6, 3, 1)
_ENROLLMENT_SOURCES_BATCH: Final = ("ADMIN_ENROLL", "MANAGER_ENROLL", "AUTO_ENROLL")


def expand_mix(weights: Mapping[str, int]) -> tuple[str, ...]:
    """A mix for :func:`generate_batch`: each family repeated as often as its weight."""
    mix: list[str] = []
    for name, weight in weights.items():
        if name not in FAMILIES:
            raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
        if weight < 0:
            raise ValueError(f"the weight of {name!r} must not be negative")
        mix.extend([name] * weight)
    if not mix:
        raise ValueError("the mix is empty")
    return tuple(mix)


DEFAULT_MIX: Final[tuple[str, ...]] = expand_mix(DEFAULT_MIX_WEIGHTS)


def parse_mix(text: str) -> tuple[str, ...]:
    """``"enrollment:3,completion,progress:2"`` (or ``"all"``, ``"default"``) as a mix."""
    stripped = text.strip()
    if stripped in {"", "default"}:
        return DEFAULT_MIX
    if stripped == "all":
        return FAMILIES
    weights: dict[str, int] = {}
    for part in stripped.split(","):
        name, sep, weight_text = part.strip().partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"empty family name in mix {text!r}")
        try:
            weight = int(weight_text) if sep else 1
        except ValueError:
            raise ValueError(f"the weight of {name!r} must be an integer") from None
        weights[name] = weights.get(name, 0) + weight
    return expand_mix(weights)


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_minute(moment: datetime) -> str:
    # Since August 2026 ALM sends the date-times inside ``data`` with seconds 00.
    return _iso_ms(moment.replace(second=0, microsecond=0))


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(frozen=True, slots=True)
class _LearningObject:
    lo_id: str
    lo_type: str
    stem: str
    instance_id: str


def _learning_object(rng: random.Random, *, kind: int | None = None) -> _LearningObject:
    if kind is None:
        kind = rng.choices(range(len(_LO_KINDS)), weights=_LO_KIND_WEIGHTS)[0]
    prefix, stem, lo_type = _LO_KINDS[kind]
    # A small catalogue, so that events about the same learning object recur in a run.
    number = rng.randint(771_200, 771_260) if kind == 0 else rng.randint(4_400, 4_440)
    instance = number * 3 % 100_000 + 900_000 + rng.randint(0, 1)
    lo_id = f"{prefix}:{number}"
    return _LearningObject(lo_id, lo_type, stem, f"{lo_id}_{instance}")


@dataclass(slots=True)
class _Event:
    name: str
    when: datetime
    data: dict[str, Any]
    initiator: int
    info_guide: str | None
    info_setup: str | None
    event_id: str | None = None


def _learner_data(
    lo: _LearningObject, user_id: int, source: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "userId": user_id,
        "loId": lo.lo_id,
        "loInstanceId": lo.instance_id,
        "loType": lo.lo_type,
        "enrollmentSource": source,
        **extra,
    }


def _learner_events(
    family: str, rng: random.Random, when: datetime, run: int, admin_id: int
) -> list[_Event]:
    """``run`` events of a learner family; more than one means a *_BATCH run on one LO."""
    kind = 1 if family == "rollback" else None
    lo = _learning_object(rng, kind=kind)
    batch = run > 1
    if family == "rollback":
        name = "LEARNING_PATH_COMPLETION_ROLLBACK"
    elif family == "enrollment":
        name = f"{lo.stem}_ENROLLMENT"
    elif family == "completion":
        name = f"{lo.stem}_COMPLETED"
    else:
        name = f"{lo.stem}_UNENROLLMENT"
    if batch:
        name += "_BATCH"
    events: list[_Event] = []
    first_user = rng.randint(51_000, 58_999)
    for offset in range(run):
        user_id = first_user + offset if batch else rng.randint(51_000, 58_999)
        source = rng.choice(_ENROLLMENT_SOURCES_BATCH) if batch else "SELF_ENROLL"
        extra: dict[str, Any] = {}
        if family == "enrollment":
            extra["dateEnrolled"] = _iso_minute(when)
        elif family == "rollback":
            extra["dateEnrolled"] = _iso_minute(when - timedelta(days=rng.randint(1, 60)))
        elif family == "completion":
            extra["dateCompleted"] = _iso_minute(when)
            # ALM leaves hasPassed out for learning programs.
            if lo.lo_type != "learningProgram":
                extra["hasPassed"] = rng.random() < 0.9
        initiator = admin_id if batch else user_id
        number = lo.lo_id.partition(":")[2]
        events.append(
            _Event(
                name=name,
                when=when,
                data=_learner_data(lo, user_id, source, extra),
                initiator=initiator,
                info_guide=f"{_epoch_ms(when)}-{initiator}-{user_id}-0",
                info_setup=f"{user_id},{number}",
            )
        )
    return events


def _progress_event(rng: random.Random, when: datetime) -> _Event:
    lo = _learning_object(rng)
    user_id = rng.randint(51_000, 58_999)
    # LEARNER_PROGRESS comes from another source and lags up to 15 minutes.
    lagged = when - timedelta(seconds=rng.uniform(0, 900))
    data = {
        "userId": user_id,
        "loId": lo.lo_id,
        "loType": lo.lo_type,
        "loInstanceId": lo.instance_id,
        "dateStarted": _iso_minute(lagged - timedelta(days=rng.randint(0, 30))),
        "progressPercent": rng.choice((10, 20, 25, 33, 40, 50, 60, 66, 75, 80, 90, 100)),
    }
    return _Event("LEARNER_PROGRESS", lagged, data, user_id, None, None)


def _ci_stats_event(rng: random.Random, when: datetime, admin_id: int) -> _Event:
    lo = _learning_object(rng, kind=0)
    seat_limit = rng.choice((20, 25, 30, 40, 50, 100))
    enrolled = rng.randint(0, seat_limit)
    waitlist = rng.randint(0, 10) if enrolled == seat_limit else 0
    data = {
        "loInstanceId": lo.instance_id,
        "waitlistCount": waitlist,
        "enrollmentCount": enrolled,
        "seatLimit": seat_limit,
    }
    info = f"{rng.randint(100_000_000, 999_999_999)}-LoSt"
    return _Event("CI_STATS", when, data, admin_id, info, info)


def _catalogue_event(
    family: str, rng: random.Random, when: datetime, admin_id: int, batch: bool
) -> _Event:
    lo = _learning_object(rng)
    data: dict[str, Any]
    if family == "learning_object":
        name = rng.choice(
            ("LEARNING_OBJECT_MODIFICATION", "LEARNING_OBJECT_DRAFT", "LEARNING_OBJECT_DELETION")
        )
        if batch:
            name = "LEARNING_OBJECT_MODIFICATION_BATCH"
        data = {"loId": lo.lo_id, "loType": lo.lo_type}
    else:
        name = rng.choice(
            ("LEARNING_OBJECT_INSTANCE_MODIFICATION", "LEARNING_OBJECT_INSTANCE_DELETION")
        )
        if batch:
            name = "LEARNING_OBJECT_INSTANCE_MODIFICATION_BATCH"
        data = {"loInstanceId": lo.instance_id, "loId": lo.lo_id, "loType": lo.lo_type}
    return _Event(name, when, data, admin_id, None, None)


def _async_response_event(rng: random.Random, when: datetime, admin_id: int) -> _Event:
    added = rng.random() < 0.7
    name = (
        "RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED"
        if added
        else "RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED"
    )
    users = sorted(rng.sample(range(51_000, 59_000), rng.randint(1, 5)))
    data = {
        "status": "SUCCESS",
        "request": {"metadata": {"userGroupId": rng.randint(800, 999)}, "users": users},
    }
    # ALM reuses the caller's event_id here, which is not a UUID.
    caller_id = f"usergroup-sync-{uuid.UUID(int=rng.getrandbits(128)).hex}"
    return _Event(name, when, data, admin_id, caller_id, caller_id, event_id=caller_id)


def _render(event: _Event, rng: random.Random, dialect: Dialect) -> dict[str, Any]:
    event_id = event.event_id or _uuid(rng)
    if dialect == "guide":
        out: dict[str, Any] = {
            "eventId": event_id,
            "eventName": event.name,
            "timestamp": _iso_ms(event.when),
        }
        if event.info_guide is not None:
            out["eventInfo"] = event.info_guide
        out["data"] = event.data
        return out
    out = {"eventId": event_id, "eventName": event.name}
    if event.info_setup is not None:
        out["eventInfo"] = event.info_setup
    out["eventTime"] = _epoch_ms(event.when)
    out["eventInitiator"] = str(event.initiator)
    out["eventData"] = event.data
    return out


def generate_events(
    *,
    size: int,
    mix: Sequence[str],
    rng: random.Random,
    dialect: Dialect,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``size`` realistic ALM events of the families in ``mix``, oldest first."""
    if size < 0:
        raise ValueError("size must not be negative")
    if not mix:
        raise ValueError("the mix is empty")
    unknown = sorted(set(mix) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    if dialect not in ("guide", "setup"):
        raise ValueError(f"unknown dialect {dialect!r}")
    base = (now or datetime.now(UTC)).astimezone(UTC)
    window_ms = rng.randint(30_000, 300_000)
    when = base - timedelta(milliseconds=window_ms)
    # Events spread over the window, never after ``now``.
    step_ms = max(1, 2 * window_ms // max(size, 1))
    admin_id = rng.randint(100_000, 109_999)
    drafts: list[_Event] = []
    while len(drafts) < size:
        family = rng.choice(mix)
        when = min(when + timedelta(milliseconds=rng.randint(0, step_ms)), base)
        left = size - len(drafts)
        batch = rng.random() < _BATCH_RUN_SHARE
        if family in {"enrollment", "completion", "unenrollment", "rollback"}:
            run = rng.randint(2, min(left, _BATCH_RUN_MAX)) if batch and left > 1 else 1
            drafts.extend(_learner_events(family, rng, when, run, admin_id))
        elif family == "progress":
            drafts.append(_progress_event(rng, when))
        elif family == "ci_stats":
            drafts.append(_ci_stats_event(rng, when, admin_id))
        elif family in {"learning_object", "learning_object_instance"}:
            drafts.append(_catalogue_event(family, rng, when, admin_id, batch))
        else:
            drafts.append(_async_response_event(rng, when, admin_id))
    return [_render(event, rng, dialect) for event in drafts]


def generate_batch(
    *,
    account_id: int,
    size: int,
    mix: Sequence[str],
    rng: random.Random,
    dialect: Dialect,
    now: datetime | None = None,
) -> bytes:
    """A JSON body as ALM sends it: ``{"accountId": n, "events": [...]}``.

    Every value (ids included) is drawn from ``rng``, so the same seed and ``now`` give
    the same bytes. ``mix`` lists family names; repeat a name to make it more frequent.
    """
    events = generate_events(size=size, mix=mix, rng=rng, dialect=dialect, now=now)
    return orjson.dumps({"accountId": account_id, "events": events})
