"""Ports on 127.0.0.1 for the local servers: the Kafka brokers, the Kubernetes control plane,
the benchmark's and the tests' processes (standard library only: deploy/k8s/localk8s.py
imports it before the virtualenv exists)."""

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


def port_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be listened on now.

    With SO_REUSEADDR, as Java and Go servers bind: sockets in TIME_WAIT after a restart
    are no obstacle.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True
