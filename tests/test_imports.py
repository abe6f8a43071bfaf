"""The package's import graph: no cycle among its modules, and no import of a
probcausal module inside a function (the way a cycle is usually hidden)."""

import ast
import pathlib

import networkx as nx

ROOT = pathlib.Path(__file__).resolve().parents[1] / "probcausal"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        if path.name == "conftest.py":
            continue
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _target(modules, module: str, name: str | None) -> str | None:
    """The probcausal module an import statement loads (a submodule when ``name``
    is one, else the module itself)."""
    if name is not None and f"{module}.{name}" in modules:
        return f"{module}.{name}"
    return module if module in modules else None


def _imports(modules, name: str, path: pathlib.Path):
    """(target, inside a function?) for every probcausal import of a module."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nested = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            nested.update(id(n) for n in ast.walk(fn) if n is not fn)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [_target(modules, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [_target(modules, base, a.name) for a in node.names]
        else:
            continue
        for t in targets:
            if t is not None and t != name:
                yield t, id(node) in nested


def test_no_import_cycle_and_none_inside_functions():
    modules = _modules()
    g = nx.DiGraph()
    hidden = []
    for name, path in modules.items():
        g.add_node(name)
        for target, in_function in _imports(modules, name, path):
            g.add_edge(name, target)
            if in_function:
                hidden.append(f"{name} -> {target}")
    assert not hidden, "imports inside functions: " + ", ".join(sorted(set(hidden)))
    cycles = [c for c in nx.simple_cycles(g) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:10])
