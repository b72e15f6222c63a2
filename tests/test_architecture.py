"""The package's shape: layering, no import cycles, rampwf only in the RAMP adapter, sizes.

Parses every module of ``deblendkit`` with :mod:`ast` (nothing is imported), so
a violation is found even in code that no test runs.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deblendkit"

# What each part of the package may import from the rest of it (data flow one way).
# "top" is the package's root modules: errors, _checks, _fs, _progress, config, __init__.
ALLOWED = {
    "top": {"top"},
    "sim": {"top", "sim"},
    "storage": {"top", "sim", "storage"},
    "generation": {"top", "sim", "storage", "generation"},
    "deblend": {"top", "sim", "storage", "deblend"},
    "scoring": {"top", "sim", "storage", "deblend", "scoring"},
    "ramp": {"top", "sim", "storage", "deblend", "scoring", "ramp"},
    "report": {"top", "sim", "storage", "deblend", "scoring", "report"},
    "cli": {"top", "sim", "storage", "generation", "deblend", "scoring", "ramp", "report", "cli"},
}
# Imports allowed inside functions: optional heavy packages, each with a comment saying why.
LAZY_OK = ("torch", "jax", "jaxlib", "distributed", "dask.distributed", "scarlet2")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _part(module: str) -> str:
    bits = module.split(".")
    if len(bits) > 2 or (len(bits) == 2 and bits[1] in ALLOWED):
        return bits[1]
    return "top"


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The deblendkit modules an import statement loads (submodules named in ``from X import a`` included)."""
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            if not MODULES[module].name == "__init__.py":
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [target] + [f"{target}.{a.name}" for a in node.names]
    return [n for n in names if n in MODULES]


def _imports(module: str):
    tree = ast.parse(MODULES[module].read_text())
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, id(node) in top_level or _in_module_scope(tree, node)


def _in_module_scope(tree: ast.Module, target: ast.AST) -> bool:
    """True if ``target`` is not inside a function (module-level ``if``/``try`` blocks count as module scope)."""
    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if child is target:
                return not in_function
            found = visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
            if found is not None:
                return found
        return None
    return bool(visit(tree, False))


def _with_packages(importer: str, dep: str) -> list[str]:
    """``dep`` and the packages Python runs first to load it (their ``__init__``), except those
    the importer sits in (they are already being initialised when it runs)."""
    out = [dep]
    bits = dep.split(".")
    for i in range(2, len(bits)):
        pkg = ".".join(bits[:i])
        if not (importer == pkg or importer.startswith(pkg + ".")):
            out.append(pkg)
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        deps = set()
        for node, module_scope in _imports(module):
            if module_scope:
                for dep in _resolve(module, node):
                    deps.update(_with_packages(module, dep))
        deps.discard(module)
        graph[module] = deps
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def dfs(node, stack):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            # A package's __init__ importing its own submodules is the normal re-export, and a
            # submodule importing a sibling through the full path does not run the package twice.
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                dfs(dep, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_downwards():
    bad = []
    for module, deps in _graph().items():
        here = _part(module)
        for dep in deps:
            if dep == "deblendkit":
                bad.append(f"{module} imports the package root deblendkit (import the module instead)")
            elif _part(dep) not in ALLOWED[here]:
                bad.append(f"{module} ({here}) imports {dep} ({_part(dep)})")
    assert not bad, "\n".join(sorted(bad))


def test_rampwf_only_in_the_ramp_adapter():
    bad = []
    for module in MODULES:
        if _part(module) == "ramp":
            continue
        for node, _ in _imports(module):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n == "rampwf" or n.startswith("rampwf.") for n in names):
                bad.append(f"{module}:{node.lineno}")
    assert not bad, f"rampwf imported outside deblendkit/ramp/: {bad}"


def test_imports_inside_functions_are_optional_heavy_packages_with_a_reason():
    bad = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, module_scope in _imports(module):
            if module_scope:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            ok = all(any(n == lazy or n.startswith(lazy + ".") for lazy in LAZY_OK) for n in names)
            context = lines[node.lineno - 1] + (lines[node.lineno - 2] if node.lineno > 1 else "")
            if not ok or "#" not in context:
                bad.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "imports inside functions (allowed: optional heavy packages with a comment):\n" + "\n".join(bad)


def test_modules_and_functions_are_small():
    bad = []
    for module, path in MODULES.items():
        text = path.read_text()
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES:
            bad.append(f"{module}: {n_lines} lines > {MAX_MODULE_LINES}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    bad.append(f"{module}.{node.name}: {length} lines > {MAX_FUNCTION_LINES}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", ["field.py", "distributed.py", "io.py"])
def test_no_module_names_that_shadow_other_packages(name):
    assert not list(PACKAGE.rglob(name)), f"a module named {name} shadows or misleads (dataclasses.field, Dask, io)"


def test_the_checker_sees_a_lazy_import_and_the_packages_an_import_runs():
    # A function-level import is not module scope; a module-level try block is.
    tree = ast.parse("try:\n    import a\nexcept ImportError:\n    pass\ndef f():\n    import b\n")
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert [_in_module_scope(tree, n) for n in imports] == [True, False]
    # Importing deblendkit.sim.survey from config runs deblendkit/sim/__init__.py first; from inside
    # deblendkit.sim it does not (the package is already being initialised).
    assert _with_packages("deblendkit.config", "deblendkit.sim.survey") == ["deblendkit.sim.survey", "deblendkit.sim"]
    assert _with_packages("deblendkit.sim.psf", "deblendkit.sim.survey") == ["deblendkit.sim.survey"]
