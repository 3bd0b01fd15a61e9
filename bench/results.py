"""What one run measured: the phases' statistics, and the figures read off them.

:class:`Results` is filled by the run (bench/run.py) and read by the targets (bench/targets.py)
and the report (bench/report.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench.stats import PhaseStats, step_passes, sustainable

BRIDGE: Final = "bridge"
PEER: Final = "peer"
BENTHOS: Final = "benthos"


@dataclass(slots=True)
class Results:
    """Everything one run measured; the source of results.json, results.md and chart.png."""

    meta: dict[str, Any] = field(default_factory=dict)
    alm: list[PhaseStats] = field(default_factory=list)
    open_steps: list[PhaseStats] = field(default_factory=list)
    overload: PhaseStats | None = None
    soak: PhaseStats | None = None
    http_cells: list[PhaseStats] = field(default_factory=list)
    http_steps: list[PhaseStats] = field(default_factory=list)
    producer_throughput: PhaseStats | None = None
    producer_latency: PhaseStats | None = None
    producer_steps: list[PhaseStats] = field(default_factory=list)
    producer_info: dict[str, Any] = field(default_factory=dict)
    java: dict[str, Any] | None = None
    compare: list[PhaseStats] = field(default_factory=list)
    compare_url: str | None = None
    peer_alm: list[PhaseStats] = field(default_factory=list)
    peer_steps: list[PhaseStats] = field(default_factory=list)
    # One sender of 10-event batches asking the bridge and the peer by turns: (bridge, peer)
    # per round.
    single_turns: list[tuple[PhaseStats, PhaseStats]] = field(default_factory=list)
    # Open-loop steps on two bridge processes taking requests in turn (two one-core pods).
    all_cores_steps: list[PhaseStats] = field(default_factory=list)
    # Open-loop steps on the Benthos peer (bench/benthospeer.py), on the same broker.
    benthos_steps: list[PhaseStats] = field(default_factory=list)
    bridge_peak_rss_mb: float | None = None
    profile: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sustainable(self) -> PhaseStats | None:
        return sustainable(self.open_steps)

    @property
    def all_cores_sustainable(self) -> PhaseStats | None:
        return sustainable(self.all_cores_steps)

    @property
    def benthos_sustainable(self) -> PhaseStats | None:
        return sustainable(self.benthos_steps)

    def alm_cell(self, senders: int, batch: int) -> PhaseStats | None:
        return _cell(self.alm, senders, batch)

    def http_cell(self, senders: int, batch: int) -> PhaseStats | None:
        return _cell(self.http_cells, senders, batch)

    def peer_cell(self, senders: int, batch: int) -> PhaseStats | None:
        return _cell(self.peer_alm, senders, batch)

    def single_p99s(self) -> tuple[float | None, float | None]:
        """Median over the turns of the bridge's and the peer's 1 x 10 p99 (ms).

        Without turns (an older run, or no peer), the ALM-like cells measured apart.
        """
        if self.single_turns:
            bridge = [b.latency.p99 for b, _ in self.single_turns if b.latency.p99 is not None]
            peer = [p.latency.p99 for _, p in self.single_turns if p.latency.p99 is not None]
            return (
                statistics.median(bridge) if bridge else None,
                statistics.median(peer) if peer else None,
            )
        one, peer_one = self.alm_cell(1, 10), self.peer_cell(1, 10)
        return (one.latency.p99 if one else None, peer_one.latency.p99 if peer_one else None)

    @property
    def peer_sustainable(self) -> PhaseStats | None:
        return sustainable(self.peer_steps)


@dataclass(frozen=True, slots=True)
class Paired:
    """The open-loop rates that both the bridge and the peer held, step by step."""

    rates: list[float]
    bridge: list[PhaseStats]
    peer: list[PhaseStats]

    @property
    def bridge_p99(self) -> float | None:
        return _median([s.latency.p99 for s in self.bridge])

    @property
    def peer_p99(self) -> float | None:
        return _median([s.latency.p99 for s in self.peer])

    def cpu_per_1k(self, who: str) -> float | None:
        steps = self.bridge if who == BRIDGE else self.peer
        cpu = [s.procs[who].cpu_s for s in steps if who in s.procs]
        events = sum(s.events for s in steps)
        if not steps or len(cpu) != len(steps) or events <= 0:
            return None
        return sum(c or 0.0 for c in cpu) * 1000.0 / events


def paired_steps(results: Results) -> Paired:
    """Rates held (every request 2xx and clean, p99 within the limit) by both."""
    peer = {round(s.offered_rps or 0.0, 2): s for s in results.peer_steps if step_passes(s)}
    pairs = sorted(
        (round(s.offered_rps or 0.0, 2), s)
        for s in results.open_steps
        if step_passes(s) and round(s.offered_rps or 0.0, 2) in peer
    )
    return Paired(
        rates=[rate for rate, _ in pairs],
        bridge=[s for _, s in pairs],
        peer=[peer[rate] for rate, _ in pairs],
    )


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _cell(phases: Sequence[PhaseStats], senders: int, batch: int) -> PhaseStats | None:
    return next((p for p in phases if p.senders == senders and p.batch == batch), None)


def background_pct(results: Results) -> float | None:
    """Mean CPU of processes outside the benchmark during the bridge's phases."""
    phases = [p for p in [*results.alm, *results.open_steps] if p.background_cpu_pct is not None]
    if not phases:
        return None
    return sum(p.background_cpu_pct or 0.0 for p in phases) / len(phases)
