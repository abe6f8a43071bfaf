"""The package's shape: no import cycle among its modules, no import of a probcausal
module inside a function (the way a cycle is usually hidden), short functions in the
query layers."""

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


def _code_lines(fn: ast.FunctionDef) -> int:
    """A function's lines, its docstring left out."""
    lines = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
    return lines


def test_functions_of_the_query_layers_are_short():
    """No function in handlers/, queries/ or infer/ over 80 lines of code (its
    docstring not counted)."""
    long = []
    for layer in ("handlers", "queries", "infer"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    if (n := _code_lines(node)) > 80:
                        long.append(f"{path.relative_to(ROOT)}:{node.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(long)
