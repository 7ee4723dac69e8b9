"""Size figures of the package and the tests, as the architecture issue asks for them.

    python tools/code_stats.py                 # module lines, function sizes, `Any` count, noqa/type: ignore
    python tools/code_stats.py --asserts       # per test file: assert statements and pytest.raises (ast count)
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def function_sizes(tree: ast.AST) -> list[tuple[str, int]]:
    sizes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            sizes.append((node.name, (node.end_lineno or node.lineno) - start + 1))
    return sizes


def any_count(tree: ast.AST) -> int:
    return sum(1 for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "Any"
               or isinstance(node, ast.Attribute) and node.attr == "Any")


def package_stats(package: Path) -> dict[str, object]:
    modules, functions, anys = {}, [], 0
    noqa = ignores = 0
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        modules[str(path.relative_to(ROOT))] = len(text.splitlines())
        functions += [(f"{path.relative_to(ROOT)}:{name}", size) for name, size in function_sizes(tree)]
        anys += any_count(tree)
        noqa += text.count("# noqa")
        ignores += text.count("type: ignore")
    sizes = sorted(size for _, size in functions)
    p90 = sizes[int(0.9 * (len(sizes) - 1))]
    return {"modules": modules, "max_module": max(modules.items(), key=lambda kv: kv[1]),
            "functions": len(sizes), "median": statistics.median(sizes), "p90": p90,
            "max_function": max(functions, key=lambda kv: kv[1]),
            "over_60": sorted([f for f in functions if f[1] > 60], key=lambda kv: -kv[1]),
            "any": anys, "noqa": noqa, "type_ignore": ignores}


def assert_counts(tests: Path) -> dict[str, tuple[int, int]]:
    counts = {}
    for path in sorted(tests.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        asserts = sum(isinstance(node, ast.Assert) for node in ast.walk(tree))
        raises = sum(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                     and node.func.attr == "raises" for node in ast.walk(tree))
        counts[str(path.relative_to(ROOT))] = (asserts, raises)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asserts", action="store_true")
    args = parser.parse_args()
    if args.asserts:
        result: object = assert_counts(ROOT / "tests")
    else:
        result = package_stats(ROOT / "exifray")
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
