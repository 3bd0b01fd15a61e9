"""How the benchmark writes its figures: in the targets' details, in Markdown and in JSON."""

from __future__ import annotations

from bench.stats import PhaseStats


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f} ms"
    return f"{value:,.1f} ms"


def cpu_ms(seconds_per_1k: float | None) -> str:
    return "-" if seconds_per_1k is None else f"{1000.0 * seconds_per_1k:.1f}"


def statuses(stats: PhaseStats) -> str:
    parts = [f"{k}: {v}" for k, v in stats.statuses.items()]
    parts += [f"{k}: {v}" for k, v in stats.errors.items()]
    return ", ".join(parts) or "none"


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
