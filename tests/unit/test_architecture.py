"""The architecture page's rule on dependencies' private members, checked against the code.

A private member is a name starting with one underscore. Used on another object
(``producer._message_accumulator``), through ``super()``, or through ``self`` in a subclass
of an aiohttp or aiokafka class without being the subclass's own, it belongs to the
dependency. aiokafka's wire protocol (``aiokafka.protocol``) and its connections
(``aiokafka.conn``) are public modules below its documented API, under the same rule. Only
the adapters in docs/architecture.md's table may use such members, and exactly the ones
the table lists.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BRIDGE = REPO / "bridge"
ARCHITECTURE = REPO / "docs" / "architecture.md"
DEPENDENCIES = ("aiohttp", "aiokafka")
# Underscored by the language or its standard library, documented as public.
PUBLIC = {"_replace", "_asdict", "_fields", "_make", "_exit"}
# Modules of a dependency below its documented API: importing from them is like using a
# private member.
INTERNAL = ("aiokafka.protocol", "aiokafka.conn")
_ROW = re.compile(r"^\s*\| `(bridge/[\w/]+\.py)` \| (\w+) \| ([^|]+) \|")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC


def _own_names(tree: ast.Module) -> set[str]:
    """Names the module gives to its own objects: ``self.x = ``, class attributes, methods."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
                elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(item.name)
    return names


def _dependency_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in DEPENDENCIES:
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in DEPENDENCIES:
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def _inherited(module: str, cls: str, name: str) -> bool:
    """Whether ``name`` comes from a dependency's class among ``cls``'s bases."""
    klass = getattr(importlib.import_module(module), cls)
    return any(
        name in vars(base)
        for base in klass.__mro__[1:]
        if base.__module__.split(".")[0] in DEPENDENCIES
    )


def private_members_used(path: Path) -> set[str]:
    """The private members of aiohttp and aiokafka that the module at ``path`` uses."""
    module = ".".join(path.resolve().relative_to(REPO).with_suffix("").parts)
    return private_members_in(path.read_text(), module)


def private_members_in(source: str, module: str) -> set[str]:
    """The private members of aiohttp and aiokafka that ``source`` (module ``module``,
    imported only to look at the bases of a subclass of theirs) uses."""
    tree = ast.parse(source)
    own = _own_names(tree)
    dependencies = _dependency_names(tree)
    used: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        if not {ast.unparse(b).split(".")[0] for b in cls.bases} & dependencies:
            continue
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and _private(node.attr)
                and (node.attr not in own or _inherited(module, cls.name, node.attr))
            ):
                used.add(node.attr)
        for item in cls.body:
            if (
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and _private(item.name)
                and _inherited(module, cls.name, item.name)
            ):
                used.add(item.name)  # an override of a dependency's private method
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in {"self", "cls"}:
            continue
        through_super = isinstance(base, ast.Call) and ast.unparse(base) == "super()"
        if node.attr in own and not through_super:
            continue  # another instance of the module's own class
        used.add(node.attr)
    return used


def _internal(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in INTERNAL)


def internal_members_in(source: str) -> set[str]:
    """What ``source`` imports from the :data:`INTERNAL` modules (or reaches through
    ``aiokafka.``), as dotted names."""
    used: set[str] = set()
    reached: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and _internal(node.module or ""):
            used.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            used.update(alias.name for alias in node.names if _internal(alias.name))
        elif isinstance(node, ast.Attribute) and _internal(name := ast.unparse(node)):
            reached.add(name)
    # ``aiokafka.conn.create_conn`` also holds ``aiokafka.conn``: the longest name counts.
    return used | {n for n in reached if not any(o.startswith(f"{n}.") for o in reached)}


def _rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(3)
    return rows


def documented() -> dict[str, set[str]]:
    """docs/architecture.md's table: adapter -> the private members it may use."""
    return {adapter: set(re.findall(r"`(_\w+)`", members)) for adapter, members in _rows().items()}


