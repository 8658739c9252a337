"""The code's shape, as CONTRIBUTING.md states it: the layer order of imports (no module
imports a layer above its own, so there is no cycle between layers) and short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tunelab"

# CONTRIBUTING.md's layer order, top to bottom: a module may import its own layer or below.
LAYERS = [
    {"cli", "__main__"},
    {"api"},
    {"serve", "jobs", "ui"},
    {"train", "evaluate", "rag"},
    {"inference"},
    {"methods", "models", "data", "config", "rundir", "cost", "resources"},
    {"errors", "io", "events", "device", "typed", "__init__"},
]
MAX_LINES = 80


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for depth, names in enumerate(LAYERS):
        if top in names:
            return depth
    raise AssertionError(f"tunelab.{top} is in no layer of CONTRIBUTING.md's order; add it there and here")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every tunelab module imported anywhere in the file, function-level imports included."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tunelab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("tunelab"):
                found.add(name)
                found |= {f"{name}.{a.name}" for a in node.names if _is_module(f"{name}.{a.name}")}
    return found


def _is_module(name: str) -> bool:
    path = SRC.parent / name.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").is_file()


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_layer_above_its_own(path):
    module = _module(path)
    own = _layer(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    above = sorted(m for m in _imports(tree, module, path.name == "__init__.py")
                   if m.count(".") and _layer(m) < own)
    assert not above, f"{module} (layer {own}) imports {above}, which sit above it in CONTRIBUTING.md's order"


def test_functions_are_short_or_say_why():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if lines > MAX_LINES and "long because" not in doc.lower():
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 80 lines without a docstring saying why ('long because ...'): " + ", ".join(long)
