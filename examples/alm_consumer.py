"""A consumer of alm-kafka-bridge's topics to copy and adapt (needs only aiokafka).

What it does, and why:

- **Subscribes by pattern** (default ``^alm\\.(?!deadletter$)``): every event topic, including
  topics for event names ALM adds later and the catch-all, without listing them.
- **Deduplicates** on ``ce_id`` + ``alm_account_id``, the headers every record carries. The
  bridge delivers at least once: ALM re-sends batches, and a re-send that reaches another
  replica or comes after a restart is published again. The window is bounded by count and
  by age, like the bridge's own, so memory stays flat.
- **Commits offsets only after processing**: auto-commit is off; the offsets of a batch of
  records are committed once the handler returned for each of them. A crash in between
  means the records are delivered again (the window, or an idempotent handler, absorbs that).
- **Continues the trace** of the webhook request that brought each event: every record
  carries the request's W3C ``traceparent``, so the handler's span is its child
  (:meth:`Event.traceparent`; with OpenTelemetry, ``extract(event.headers)``).
- **Handles dead letters separately**: the dead-letter topic has its own consumer and
  handler. Its records are raw batches (or single events) that the bridge could not
  publish; they need a person or a replay, not the business logic.

Run it against the local broker of ``make run`` or ``make kafka-up``, with the project's
virtualenv (which has aiokafka)::

    .venv/bin/python examples/alm_consumer.py --bootstrap 127.0.0.1:9092 --group my-service

On a fresh broker, the group coordinator needs a moment to exist (Kafka creates its offsets
topic on the first group's request), and the dead-letter topic exists once the bridge has
started: aiokafka's retries meanwhile are logged at INFO (:class:`TransientCoordinatorFilter`),
not ERROR.

The contract (topics, headers, keys, value schemas) is in docs/asyncapi.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

log = logging.getLogger("alm_consumer")

DEFAULT_PATTERN = r"^alm\.(?!deadletter$)"
# aiokafka's loggers whose ERROR lines a fresh broker causes and aiokafka itself retries.
_TRANSIENT_LOGGERS = ("aiokafka.consumer.group_coordinator", "aiokafka.cluster")


class TransientCoordinatorFilter(logging.Filter):
    """aiokafka's ERROR lines for what a fresh broker answers and aiokafka retries, at INFO.

    Until its offsets topic exists, a fresh broker has no group coordinator: aiokafka logs
    "Group Coordinator Request failed" at ERROR each time it retries the lookup. Until the
    bridge has started once, the dead-letter topic does not exist: aiokafka logs "Topic ...
    not found in cluster metadata" at ERROR and waits for it. An error aiokafka does not
    retry keeps its level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR:
            return True
        first = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if record.msg == "Group Coordinator Request failed: %s":
            if getattr(first, "retriable", False):
                record.msg = "waiting for the group coordinator (%s); retrying"
                record.levelno, record.levelname = logging.INFO, "INFO"
        elif record.msg == "Topic %s not found in cluster metadata":
            record.msg = "topic %s does not exist yet (the bridge creates it); waiting for it"
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


DEFAULT_DEAD_LETTER_TOPIC = "alm.deadletter"


@dataclass(frozen=True)
class Event:
    """One ALM event as the bridge published it."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: Mapping[str, str]
    value: Mapping[str, Any]

    @property
    def account_id(self) -> str:
        return self.headers["alm_account_id"]

    @property
    def event_id(self) -> str:
        return self.headers["ce_id"]

    @property
    def name(self) -> str:
        return self.headers["alm_event_name"]

    @property
    def traceparent(self) -> str:
        """The W3C trace context of the webhook request that brought the event.

        With OpenTelemetry, the handler's span continues it::

            from opentelemetry.propagate import extract

            with tracer.start_as_current_span("handle", context=extract(event.headers)):
                ...
        """
        return self.headers["traceparent"]

    @property
    def trace_id(self) -> str:
        """The trace id of :attr:`traceparent`, for log lines without a tracing library."""
        return self.traceparent.split("-")[1]

    @property
    def data(self) -> Mapping[str, Any]:
        """The event's data in either dialect ALM sends: ``data``, else ``eventData``."""
        data = self.value.get("data")
        if data is None:
            data = self.value.get("eventData")
        return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class DeadLetter:
    """A record of the dead-letter topic: a raw batch body, or one event not published."""

    topic: str
    partition: int
    offset: int
    reason: str
    error: str
    receiver: str
    value: bytes
    headers: Mapping[str, str]


class SeenWindow:
    """``(account, event id)`` pairs seen recently, bounded by count and by age."""

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_age_seconds: float = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, item: tuple[str, str]) -> bool:
        self._expire()
        return item in self._seen

    def add(self, item: tuple[str, str]) -> None:
        self._seen[item] = self._clock()
        self._seen.move_to_end(item)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def _expire(self) -> None:
        oldest = self._clock() - self.max_age_seconds
        while self._seen:
            item, seen_at = next(iter(self._seen.items()))
            if seen_at >= oldest:
                return
            del self._seen[item]


@dataclass
class Stats:
    handled: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    commits: int = 0
    topics: set[str] = field(default_factory=set)


EventHandler = Callable[[Event], Awaitable[None]]
DeadLetterHandler = Callable[[DeadLetter], Awaitable[None]]


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in record.headers}


def to_event(record: ConsumerRecord[bytes, bytes]) -> Event:
    return Event(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=None if record.key is None else record.key.decode("utf-8", "replace"),
        headers=_headers(record),
        value=json.loads(record.value or b"{}"),
    )


