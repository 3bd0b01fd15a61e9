"""Every reason the code can give a dead letter is one the metrics precreate and the
operations guide names: the closed set is written once (bridge.metrics) and checked here
against every place that produces one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bridge.metrics import DEAD_LETTER_REASONS
from bridge.topics import _RECORD_REFUSALS, _TOPIC_REFUSALS

REPO = Path(__file__).resolve().parents[2]
# Codes of refusals that are answered, never dead-lettered.
ANSWERED_ONLY = {
    "invalid_challenge",  # a malformed verification challenge: 400
    "dead_letter_unavailable",  # the dead-letter topic itself refused: 503
    "unauthorized",  # 401
}


def _produced() -> dict[str, set[str]]:
    """Reason literals in the code: ``code="..."`` of an error, ``Refusal("...")``."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "bridge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            literals = [
                k.value.value
                for k in node.keywords
                if k.arg == "code" and isinstance(k.value, ast.Constant)
            ]
            if ast.unparse(node.func).endswith("Refusal") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    literals.append(first.value)
            for literal in literals:
                if isinstance(literal, str):
                    found.setdefault(literal, set()).add(path.name)
    for reason in (*_RECORD_REFUSALS.values(), *_TOPIC_REFUSALS.values()):
        found.setdefault(reason, set()).add("topics.py")
    return found


def test_every_reason_the_code_gives_is_one_the_metrics_know() -> None:
    produced = _produced()
    assert "invalid_json" in produced, "the scan found nothing: it is broken"
    unknown = {
        reason: files
        for reason, files in produced.items()
        if reason not in DEAD_LETTER_REASONS and reason not in ANSWERED_ONLY
    }
    assert not unknown, f"reasons missing from bridge.metrics.DEAD_LETTER_REASONS: {unknown}"


def test_the_operations_guide_names_exactly_the_dead_letter_reasons() -> None:
    guide = (REPO / "docs" / "operations.md").read_text()
    [row] = [
        line for line in guide.splitlines() if line.startswith("| `almbridge_dead_letters_total`")
    ]
    description = row.strip().strip("|").split(" | ")[3]
    named = set(re.findall(r"`([a-z0-9_]+)`", description)) - {"deadletter", "unlisted", "reason"}

    assert named == set(DEAD_LETTER_REASONS)
