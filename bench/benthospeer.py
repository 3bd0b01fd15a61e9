"""The Benthos peer: issue 15's Benthos pipeline, built here and measured in the same run.

    python -m bench.benthospeer build      # prints the binary's path

The Benthos engine (github.com/redpanda-data/benthos/v4, MIT) with its own ``http_server``
input, ``mapping`` and ``unarchive`` processors and ``sync_response`` output, and a franz-go
output shaped like Benthos's ``kafka_franz`` (acks=all, idempotent, one produce per batch),
in ``bench/benthos-peer``. It is built with ``go build`` from the Go module proxy into the
tools cache, once per change of its sources, so that the benchmark compares the bridge with
what Benthos holds on this host and broker, not with a figure from another run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SOURCE: Final = Path(__file__).resolve().parent / "benthos-peer"
CONFIG: Final = SOURCE / "peer.yaml"
_SOURCES: Final = ("go.mod", "go.sum", "main.go")


def tools_bin() -> Path:
    """The cache scripts/ensure-tools.sh builds into (``$ALM_BRIDGE_TOOLS/bin``)."""
    root = os.environ.get("ALM_BRIDGE_TOOLS") or str(Path.home() / ".cache/alm-bridge/tools")
    return Path(root) / "bin"


def source_digest() -> str:
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + (SOURCE / name).read_bytes())
    return digest.hexdigest()[:16]


def build(timeout_s: float = 900.0) -> Path:
    """The peer's binary, built with ``go build`` unless one of these sources is cached."""
    binary = tools_bin() / f"bench-benthos-peer-{source_digest()}"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    done = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"go build of {SOURCE} failed ({done.returncode}):\n{done.stderr}")
    partial.replace(binary)
    for old in binary.parent.glob("bench-benthos-peer-*"):
        if old != binary:
            old.unlink(missing_ok=True)
    return binary


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start the peer: its command, its environment, and where it answers."""

    command: list[str]
    env: dict[str, str]
    url: str
    ready_url: str


def launch(
    binary: Path, *, port: int, http_port: int, bootstrap: str, secret: str, path: str
) -> Launch:
    env = {
        **os.environ,
        "PEER_PORT": str(port),
        "PEER_HTTP_PORT": str(http_port),
        "PEER_PATH": path,
        "PEER_BOOTSTRAP": bootstrap,
        "PEER_SECRET": secret,
    }
    return Launch(
        command=[str(binary), "-c", str(CONFIG)],
        env=env,
        url=f"http://127.0.0.1:{port}{path}",
        # Benthos's own endpoint: 200 once its input and output are connected.
        ready_url=f"http://127.0.0.1:{http_port}/ready",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benthospeer", description=__doc__)
    parser.add_argument("action", choices=["build"])
    parser.parse_args(argv)
    print(build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
