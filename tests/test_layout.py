"""The package's layout rules (docs/design.md, Layout), read from the source.

A newcomer reads the data flow from the file list only while these hold: no two modules
import each other (directly or round a circle, at module level or inside a function), no
module imports another module's private names, and one module (``_binding``) imports the
native extensions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import securemem

# The package being tested: this checkout's, or an installed wheel's (its modules are the same
# files; .ci/run's wheel stage runs these tests against the wheel).
PACKAGE = Path(securemem.__file__).resolve().parent
NATIVE = {"securemem._core", "securemem._native"}


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = "securemem" if path.stem == "__init__" else f"securemem.{path.stem}"
        found[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


def _imports(tree: ast.Module) -> list[tuple[str, str]]:
    """(module, name) for every ``from securemem... import name`` and ``import securemem...``
    in the tree, wherever it is; ``name`` is "" for a plain import."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "securemem":
                found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.split(".")[0] == "securemem"]
    return found


def _dependencies(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    """The package's modules each module imports (the package itself left out: every
    module is inside it)."""
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        targets = set()
        for module, imported in _imports(tree):
            submodule = f"{module}.{imported}"
            targets.add(submodule if submodule in modules else module)
        graph[name] = {target for target in targets if target in modules} - {"securemem", name}
    return graph


def _circle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    path = [start]
    seen: set[str] = set()

    def visit(node: str) -> bool:
        for following in sorted(graph[node]):
            if following == start:
                path.append(start)
                return True
            if following not in seen:
                seen.add(following)
                path.append(following)
                if visit(following):
                    return True
                path.pop()
        return False

    return path if visit(start) else None


def test_no_module_imports_itself_round_a_circle() -> None:
    graph = _dependencies(_modules())
    assert len(graph) > 20, "the package's modules were not found"
    circles = [circle for name in graph if (circle := _circle_through(name, graph))]
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_circle_finder_sees_a_circle() -> None:
    # The check above must be able to fail: a two-module circle and a three-module one.
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert _circle_through("a", graph) == ["a", "b", "a"]
    assert _circle_through("c", graph) == ["c", "d", "e", "c"]
    assert _circle_through("f", graph) is None


def test_no_module_imports_another_modules_private_names() -> None:
    offences = []
    for name, tree in _modules().items():
        for module, imported in _imports(tree):
            if module == "securemem":
                continue  # `from securemem import _procfs` names a module, not a private name
            if imported.startswith("_") and not imported.startswith("__"):
                offences.append(f"{name} imports {imported} from {module}")
    assert offences == []


def test_only_the_gateway_imports_the_native_extensions() -> None:
    importers = {
        name
        for name, tree in _modules().items()
        for module, imported in _imports(tree)
        if module in NATIVE or f"{module}.{imported}" in NATIVE
    }
    assert importers == {"securemem._binding"}
