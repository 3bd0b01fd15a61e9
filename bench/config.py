"""The benchmark's command line and the configuration of a run (quick or full)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.handover import DESIGNS
from bench.services import REPO_ROOT

RESULTS_ROOT: Final = REPO_ROOT / "bench" / "results"
# The crowded cluster: other teams' topics on a shared production cluster.
CROWD_TOPICS: Final = 2000
CROWD_PARTITIONS: Final = 3


@dataclass(slots=True)
class Config:
    quick: bool
    soak_s: float
    alm_s: float
    step_s: float
    overload_s: float
    http_cell_s: float
    http_step_s: float
    producer_throughput_s: float
    producer_latency_s: float
    producer_step_s: float
    java_s: float
    factors: list[float]
    producer_fractions: list[float]
    refine: int
    http_cells: list[tuple[int, int]]
    senders: tuple[int, ...] = (1, 4, 16)
    batches: tuple[int, ...] = (1, 10, 100)
    compare_url: str | None = None
    compare_secret: str | None = None
    bootstrap: str | None = None
    keep_kafka: bool = False
    profile: bool = False
    profile_s: int = 10
    profile_batch: int = 10
    java: bool = True
    peer: bool = True
    crowded_topics: int = 0
    results_root: Path = RESULTS_ROOT
    bridge_env: dict[str, str] = field(default_factory=dict)
    handover: str = "adapter"
    single_turns: int = 6
    all_cores: bool = True
    benthos: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The configuration as recorded in results.json (without the compared secret)."""
        out: dict[str, Any] = {}
        for name in Config.__slots__:
            if name == "compare_secret":
                continue
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Path) else value
        return out


def side_config(kafka_bootstrap: str | None, results_dir: str) -> Config:
    """The quick configuration of a side measurement (``bench.cores``, ``bench.topicadmin``):
    no soak, no comparison, no profile, no Java ceiling, no peer."""
    return make_config(
        argparse.Namespace(
            quick=True,
            soak_seconds=0,
            compare_url=None,
            compare_secret=None,
            kafka_bootstrap=kafka_bootstrap,
            keep_kafka=False,
            profile=False,
            profile_batch=10,
            no_java=True,
            no_peer=True,
            results_dir=results_dir,
            bridge_env=[],
            handover="adapter",
        )
    )


def make_config(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    all_cells = [(n, b) for n in (1, 4, 16) for b in (1, 10, 100)]
    if quick:
        config = Config(
            quick=True,
            soak_s=0.0,
            alm_s=1.5,
            step_s=2.0,
            overload_s=6.0,
            http_cell_s=1.5,
            http_step_s=1.0,
            producer_throughput_s=3.0,
            producer_latency_s=2.5,
            producer_step_s=1.5,
            java_s=3.0,
            factors=[0.5, 0.7, 0.85, 1.0, 1.15, 1.3],
            producer_fractions=[0.5, 0.8],
            refine=1,
            http_cells=[(1, 10), (16, 1), (16, 10), (16, 100)],
            profile_s=6,
            single_turns=3,
        )
    else:
        config = Config(
            quick=False,
            soak_s=300.0,
            alm_s=12.0,
            step_s=8.0,
            overload_s=30.0,
            http_cell_s=4.0,
            http_step_s=4.0,
            producer_throughput_s=10.0,
            producer_latency_s=8.0,
            producer_step_s=5.0,
            java_s=15.0,
            factors=[0.3, 0.5, 0.65, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35],
            producer_fractions=[0.25, 0.5, 0.75, 0.9],
            refine=2,
            http_cells=all_cells,
            profile_s=15,
        )
    if args.soak_seconds is not None:
        config.soak_s = float(args.soak_seconds)
    config.compare_url = args.compare_url
    config.compare_secret = args.compare_secret
    config.bootstrap = args.kafka_bootstrap
    config.keep_kafka = bool(args.keep_kafka)
    config.profile = bool(args.profile)
    config.profile_batch = int(args.profile_batch)
    config.java = not args.no_java
    config.peer = not args.no_peer
    config.results_root = Path(args.results_dir)
    for item in args.bridge_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("BRIDGE_"):
            raise SystemExit(f"--bridge-env wants BRIDGE_NAME=value, got {item!r}")
        config.bridge_env[key] = value
    config.handover = args.handover
    config.all_cores = not getattr(args, "no_all_cores", False)
    config.benthos = not getattr(args, "no_benthos", False)
    return config


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the bridge against its ceilings (Python client, broker, HTTP).",
    )
    parser.add_argument("--quick", action="store_true", help="short phases; under 2 minutes")
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="soak at the sustainable rate, sampling RSS (default 300, 0 with --quick)",
    )
    parser.add_argument("--compare-url", help="also drive this endpoint with the ALM-like load")
    parser.add_argument("--compare-secret", help="HMAC secret of --compare-url")
    parser.add_argument("--kafka-bootstrap", help="use this broker instead of starting a local one")
    parser.add_argument(
        "--keep-kafka", action="store_true", help="leave the local broker running afterwards"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the bridge with py-spy (extra phase)"
    )
    parser.add_argument(
        "--profile-batch", type=int, default=10, help="events per batch while profiling"
    )
    parser.add_argument("--no-java", action="store_true", help="skip ProducerPerformance")
    parser.add_argument(
        "--no-peer", action="store_true", help="skip the hand-written peer (bench/peer.py)"
    )
    parser.add_argument(
        "--no-all-cores",
        action="store_true",
        help="skip the open loop on two bridge processes (two one-core pods)",
    )
    parser.add_argument(
        "--no-benthos",
        action="store_true",
        help="skip the Benthos peer (bench/benthospeer.py; built with go on first use)",
    )
    broker = parser.add_mutually_exclusive_group()
    broker.add_argument(
        "--crowded",
        action="store_true",
        help="create --crowded-topics unrelated topics on the broker before the bridge starts",
    )
    broker.add_argument(
        "--both",
        action="store_true",
        help="a run on a fresh broker, then one on a crowded broker; both reported",
    )
    parser.add_argument(
        "--crowded-topics",
        type=int,
        default=CROWD_TOPICS,
        metavar="N",
        help=f"unrelated topics of {CROWD_PARTITIONS} partitions (default {CROWD_TOPICS:,})",
    )
    parser.add_argument(
        "--handover",
        choices=("adapter", *DESIGNS),
        default="adapter",
        help="how the bridge hands records to aiokafka: its adapter (default), or one of the "
        "public-API designs of bench/handover.py",
    )
    parser.add_argument("--results-dir", default=str(RESULTS_ROOT))
    parser.add_argument(
        "--bridge-env",
        action="append",
        metavar="BRIDGE_NAME=value",
        help="extra setting for the bridge and the raw producer (repeatable)",
    )
    return parser
