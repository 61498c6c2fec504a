"""Imports go benchmarks -> api -> search -> index, never back: an AST walk over every module."""

from __future__ import annotations

import ast
from pathlib import Path

from index.settings import REPO_ROOT

LAYERS = {"index": 0, "search": 1, "api": 2, "benchmarks": 3}


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_only_go_down() -> None:
    violations = []
    checked = 0
    for package, level in LAYERS.items():
        for module in (REPO_ROOT / package).rglob("*.py"):
            checked += 1
            for name in imported_packages(module):
                if name in LAYERS and LAYERS[name] > level:
                    violations.append(f"{module.relative_to(REPO_ROOT)} imports {name}")
    assert checked >= 10
    assert violations == []


def test_the_walk_sees_upward_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from search.searcher import Searcher\nimport api.cli\n")
    assert imported_packages(module) == {"search", "api"}
