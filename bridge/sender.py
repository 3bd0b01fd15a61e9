"""The ``send`` command: plays Adobe Learning Manager against any webhook URL.

It sends batches the way ALM does (one request waits for its answer before the next is
sent, 5 s response timeout, retries with backoff until a 2xx) so a receiver can be tested
without exposing it through a tunnel. Bodies come from the packaged samples, from files, or
from a generator of realistic events in both payload dialects.

The pure parts (generation, signing, summaries) are separate from the async engine
(:func:`run_send`, :func:`run_challenge`) and from the command line (:func:`send_command`).
"""

import asyncio
import enum
import json
import math
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

import aiohttp
import orjson
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from yarl import URL

from bridge.auth import basic_authorization, secret_from_text, sign_hmac

Dialect = Literal["guide", "setup"]
DialectChoice = Literal["guide", "setup", "mixed"]
AuthMethod = Literal["none", "basic", "hmac"]
HmacAlgorithm = Literal["sha1", "sha256", "sha512"]
HmacEncoding = Literal["hex", "base64"]
Phase = Literal["send", "resend"]
_T = TypeVar("_T")

FAMILIES: Final[tuple[str, ...]] = (
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
DEFAULT_HMAC_HEADER: Final = "X-ALM-Signature"
USER_AGENT: Final = "alm-bridge-send"

_SAMPLE_PACKAGE: Final = "bridge"
_SAMPLE_DIR: Final = "samples"
_RESPONSE_COUNT_FIELDS: Final = ("received", "published", "duplicates", "deadLettered")
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


# ----------------------------------------------------------------------------- generation


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


# ------------------------------------------------------------------------------- sources


def sample_names() -> list[str]:
    """The packaged sample bodies, without the ``.json`` suffix."""
    folder = resources.files(_SAMPLE_PACKAGE).joinpath(_SAMPLE_DIR)
    return sorted(
        entry.name.removesuffix(".json")
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    )


def read_sample(name: str) -> bytes:
    """The bytes of one packaged sample (``enrollment-batch`` or ``enrollment-batch.json``)."""
    stem = name.removesuffix(".json")
    known = sample_names()
    if stem not in known:
        raise ValueError(f"unknown sample {name!r}; known: {', '.join(known)}, all")
    return resources.files(_SAMPLE_PACKAGE).joinpath(_SAMPLE_DIR, f"{stem}.json").read_bytes()


def load_secret(path: str | Path) -> bytes:
    """A signing secret from a file: plain text, or the JSON file ALM lets admins download."""
    return secret_from_text(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class BatchBody:
    """One request body and what it carries, as far as it can be read."""

    source: str
    body: bytes
    account_id: int | None
    event_ids: tuple[str, ...]


def describe_body(source: str, body: bytes) -> BatchBody:
    """Reads the account and event ids of a body leniently: broken bodies are sent as is."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return BatchBody(source, body, None, ())
    if not isinstance(doc, dict):
        return BatchBody(source, body, None, ())
    account = doc.get("accountId")
    account_id = account if isinstance(account, int) and not isinstance(account, bool) else None
    events = doc.get("events")
    ids: list[str] = []
    if isinstance(events, list):
        for event in events:
            if isinstance(event, dict) and isinstance(event.get("eventId"), str | int):
                ids.append(str(event["eventId"]))
    return BatchBody(source, body, account_id, tuple(ids))


# ------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SendOptions:
    """Everything one ``send`` run needs. Secrets are left out of ``repr``."""

    url: str
    samples: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    # Generated batches are used when no sample or file is given, or when asked for.
    generate: bool = False
    # None: one request per sample/file given, or one generated batch.
    count: int | None = None
    batch_size_min: int = 10
    batch_size_max: int | None = None
    mix: tuple[str, ...] = DEFAULT_MIX
    dialect: DialectChoice = "guide"
    account_ids: tuple[int, ...] = (DEFAULT_ACCOUNT_ID,)
    # None: a random seed, reported in the summary so that the run can be repeated.
    seed: int | None = None
    # Base time of generated events; None: the start of the run.
    now: datetime | None = None
    auth: AuthMethod = "none"
    basic_username: str = ""
    basic_password: str = field(default="", repr=False)
    hmac_secret: bytes = field(default=b"", repr=False)
    hmac_header: str = DEFAULT_HMAC_HEADER
    hmac_algorithm: HmacAlgorithm = "sha256"
    hmac_encoding: HmacEncoding = "hex"
    hmac_prefix: bool = False
    extra_headers: tuple[tuple[str, str], ...] = ()
    concurrency: int = 1
    # Requests per second over all senders, retries included; 0 means unlimited.
    rate: float = 0.0
    timeout_seconds: float = 5.0
    resend: int = 0
    retry_until_acknowledged: bool = False
    max_retry_seconds: float = 60.0
    retry_backoff_base_seconds: float = 0.5
    retry_backoff_max_seconds: float = 5.0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every inconsistency in these options, one message each."""
        problems: list[str] = []
        if not self.url.startswith(("http://", "https://")):
            problems.append(f"the URL must start with http:// or https://, not {self.url!r}")
        if self.count is not None and self.count < 1:
            problems.append("count must be at least 1")
        if self.batch_size_min < 0:
            problems.append("the batch size must not be negative")
        if self.batch_size_max is not None and self.batch_size_max < self.batch_size_min:
            problems.append("the largest batch size is below the smallest")
        unknown = sorted(set(self.mix) - set(FAMILIES))
        if not self.mix or unknown:
            problems.append(f"the mix must name families among {', '.join(FAMILIES)}")
        if self.dialect not in ("guide", "setup", "mixed"):
            problems.append("dialect must be guide, setup or mixed")
        if not self.account_ids or any(a < 0 for a in self.account_ids):
            problems.append("account ids must be non-negative, and at least one is needed")
        if self.auth not in ("none", "basic", "hmac"):
            problems.append("auth must be none, basic or hmac")
        if self.auth == "basic" and not self.basic_username:
            problems.append("basic auth needs a username (--user USER:PASS)")
        if self.auth == "hmac" and not self.hmac_secret:
            problems.append("hmac auth needs a secret (--secret or --secret-file)")
        if self.hmac_algorithm not in ("sha1", "sha256", "sha512"):
            problems.append("the HMAC algorithm must be sha1, sha256 or sha512")
        if self.hmac_encoding not in ("hex", "base64"):
            problems.append("the HMAC encoding must be hex or base64")
        if not self.hmac_header.strip():
            problems.append("the HMAC header name is empty")
        if self.concurrency < 1:
            problems.append("concurrency must be at least 1")
        if self.rate < 0:
            problems.append("rate must not be negative")
        if self.timeout_seconds <= 0:
            problems.append("the timeout must be positive")
        if self.resend < 0:
            problems.append("resend must not be negative")
        if self.max_retry_seconds < 0:
            problems.append("max retry seconds must not be negative")
        if self.retry_backoff_base_seconds <= 0 or self.retry_backoff_max_seconds <= 0:
            problems.append("retry backoff times must be positive")
        return problems


def auth_headers(options: SendOptions, body: bytes) -> dict[str, str]:
    """The headers of one request: content type, extra headers, then the credentials."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    headers.update(dict(options.extra_headers))
    if options.auth == "basic":
        headers["Authorization"] = basic_authorization(
            options.basic_username, options.basic_password
        )
    elif options.auth == "hmac":
        headers[options.hmac_header] = sign_hmac(
            body,
            options.hmac_secret,
            algorithm=options.hmac_algorithm,
            encoding=options.hmac_encoding,
            prefix=options.hmac_prefix,
        )
    return headers


class _Generated:
    """Marks the slot of the source cycle that makes a fresh generated batch."""


_GENERATED: Final = _Generated()


class SourcePlan:
    """Which body request ``index`` sends; the same index always gives the same bytes."""

    def __init__(self, options: SendOptions, *, seed: int, now: datetime) -> None:
        self._options = options
        self._seed = seed
        self._now = now
        names: list[str] = []
        for name in options.samples:
            names.extend(sample_names() if name == "all" else [name])
        slots: list[BatchBody | _Generated] = [
            describe_body(f"sample:{name.removesuffix('.json')}", read_sample(name))
            for name in names
        ]
        slots.extend(
            describe_body(f"file:{path}", Path(path).read_bytes()) for path in options.files
        )
        if options.generate or not slots:
            slots.append(_GENERATED)
        self._slots = slots

    @property
    def default_count(self) -> int:
        return len(self._slots)

    def body(self, index: int) -> BatchBody:
        slot = self._slots[index % len(self._slots)]
        if isinstance(slot, BatchBody):
            return slot
        options = self._options
        # One generator per index, so bodies do not depend on which sender asks first.
        rng = random.Random(f"{self._seed}:{index}")
        largest = options.batch_size_max or options.batch_size_min
        size = rng.randint(options.batch_size_min, largest)
        account_id = rng.choice(options.account_ids)
        dialect: Dialect = (
            rng.choice(("guide", "setup")) if options.dialect == "mixed" else options.dialect
        )
        body = generate_batch(
            account_id=account_id,
            size=size,
            mix=options.mix,
            rng=rng,
            dialect=dialect,
            now=self._now,
        )
        return describe_body(f"generated:{dialect}", body)


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One HTTP request and its answer (or why there was none)."""

    index: int
    phase: Phase
    attempt: int
    final: bool
    source: str
    account_id: int | None
    event_ids: tuple[str, ...]
    status: int | None
    error: Literal["timeout", "connection_error", "client_error"] | None
    error_detail: str | None
    latency_ms: float
    sent_at_seconds: float
    response_counts: Mapping[str, int] | None = None
    response_error: str | None = None

    @property
    def acknowledged(self) -> bool:
        """ALM's rule: any 2xx acknowledges the batch."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def event_count(self) -> int:
        return len(self.event_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phase": self.phase,
            "attempt": self.attempt,
            "final": self.final,
            "source": self.source,
            "status": self.status,
            "error": self.error,
            "error_detail": self.error_detail,
            "latency_ms": round(self.latency_ms, 3),
            "sent_at_seconds": round(self.sent_at_seconds, 6),
            "account_id": self.account_id,
            "event_count": self.event_count,
            "event_ids": list(self.event_ids),
            "response": dict(self.response_counts) if self.response_counts is not None else None,
            "response_error": self.response_error,
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``pct`` % at or below it."""
    if not values:
        return None
    if not 0 < pct <= 100:
        raise ValueError("pct must be in (0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency of the requests that got an HTTP answer, in milliseconds."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> "LatencyStats":
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=ordered[-1] if ordered else None,
        )

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "count": self.count,
            "p50_ms": rounded(self.p50),
            "p90_ms": rounded(self.p90),
            "p99_ms": rounded(self.p99),
            "max_ms": rounded(self.max),
        }


@dataclass(frozen=True)
class SendSummary:
    """What a run did. ``exit_code`` is 0 only if every batch's final answer was a 2xx."""

    url: str
    seed: int
    elapsed_seconds: float
    batches: int
    requests: int
    events_sent: int
    status_classes: dict[str, int]
    statuses: dict[int, int]
    timeouts: int
    connection_errors: int
    client_errors: int
    batches_acknowledged: int
    batches_failed: int
    events_acknowledged: int
    reported: dict[str, int]
    resent_batches: int
    resent_acknowledged: int
    resend_duplicates_reported: int
    latency: LatencyStats
    results: tuple[RequestResult, ...] = field(repr=False)
    interrupted: bool = False

    @property
    def duplicates_reported(self) -> int:
        return self.reported.get("duplicates", 0)

    @property
    def all_acknowledged(self) -> bool:
        finals = [r for r in self.results if r.final]
        return not self.interrupted and bool(finals) and all(r.acknowledged for r in finals)

    @property
    def exit_code(self) -> int:
        return 0 if self.all_acknowledged else 1

    def acknowledged_event_ids(self) -> list[tuple[int | None, str]]:
        """``(accountId, eventId)`` of every event in a batch answered with a 2xx."""
        seen: dict[tuple[int | None, str], None] = {}
        for result in self.results:
            if result.acknowledged:
                for event_id in result.event_ids:
                    seen[(result.account_id, event_id)] = None
        return list(seen)

    def summary_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "seed": self.seed,
            "interrupted": self.interrupted,
            "exit_code": self.exit_code,
            "elapsed_seconds": round(self.elapsed_seconds, 6),
            "requests_per_second": (
                round(self.requests / self.elapsed_seconds, 3) if self.elapsed_seconds > 0 else None
            ),
            "batches": self.batches,
            "requests": self.requests,
            "events_sent": self.events_sent,
            "status_classes": dict(sorted(self.status_classes.items())),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "timeouts": self.timeouts,
            "connection_errors": self.connection_errors,
            "client_errors": self.client_errors,
            "batches_acknowledged": self.batches_acknowledged,
            "batches_failed": self.batches_failed,
            "events_acknowledged": self.events_acknowledged,
            "reported": dict(self.reported),
            "duplicates_reported": self.duplicates_reported,
            "resent_batches": self.resent_batches,
            "resent_acknowledged": self.resent_acknowledged,
            "resend_duplicates_reported": self.resend_duplicates_reported,
            "latency": self.latency.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary_dict(),
            "requests": [result.to_dict() for result in self.results],
        }

    def to_json(self, *, indent: bool = True) -> str:
        return json.dumps(self.to_dict(), indent=2 if indent else None)


