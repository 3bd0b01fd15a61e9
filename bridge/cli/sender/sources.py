"""Where request bodies come from: packaged samples, files, or the generator.

:class:`SourcePlan` decides which body request ``index`` sends, so that the same index
always gives the same bytes, whichever sender asks for it first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

import orjson

from bridge.cli.sender.generation import Dialect, generate_batch
from bridge.core.auth import secret_from_text

if TYPE_CHECKING:
    from datetime import datetime

    from bridge.cli.sender.options import SendOptions

_SAMPLE_PACKAGE: Final = "bridge"
_SAMPLE_DIR: Final = "samples"


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


class _Generated:
    """Marks the slot of the source cycle that makes a fresh generated batch."""


_GENERATED: Final = _Generated()


def _sample_list(names: tuple[str, ...]) -> list[str]:
    expanded: list[str] = []
    for name in names:
        expanded.extend(sample_names() if name == "all" else [name])
    return expanded


class SourcePlan:
    """Which body request ``index`` sends; the same index always gives the same bytes."""

    def __init__(self, options: SendOptions, *, seed: int, now: datetime) -> None:
        self._options = options
        self._seed = seed
        self._now = now
        slots: list[BatchBody | _Generated] = [
            describe_body(f"sample:{name.removesuffix('.json')}", read_sample(name))
            for name in _sample_list(options.samples)
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
        smallest, largest = options.batch_size
        size = rng.randint(smallest, largest or smallest)
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


def planned_batches(options: SendOptions) -> int:
    """How many batches the send phase of a run with ``options`` sends."""
    if options.count is not None:
        return options.count
    fixed = len(_sample_list(options.samples)) + len(options.files)
    return fixed + (1 if options.generate or not fixed else 0)
