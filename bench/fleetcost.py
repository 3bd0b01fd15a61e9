"""The CPU the fleet's memory of duplicates adds per event, its Python part alone.

    python -m bench.fleetcost [--events 200000] [--repeat 5]

Write side (the replica that acknowledged the event): the fleet record made and appended
to a Kafka batch, as the writer does for each digest. Read side (every replica, for every
replica's events): the records of a fetch turned into window entries, as the reader does.
No broker: the network and Kafka's own work are not counted (``python -m bench.cores
--fleet`` measures the whole process without and with the fleet, in turns). Best of
``--repeat`` runs, in process CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaProducer

from bridge.config.settings import Settings
from bridge.core.dedupe import SeenWindow, digest, fleet_record
from bridge.kafka.fleet import Fleet
from bridge.telemetry.metrics import Metrics

FETCH_RECORDS = 10_000


async def measure(events: int, repeat: int) -> tuple[float, float]:
    keys = [digest(1234, f"event-{n}") for n in range(events)]
    # Never started: only its batch builder is used.
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", enable_idempotence=False)
    try:
        return await _rounds(producer, keys, repeat)
    finally:
        await producer.stop()


async def _rounds(
    producer: AIOKafkaProducer, keys: list[bytes], repeat: int
) -> tuple[float, float]:
    events = len(keys)
    best_write = best_read = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        builder = producer.create_batch()
        records: list[Any] = []
        for first in range(0, events, 100):  # acknowledgements of 100 events
            acknowledged_ms = int(time.time() * 1000)
            for key in keys[first : first + 100]:
                record_key, value = fleet_record("alm", key, acknowledged_ms)
                if builder.append(timestamp=None, key=record_key, value=value, headers=[]) is None:
                    builder = producer.create_batch()
                    builder.append(timestamp=None, key=record_key, value=value, headers=[])
                records.append(SimpleNamespace(key=record_key, value=value))
        best_write = min(best_write, (time.process_time() - started) / events)
        window = SeenWindow(max_entries=events)
        fleet = Fleet(
            settings=Settings(dedupe_fleet_topic="bench.fleet"),
            windows={"alm": window},
            metrics=Metrics(),
        )
        fleet.status = "loaded"
        started = time.process_time()
        for first in range(0, events, FETCH_RECORDS):
            fleet._take({"fetch": records[first : first + FETCH_RECORDS]})
        best_read = min(best_read, (time.process_time() - started) / events)
        assert len(window) == events
    return best_write, best_read


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleetcost", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    write, read = asyncio.run(measure(args.events, args.repeat))
    print(
        f"fleet's memory, Python part: write {write * 1e6:.2f} µs per event acknowledged here, "
        f"read {read * 1e6:.2f} µs per event acknowledged anywhere in the fleet "
        f"(best of {args.repeat}, {args.events:,} events)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
