"""Waiting on a condition by letting the event loop run: no waiting on the clock."""

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
