"""The layer map of docs/architecture.md, checked on the source: no module imports upward.

Every ``import`` in ``src/fedskip`` counts, the lazy ones inside functions included. That no
module imports one that imports it back is ``tests/test_import_cycles.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fedskip"

CORE = ("data", "models", "selection", "train", "privacy")
ABOVE_RECORDS = ("federation", "fl", "runs", "bench", "commands", "deploy")
FORBIDDEN = {
    **{core: ("records", *ABOVE_RECORDS) for core in CORE},
    "records": ABOVE_RECORDS,
    "federation": ("fl", "runs", "bench", "commands", "deploy"),
    "fl": ("runs", "bench", "commands", "deploy"),
    "runs": ("bench", "commands", "deploy"),
    "bench": ("commands", "deploy"),
}
"""Package → the fedskip packages it may not import: core → ``records`` (run directory, row and
summary schema, checkpoint) → ``federation`` (a round's work without Flower) → ``fl`` (the
Flower adapters and strategy) → ``runs`` (one entry per method) → ``bench`` / ``deploy`` →
``commands``."""

BENCH_SUITES = ("spec", "groups", "suites", "expansion")
BENCH_FORBIDDEN = (
    "runner",
    "records",
    "table",
    "spread",
    "claims",
    "choice",
    "plots",
    "report",
    "frontier",
    "personalization",
)
"""Inside ``bench/``: what a suite is, the catalogue and its expansion (:data:`BENCH_SUITES`)
never import the modules that train suites or read and render their runs."""

FLOWER_FREE = (*CORE, "records", "federation", "bench")
"""Packages that never import Flower (``flwr``) — nor do the modules directly in ``fedskip/``
(config, pipeline, trainability, ...). Flower's dataset partitioners (``flwr_datasets``,
a separate library) may be used by ``data``."""


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
            if _package(name) in FORBIDDEN[layer]:
                upward.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    assert upward == []


def test_the_suite_definitions_import_no_runner_or_report() -> None:
    upward = []
    for name in BENCH_SUITES:
        path = SRC / "bench" / f"{name}.py"
        for module, line in _imports(path):
            parts = module.split(".")
            if parts[:2] == ["fedskip", "bench"] and len(parts) > 2 and parts[2] in BENCH_FORBIDDEN:
                upward.append(f"{path.relative_to(SRC.parent)}:{line} imports {module}")
    assert upward == []


def _flower_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [f"{path.relative_to(SRC.parent)}:{node.lineno} imports {n}" for n in names]
    return [line for line in found if line.split(" imports ")[1].split(".")[0] == "flwr"]


def test_the_flower_free_layers_never_import_flower() -> None:
    paths = sorted(SRC.glob("*.py"))
    for package in FLOWER_FREE:
        paths += sorted((SRC / package).rglob("*.py"))
    assert len(paths) > 50
    assert [line for path in paths for line in _flower_imports(path)] == []


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


def _strategy_attribute_assignments(path: Path) -> list[str]:
    """``x.strategy.a = ...`` / ``strategy.a = ...`` / ``x.core.a = ...`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        for target in flat:
            if not isinstance(target, ast.Attribute):
                continue
            owner = target.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if name in ("strategy", "core"):
                found.append(
                    f"{path.relative_to(SRC.parent)}:{node.lineno} sets {name}.{target.attr}"
                )
    return found


def test_only_the_strategy_package_configures_a_strategy() -> None:
    """The builder (``fl/strategy/builder.py``) constructs the strategy fully configured; the
    server loop and the other Flower adapters never set a strategy's attributes afterwards."""
    paths = [p for p in sorted((SRC / "fl").rglob("*.py")) if "strategy" not in p.parts]
    paths += sorted((SRC / "runs").rglob("*.py"))
    assert [line for path in paths for line in _strategy_attribute_assignments(path)] == []
