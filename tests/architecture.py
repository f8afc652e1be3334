"""Measures of the code's shape: the import graph of the apps, where takes change status,
and who imports whose private names. `tests/test_architecture.py` asserts on them, and
`python tests/architecture.py` prints them (the figures in the issue-11 note).

Imports are read with `ast`, not by importing: every `import`/`from … import` in a module
counts, at module level or inside a function, except those under `if TYPE_CHECKING:`
(annotations only, never executed). An import inside a function still ties the two
modules together, so it is part of a cycle like any other.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "billing", "config", "generation", "workers")


def source_files(apps=APPS) -> list[Path]:
    """The apps' code: no tests, migrations or management commands."""
    files = []
    for app in apps:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts or "management" in parts:
                continue
            files.append(path)
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[str, list[str], bool]]:
    """(imported module, names imported from it, inside a function?) for each import."""
    tree = ast.parse(path.read_text())
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    skip = _type_checking_lines(tree)
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skip:
            continue
        nested = node.lineno in in_function
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], nested) for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = [alias.name for alias in node.names]
        found.append((base, names, nested))
    return found


def _private_attributes(path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(module, name) for each `alias._name` use where `alias` is an imported app module."""
    tree = ast.parse(path.read_text())
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append((aliases[node.value.id], node.attr))
    return found


def internal_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Module → internal modules it imports; and (importer, module, name) for every private
    name one module takes from another (imported, or used as `module._name`)."""
    modules = {module_name(path): path for path in source_files()}
    graph: dict[str, set[str]] = defaultdict(set)
    private = []
    for name, path in modules.items():
        graph[name]
        for base, names, _ in imports_of(path):
            targets = []
            for imported in names or [""]:
                full = f"{base}.{imported}" if imported else base
                if full in modules:  # `from . import dispatch` names a module
                    targets.append(full)
                elif base in modules:
                    targets.append(base)
                    if imported.startswith("_") and base != name:
                        private.append((name, base, imported))
            graph[name].update(t for t in targets if t != name)
        for module, attr in _private_attributes(path, modules):
            if module != name:
                private.append((name, module, attr))
    return graph, sorted(set(private))


def function_level_imports() -> list[tuple[str, str]]:
    """(importer, imported) for imports of the apps' own modules made inside functions."""
    modules = {module_name(path) for path in source_files()}
    found = []
    for path in source_files():
        for base, names, nested in imports_of(path):
            if not nested:
                continue
            if base in modules or any(f"{base}.{n}" in modules for n in names):
                found.append((module_name(path), base))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def app_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    apps: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        app = module.split(".")[0]
        apps[app]
        for target in targets:
            if target.split(".")[0] != app:
                apps[app].add(target.split(".")[0])
    return apps


TAKE_STATUS = re.compile(r"\b(take|locked|ended|t)\.status\s*=[^=]")


def take_status_assignments() -> list[str]:
    """`file:line` of every `<take>.status = …` in the apps' code."""
    found = []
    for path in source_files(("accounts", "billing", "generation", "workers")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if TAKE_STATUS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    return found


def lines_in(app: str) -> int:
    """Lines of code in an app, tests and migrations excluded."""
    return sum(len(path.read_text().splitlines()) for path in source_files((app,)))


def main() -> None:
    graph, private = internal_graph()
    print("lines (no tests/migrations):", {app: lines_in(app) for app in ("workers", "generation")})
    print("take .status = assignments:", len(take_status_assignments()))
    for where in take_status_assignments():
        print("   ", where)
    print("private names imported across modules:", len(private))
    for importer, module, name in private:
        print(f"    {importer} imports {module}.{name}")
    nested = function_level_imports()
    print("function-level imports of the apps' own modules:", len(nested))
    for importer, module in nested:
        print(f"    {importer} → {module}")
    print("module import cycles:", cycles(graph))
    print("app import cycles:", cycles(app_graph(graph)))


if __name__ == "__main__":
    main()
