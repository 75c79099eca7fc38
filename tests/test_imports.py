"""The import graph of lpd_core: no cycle, and no import inside a function that could hide one.

Every `import` and `from ... import` of every module is read with ast, at module level and inside
functions alike, and resolved to the lpd_core modules it names; the graph they make must have no
cycle (so the modules stand in layers, each importing only those below it). Imports inside
functions are allowed only where they keep start-up fast (the command line imports a command's
modules when it runs), and only of modules the importer could import at its top as well, which
the cycle check proves.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lpd_core"
# Where function-level imports of lpd_core modules are for start-up time (said in its docstring):
# the command line, and finding a checkpoint, which the command line does before torch is imported.
LAZY_FOR_START_UP = {"lpd_core.__main__", "lpd_core.checkpoints"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported lpd_core module, whether the import is inside a function) for every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from . import x" and "from .a import b" may name a module (x, a.b) or a name in one
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in child.names]
            else:
                visit(child, inside)
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append((target, nested))
    visit(tree, False)
    return found


def graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    found = modules()
    edges, lazy = {name: set() for name in found}, []
    for name, path in found.items():
        for target, nested in imports_of(name, path, set(found)):
            edges[name].add(target)
            if nested:
                lazy.append((name, target))
    return edges, lazy


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            connect(node)
    return found


def test_the_reader_finds_imports_at_every_level(tmp_path):
    """The check can fail: a cycle hidden in a function is found."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    edges, _ = graph()
    assert "lpd_core.settings" in edges["lpd_core.generate"]  # module level
    assert "lpd_core.bulk" in edges["lpd_core.__main__"]  # inside a function


def test_lpd_core_has_no_import_cycle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_imports_inside_functions_only_for_start_up_time():
    _, lazy = graph()
    assert {importer for importer, _ in lazy} <= LAZY_FOR_START_UP, sorted(lazy)


def test_settings_imports_neither_torch_nor_numpy():
    """The command line checks its arguments with lpd_core.settings before torch is imported."""
    tree = ast.parse((PACKAGE / "settings.py").read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
             for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                         if isinstance(node, ast.ImportFrom) and node.module}
    assert not names & {"torch", "numpy", "safetensors", "huggingface_hub", "PIL"}
    edges, _ = graph()
    assert edges["lpd_core.settings"] <= {"lpd_core.errors"}
