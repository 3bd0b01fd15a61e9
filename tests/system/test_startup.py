"""Start-up of the real process: a taken port, and signals at any moment of start-up or shutdown.

No broker is needed: the bridge is pointed at a loopback port where a socket listens and never
answers (Kafka unreachable: every connection attempt hangs until its timeout), or at a
loopback port where nothing listens (refused at once, so the bridge gets to ``listening``
early). Signals go to the pid of the process the test started, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.kafka_fixtures import free_ports
from tests.system.harness import HOST, BridgeFactory, BridgeProcess, serve_command, unique_prefix

pytestmark = [pytest.mark.system]

# How long after its last signal the process may take to exit: a signal during start-up
# abandons it at once (the Kafka client gets shutdown_timeout/3 to notice), one after start-up
# drains (nothing is in flight here), a second one exits immediately.
EXIT_BOUND_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 6.0
TRIES = int(os.environ.get("ALM_BRIDGE_SIGNAL_TRIES", "10"))
SEED = int(os.environ.get("ALM_BRIDGE_SIGNAL_SEED", "20261129"))
# Exit codes a user may see: 0 after an orderly stop; 130 (SIGINT) before the bridge handles
# signals itself (nothing was started yet); -15 (SIGTERM's default action) at that same
# moment, and -2 when a second SIGINT lands while the interpreter is already exiting from the
# first (a shell shows both as 128 + signal); 128 + signal when a second signal cuts a
# shutdown short.
ALLOWED_EXITS = {
    0,
    128 + signal.SIGINT,
    128 + signal.SIGTERM,
    -signal.SIGINT,
    -signal.SIGTERM,
}


@contextlib.contextmanager
def silent_kafka() -> Iterator[str]:
    """A loopback address that accepts TCP connections and never answers."""
    server = socket.create_server((HOST, 0), backlog=64)
    try:
        yield f"{HOST}:{server.getsockname()[1]}"
    finally:
        server.close()


def spawn(bridges: BridgeFactory, bootstrap: str, label: str, **env: str | None) -> BridgeProcess:
    return bridges.spawn(
        bootstrap,
        prefix=unique_prefix(label),
        command=serve_command(script=True),
        env={"BRIDGE_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS), **env},
    )


@pytest.mark.timeout(90)
async def test_a_taken_port_fails_at_once_with_one_line(bridges: BridgeFactory) -> None:
    with socket.create_server((HOST, 0)) as taken, silent_kafka() as kafka:
        port = taken.getsockname()[1]
        bridge = bridges.spawn(
            kafka, prefix=unique_prefix("taken"), port=port, command=serve_command(script=True)
        )
        code = await bridge.wait_exit(60)
    output = bridge.log_path.read_text()
    assert code == 4, f"exit code {code}\n{output}"
    # Nothing but the start line and the error: Kafka was never contacted.
    assert bridge.event_names() == ["starting"], output
    assert output.splitlines()[1:] == [
        f"alm-bridge: cannot listen on {HOST}:{port} (BRIDGE_PORT): address already in use "
        "(another process listens there)"
    ]


@pytest.mark.timeout(90)
async def test_a_taken_metrics_port_is_named_as_such(bridges: BridgeFactory) -> None:
    with socket.create_server((HOST, 0)) as taken, silent_kafka() as kafka:
        port = taken.getsockname()[1]
        bridge = spawn(bridges, kafka, "taken-metrics", BRIDGE_METRICS_PORT=str(port))
        code = await bridge.wait_exit(60)
    output = bridge.log_path.read_text()
    assert code == 4, f"exit code {code}\n{output}"
    assert f"cannot listen on {HOST}:{port} (BRIDGE_METRICS_PORT)" in output
    assert "Traceback" not in output


# Where a try's signal is aimed: while the interpreter loads (before the bridge handles
# signals), while it waits for an unreachable Kafka, or once it listens.
ANCHORS = ("spawn", "starting", "listening")


@dataclass(frozen=True)
class Try:
    number: int
    anchor: str
    delay: float  # after the anchor
    first: signal.Signals
    second_after: float | None  # a second signal this long after the first, or none

    @property
    def kafka(self) -> str:
        # Unreachable Kafka keeps the bridge connecting; refused lets it listen soon.
        return "refused" if self.anchor == "listening" else "silent"

    def __str__(self) -> str:
        second = f", again after {self.second_after:.2f}s" if self.second_after is not None else ""
        return (
            f"try {self.number} (seed {SEED}): Kafka {self.kafka}, {self.first.name} "
            f"{self.delay:.2f}s after {self.anchor}{second}"
        )


def plan(count: int) -> list[Try]:
    rng = random.Random(SEED)
    # After spawn, the first ~0.1 s (more on a busy machine) is the interpreter's own start-up,
    # before any of the bridge's code runs: a SIGINT there gets Python's own traceback, which
    # no program can prevent. Signals aimed at loading start after it.
    spans = {"spawn": (0.5, 2.0), "starting": (0.0, 3.0), "listening": (0.0, 1.0)}
    tries = []
    for number in range(1, count + 1):
        anchor = ANCHORS[(number - 1) % len(ANCHORS)]
        tries.append(
            Try(
                number=number,
                anchor=anchor,
                delay=rng.uniform(*spans[anchor]),
                first=rng.choice([signal.SIGINT, signal.SIGTERM]),
                second_after=rng.uniform(0.0, 1.0) if rng.random() < 0.3 else None,
            )
        )
    return tries


async def wait_for_event(bridge: BridgeProcess, name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and bridge.running():
        if name in bridge.event_names():
            return True
        await asyncio.sleep(0.02)
    return False


def phase_of(events: list[str]) -> str:
    if "listening" in events:
        return "listening"
    return "connecting" if "starting" in events else "loading"


@pytest.mark.timeout(60 + TRIES * 30)
async def test_signals_at_random_moments_stop_the_process(bridges: BridgeFactory) -> None:
    failures: list[str] = []
    seen: dict[str, int] = {}
    with silent_kafka() as silent:
        for attempt in plan(TRIES):
            refused = f"{HOST}:{free_ports(1)[0]}"
            bridge = spawn(
                bridges,
                silent if attempt.kafka == "silent" else refused,
                f"signal-{attempt.number}",
            )
            if attempt.anchor != "spawn" and not await wait_for_event(bridge, attempt.anchor, 60):
                failures.append(f"{attempt}: never logged {attempt.anchor}\n{bridge.log_tail()}")
                continue
            code = await bridge.wait_exit(attempt.delay)
            if code is not None:
                failures.append(f"{attempt}: exited with {code} before the signal")
                continue
            phase = phase_of(bridge.event_names())
            bridge.send_signal(attempt.first)
            last = time.monotonic()
            if attempt.second_after is not None:
                code = await bridge.wait_exit(attempt.second_after)
                if code is None:
                    bridge.send_signal(attempt.first)
                    last = time.monotonic()
            code = await bridge.wait_exit(EXIT_BOUND_SECONDS)
            took = time.monotonic() - last
            output = bridge.log_path.read_text(errors="replace")
            events = bridge.event_names()
            seen[phase] = seen.get(phase, 0) + 1
            print(f"{attempt}: signalled while {phase}, exit {code} {took:.2f}s after the last")
            problem = None
            if code is None:
                problem = f"still running {EXIT_BOUND_SECONDS:g}s after the signal"
                bridge.stop(5)
            elif code not in ALLOWED_EXITS:
                problem = f"exit code {code}"
            elif "Traceback" in output:
                problem = "a traceback"
            elif phase != "loading" and "shutdown_started" not in events:
                problem = f"signalled while {phase}, but shutdown_started was never logged"
            elif phase != "loading" and attempt.second_after is None and code != 0:
                problem = f"exit {code} after an orderly stop"
            if problem:
                failures.append(f"{attempt}: {problem}\n{bridge.log_tail(15)}")
    print(f"signals landed while: {seen}")
    assert not failures, "\n\n".join(failures)
    # The case (a signal while Kafka is still being reached) must have been exercised.
    assert seen.get("connecting", 0) >= 1, seen
    assert seen.get("listening", 0) >= 1, seen


@pytest.mark.timeout(90)
async def test_an_unauthenticated_receiver_is_warned_about_at_start(
    bridges: BridgeFactory,
) -> None:
    with silent_kafka() as kafka:
        open_bridge = spawn(
            bridges, kafka, "no-auth", BRIDGE_AUTH_METHOD="none", BRIDGE_HMAC_SECRET=None
        )
        signed_bridge = spawn(bridges, kafka, "hmac")
        assert await wait_for_event(open_bridge, "starting", 60), open_bridge.log_tail()
        assert await wait_for_event(signed_bridge, "starting", 60), signed_bridge.log_tail()
        warnings = [
            e for e in open_bridge.log_events() if e.get("event") == "receiver_unauthenticated"
        ]
        assert len(warnings) == 1, open_bridge.log_tail()
        assert warnings[0]["level"] == "warning"
        assert warnings[0]["receiver"] == "alm"
        assert "accepts batches from anyone" in warnings[0]["detail"]
        assert "receiver_unauthenticated" not in signed_bridge.event_names()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"BRIDGE_AUTH_METHOD": None, "BRIDGE_HMAC_SECRET": None},
            "receiver 'alm': no authentication is configured: set BRIDGE_HMAC_SECRET (or "
            "BRIDGE_HMAC_SECRET_FILE, or BRIDGE_BASIC_CREDENTIALS), or BRIDGE_AUTH_METHOD=none "
            "to accept unauthenticated batches deliberately",
        ),
        (
            {"BRIDGE_AUTH_METHOD": "none"},
            "BRIDGE_AUTH_METHOD: 'none' contradicts BRIDGE_HMAC_SECRET, an hmac secret: set "
            "BRIDGE_AUTH_METHOD=hmac (or leave it unset), or unset BRIDGE_HMAC_SECRET",
        ),
    ],
    ids=["no-authentication", "none-with-a-secret"],
)
async def test_a_receiver_open_by_omission_does_not_start(
    bridges: BridgeFactory, env: dict[str, str | None], problem: str
) -> None:
    with silent_kafka() as kafka:
        bridge = spawn(bridges, kafka, "open-by-omission", **env)
        code = await bridge.wait_exit(60)
    output = bridge.log_path.read_text()
    assert code == 2, f"exit code {code}\n{output}"
    # Before logging or Kafka: the header and one line naming what to set.
    assert output.splitlines() == ["alm-bridge: invalid configuration:", f"  - {problem}"]
