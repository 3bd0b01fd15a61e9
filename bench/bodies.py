"""Realistic, signed request bodies with unique event ids, built before any timing starts.

For each batch size, 8 to 64 template batches (:func:`templates_for`) come from
:func:`bridge.cli.sender.generate_batch`: the default family mix, the two payload dialects in
turn. Every request gets a copy of a template in which the last 8 characters of each
top-level event id (UUIDs, and the ``usergroup-sync-<hex>`` ids of asynchronous API
responses) are replaced by the request's tag in hex, and is then signed (HMAC-SHA256, hex).
Tags never repeat within one :class:`BodyFactory`, and load generators get disjoint
``tag_base`` values, so ids are unique without generating every batch from scratch; a long
phase may send its ring of bodies again once the bridge's duplicates window has forgotten
them (:func:`ring_length`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from bridge.cli.sender import DEFAULT_MIX, Dialect, generate_batch
from bridge.core.auth import sign_hmac

TAG_DIGITS: Final = 8
_EVENT_ID_KEY: Final = b'"eventId":"'


@dataclass(frozen=True, slots=True)
class Template:
    """A generated batch and where the tag goes in each of its event ids."""

    body: bytes
    offsets: tuple[int, ...]

    @property
    def events(self) -> int:
        return len(self.offsets)


def event_id_offsets(body: bytes) -> tuple[int, ...]:
    """Where the tag goes in each top-level ``eventId`` value: its last 8 characters."""
    doc = orjson.loads(body)
    ids = [str(e["eventId"]) for e in doc["events"]]
    wanted = set(ids)
    offsets: list[int] = []
    found: set[str] = set()
    start = 0
    while True:
        at = body.find(_EVENT_ID_KEY, start)
        if at < 0:
            break
        value_at = at + len(_EVENT_ID_KEY)
        end = body.find(b'"', value_at)
        value = body[value_at:end].decode()
        start = end
        if value in wanted and value not in found:
            if len(value) <= TAG_DIGITS or not value.isascii():
                raise ValueError(f"event id {value!r} is too short to carry a tag")
            found.add(value)
            offsets.append(end - TAG_DIGITS)
    if len(offsets) != len(ids):
        raise ValueError(f"found {len(offsets)} of {len(ids)} event ids in the body")
    prefixes = {i[:-TAG_DIGITS] for i in ids}
    if len(prefixes) != len(ids):
        raise ValueError("two event ids differ only in their last 8 characters")
    return tuple(offsets)


def make_templates(
    batch: int,
    count: int,
    *,
    seed: int,
    account_id: int,
    now: datetime | None = None,
) -> list[Template]:
    """``count`` different generated batches of ``batch`` events, alternating dialects."""
    moment = now or datetime.now(UTC)
    templates: list[Template] = []
    for index in range(count):
        rng = random.Random(f"bench:{seed}:{batch}:{index}")
        dialect: Dialect = "guide" if index % 2 == 0 else "setup"
        body = generate_batch(
            account_id=account_id, size=batch, mix=DEFAULT_MIX, rng=rng, dialect=dialect, now=moment
        )
        templates.append(Template(body, event_id_offsets(body)))
    return templates


def tagged(template: Template, tag: int) -> bytes:
    """The template's bytes with every event id ending in ``tag`` (8 hex digits)."""
    text = f"{tag & 0xFFFFFFFF:08x}".encode()
    buf = bytearray(template.body)
    for offset in template.offsets:
        buf[offset : offset + TAG_DIGITS] = text
    return bytes(buf)


def templates_for(batch: int) -> int:
    """How many templates to draw per batch size: more variety for small batches."""
    return max(8, min(64, 640 // max(batch, 1)))


def ring_length(needed: int, batch: int, ring_events: int) -> tuple[int, bool]:
    """How many distinct bodies to build, and whether they may be sent more than once.

    A body may be reused only after ``ring_events`` other events, enough for the bridge's
    duplicate window to have forgotten its ids; otherwise a phase stops when they run out.
    """
    full = max(1, math.ceil(ring_events / max(batch, 1)))
    if needed >= full:
        return full, True
    return max(1, needed), False


class BodyFactory:
    """Signed bodies for one load generator process; tags never repeat within it."""

    def __init__(
        self,
        *,
        secret: bytes,
        header: str,
        account_id: int,
        seed: int,
        tag_base: int,
    ) -> None:
        self._secret = secret
        self._header = header
        self._account_id = account_id
        self._seed = seed
        self._next_tag = tag_base
        self._templates: dict[int, list[Template]] = {}

    def templates(self, batch: int) -> list[Template]:
        if batch not in self._templates:
            self._templates[batch] = make_templates(
                batch, templates_for(batch), seed=self._seed, account_id=self._account_id
            )
        return self._templates[batch]

    def build(self, batch: int, count: int) -> list[tuple[bytes, dict[str, str]]]:
        """``count`` signed bodies (with their headers) of ``batch`` events each."""
        pool = self.templates(batch)
        out: list[tuple[bytes, dict[str, str]]] = []
        for index in range(count):
            body = tagged(pool[index % len(pool)], self._next_tag)
            self._next_tag += 1
            headers = {
                "Content-Type": "application/json",
                self._header: sign_hmac(body, self._secret, algorithm="sha256", encoding="hex"),
            }
            out.append((body, headers))
        return out
