"""The ceilings at the bridge's rates: the HTTP ceiling server, the raw aiokafka producer
(bench/ceilings.py) and Java ProducerPerformance, on the same broker."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Final

import orjson

from bench.ceilings import ProducerSpec, java_command, run_java
from bench.loadgen import PhaseSpec
from bench.phases import Phases
from bench.servers import create_topic, say
from bench.services import LOG4J_CONFIG, BenchError, classpath, ensure_jars
from bench.stats import PhaseStats

JAVA_TOPIC: Final = "bench.java-ceiling"


class CeilingPhases(Phases):
    """What the bridge's building blocks do alone, each filling its part of the results."""

    def http_ceiling(self) -> None:
        tried = self.driver.tried_rates() or [10.0]
        top = max(tried)
        rates = sorted({*tried, round(2 * top, 2), round(4 * top, 2)})
        phases = [
            PhaseSpec(f"HTTP ceiling {n} x {b}", "closed", b, self.config.http_cell_s, senders=n)
            for n, b in self.config.http_cells
        ]
        steps = PhaseSpec(
            "HTTP ceiling open loop",
            "steps",
            100,
            self.config.http_step_s,
            rates=rates,
            adaptive=False,
            pause_s=0.3,
        )
        out = self.driver.load(
            "http-ceiling",
            [*phases, steps],
            target="http-ceiling",
            url=self.servers.ceiling_url,
            watch={"http-ceiling": self.procs.pid("http-ceiling"), **self.servers.kafka_watch()},
        )
        self.results.http_cells = [s for p in phases for s in out[p.name]]
        self.results.http_steps = out[steps.name]

    def producer_latency(self) -> None:
        """The raw producer's 10-record latency, measured just before the bridge's."""
        spec = ProducerSpec(
            latency_s=self.config.producer_latency_s,
            watch=self.servers.kafka_watch(),
            parts=["latency"],
        )
        say("== raw aiokafka producer latency (next to the bridge's ALM-like phases)")
        data = self._run_producer(spec, "producer-latency")
        self.results.producer_latency = PhaseStats.from_dict(data.pop("latency"))

    def producer_ceiling(self) -> None:
        tried = self.driver.tried_rates() or [10.0]
        spec = ProducerSpec(
            throughput_s=self.config.producer_throughput_s,
            rates=sorted({*tried, round(2 * max(tried), 2)}),
            fractions=self.config.producer_fractions,
            step_s=self.config.producer_step_s,
            watch=self.servers.kafka_watch(),
            parts=["throughput", "steps"],
        )
        say("== raw aiokafka producer ceiling")
        data = self._run_producer(spec, "producer-ceiling")
        data.pop("latency")
        self.results.producer_throughput = PhaseStats.from_dict(data.pop("throughput"))
        self.results.producer_steps = [PhaseStats.from_dict(s) for s in data.pop("steps")]
        self.results.producer_info = data

    def _run_producer(self, spec: ProducerSpec, name: str) -> dict[str, Any]:
        specs = self.run_dir / "specs"
        specs.mkdir(exist_ok=True)
        spec_file, out_file = specs / f"{name}.json", specs / f"{name}.out.json"
        spec_file.write_bytes(spec.to_json())
        env = {**self.servers.bridge_env, "BRIDGE_PORT": "0"}
        steps = len(spec.rates) + len(spec.fractions)
        budget = spec.throughput_s + spec.latency_s + steps * (spec.step_s + 5) + 120
        code = self.procs.run(
            name,
            [sys.executable, "-m", "bench.ceilings", str(spec_file), str(out_file)],
            env=env,
            log=self.run_dir / f"{name}.log",
            timeout_s=budget,
            console=True,
        )
        if code != 0 or not out_file.is_file():
            raise BenchError(f"the raw producer failed ({code}); see {name}.log")
        data: dict[str, Any] = orjson.loads(out_file.read_bytes())
        return data

    def java_ceiling(self) -> None:
        if not self.config.java:
            return
        say("== Java ProducerPerformance (broker ceiling)")
        info = self.results.producer_info
        size = round(float(info.get("record_bytes_mean") or 700))
        settings = info.get("settings", {})
        try:
            jars = ensure_jars()
            cp = classpath(jars)
            java = shutil.which("java") or "java"
            if os.environ.get("JAVA_HOME"):
                candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
                java = str(candidate) if candidate.is_file() else java
            asyncio.run(create_topic(self.servers.bootstrap, JAVA_TOPIC, 3))
        except Exception as exc:  # a missing JDK or jars skips one ceiling, not the run
            self.results.java = {"error": f"{type(exc).__name__}: {exc}"}
            self.results.notes.append(f"Java ceiling skipped: {exc}")
            return
        prod = self.results.producer_throughput
        python_rate = prod.events_per_s if prod and prod.events_per_s else 20_000.0
        records = max(50_000, int(python_rate * self.config.java_s))
        props = {
            "acks": "all",
            "enable.idempotence": "true",
            "linger.ms": str(settings.get("linger_ms", 0)),
            "compression.type": str(settings.get("compression_type") or "none"),
        }
        logs = self.run_dir / "java-logs"
        logs.mkdir(exist_ok=True)
        command = java_command(
            java=java,
            classpath=cp,
            log4j_config=LOG4J_CONFIG,
            logs_dir=logs,
            topic=JAVA_TOPIC,
            records=records,
            record_size=size,
            bootstrap=self.servers.bootstrap,
            props=props,
        )
        result = run_java(command, output=self.run_dir / "java-ceiling.log", timeout_s=180.0)
        result["record_size"] = size
        result["props"] = props
        self.results.java = result
        summary = result.get("summary")
        if summary:
            say(
                f"  {summary['records']:,} records of {size} B: "
                f"{summary['records_per_s']:,.0f} records/s"
            )
        else:
            say(f"  no summary (exit {result['exit_code']}); see java-ceiling.log")