def summarize(
    results: Sequence[RequestResult],
    *,
    url: str,
    seed: int,
    elapsed_seconds: float,
    interrupted: bool = False,
) -> SendSummary:
    """The summary of a run's requests (a pure function, usable on a partial run)."""
    statuses: Counter[int] = Counter()
    classes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    reported: Counter[str] = Counter({name: 0 for name in _RESPONSE_COUNT_FIELDS})
    latencies: list[float] = []
    sent_batches: set[int] = set()
    acknowledged_batches: set[int] = set()
    failed_batches: set[int] = set()
    events_acknowledged = 0
    resent: set[int] = set()
    resent_acknowledged = 0
    resend_duplicates = 0
    events_sent = 0
    for result in results:
        events_sent += result.event_count
        if result.status is not None:
            statuses[result.status] += 1
            classes[f"{result.status // 100}xx"] += 1
            latencies.append(result.latency_ms)
        if result.error is not None:
            errors[result.error] += 1
        if result.acknowledged and result.response_counts is not None:
            reported.update(result.response_counts)
        if result.phase == "send":
            sent_batches.add(result.index)
            if result.final and result.acknowledged:
                acknowledged_batches.add(result.index)
                events_acknowledged += result.event_count
            elif result.final:
                failed_batches.add(result.index)
        else:
            resent.add(result.index)
            if result.final and result.acknowledged:
                resent_acknowledged += 1
                if result.response_counts is not None:
                    resend_duplicates += result.response_counts.get("duplicates", 0)
    return SendSummary(
        url=url,
        seed=seed,
        elapsed_seconds=elapsed_seconds,
        batches=len(sent_batches),
        requests=len(results),
        events_sent=events_sent,
        status_classes=dict(classes),
        statuses=dict(statuses),
        timeouts=errors["timeout"],
        connection_errors=errors["connection_error"],
        client_errors=errors["client_error"],
        batches_acknowledged=len(acknowledged_batches),
        batches_failed=len(failed_batches),
        events_acknowledged=events_acknowledged,
        reported=dict(reported),
        resent_batches=len(resent),
        resent_acknowledged=resent_acknowledged,
        resend_duplicates_reported=resend_duplicates,
        latency=LatencyStats.of(latencies),
        results=tuple(results),
        interrupted=interrupted,
    )


