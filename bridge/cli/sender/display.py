"""What ``send`` shows a person: rich tables and a progress bar. Only the command uses it."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bridge.cli.sender.results import ChallengeReport, SendSummary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


_TIMES = "\N{MULTIPLICATION SIGN}"


def _with_reasons(count: int, reasons: dict[str, int]) -> str:
    """``3``, or with the bridge's reason codes: ``auth_mismatch x 3`` (a multiplication sign)."""
    if not reasons:
        return str(count)
    parts = [f"{reason} {_TIMES} {n}" for reason, n in reasons.items()]
    unexplained = count - sum(reasons.values())
    if unexplained:
        parts.append(f"no reason {_TIMES} {unexplained}")
    return ", ".join(parts)


def summary_table(summary: SendSummary) -> Table:
    """The summary as a two-column rich table."""
    table = Table(title=f"alm-bridge send → {summary.url}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rps = summary.requests / summary.elapsed_seconds if summary.elapsed_seconds > 0 else 0.0
    rows: list[tuple[str, str]] = [
        ("seed", str(summary.seed)),
        ("elapsed", f"{summary.elapsed_seconds:.2f} s ({rps:.1f} req/s)"),
        ("batches", str(summary.batches)),
        ("requests sent", str(summary.requests)),
        ("events sent", str(summary.events_sent)),
    ]
    for status_class in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        if summary.status_classes.get(status_class):
            rows.append((status_class, str(summary.status_classes[status_class])))
    rows.extend(
        (f"  status {code}", _with_reasons(n, summary.reasons.get(code, {})))
        for code, n in sorted(summary.statuses.items())
    )
    rows.extend(
        [
            (
                "timeouts",
                _with_reasons(summary.timeouts, summary.error_reasons.get("timeout", {})),
            ),
            (
                "connection errors",
                _with_reasons(
                    summary.connection_errors, summary.error_reasons.get("connection_error", {})
                ),
            ),
        ]
    )
    if summary.client_errors:
        rows.append(
            (
                "other client errors",
                _with_reasons(summary.client_errors, summary.error_reasons.get("client_error", {})),
            )
        )
    rows.extend(
        [
            ("batches acknowledged", f"{summary.batches_acknowledged}/{summary.batches}"),
            ("events acknowledged", str(summary.events_acknowledged)),
            ("published (reported)", str(summary.reported.get("published", 0))),
            ("duplicates (reported)", str(summary.duplicates_reported)),
            (
                "dead-lettered (reported)",
                _with_reasons(summary.reported.get("deadLettered", 0), summary.dead_letter_reasons),
            ),
        ]
    )
    if summary.unsent:
        rows.append(("not sent (--max-run-seconds reached)", str(summary.unsent)))
    if summary.resent_batches:
        rows.append(
            (
                "resent batches",
                f"{summary.resent_acknowledged}/{summary.resent_batches} acknowledged, "
                f"{summary.resend_duplicates_reported} duplicates reported",
            )
        )
    latency = summary.latency
    rows.append(
        (
            "latency ms p50/p90/p99/max",
            f"{_ms(latency.p50)} / {_ms(latency.p90)} / {_ms(latency.p99)} / {_ms(latency.max)}",
        )
    )
    if summary.interrupted:
        rows.append(("interrupted", "yes"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def challenge_table(report: ChallengeReport) -> Table:
    """Both challenge answers, the failed ones in red."""
    table = Table(title=f"challenge {report.value!r}", title_justify="left")
    for column in ("request", "status", "echoed", "latency ms", "answer"):
        table.add_column(column)
    for answer in (report.get, report.post):
        status = str(answer.status) if answer.status is not None else (answer.error or "-")
        text = answer.body if len(answer.body) <= 200 else answer.body[:200] + "…"
        table.add_row(
            answer.method,
            status,
            "yes" if answer.echoed else "no",
            f"{answer.latency_ms:.1f}",
            text,
            style=None if answer.echoed else "red",
        )
    return table


def progress_bar(console: Console, enabled: bool) -> Progress:
    """A progress bar of settled batches; a no-op when ``enabled`` is false."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )
