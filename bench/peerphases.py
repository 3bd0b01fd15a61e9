"""The bridge next to its peers: the hand-written peer (bench/peer.py) at the bridge's workloads
and by turns with it, two one-core bridge processes, and the Benthos peer."""

from __future__ import annotations

import subprocess

from bench import benthospeer
from bench.loadgen import PhaseSpec
from bench.phases import Phases
from bench.servers import RECEIVER, say
from bench.services import free_ports
from bench.stats import step_passes


class PeerPhases(Phases):
    """Each peer measured like the bridge, on the same broker, in the same run."""

    def peer_alm_like(self) -> None:
        """The peer's closed-loop cells, right after the bridge's (tails drift over a run)."""
        if not self.servers.peer_url:
            return
        phases = [
            PhaseSpec(f"peer ALM-like {n} x {b}", "closed", b, self.config.alm_s, senders=n)
            for n, b in ((1, 10), (16, 100))
        ]
        out = self.driver.load(
            "peer-alm-like",
            phases,
            target="peer",
            url=self.servers.peer_url,
            watch=self.servers.peer_watch(),
        )
        self.results.peer_alm = [stats for p in phases for stats in out[p.name]]

    def single_sender_turns(self) -> None:
        """One sender of 10-event batches, asking the bridge and the peer by turns.

        A single sender's p99 is set by rare stalls of the shared host and broker. Phases
        taken minutes apart compared the drift as much as the two servers, and so did
        turns of a few seconds each: another process busy for a second fell into one
        server's turn only. So the sender asks the two servers in turn, request by
        request, on a connection to each, and every stall falls on both alike. Each round
        gets its own p99 per server (who goes first alternates); the target compares the
        medians of the rounds.
        """
        if not self.servers.peer_url:
            return
        seconds = self.config.alm_s / 3 if not self.config.quick else self.config.alm_s
        for index in range(self.config.single_turns):
            order = [("bridge", self.servers.bridge_url), ("peer", self.servers.peer_url)]
            if index % 2:
                order.reverse()
            phase = PhaseSpec(
                f"1 x 10, round {index + 1}",
                "closed",
                10,
                2 * seconds,
                alternate=[who for who, _ in order],
            )
            out = self.driver.load(
                f"round{index + 1}",
                [phase],
                target="bridge and peer",
                url=order[0][1],
                urls=[url for _, url in order],
                watch={**self.servers.bridge_watch(), **self.servers.peer_watch()},
            )
            taken = {stats.target: stats for stats in out[phase.name]}
            self.results.single_turns.append((taken["bridge"], taken["peer"]))

    def peer_open_loop(self) -> None:
        """The peer at the bridge's open-loop rates, then higher until it fails, then bisected."""
        if not self.servers.peer_url:
            return
        phase = self.driver.rate_search("peer open loop", self.driver.tried_rates() or [10.0])
        out = self.driver.load(
            "peer-open-loop",
            [phase],
            target="peer",
            url=self.servers.peer_url,
            watch=self.servers.peer_watch(),
        )
        self.results.peer_steps = out[phase.name]

    def bridge_at_peer_rates(self) -> None:
        """The bridge at the rates the peer held and the bridge never tried, so that the two
        share held rates to compare even when their searches took different paths."""
        tried = {round(rate, 2) for rate in self.driver.tried_rates()}
        extra = sorted(
            {
                rate
                for s in self.results.peer_steps
                if step_passes(s) and (rate := round(s.offered_rps or 0.0, 2)) not in tried
            }
        )
        if not extra:
            return
        phase = PhaseSpec(
            "open loop",
            "steps",
            100,
            self.config.step_s,
            rates=extra,
            adaptive=False,
            stop_on_fail=False,
            retry_failed=True,
            pause_s=1.0,
        )
        out = self.driver.load(
            "open-loop-peer-rates",
            [phase],
            target="bridge",
            url=self.servers.bridge_url,
            watch=self.servers.bridge_watch(),
        )
        self.results.open_steps += out[phase.name]

    def all_cores_open_loop(self) -> None:
        """Two bridge processes behind one address, as two one-core pods behind a Service.

        The bridge is one process per core (docs/operations.md, "All cores"); this is the
        rate a pod-per-core deployment holds on this host, found like the one-process rate:
        open-loop steps, requests handed to the two processes in turn.
        """
        if not self.config.all_cores:
            return
        sus = self.results.sustainable
        base = (
            sus.offered_rps if sus and sus.offered_rps else max(self.driver.tried_rates() or [10.0])
        )
        second = self.servers.start_bridge("bridge-2")
        try:
            # Its producer learns the topics' metadata and connects before it is measured,
            # then both take requests in turn at a low rate, as in the steps.
            warm = [PhaseSpec("warm-up bridge-2", "closed", 100, 2.0, senders=4)]
            self.driver.warm_until_2xx("bridge-2", second, warm)
            both = [PhaseSpec("warm-up both", "open", 100, 2.0, rate=round(base / 2, 2))]
            urls = [self.servers.bridge_url, second]
            self.driver.load(
                "all-cores-warm-up", both, target="bridge", url=second, watch={}, urls=urls
            )
            phase = self.driver.rate_search(
                "all cores open loop", [round(f * base, 2) for f in (1.0, 1.4, 1.7, 2.0)]
            )
            watch = {**self.servers.bridge_watch(), "bridge-2": self.procs.pid("bridge-2")}
            out = self.driver.load(
                "all-cores-open-loop",
                [phase],
                target="bridge",
                url=self.servers.bridge_url,
                watch=watch,
                urls=[self.servers.bridge_url, second],
            )
            self.results.all_cores_steps = out[phase.name]
        finally:
            self.procs.stop("bridge-2")

    def benthos_open_loop(self) -> None:
        """The Benthos peer on the same broker, started for this phase only: its highest rate
        held, searched like the bridge's from the rates two bridge processes were tried at."""
        if not self.config.benthos:
            return
        say("Benthos peer: go build (cached once built)")
        try:
            binary = benthospeer.build()
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            self.results.notes.append(f"Benthos peer not measured: {exc}")
            say(f"  not measured: {exc}")
            return
        port, http_port = free_ports(2)
        how = benthospeer.launch(
            binary,
            port=port,
            http_port=http_port,
            bootstrap=self.servers.bootstrap,
            secret=self.servers.secret,
            path=f"/webhooks/{RECEIVER}",
        )
        self.procs.start("benthos", how.command, env=how.env, log=self.run_dir / "benthos.log")
        try:
            self.procs.wait_http("benthos", how.ready_url, 60.0)
            say(f"Benthos peer: pid {self.procs.pid('benthos')}, {how.url}")
            warm = [PhaseSpec("warm-up benthos", "closed", 100, 2.0, senders=4)]
            self.driver.warm_until_2xx("benthos", how.url, warm, target="benthos")
            tried = sorted({s.offered_rps for s in self.results.all_cores_steps if s.offered_rps})
            phase = self.driver.rate_search(
                "Benthos open loop", tried or self.driver.tried_rates() or [10.0]
            )
            watch = {"benthos": self.procs.pid("benthos"), **self.servers.kafka_watch()}
            out = self.driver.load(
                "benthos-open-loop", [phase], target="benthos", url=how.url, watch=watch
            )
            self.results.benthos_steps = out[phase.name]
        finally:
            self.procs.stop("benthos")
