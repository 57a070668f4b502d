"""The layout's promises (README "How the code is laid out"): every import linkblog.py defers until
settings exist really arrives, the blogworks package never imports linkblog, and no module defines a
name twice at its top level."""

import ast
from pathlib import Path

import linkblog

ROOT = Path(linkblog.__file__).resolve().parent


def deferred_names():
    """The names the `with defer:` block of linkblog.py imports."""
    tree = ast.parse((ROOT / "linkblog.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.With) and ast.unparse(node.items[0].context_expr) == "defer")
    return [alias.asname or alias.name for statement in block.body for alias in statement.names]


def test_every_deferred_import_arrives():
    # nanodjango's defer reads imports back from the bytecode; a misread one stays a placeholder
    # that fails only when a page first uses it.
    placeholders = [name for name in deferred_names() if type(getattr(linkblog, name)).__name__ == "DummyObject"]
    assert deferred_names() and placeholders == []


def test_the_package_never_imports_linkblog():
    importers = []
    for path in sorted((ROOT / "blogworks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(module.split(".")[0] == "linkblog" for module in modules):
                importers.append(path.name)
    assert importers == []


def test_no_module_defines_a_function_or_class_twice():
    # A second `def plain_text` further down a module silently replaces the first for every caller.
    twice = []
    for path in [ROOT / "linkblog.py", *sorted((ROOT / "blogworks").glob("*.py"))]:
        seen = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                twice += [f"{path.name}: {node.name}"] if node.name in seen else []
                seen.add(node.name)
    assert twice == []
