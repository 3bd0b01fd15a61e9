"""A clock a test moves, for code that takes a ``clock`` and a ``sleep``: no real waiting."""

from __future__ import annotations

import asyncio

import pytest


class DrivenClock:
    """Time that passes only when code sleeps on it or the test moves it.

    Each :meth:`sleep` takes what it asked, plus the next stall queued in ``stalls`` (the
    loop held by a CPU-bound burst), and lets the event loop turn once.
    """

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.stalls: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + (self.stalls.pop(0) if self.stalls else 0.0)
        await asyncio.sleep(0)


def drive_the_loop_clock(monkeypatch: pytest.MonkeyPatch) -> DrivenClock:
    """Make the running event loop's own clock a :class:`DrivenClock`, for code that takes
    no clock: its ``loop.time()`` and its timers (``call_at``, ``call_later``) then follow
    the test's :meth:`DrivenClock.advance`. Only for tests whose loop runs nothing else
    that needs real time (no sockets, no real timeouts)."""
    loop = asyncio.get_running_loop()
    clock = DrivenClock(loop.time())
    monkeypatch.setattr(loop, "time", clock)
    return clock
