"""Free ports on 127.0.0.1, for the local Kafka, the benchmark and the tests (standard
library only). deploy/k8s/localk8s.py keeps a copy of its own: it runs as a plain script,
before the virtualenv exists, where this package cannot be imported."""

from __future__ import annotations

import contextlib
import socket
from typing import Final

HOST: Final = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
