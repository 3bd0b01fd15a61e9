"""The architecture page's layers, checked against the imports.

``docs/architecture.md`` lists the folders of ``bridge/`` from the bottom layer up. A module
may import its own layer and the layers below it, never one above: the core knows nothing
of Kafka or HTTP, the Kafka side nothing of the handlers, and only the commands know
everything. Imports inside functions (the commands' lazy ones) count too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BRIDGE = REPO / "bridge"
ARCHITECTURE = REPO / "docs" / "architecture.md"
_LAYER_ROW = re.compile(r"^\| (\d+) \| `bridge/(\w+)/` \|")


def layers() -> list[str]:
    """The layer folders, bottom first, as the architecture page's table lists them."""
    rows = [_LAYER_ROW.match(line) for line in ARCHITECTURE.read_text().splitlines()]
    found = sorted((int(m.group(1)), m.group(2)) for m in rows if m)
    return [name for _, name in found]


def _layer_of(module: str, order: list[str]) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "bridge" and parts[1] in order:
        return parts[1]
    return None


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("bridge.")}


def upward_imports() -> list[str]:
    order = layers()
    rank = {name: i for i, name in enumerate(order)}
    problems: list[str] = []
    for path in sorted(BRIDGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        own = _layer_of(module, order)
        if own is None:
            continue
        for imported in sorted(imports_of(path)):
            other = _layer_of(imported, order)
            if other is not None and rank[other] > rank[own]:
                problems.append(f"{module} ({own}) imports {imported} ({other})")
    return problems


def test_the_page_lists_every_folder_of_the_package_as_a_layer() -> None:
    folders = sorted(
        p.name for p in BRIDGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    )
    assert sorted(layers()) == folders


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    order = layers()
    assert _layer_of("bridge.core.alm", order) == "core"
    assert _layer_of("bridge.cli.main", order) == "cli"
    bad = tmp_path / "bad.py"
    bad.write_text("def f() -> None:\n    from bridge.service.app import create_app\n")
    assert "bridge.service.app" in imports_of(bad)


def test_the_core_imports_neither_aiohttp_nor_aiokafka() -> None:
    loud: list[str] = []
    for path in sorted((BRIDGE / "core").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            loud += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("aiohttp", "aiokafka")
            ]
    assert loud == []