def to_dead_letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    headers = _headers(record)
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=headers.get("dlq_reason", ""),
        error=headers.get("dlq_error", ""),
        receiver=headers.get("alm_receiver", ""),
        value=record.value or b"",
        headers=headers,
    )


async def _commit(
    consumer: AIOKafkaConsumer, done: Mapping[TopicPartition, int], stats: Stats
) -> None:
    if done:
        # The committed offset is the next one to read: one past the last processed record.
        await consumer.commit({tp: offset + 1 for tp, offset in done.items()})
        stats.commits += 1


async def consume_events(
    consumer: AIOKafkaConsumer,
    handle: EventHandler,
    window: SeenWindow,
    stats: Stats,
    stop: asyncio.Event,
) -> None:
    """Process batches of records until ``stop`` is set; commit after each batch."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        for tp, records in batches.items():
            done: dict[TopicPartition, int] = {}
            try:
                for record in records:
                    event = to_event(record)
                    identity = (event.account_id, event.event_id)
                    if identity in window:
                        stats.duplicates += 1
                    else:
                        await handle(event)
                        window.add(identity)
                        stats.handled += 1
                        stats.topics.add(event.topic)
                    done[tp] = record.offset
            finally:
                # Also when the handler failed: what was processed before it stays committed,
                # the failed record and everything after it are delivered again.
                await _commit(consumer, done, stats)


async def consume_dead_letters(
    consumer: AIOKafkaConsumer, handle: DeadLetterHandler, stats: Stats, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=500, max_records=100)
        for tp, records in batches.items():
            done: dict[TopicPartition, int] = {}
            try:
                for record in records:
                    await handle(to_dead_letter(record))
                    stats.dead_letters += 1
                    done[tp] = record.offset
            finally:
                await _commit(consumer, done, stats)


async def run(
    *,
    bootstrap: str,
    group: str,
    handle: EventHandler,
    handle_dead_letter: DeadLetterHandler,
    pattern: str = DEFAULT_PATTERN,
    dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC,
    window: SeenWindow | None = None,
    stop: asyncio.Event | None = None,
    stats: Stats | None = None,
    **client: Any,
) -> Stats:
    """Consume events and dead letters until ``stop`` is set or a handler raises.

    ``client`` goes to both aiokafka consumers (TLS, SASL, ``metadata_max_age_ms``, ...).
    The dead-letter consumer uses the group ``<group>.deadletters``.
    """
    stop = stop or asyncio.Event()
    stats = stats or Stats()
    window = window or SeenWindow()
    common: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **client,
    }
    events = AIOKafkaConsumer(group_id=group, **common)
    events.subscribe(pattern=pattern)
    dead_letters = AIOKafkaConsumer(dead_letter_topic, group_id=f"{group}.deadletters", **common)
    await events.start()
    try:
        await dead_letters.start()
        try:
            tasks = [
                asyncio.create_task(consume_events(events, handle, window, stats, stop)),
                asyncio.create_task(
                    consume_dead_letters(dead_letters, handle_dead_letter, stats, stop)
                ),
            ]
            try:
                # The first task to fail stops the other: a handler error ends the run.
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                stop.set()
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            await dead_letters.stop()
    finally:
        await events.stop()
    return stats


# ------------------------------------------------------------------------ command line


async def print_event(event: Event) -> None:
    """Replace with your processing; make it idempotent where you can."""
    print(
        json.dumps(
            {
                "topic": event.topic,
                "key": event.key,
                "account": event.account_id,
                "eventId": event.event_id,
                "event": event.name,
                "time": event.headers.get("ce_time"),
                "trace_id": event.trace_id,
                "data": event.data,
            }
        ),
        flush=True,
    )


async def log_dead_letter(dead: DeadLetter) -> None:
    """Dead letters need a person: say so loudly, with what identifies the record."""
    log.warning(
        "dead letter %s[%d]@%d from receiver %r: %s (%s), %d bytes",
        dead.topic,
        dead.partition,
        dead.offset,
        dead.receiver,
        dead.reason,
        dead.error,
        len(dead.value),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--group", required=True, help="consumer group id")
    parser.add_argument("--pattern", default=DEFAULT_PATTERN, help="topics to subscribe to")
    parser.add_argument("--dead-letter-topic", default=DEFAULT_DEAD_LETTER_TOPIC)
    parser.add_argument("--dedupe-max-entries", type=int, default=100_000)
    parser.add_argument("--dedupe-max-age-seconds", type=float, default=86_400.0)
    args = parser.parse_args(argv)
    re.compile(args.pattern)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for name in _TRANSIENT_LOGGERS:
        logging.getLogger(name).addFilter(TransientCoordinatorFilter())
    window = SeenWindow(
        max_entries=args.dedupe_max_entries, max_age_seconds=args.dedupe_max_age_seconds
    )
    stats = asyncio.run(
        _until_signalled(
            bootstrap=args.bootstrap,
            group=args.group,
            handle=print_event,
            handle_dead_letter=log_dead_letter,
            pattern=args.pattern,
            dead_letter_topic=args.dead_letter_topic,
            window=window,
        )
    )
    log.info(
        "stopped: %d events handled, %d duplicates skipped, %d dead letters, %d commits",
        stats.handled,
        stats.duplicates,
        stats.dead_letters,
        stats.commits,
    )
    return 0


async def _until_signalled(**options: Any) -> Stats:
    """SIGTERM (Kubernetes) and SIGINT finish the batch in hand, commit it, and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await run(stop=stop, **options)


if __name__ == "__main__":
    sys.exit(main())
