"""The package's layers import one way, and no module imports itself back through others.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``. The
layers and what each may import are those of docs/layout.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "worker"

# What each layer may import besides itself. ``errors`` is the floor every layer stands on;
# the engine takes only the event types of the write side.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "store": {"errors"},
    "model": {"store", "errors"},
    "read": {"store", "errors"},
    "engine": {"store", "read", "model.event", "errors"},
    "domain": {"store", "model", "read", "engine", "errors"},
    "testing": {"store", "model", "read", "engine", "domain", "errors"},
    "ops": {"store", "model", "read", "engine", "domain", "errors"},
    "api": {"store", "model", "read", "engine", "domain", "errors", "ops", "testing"},
    "main": {"ops"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    parts = module.split(".")
    if module in ("worker", "worker.admin"):
        return "api"
    if parts[1] == "__main__":
        return "main"
    return parts[1]


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports (a name imported from a package that is
    one of its modules counts as that module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "worker")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "worker":
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {name for name in found if name in known}


def allowed(source: str, target: str) -> bool:
    here, there = layer(source), layer(target)
    if here == there:
        return True
    rules = ALLOWED[here]
    return there in rules or any(target == f"worker.{rule}" for rule in rules if "." in rule)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_every_import_goes_down_the_layers() -> None:
    """No module imports a layer above its own (nor one beside it that it may not use)."""
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if not allowed(source, target)
    )
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    """No module reaches itself again by following imports."""
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_imports_under_type_checking_and_in_functions(tmp_path: Path) -> None:
    """The walker counts an import hidden under ``TYPE_CHECKING`` or inside a function."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from worker.ops.settings import Settings\n"
        "def f():\n    from worker.engine import runner\n"
    )
    known = {"worker.ops.settings": source, "worker.engine.runner": source, "worker.engine": source}
    assert imports(source, known) == {"worker.ops.settings", "worker.engine.runner"}


# The modules an application, its tests and the benchmarks may import: the curated API, the
# testing kit, database administration for scripts. Everything else is the package's inside.
PUBLIC = frozenset({"worker", "worker.testing", "worker.admin"})

# Code outside the package that uses it as a user would.
USERS = (
    "domain",
    "projections",
    "handlers",
    "bench",
    "tests/fixtures/user_project",
    "tests/example",
)


def private_imports(path: Path, known: dict[str, Path]) -> list[str]:
    """``path``'s imports of the package that go behind its public modules: a module not in
    ``PUBLIC``, or a submodule taken as a name from a public one (``from worker import ops``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            names += [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in names if n == node.module or n in known]
        else:
            continue
        found += [
            f"{path}:{node.lineno}: {name}"
            for name in names
            if name.split(".")[0] == "worker" and name not in PUBLIC
        ]
    return found


def test_applications_and_benchmarks_import_only_public_modules() -> None:
    """The example application, the user project of the tests and the benchmarks import
    ``worker``, ``worker.testing`` and ``worker.admin`` only: what they need is public."""
    known = modules()
    root = PACKAGE.parent
    wrong = [
        line
        for folder in USERS
        for path in sorted((root / folder).rglob("*.py"))
        for line in private_imports(path, known)
    ]
    assert not wrong, "imports of private modules:\n" + "\n".join(wrong)


def test_the_private_import_check_sees_a_module_behind_the_api(tmp_path: Path) -> None:
    """An import of an inner module, or of one taken as a name, is reported; public ones not."""
    source = tmp_path / "app.py"
    source.write_text(
        "from worker import Domain\nfrom worker.testing import given\n"
        "from worker.ops.log import configure_logging\nfrom worker import ops\n"
        "import worker.store.database\n"
    )
    known = {"worker.ops": source, "worker.ops.log": source, "worker.store.database": source}
    found = [line.split(": ")[1] for line in private_imports(source, known)]
    assert found == ["worker.ops.log", "worker.ops", "worker.store.database"]
