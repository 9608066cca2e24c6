"""No import circles in core/, addon/ or kernels/ (lazy and type-only imports count), read from the source."""

from __future__ import annotations

from dreamsmith.eval.import_graph import cycles, import_graph


def test_no_module_of_core_addon_or_kernels_imports_itself_back():
    assert cycles(import_graph(["core", "addon", "kernels"])) == []


def test_a_circle_through_a_lazy_and_a_type_only_import_is_found(tmp_path):
    pkg = tmp_path / "sub"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (pkg / "c.py").write_text("from .a import f\n")  # imports into the circle, not part of it
    graph = import_graph(["sub"], root=tmp_path, package="p")
    assert graph["p.sub.c"] == {"p.sub.a"}
    assert cycles(graph) == [["p.sub.a", "p.sub.b"]]
