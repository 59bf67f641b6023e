"""No import cycle inside ``src/fedskip``: modules import each other in one direction only.

Every ``import`` counts, the lazy ones inside functions included (a cycle broken by deferring one
import still ties the two modules together); an import under ``if TYPE_CHECKING:`` does not, as
it never runs. ``from package import name`` is an edge to ``package.name`` when that is a
module, else to the package. Imports done by name at run time (``importlib``) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "fedskip"


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` that runs, i.e. not in an ``if TYPE_CHECKING:``
    body (its ``else:`` branch runs, so it counts)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _import_nodes(child)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The fedskip modules an import statement of ``module`` names (not yet checked to exist)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolved against the importing module's package
        base = module.split(".")
        if not is_package:
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        parent = ".".join(base + ([node.module] if node.module else []))
    else:
        parent = node.module or ""
    return [parent] + [f"{parent}.{alias.name}" for alias in node.names]


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module → the fedskip modules it imports (``fedskip.bench.suites`` style names)."""
    paths = {_module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        edges: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in _import_nodes(ast.parse(path.read_text("utf-8"))):
            targets = _targets(node, module, is_package)
            if isinstance(node, ast.ImportFrom):
                parent, names = targets[0], targets[1:]
                submodules = [n for n in names if n in paths]
                # names that are not submodules are attributes of the parent module
                targets = submodules + ([parent] if len(submodules) < len(names) else [])
            for target in targets:
                while target and target not in paths:  # `import fedskip.a.b` as far as known
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def components(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): the modules that
    import each other, directly or not. Sorted by their first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components, key=min)


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """A shortest cycle of each component, as the modules along it, the first one repeated."""
    return [_one_cycle(graph, c) for c in components(graph)]


def _one_cycle(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside it)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in parents:
                    parents[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def test_the_graph_sees_lazy_and_relative_imports_but_not_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from fedskip.c import C\n"
        "else:\n    import fedskip.d.x\n"
        "def f():\n    from fedskip.sub import b, VALUE\n"
    )
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    (pkg / "c.py").write_text("import fedskip.a\n")
    (pkg / "d.py").write_text("")
    graph = import_graph(tmp_path)
    assert graph == {
        "fedskip": set(),
        "fedskip.a": {"fedskip.d", "fedskip.sub", "fedskip.sub.b"},
        "fedskip.c": {"fedskip.a"},
        "fedskip.d": set(),
        "fedskip.sub": {"fedskip.sub.b"},
        "fedskip.sub.b": {"fedskip.a"},
    }
    assert components(graph) == [{"fedskip.a", "fedskip.sub", "fedskip.sub.b"}]
    assert cycles(graph) == [["fedskip.a", "fedskip.sub.b", "fedskip.a"]]


def test_the_source_is_walked() -> None:
    graph = import_graph()
    assert len(graph) > 100 and "fedskip.bench.suites" in graph["fedskip.bench.runner"]


def test_no_import_cycle() -> None:
    graph = import_graph()
    found = [
        f"{' -> '.join(_one_cycle(graph, c))} (modules tied: {', '.join(sorted(c))})"
        for c in components(graph)
    ]
    assert not found, "import cycles:\n" + "\n".join(found)
