"""Where the bridge's CPU goes: py-spy's collapsed stacks, summarised.

py-spy samples the running bridge from outside (``--nonblocking``: the bridge is never
paused), only while its thread is busy, so shares are shares of the bridge's CPU time.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

_LINE: Final = re.compile(r":\d+\)$")
# Frames on (nearly) every stack: the entry point and the event loop, not where time goes.
TRUNK_SHARE: Final = 0.9


def py_spy() -> str | None:
    """The py-spy executable, next to this interpreter or on PATH."""
    import sys

    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return str(beside)
    return shutil.which("py-spy")


def record_command(exe: str, pid: int, seconds: int, output: Path, rate: int = 250) -> list[str]:
    return [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--function",
        "--nonblocking",
        "--output",
        str(output),
    ]


@dataclass(frozen=True, slots=True)
class Stack:
    frames: tuple[str, ...]
    count: int


def parse_collapsed(text: str) -> list[Stack]:
    """``frame;frame;...;leaf count`` lines; line numbers are dropped from frames."""
    stacks: list[Stack] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = tuple(_LINE.sub(")", f) for f in body.split(";"))
        stacks.append(Stack(frames, int(count)))
    return stacks


def area(frame: str) -> str:
    """A frame's package: the bridge's module (``bridge.core.alm``), else the top-level
    package or module.

    py-spy names frames ``function (path)`` with the path relative to its ``sys.path``
    entry (``aiokafka/cluster.py``, ``asyncio/streams.py``) or a pseudo-file (``<string>``).
    """
    _, _, rest = frame.rpartition(" (")
    path = rest.removesuffix(")")
    if path.startswith("<"):
        return path
    parts = path.split("/")
    if parts[0] == "bridge" and len(parts) > 1:
        return ".".join(parts).removesuffix(".py")
    return parts[0].removesuffix(".py") if parts[0] else "other"


def _shares(counter: Counter[str], total: int, top: int) -> list[dict[str, Any]]:
    return [
        {"frame": name, "samples": n, "pct": round(100.0 * n / total, 2)}
        for name, n in counter.most_common(top)
    ]


def summarize_profile(stacks: Iterable[Stack], top: int = 25) -> dict[str, Any]:
    """Self time per function, inclusive time per function (the trunk left out) and package."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    leaf_areas: Counter[str] = Counter()
    total = 0
    for stack in stacks:
        if not stack.frames:
            continue
        total += stack.count
        self_time[stack.frames[-1]] += stack.count
        leaf_areas[area(stack.frames[-1])] += stack.count
        for frame in set(stack.frames):
            inclusive[frame] += stack.count
        for name in {area(f) for f in stack.frames}:
            areas[name] += stack.count
    if total == 0:
        return {"samples": 0, "top_self": [], "top_inclusive": [], "areas": [], "leaf_areas": []}
    branches = Counter({k: v for k, v in inclusive.items() if v < TRUNK_SHARE * total})
    return {
        "samples": total,
        "top_self": _shares(self_time, total, top),
        "top_inclusive": _shares(branches, total, top),
        "areas": _shares(areas, total, top),
        "leaf_areas": _shares(leaf_areas, total, top),
    }