def _response_fields(body: bytes) -> tuple[dict[str, int] | None, str | None]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    counts = {
        name: value
        for name in _RESPONSE_COUNT_FIELDS
        if isinstance(value := doc.get(name), int) and not isinstance(value, bool)
    }
    error = doc.get("error")
    return (counts or None), (error if isinstance(error, str) else None)


# -------------------------------------------------------------------------------- engine


class _RateLimiter:
    """Spaces request starts evenly at ``rate`` per second over every sender."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None
    body: bytes
    error: Literal["timeout", "connection_error", "client_error"] | None
    error_detail: str | None
    latency_ms: float


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    timeout_seconds: float,
) -> _Answer:
    started = time.perf_counter()
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            status = response.status
    except TimeoutError:
        # aiohttp's own timeout errors are TimeoutError subclasses as well.
        return _Answer(None, b"", "timeout", None, _elapsed_ms(started))
    except aiohttp.ClientConnectionError as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return _Answer(None, b"", "connection_error", detail, _elapsed_ms(started))
    except aiohttp.ClientError as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return _Answer(None, b"", "client_error", detail, _elapsed_ms(started))
    return _Answer(status, payload, None, None, _elapsed_ms(started))


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class _Run:
    def __init__(
        self,
        options: SendOptions,
        session: aiohttp.ClientSession,
        plan: SourcePlan,
        record: Callable[[RequestResult], None],
    ) -> None:
        self.options = options
        self.session = session
        self.plan = plan
        self.record = record
        self.limiter = _RateLimiter(options.rate)
        self.started = time.perf_counter()

    async def phase(self, phase: Phase, indices: Sequence[int]) -> None:
        pending: Iterator[int] = iter(indices)
        workers = min(self.options.concurrency, len(indices))
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._sender(phase, pending))

    async def _sender(self, phase: Phase, pending: Iterator[int]) -> None:
        # Like ALM, each sender waits for the answer to a batch before the next one.
        for index in pending:
            await self._deliver(phase, index)

    async def _deliver(self, phase: Phase, index: int) -> None:
        options = self.options
        batch = self.plan.body(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.max_retry_seconds
        delay = options.retry_backoff_base_seconds
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.wait()
            sent_at = time.perf_counter() - self.started
            answer = await _request(
                self.session,
                "POST",
                options.url,
                body=batch.body,
                headers=auth_headers(options, batch.body),
                timeout_seconds=options.timeout_seconds,
            )
            acknowledged = answer.status is not None and 200 <= answer.status < 300
            retry = (
                options.retry_until_acknowledged
                and not acknowledged
                and loop.time() + delay <= deadline
            )
            counts, response_error = _response_fields(answer.body)
            self.record(
                RequestResult(
                    index=index,
                    phase=phase,
                    attempt=attempt,
                    final=not retry,
                    source=batch.source,
                    account_id=batch.account_id,
                    event_ids=batch.event_ids,
                    status=answer.status,
                    error=answer.error,
                    error_detail=answer.error_detail,
                    latency_ms=answer.latency_ms,
                    sent_at_seconds=sent_at,
                    response_counts=counts,
                    response_error=response_error,
                )
            )
            if not retry:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, options.retry_backoff_max_seconds)


def _resend_indices(results: Sequence[RequestResult], count: int, seed: int) -> list[int]:
    acknowledged = sorted(
        {r.index for r in results if r.phase == "send" and r.final and r.acknowledged}
    )
    if count >= len(acknowledged):
        return acknowledged
    return sorted(random.Random(f"{seed}:resend").sample(acknowledged, count))


def _own_session(options: SendOptions) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max(options.concurrency, 1)),
        raise_for_status=False,
    )


def resolve_seed(options: SendOptions) -> int:
    return options.seed if options.seed is not None else secrets.randbits(32)


async def run_send(
    options: SendOptions,
    *,
    session: aiohttp.ClientSession | None = None,
    on_result: Callable[[RequestResult], None] | None = None,
    seed: int | None = None,
) -> SendSummary:
    """Sends the batches ``options`` describe and summarizes every answer.

    ``on_result`` is called after every request (each retry attempt too; ``final`` tells
    whether the batch is settled). A ``session`` passed in is used and left open.
    Raises ``ValueError`` for an unknown sample and ``OSError`` for an unreadable file.
    """
    chosen_seed = seed if seed is not None else resolve_seed(options)
    now = options.now or datetime.now(UTC)
    plan = SourcePlan(options, seed=chosen_seed, now=now)
    count = options.count if options.count is not None else plan.default_count
    results: list[RequestResult] = []

    def record(result: RequestResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    client = session if session is not None else _own_session(options)
    run = _Run(options, client, plan, record)
    try:
        await run.phase("send", range(count))
        if options.resend:
            await run.phase("resend", _resend_indices(results, options.resend, chosen_seed))
    finally:
        if session is None:
            await client.close()
    return summarize(
        results,
        url=options.url,
        seed=chosen_seed,
        elapsed_seconds=time.perf_counter() - run.started,
    )


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """One answer to a challenge request."""

    method: str
    status: int | None
    body: str
    error: str | None
    latency_ms: float
    echoed: bool


@dataclass(frozen=True, slots=True)
class ChallengeReport:
    """The answers to both forms of the verification challenge."""

    value: str
    get: ChallengeAnswer
    post: ChallengeAnswer

    @property
    def ok(self) -> bool:
        return self.get.echoed and self.post.echoed

    def to_dict(self) -> dict[str, Any]:
        def one(answer: ChallengeAnswer) -> dict[str, Any]:
            return {
                "status": answer.status,
                "body": answer.body,
                "error": answer.error,
                "latency_ms": round(answer.latency_ms, 3),
                "echoed": answer.echoed,
            }

        return {
            "challenge": self.value,
            "ok": self.ok,
            "get": one(self.get),
            "post": one(self.post),
        }


def _post_echoed(body: bytes, value: str) -> bool:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("challenge") == value


async def run_challenge(
    options: SendOptions, value: str, *, session: aiohttp.ClientSession | None = None
) -> ChallengeReport:
    """``GET ?challenge=VALUE`` and ``POST {"challenge": VALUE}``, both with credentials."""
    client = session if session is not None else _own_session(options)
    try:
        get_url = str(URL(options.url).update_query(challenge=value))
        got = await _request(
            client,
            "GET",
            get_url,
            body=None,
            headers=auth_headers(options, b""),
            timeout_seconds=options.timeout_seconds,
        )
        post_body = orjson.dumps({"challenge": value})
        posted = await _request(
            client,
            "POST",
            options.url,
            body=post_body,
            headers=auth_headers(options, post_body),
            timeout_seconds=options.timeout_seconds,
        )
    finally:
        if session is None:
            await client.close()
    return ChallengeReport(
        value=value,
        get=ChallengeAnswer(
            "GET",
            got.status,
            got.body.decode("utf-8", "replace"),
            got.error,
            got.latency_ms,
            got.status == 200 and got.body.decode("utf-8", "replace") == value,
        ),
        post=ChallengeAnswer(
            "POST",
            posted.status,
            posted.body.decode("utf-8", "replace"),
            posted.error,
            posted.latency_ms,
            posted.status == 200 and _post_echoed(posted.body, value),
        ),
    )


# ------------------------------------------------------------------------------- display


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_table(summary: SendSummary) -> Table:
    """The summary as a two-column rich table."""
    table = Table(title=f"alm-bridge send → {summary.url}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rps = summary.requests / summary.elapsed_seconds if summary.elapsed_seconds > 0 else 0.0
    rows: list[tuple[str, str]] = [
        ("seed", str(summary.seed)),
        ("elapsed", f"{summary.elapsed_seconds:.2f} s ({rps:.1f} req/s)"),
        ("batches", str(summary.batches)),
        ("requests sent", str(summary.requests)),
        ("events sent", str(summary.events_sent)),
    ]
    for status_class in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        if summary.status_classes.get(status_class):
            rows.append((status_class, str(summary.status_classes[status_class])))
    rows.extend((f"  status {code}", str(n)) for code, n in sorted(summary.statuses.items()))
    rows.extend(
        [
            ("timeouts", str(summary.timeouts)),
            ("connection errors", str(summary.connection_errors)),
        ]
    )
    if summary.client_errors:
        rows.append(("other client errors", str(summary.client_errors)))
    rows.extend(
        [
            ("batches acknowledged", f"{summary.batches_acknowledged}/{summary.batches}"),
            ("events acknowledged", str(summary.events_acknowledged)),
            ("published (reported)", str(summary.reported.get("published", 0))),
            ("duplicates (reported)", str(summary.duplicates_reported)),
            ("dead-lettered (reported)", str(summary.reported.get("deadLettered", 0))),
        ]
    )
    if summary.resent_batches:
        rows.append(
            (
                "resent batches",
                f"{summary.resent_acknowledged}/{summary.resent_batches} acknowledged, "
                f"{summary.resend_duplicates_reported} duplicates reported",
            )
        )
    latency = summary.latency
    rows.append(
        (
            "latency ms p50/p90/p99/max",
            f"{_ms(latency.p50)} / {_ms(latency.p90)} / {_ms(latency.p99)} / {_ms(latency.max)}",
        )
    )
    if summary.interrupted:
        rows.append(("interrupted", "yes"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def challenge_table(report: ChallengeReport) -> Table:
    table = Table(title=f"challenge {report.value!r}", title_justify="left")
    for column in ("request", "status", "echoed", "latency ms", "answer"):
        table.add_column(column)
    for answer in (report.get, report.post):
        status = str(answer.status) if answer.status is not None else (answer.error or "-")
        text = answer.body if len(answer.body) <= 200 else answer.body[:200] + "…"
        table.add_row(
            answer.method,
            status,
            "yes" if answer.echoed else "no",
            f"{answer.latency_ms:.1f}",
            text,
            style=None if answer.echoed else "red",
        )
    return table


# --------------------------------------------------------------------------- command line


class AuthChoice(enum.StrEnum):
    none = "none"
    basic = "basic"
    hmac = "hmac"


class DialectOption(enum.StrEnum):
    guide = "guide"
    setup = "setup"
    mixed = "mixed"


class AlgorithmChoice(enum.StrEnum):
    sha1 = "sha1"
    sha256 = "sha256"
    sha512 = "sha512"


class EncodingChoice(enum.StrEnum):
    hex = "hex"
    base64 = "base64"


def parse_batch_size(text: str) -> tuple[int, int | None]:
    """``"10"`` or ``"1-50"``."""
    low, sep, high = text.strip().partition("-")
    try:
        smallest = int(low)
        largest = int(high) if sep else None
    except ValueError:
        raise ValueError(f"batch size must be N or MIN-MAX, not {text!r}") from None
    return smallest, largest


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"a header must be 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def _usage(message: str) -> typer.BadParameter:
    return typer.BadParameter(message)


_AUTH_METHODS: Final[Mapping[str, AuthMethod]] = {"none": "none", "basic": "basic", "hmac": "hmac"}
_DIALECT_CHOICES: Final[Mapping[str, DialectChoice]] = {
    "guide": "guide",
    "setup": "setup",
    "mixed": "mixed",
}
_ALGORITHMS: Final[Mapping[str, HmacAlgorithm]] = {
    "sha1": "sha1",
    "sha256": "sha256",
    "sha512": "sha512",
}
_ENCODINGS: Final[Mapping[str, HmacEncoding]] = {"hex": "hex", "base64": "base64"}


def _choice(table: Mapping[str, _T], value: str, what: str) -> _T:
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{what} must be one of {', '.join(table)}, not {value!r}") from None


def _choose_auth(auth: str | None, user: str | None, has_secret: bool) -> AuthMethod:
    if auth is not None:
        return _choice(_AUTH_METHODS, auth, "--auth")
    if has_secret:
        return "hmac"
    if user is not None:
        return "basic"
    return "none"


def planned_batches(options: SendOptions) -> int:
    """How many batches the send phase of a run with ``options`` sends."""
    if options.count is not None:
        return options.count
    fixed = len(options.files)
    for name in options.samples:
        fixed += len(sample_names()) if name == "all" else 1
    return fixed + (1 if options.generate or not fixed else 0)


def build_options(
    url: str,
    *,
    sample: Sequence[str] = (),
    file: Sequence[Path] = (),
    generate: bool = False,
    count: int | None = None,
    batch_size: str = "10",
    mix: str = "default",
    dialect: str = "guide",
    account_id: Sequence[int] = (),
    seed: int | None = None,
    auth: str | None = None,
    user: str | None = None,
    secret: str | None = None,
    secret_file: Path | None = None,
    hmac_header: str = DEFAULT_HMAC_HEADER,
    hmac_algorithm: str = "sha256",
    hmac_encoding: str = "hex",
    hmac_prefix: bool = False,
    header: Sequence[str] = (),
    concurrency: int = 1,
    rate: float = 0.0,
    timeout: float = 5.0,
    resend: int = 0,
    retry_until_acknowledged: bool = False,
    max_retry_seconds: float = 60.0,
    retry_backoff_base: float = 0.5,
    retry_backoff_max: float = 5.0,
) -> SendOptions:
    """:class:`SendOptions` from command-line values; raises ``ValueError`` on misuse."""
    if secret is not None and secret_file is not None:
        raise ValueError("give --secret or --secret-file, not both")
    hmac_secret = b""
    if secret is not None:
        hmac_secret = secret.encode()
    elif secret_file is not None:
        try:
            hmac_secret = load_secret(secret_file)
        except OSError as exc:
            raise ValueError(f"cannot read the secret file {secret_file}: {exc.strerror}") from None
    username, password = "", ""
    if user is not None:
        username, sep, password = user.partition(":")
        if not sep:
            raise ValueError("--user must be USER:PASS")
    smallest, largest = parse_batch_size(batch_size)
    for name in sample:
        if name != "all":
            read_sample(name)
    for path in file:
        if not Path(path).is_file():
            raise ValueError(f"no such file: {path}")
    return SendOptions(
        url=url,
        samples=tuple(sample),
        files=tuple(file),
        generate=generate,
        count=count,
        batch_size_min=smallest,
        batch_size_max=largest,
        mix=parse_mix(mix),
        dialect=_choice(_DIALECT_CHOICES, dialect, "--dialect"),
        account_ids=tuple(account_id) or (DEFAULT_ACCOUNT_ID,),
        seed=seed,
        auth=_choose_auth(auth, user, bool(hmac_secret)),
        basic_username=username,
        basic_password=password,
        hmac_secret=hmac_secret,
        hmac_header=hmac_header,
        hmac_algorithm=_choice(_ALGORITHMS, hmac_algorithm, "--hmac-algorithm"),
        hmac_encoding=_choice(_ENCODINGS, hmac_encoding, "--hmac-encoding"),
        hmac_prefix=hmac_prefix,
        extra_headers=tuple(_parse_header(h) for h in header),
        concurrency=concurrency,
        rate=rate,
        timeout_seconds=timeout,
        resend=resend,
        retry_until_acknowledged=retry_until_acknowledged,
        max_retry_seconds=max_retry_seconds,
        retry_backoff_base_seconds=retry_backoff_base,
        retry_backoff_max_seconds=retry_backoff_max,
    )


def _progress(console: Console, total: int, enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def send_command(
    url: Annotated[
        str, typer.Argument(help="Webhook URL, e.g. http://127.0.0.1:8080/webhooks/alm")
    ],
    sample: Annotated[
        list[str] | None,
        typer.Option(
            "--sample",
            help="Packaged sample body to send (repeatable): enrollment-batch, "
            "mixed-realtime, setup-guide-dialect, or all.",
        ),
    ] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option("--file", help="A file whose bytes are sent as a body (repeatable)."),
    ] = None,
    generate: Annotated[
        bool,
        typer.Option(
            "--generate",
            help="Also send generated batches when --sample/--file are given "
            "(generated batches are the default without them).",
        ),
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            min=1,
            help="Number of batches, cycling over the sources (default: one per source).",
        ),
    ] = None,
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="Events per generated batch: N or MIN-MAX.")
    ] = "10",
    mix: Annotated[
        str,
        typer.Option(
            "--mix",
            help="Families of generated events with weights, e.g. enrollment:3,completion,"
            "progress:2; 'all' or 'default'. Families: " + ", ".join(FAMILIES) + ".",
        ),
    ] = "default",
    dialect: Annotated[
        DialectOption,
        typer.Option("--dialect", help="Payload dialect of generated batches."),
    ] = DialectOption.guide,
    account_id: Annotated[
        list[int] | None,
        typer.Option("--account-id", help="accountId of generated batches (repeatable)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed for generated batches (same seed, same event ids)."),
    ] = None,
    auth: Annotated[
        AuthChoice | None,
        typer.Option(
            "--auth",
            help="Credentials to send (default: hmac if a secret is given, basic if --user "
            "is, else none).",
        ),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="USER:PASS for --auth basic.")] = None,
    secret: Annotated[str | None, typer.Option("--secret", help="HMAC signing secret.")] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file", help="File with the HMAC secret: plain text or ALM's JSON download."
        ),
    ] = None,
    hmac_header: Annotated[
        str, typer.Option("--hmac-header", help="Header carrying the signature.")
    ] = DEFAULT_HMAC_HEADER,
    hmac_algorithm: Annotated[
        AlgorithmChoice, typer.Option("--hmac-algorithm", help="HMAC hash.")
    ] = AlgorithmChoice.sha256,
    hmac_encoding: Annotated[
        EncodingChoice, typer.Option("--hmac-encoding", help="Encoding of the digest.")
    ] = EncodingChoice.hex,
    hmac_prefix: Annotated[
        bool,
        typer.Option("--hmac-prefix/--no-hmac-prefix", help="Send 'sha256=<digest>'."),
    ] = False,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", help="Extra request header 'Name: value' (repeatable)."),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=1,
            help="Independent senders; each waits for its answer before sending again.",
        ),
    ] = 1,
    rate: Annotated[
        float,
        typer.Option("--rate", min=0.0, help="Overall cap in requests/s (0 = unlimited)."),
    ] = 0.0,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds to wait for each answer.")
    ] = 5.0,
    resend: Annotated[
        int,
        typer.Option(
            "--resend", min=0, help="Afterwards, send K acknowledged batches again (duplicates)."
        ),
    ] = 0,
    retry_until_acknowledged: Annotated[
        bool,
        typer.Option(
            "--retry-until-acknowledged",
            help="Like ALM, resend a batch with backoff until it gets a 2xx.",
        ),
    ] = False,
    max_retry_seconds: Annotated[
        float,
        typer.Option("--max-retry-seconds", min=0.0, help="Give a batch up after this long."),
    ] = 60.0,
    retry_backoff_base: Annotated[
        float,
        typer.Option("--retry-backoff-base", min=0.001, help="First retry delay in seconds."),
    ] = 0.5,
    retry_backoff_max: Annotated[
        float,
        typer.Option("--retry-backoff-max", min=0.001, help="Longest retry delay in seconds."),
    ] = 5.0,
    challenge: Annotated[
        str | None,
        typer.Option(
            "--challenge",
            help="Send GET ?challenge=VALUE and POST {challenge: VALUE}, show both answers, exit.",
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the summary and every request's record here."),
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress", help="Progress bar (only when stdout is a terminal)."
        ),
    ] = True,
) -> None:
    """Play Adobe Learning Manager against URL: send signed webhook batches like ALM does.

    Exit status: 0 if every batch was finally answered with a 2xx, 1 otherwise, 2 on misuse.
    """
    try:
        options = build_options(
            url,
            sample=sample or (),
            file=file or (),
            generate=generate,
            count=count,
            batch_size=batch_size,
            mix=mix,
            dialect=dialect.value,
            account_id=account_id or (),
            seed=seed,
            auth=auth.value if auth is not None else None,
            user=user,
            secret=secret,
            secret_file=secret_file,
            hmac_header=hmac_header,
            hmac_algorithm=hmac_algorithm.value,
            hmac_encoding=hmac_encoding.value,
            hmac_prefix=hmac_prefix,
            header=header or (),
            concurrency=concurrency,
            rate=rate,
            timeout=timeout,
            resend=resend,
            retry_until_acknowledged=retry_until_acknowledged,
            max_retry_seconds=max_retry_seconds,
            retry_backoff_base=retry_backoff_base,
            retry_backoff_max=retry_backoff_max,
        )
    except ValueError as exc:
        raise _usage(str(exc)) from None

    console = Console()
    if challenge is not None:
        report = asyncio.run(run_challenge(options, challenge))
        console.print(challenge_table(report))
        if json_path is not None:
            _write_json(json_path, report.to_dict())
        raise typer.Exit(0 if report.ok else 1)

    seed_used = resolve_seed(options)
    total = planned_batches(options) + options.resend
    results: list[RequestResult] = []
    started = time.perf_counter()
    show = progress and console.is_terminal
    with _progress(console, total, show) as bar:
        task = bar.add_task("sending", total=total)
        counts = Counter[str]()

        def on_result(result: RequestResult) -> None:
            results.append(result)
            if not result.final:
                counts["retries"] += 1
                return
            counts["ok" if result.acknowledged else "failed"] += 1
            bar.update(
                task,
                advance=1,
                description=f"sending  ok {counts['ok']}  failed {counts['failed']}  "
                f"retries {counts['retries']}",
            )

        interrupted = False
        summary: SendSummary | None = None
        try:
            summary = asyncio.run(run_send(options, on_result=on_result, seed=seed_used))
        except KeyboardInterrupt:
            interrupted = True
        except OSError as exc:
            raise _usage(f"cannot read {exc.filename}: {exc.strerror}") from None
    if summary is None:
        summary = summarize(
            results,
            url=options.url,
            seed=seed_used,
            elapsed_seconds=time.perf_counter() - started,
            interrupted=interrupted,
        )
    console.print(summary_table(summary))
    if json_path is not None:
        _write_json(json_path, summary.to_dict())
    if interrupted:
        raise typer.Exit(130)
    raise typer.Exit(summary.exit_code)


def main() -> None:
    """Runs ``send`` on its own: ``python -m bridge.sender URL [OPTIONS]``."""
    typer.run(send_command)


if __name__ == "__main__":
    main()
