"""ARCHITECTURE.md's layer table is the law: every module listed, imports only sideways or down, no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exifray"


def _layers() -> dict[str, int]:
    rows = re.findall(r"^\| `(exifray[\w.]*)` \| (\d+) \|", (ROOT / "ARCHITECTURE.md").read_text(), re.MULTILINE)
    return {module: int(layer) for module, layer in rows}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, type_only: bool = False) -> list[str]:
    """Every `import x` / `from x import y` anywhere (functions too); those under `if TYPE_CHECKING:` only when
    `type_only` (a cycle of type-only imports is still a cycle: one module's types belong where both see them)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node) and not type_only:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `exifray.x.name`: the graph walks up to the module (`from exifray import schema` is exifray.schema,
            # not the package; `from exifray import __version__` is the package)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph(modules: dict[str, Path], type_only: bool = False) -> dict[str, set[str]]:
    """module → the exifray modules it imports (`from exifray import schema` is exifray.schema; `from
    exifray.x import name` is exifray.x); `type_only`: type-checking imports too."""
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported_names(ast.parse(path.read_text(encoding="utf-8")), type_only):
            if not imported.startswith("exifray"):
                continue
            while imported not in modules:  # `exifray.x.SomeName` → `exifray.x`
                imported = imported.rpartition(".")[0]
            if imported != name:
                targets.add(imported)
        graph[name] = targets
    # `from exifray.x import name` also lists `exifray.x.name` first; keep the most specific module only.
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    layers, modules = _layers(), _modules()
    assert set(modules) - set(layers) == set(), "modules missing from ARCHITECTURE.md"
    assert set(layers) - set(modules) == set(), "rows in ARCHITECTURE.md without a module"


def test_imports_follow_the_layers() -> None:
    layers, graph = _layers(), import_graph(_modules())
    against = sorted(f"{source} (layer {layers[source]}) imports {target} (layer {layers[target]})"
                     for source, targets in graph.items() for target in targets if layers[target] > layers[source])
    assert against == []


def test_no_import_cycles_not_even_through_type_only_imports() -> None:
    assert _cycle(import_graph(_modules(), type_only=True)) is None


MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def test_no_module_over_450_lines_and_no_function_over_60() -> None:
    too_long = []
    for name, path in sorted(_modules().items()):
        text = path.read_text(encoding="utf-8")
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - start + 1  # as tools/code_stats.py counts
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


MAX_ANY = 130  # `grep -rhow Any --include=*.py exifray | wc -l`: 200 before the suite issue, 122 after it


def test_any_stays_rare_and_is_never_given_another_name() -> None:
    texts = {name: path.read_text(encoding="utf-8") for name, path in sorted(_modules().items())}
    count = sum(len(re.findall(r"\bAny\b", text)) for text in texts.values())
    assert count <= MAX_ANY, f"{count} occurrences of Any in exifray/ (at most {MAX_ANY}): use a typed alternative"
    aliases = [f"{name}: {match.group(0)}" for name, text in texts.items()
               for match in re.finditer(r"^\s*\w+\s*(?::\s*TypeAlias\s*)?=\s*(?:typing\.)?Any\s*$", text, re.MULTILINE)]
    assert aliases == []


def test_the_checker_sees_function_imports_and_skips_type_checking_ones() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from exifray import sweep\n"
                     "def f():\n    from exifray.train import run_trial\n    import exifray.report\n")
    names = _imported_names(tree)
    assert "exifray.train.run_trial" in names and "exifray.report" in names
    assert not any(name.startswith("exifray.sweep") for name in names)
    assert "exifray.sweep" in _imported_names(tree, type_only=True)


def test_from_the_package_import_a_module_is_that_module_not_the_package() -> None:
    graph = import_graph(_modules())
    assert "exifray" not in graph["exifray.cli_args"] and "exifray.schema" in graph["exifray.leaderboard"]
    assert "exifray.api" in graph["exifray"]  # the package re-exports the API


@pytest.mark.parametrize(("graph", "cycle"), [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert _cycle(graph) == cycle
