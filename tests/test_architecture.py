"""The layer map of docs/architecture.md, checked on the source: no module imports upward.

Every ``import`` in ``src/fedskip`` counts, the lazy ones inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fedskip"

CORE = ("data", "models", "selection", "train", "privacy")
FORBIDDEN = {
    **{core: ("fl", "bench", "commands", "deploy", "runs") for core in CORE},
    "fl": ("bench", "commands", "deploy", "runs"),
    "runs": ("bench", "commands", "deploy"),
    "bench": ("commands", "deploy"),
}
"""Package → the fedskip packages it may not import."""

SHARED = ("fedskip.runs.schema",)
"""Modules any layer may import: the record schema of the run directory (no code above it)."""


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "fedskip"]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_the_source_is_found() -> None:
    assert len(_sources()) > 100


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_upward_import(layer: str) -> None:
    upward = []
    for path in sorted((SRC / layer).rglob("*.py")):
        for name, line in _imports(path):
            if name in SHARED or name.startswith(tuple(s + "." for s in SHARED)):
                continue
            if _package(name) in FORBIDDEN[layer]:
                upward.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    assert upward == []


def test_no_private_name_is_imported_from_another_module() -> None:
    private = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fedskip"):
                own = {
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")
                }
                private += [f"{path.relative_to(SRC.parent)}: {node.module}.{n}" for n in own]
    assert private == []
