"""The package's import graph from its source (no module is imported): every ``import`` and ``from ... import``,
at the top of a module or inside a function, under ``TYPE_CHECKING`` too, as an edge between the package's own
modules; and the circles in it (strongly connected components of more than one module).

    python -m dreamsmith.eval.import_graph [core addon kernels ...]

prints ``{"cycles": [...], "over_400_lines": [...]}`` for the named folders (default: core, addon, kernels) and
exits 1 when there is a circle.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dreamsmith"


def module_name(path: Path, root: Path = ROOT, package: str = PACKAGE) -> str:
    """``core/jobs/io.py`` -> ``dreamsmith.core.jobs.io``; a package's ``__init__.py`` is the package itself."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """The absolute names ``tree`` (the module ``name``) imports, submodules named in ``from x import y`` included."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


def import_graph(folders: list[str], root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every ``.py`` under ``folders`` and the root's own
    modules; edges to modules outside those, and to a module's own parent packages, are left out."""
    files = [p for folder in folders for p in sorted((root / folder).rglob("*.py"))] + sorted(root.glob("*.py"))
    names = {module_name(p, root, package): p for p in files}
    graph = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imported = _imported(tree, name, path.name == "__init__.py")
        # a module's own packages are imported before it runs: naming them (``from . import x``) is no circle
        graph[name] = {m for m in imported if m in names and m != name and not name.startswith(m + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's circles: its strongly connected components of two modules or more (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def long_modules(folders: list[str], limit: int = 400, root: Path = ROOT) -> list[str]:
    """``path (lines)`` of each module under ``folders`` longer than ``limit`` lines."""
    out = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > limit:
                out.append(f"{path.relative_to(root)} ({n})")
    return out


def main(argv: list[str] | None = None) -> int:
    folders = (sys.argv[1:] if argv is None else argv) or ["core", "addon", "kernels"]
    found = cycles(import_graph(folders))
    print(json.dumps({"cycles": found, "over_400_lines": long_modules(folders)}))
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
