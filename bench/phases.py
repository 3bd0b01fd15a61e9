"""The bridge's workloads, and the load generator that runs every phase of a run.

:class:`Driver` starts bench/loadgen.py once per call with the phases given and reads back
their statistics; it also holds the open-loop rate search. :class:`BridgePhases` are the
bridge's own workloads: the warm-up, ALM-like, the open-loop search, over capacity, the soak,
the profile and a compared endpoint.
"""

from __future__ import annotations

import secrets
import sys
import time
from typing import Final

import orjson

from bench import profile as prof
from bench.loadgen import LoadSpec, PhaseSpec, planned_seconds
from bench.servers import Servers, running, say
from bench.services import BenchError
from bench.stats import PhaseStats

DEDUPE_WINDOW: Final = 100_000
WARM_UP_ROUNDS: Final = 5


class Driver:
    """The load generator, run once per call; its invocations number the spec files."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.config = servers.config
        self.run_dir = servers.run_dir
        self.procs = servers.procs
        self.results = servers.results
        self.invocations = 0

    def load(
        self,
        name: str,
        phases: list[PhaseSpec],
        *,
        target: str,
        url: str,
        watch: dict[str, int],
        secret: str | None = None,
        urls: list[str] | None = None,
    ) -> dict[str, list[PhaseStats]]:
        """Run the generator once with ``phases`` against ``url`` (or ``urls`` in turn),
        sampling the processes of ``watch``; the statistics of each phase by its name."""
        self.invocations += 1
        spec = LoadSpec(
            url=url,
            urls=urls or [],
            target=target,
            secret=secret or self.servers.secret,
            tag_base=self.invocations << 24,
            # Each process behind ``urls`` sees only its share of the ring: a body comes
            # round again once every one of their duplicates windows has forgotten it.
            ring_events=int(DEDUPE_WINDOW * 1.5) * max(1, len(urls or [])),
            watch=watch,
            phases=phases,
        )
        specs = self.run_dir / "specs"
        specs.mkdir(exist_ok=True)
        spec_file = specs / f"{self.invocations:02d}-{name}.json"
        out_file = specs / f"{self.invocations:02d}-{name}.out.json"
        spec_file.write_bytes(spec.to_json())
        say(f"== {name} ({target})")
        code = self.procs.run(
            f"loadgen-{name}",
            [sys.executable, "-m", "bench.loadgen", str(spec_file), str(out_file)],
            log=self.run_dir / "loadgen.log",
            timeout_s=planned_seconds(spec) + 120.0,
            console=True,
        )
        if code != 0 or not out_file.is_file():
            raise BenchError(f"the load generator failed ({code}); see {self.run_dir}/loadgen.log")
        raw = orjson.loads(out_file.read_bytes())["phases"]
        return {key: [PhaseStats.from_dict(p) for p in value] for key, value in raw.items()}

    def rate_search(self, name: str, rates: list[float]) -> PhaseSpec:
        """Open-loop steps of 100-event batches: up until one fails, then down and bisected."""
        return PhaseSpec(
            name,
            "steps",
            100,
            self.config.step_s,
            rates=rates,
            refine=self.config.refine,
            retry_failed=True,
            pause_s=1.0,
        )

    def tried_rates(self) -> list[float]:
        return sorted({s.offered_rps for s in self.results.open_steps if s.offered_rps})

    def warm_until_2xx(
        self, name: str, url: str, phases: list[PhaseSpec], target: str = "bridge"
    ) -> None:
        """Warm-up rounds until one is all 2xx: on a crowded broker, creating the topics and
        learning their metadata may take longer than one round."""
        for attempt in range(1, WARM_UP_ROUNDS + 1):
            out = self.load(f"warm-up-{name}", phases, target=target, url=url, watch={})
            failed = sum(stats.failed for runs in out.values() for stats in runs)
            if not failed:
                return
            if attempt == WARM_UP_ROUNDS:
                note = f"{name}'s warm-up failed {failed} requests in each of {attempt} rounds"
                self.results.notes.append(note + f"; measured anyway (see {name}.log)")
                say(f"  {note}; measuring anyway")
                return
            say(f"  warm-up: {failed} requests not 2xx; again")
            time.sleep(2.0)


class Phases:
    """A group of phases: each runs on the driver and fills its part of the run's results."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.servers = driver.servers
        self.config = driver.config
        self.run_dir = driver.run_dir
        self.procs = driver.procs
        self.results = driver.results


