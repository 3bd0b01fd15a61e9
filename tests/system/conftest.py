"""Fixtures of the fault suite, and the table of every scenario at the end of the run.

With ``ALM_BRIDGE_ATTACK_FIGURES=docs/security-figures.md`` the adversarial table is also
written into the marked block of that file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.system.attacks import ATTACK_REPORT, format_attack_table, write_figures
from tests.system.harness import (
    FLEET_REPORT,
    REPORT,
    BridgeFactory,
    format_fleet_table,
    format_table,
)


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[BridgeFactory]:
    """Starts bridge processes for one test; each is stopped by its pid afterwards."""
    factory = BridgeFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ATTACK_REPORT:
        terminalreporter.section("bridge under attack")
        for line in format_attack_table(ATTACK_REPORT):
            terminalreporter.write_line(line)
        figures = os.environ.get("ALM_BRIDGE_ATTACK_FIGURES")
        if figures:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            note = (
                f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
                f"load average at the end {load}."
            )
            write_figures(Path(figures), ATTACK_REPORT, note=note)
            terminalreporter.write_line(f"figures written to {figures}")
    if FLEET_REPORT:
        terminalreporter.section("bridge and a replicated cluster under faults")
        for line in format_fleet_table(FLEET_REPORT):
            terminalreporter.write_line(line)
        terminalreporter.write_line("As Markdown:")
        for fleet_row in FLEET_REPORT:
            terminalreporter.write_line(fleet_row.markdown())
    if not REPORT:
        return
    terminalreporter.section("bridge under faults")
    for line in format_table(REPORT):
        terminalreporter.write_line(line)
    for row in REPORT:
        if row.lost_ids:
            terminalreporter.write_line(f"{row.scenario}: lost event ids {', '.join(row.lost_ids)}")
