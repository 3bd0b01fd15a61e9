"""Waiting on a condition, never for a fixed time.

:func:`until` lets the event loop run, one turn at a time: for what the loop alone brings
about. :func:`within` also gives real time, for what takes it (a timer of the code under
test, another process): it returns as soon as the condition holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], *, turns: int = 10_000) -> None:
    """Let the loop run, one turn at a time, until ``condition`` holds (at most ``turns``)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def within(seconds: float, condition: Callable[[], bool], *, every: float = 0.01) -> None:
    """Check ``condition`` every ``every`` seconds until it holds; fail after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"the condition did not hold within {seconds} s")
        await asyncio.sleep(every)