class BridgePhases(Phases):
    """The bridge's own workloads."""

    def warm_up(self) -> None:
        phases = [
            PhaseSpec(f"warm-up {b}", "closed", b, 1.5 if b == 100 else 1.0, senders=4)
            for b in self.config.batches
        ]
        self.driver.warm_until_2xx("bridge", self.servers.bridge_url, phases)
        if self.servers.peer_url:  # its producer learns the topics' metadata before it is measured
            self.driver.load(
                "peer-warm-up", phases[-1:], target="peer", url=self.servers.peer_url, watch={}
            )

    def alm_like(self) -> None:
        phases = [
            PhaseSpec(f"ALM-like {n} x {b}", "closed", b, self.config.alm_s, senders=n)
            for n in self.config.senders
            for b in self.config.batches
        ]
        out = self.driver.load(
            "alm-like",
            phases,
            target="bridge",
            url=self.servers.bridge_url,
            watch=self.servers.bridge_watch(),
        )
        self.results.alm = [stats for p in phases for stats in out[p.name]]

    def open_loop(self) -> None:
        cell = self.results.alm_cell(16, 100)
        base = cell.requests_per_s if cell and cell.requests_per_s else 10.0
        rates = [round(f * base, 2) for f in self.config.factors]
        phase = self.driver.rate_search("open loop", rates)
        out = self.driver.load(
            "open-loop",
            [phase],
            target="bridge",
            url=self.servers.bridge_url,
            watch=self.servers.bridge_watch(),
        )
        self.results.open_steps = out[phase.name]

    def overload(self) -> None:
        sus = self.results.sustainable
        if sus is not None and sus.offered_rps:
            rate = 2 * sus.offered_rps
        else:
            tried = [s.offered_rps for s in self.results.open_steps if s.offered_rps]
            rate = 2 * min(tried) if tried else 20.0
            self.results.notes.append(
                "no open-loop step was sustained; over capacity used twice the lowest rate tried"
            )
        phase = PhaseSpec(
            "over capacity", "open", 100, self.config.overload_s, rate=rate, sample_every_s=1.0
        )
        out = self.driver.load(
            "over-capacity",
            [phase],
            target="bridge",
            url=self.servers.bridge_url,
            watch=self.servers.bridge_watch(),
        )
        self.results.overload = out[phase.name][0]
        time.sleep(2.0)

    def soak(self) -> None:
        sus = self.results.sustainable
        if self.config.soak_s <= 0:
            return
        if sus is None or not sus.offered_rps:
            self.results.notes.append("soak skipped: no sustainable rate was found")
            return
        phase = PhaseSpec(
            "soak",
            "open",
            100,
            self.config.soak_s,
            rate=sus.offered_rps,
            sample_every_s=3.0,
        )
        out = self.driver.load(
            "soak",
            [phase],
            target="bridge",
            url=self.servers.bridge_url,
            watch=self.servers.bridge_watch(),
        )
        self.results.soak = out[phase.name][0]

    def compare(self) -> None:
        url = self.config.compare_url
        if not url:
            return
        phases = [
            PhaseSpec(f"compare {n} x {b}", "closed", b, self.config.http_cell_s, senders=n)
            for n, b in self.config.http_cells
        ]
        out = self.driver.load(
            "compare",
            phases,
            target="compare",
            url=url,
            watch={},
            secret=self.config.compare_secret or secrets.token_hex(16),
        )
        self.results.compare = [s for p in phases for s in out[p.name]]
        self.results.compare_url = url

    def profile(self) -> None:
        if not self.config.profile:
            return
        exe = prof.py_spy()
        if exe is None:
            self.results.notes.append("profile skipped: py-spy is not installed")
            return
        seconds = self.config.profile_s
        batch = self.config.profile_batch
        raw = self.run_dir / "profile.collapsed.txt"
        pid = self.procs.pid("bridge")
        self.procs.start(
            "py-spy",
            prof.record_command(exe, pid, seconds, raw),
            log=self.run_dir / "py-spy.log",
        )
        time.sleep(0.5)
        phase = PhaseSpec(
            f"profiled ALM-like 16 x {batch}", "closed", batch, seconds - 1.0, senders=16
        )
        out = self.driver.load(
            "profile", [phase], target="bridge", url=self.servers.bridge_url, watch={}
        )
        deadline = time.monotonic() + seconds + 30
        while running(self.procs, "py-spy") and time.monotonic() < deadline:
            time.sleep(0.2)
        self.procs.stop("py-spy")
        if not raw.is_file():
            self.results.notes.append("py-spy wrote no profile; see py-spy.log")
            return
        summary = prof.summarize_profile(prof.parse_collapsed(raw.read_text()))
        loaded = out[phase.name][0]
        summary["workload"] = (
            f"ALM-like 16 senders x {batch} events, {seconds} s, "
            f"{loaded.events_per_s or 0:,.0f} events/s while sampled"
        )
        self.results.profile = summary
        (self.run_dir / "profile.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2)
        )
