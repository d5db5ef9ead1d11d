"""tests/ and bench/ never import each other: what both need lives in devstack (testkit,
scenario_bench). `lint-imports` checks the bench side; tests/ is no package, so this
checks the tests' side by reading their import statements."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imports_bench(tree: ast.AST) -> list[int]:
    """Line numbers of the imports of `bench` (or a module of it) in `tree`."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(n == "bench" or n.startswith("bench.") for n in names):
            lines.append(node.lineno)
    return lines


def test_no_test_file_imports_bench() -> None:
    found = [f"{p.relative_to(TESTS)}:{line}" for p in sorted(TESTS.rglob("*.py"))
             for line in _imports_bench(ast.parse(p.read_text(encoding="utf-8"), str(p)))]
    assert not found, f"tests import bench (move what they need to devstack): {found}"


def test_the_check_sees_both_import_forms() -> None:
    src = "import bench.common\nfrom bench import scenarios\nfrom benchmarks import x\n"
    assert _imports_bench(ast.parse(src)) == [1, 2]