def documented_internal() -> dict[str, set[str]]:
    """docs/architecture.md's table: adapter -> what it may import from INTERNAL modules."""
    pattern = r"`((?:{})(?:\.\w+)*)`".format("|".join(re.escape(m) for m in INTERNAL))
    return {adapter: set(re.findall(pattern, members)) for adapter, members in _rows().items()}


def test_only_the_documented_adapters_use_private_members_and_exactly_those_listed() -> None:
    found = {
        str(path.relative_to(REPO)): used
        for path in sorted(BRIDGE.rglob("*.py"))
        if (used := private_members_used(path))
    }
    table = {adapter: members for adapter, members in documented().items() if members}

    assert set(table) == {"bridge/kafka/batching.py", "bridge/service/server.py"}
    outside = {module: used for module, used in found.items() if module not in table}
    assert not outside, f"private members of a dependency outside its adapter: {outside}"
    assert found == table, "docs/architecture.md's table and the code disagree"


def test_only_the_documented_adapters_import_aiokafkas_protocol_and_connections() -> None:
    found = {
        str(path.relative_to(REPO)): used
        for path in sorted(BRIDGE.rglob("*.py"))
        if (used := internal_members_in(path.read_text()))
    }
    table = {adapter: members for adapter, members in documented_internal().items() if members}

    assert set(table) == {"bridge/kafka/topics.py", "bridge/kafka/publisher.py"}
    outside = {module: used for module, used in found.items() if module not in table}
    assert not outside, f"aiokafka's protocol or connections outside an adapter: {outside}"
    assert found == table, "docs/architecture.md's table and the code disagree"


def test_every_adapter_row_lists_what_it_uses() -> None:
    private, internal = documented(), documented_internal()

    assert {adapter for adapter in private if not private[adapter] | internal[adapter]} == set()


def test_the_scan_finds_imports_of_aiokafkas_protocol_and_connections() -> None:
    source = (
        "import aiokafka.conn\n"
        "from aiokafka.protocol.metadata import MetadataRequest\n"
        "from aiokafka import AIOKafkaProducer\n"
        "from aiokafka.admin import AIOKafkaAdminClient\n"
        "from aiokafka.errors import KafkaError\n"
        "import aiokafka\n"
        "request = aiokafka.protocol.admin.CreateTopicsRequest\n"
    )

    assert internal_members_in(source) == {
        "aiokafka.conn",
        "aiokafka.protocol.metadata.MetadataRequest",
        "aiokafka.protocol.admin.CreateTopicsRequest",
    }


def test_the_scan_finds_private_members_on_objects_and_through_super() -> None:
    on_an_object = (
        "from aiokafka import AIOKafkaProducer\n"
        "def peek(producer: AIOKafkaProducer) -> object:\n"
        "    return producer._sender\n"
    )
    through_super = (
        "class Quiet:\n"
        "    def _own(self) -> None:\n"
        "        self._mine = 1\n"
        "    def run(self) -> object:\n"
        "        return super()._make_server(), self._mine, self._own()\n"
    )

    assert private_members_in(on_an_object, "probe") == {"_sender"}
    assert private_members_in(through_super, "probe") == {"_make_server"}
    assert private_members_in("x = (1, 2)\ny = x._replace\n", "probe") == set()
    assert {"_make_server", "_force_close"} <= private_members_used(
        BRIDGE / "service" / "server.py"
    )


def test_the_module_map_lists_every_module_of_the_package() -> None:
    listed = set(re.findall(r"^\| `(bridge/[\w/]+(?:\.py|/))` \|", ARCHITECTURE.read_text(), re.M))
    layers = [p for p in BRIDGE.iterdir() if (p / "__init__.py").exists()]
    modules = {f"bridge/{layer.name}/{p.name}" for layer in layers for p in layer.glob("*.py")} - {
        f"bridge/{layer.name}/__init__.py" for layer in layers
    }
    packages = {
        f"bridge/{layer.name}/{p.name}/"
        for layer in layers
        for p in layer.iterdir()
        if (p / "__init__.py").exists()
    }

    assert listed == modules | packages
    # Nothing but the package's entry points outside the layers.
    assert {p.name for p in BRIDGE.glob("*.py")} == {"__init__.py", "__main__.py"}
