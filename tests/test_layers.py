"""Imports go one way, checked by an AST walk over every module of the package.

Between layers: benchmarks -> api -> search -> index. Inside `index`: `reading` is pure (nothing else of the
index), `model` and `storage` know only `reading` and not each other, the ONNX export knows nothing of the
runtime, the planner (`model.planning`) stands on the runtime and the export but not on the embedder that asks
it for plans, and `writing` is the only code that uses model and storage together. The package root's settings,
errors and search parameters serve every layer and import no layer; `engine` (the Python API) stands on search
and index.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import semsearch
import semsearch.api
import semsearch.benchmarks
import semsearch.index
import semsearch.search

ROOTS = {
    "semsearch.index": Path(semsearch.index.__file__).parent,
    "semsearch.search": Path(semsearch.search.__file__).parent,
    "semsearch.api": Path(semsearch.api.__file__).parent,
    "semsearch.benchmarks": Path(semsearch.benchmarks.__file__).parent,
    "semsearch": Path(semsearch.__file__).parent,
}
ROOT_MODULES = {"semsearch", "semsearch.settings", "semsearch.errors", "semsearch.params", "semsearch.data"}
# What each part may import of the package, besides itself and the root's settings and errors.
ALLOWED: dict[str, set[str]] = {
    "semsearch.index.reading": set(),
    "semsearch.index.model.export": set(),
    "semsearch.index.model": {"semsearch.index.model.export"},
    "semsearch.index.model.planning": {
        "semsearch.index.model.onnx_runtime",
        "semsearch.index.model.batching",
        "semsearch.index.model.export",
    },
    "semsearch.index.storage": {"semsearch.index.reading"},
    "semsearch.index.writing": {"semsearch.index"},
    "semsearch.search": {"semsearch.index.reading", "semsearch.index.model", "semsearch.index.storage"},
    "semsearch.engine": {"semsearch.search", "semsearch.index"},
    "semsearch.api": {"semsearch.search", "semsearch.index", "semsearch.engine"},
    "semsearch.benchmarks": {"semsearch.api", "semsearch.search", "semsearch.index", "semsearch.engine"},
    "semsearch.settings": set(),
    "semsearch.errors": set(),
    "semsearch.params": set(),
    "semsearch.data": set(),
    "semsearch": {"semsearch.engine"},  # the public surface re-exports the engine, imported on first use
}


def module_name(path: Path) -> str:
    for package, root in ROOTS.items():
        if path.is_relative_to(root):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            return ".".join((package, *parts))
    raise AssertionError(f"{path} is in no package")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "semsearch" and node.level == 0:
            names.update(f"semsearch.{alias.name}" for alias in node.names)  # `from semsearch import errors`
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name == "semsearch" or name.startswith("semsearch.")}


def part_of(module: str) -> str:
    """The most specific entry of ALLOWED that `module` belongs to."""
    parts = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return max(parts, key=len)


def within(module: str, prefixes: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(modules: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imports in modules.items():
        part = part_of(module)
        for name in imports:
            if name in ROOT_MODULES or within(name, {part}):
                continue
            elif not within(name, ALLOWED[part]):
                found.append(f"{module} imports {name}")
    return found


def all_modules() -> dict[str, set[str]]:
    files = {path for root in ROOTS.values() for path in root.rglob("*.py")}
    return {module_name(path): imported_modules(path) for path in sorted(files)}


def test_imports_only_go_down() -> None:
    modules = all_modules()
    assert {"semsearch.index.reading.splitter", "semsearch.index.storage.store", "semsearch.api.cli"} <= set(modules)
    assert violations(modules) == []


@pytest.mark.parametrize(
    ("module", "imports"),
    [
        ("semsearch.index.storage.manifest", "semsearch.index.model.embedder"),  # storage knows no model
        ("semsearch.index.model.embedder", "semsearch.index.storage.store"),  # nor the model storage
        ("semsearch.index.reading.readers", "semsearch.index.storage.store"),  # reading is pure
        ("semsearch.index.model.export.onnx_export", "semsearch.index.model.onnx_runtime"),
        ("semsearch.index.model.export.onnx_export", "semsearch.index.model.planning.planner"),
        ("semsearch.index.model.planning.planner", "semsearch.index.model.embedder"),  # the embedder asks it
        ("semsearch.index.model.planning.cache", "semsearch.index.storage.store"),  # its cache is its own
        ("semsearch.search.searcher", "semsearch.index.writing.builder"),  # search does not write
        ("semsearch.index.writing.builder", "semsearch.search.searcher"),  # nor index call up
        ("semsearch.search.live", "semsearch.api.app"),
        ("semsearch.settings", "semsearch.index.storage.store"),
        ("semsearch.params", "semsearch.search.searcher"),  # the parameter table stands below every layer
    ],
)
def test_the_walk_sees_each_forbidden_import(module: str, imports: str) -> None:
    assert violations({module: {imports}}) == [f"{module} imports {imports}"]


def test_the_walk_reads_both_import_forms(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from semsearch.search.searcher import Searcher\nimport semsearch.api.cli\nimport numpy\n")
    assert imported_modules(module) == {"semsearch.search.searcher", "semsearch.api.cli"}
