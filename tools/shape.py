"""The code's shape, as issue #10 fixed it: no function over 40 lines, no module over 400 lines
(migrations aside), and no import cycle among the project's modules.

``python tools/shape.py`` prints what breaks a limit and exits 1 if anything does;
``python tools/shape.py --top N`` also lists the N longest functions and modules.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("appendq", "producer", "workers", "tests", "bench", "tools")
FUNCTION_MAX = 40
MODULE_MAX = 400


def sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def functions(tree: ast.AST) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function, decorators excluded."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                end = child.end_lineno or child.lineno
                yield prefix + child.name, child.lineno, end - child.lineno + 1
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")

    return walk(tree, "")


def imports(tree: ast.AST, name: str, known: set[str]) -> set[str]:
    """The project modules ``name`` imports at module level (TYPE_CHECKING blocks aside)."""
    found: set[str] = set()
    for node in tree.body if isinstance(tree, ast.Module) else []:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            # ``from pkg import module`` depends on that module, not on what pkg/__init__ holds
            own = [] if all(s in known for s in subs) else [node.module]
            targets = own + subs
        found.update(t for t in targets if t in known and t != name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def report(top: int = 0) -> list[str]:
    problems: list[str] = []
    trees = {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sources()}
    longest: list[tuple[int, str]] = []
    sizes: list[tuple[int, str]] = []
    for path, tree in trees.values():
        rel = path.relative_to(ROOT)
        lines = len(path.read_text().splitlines())
        sizes.append((lines, str(rel)))
        if lines > MODULE_MAX:
            problems.append(f"{rel}: {lines} lines (at most {MODULE_MAX})")
        for qual, line, length in functions(tree):
            longest.append((length, f"{rel}:{line} {qual}"))
            if length > FUNCTION_MAX:
                problems.append(f"{rel}:{line} {qual}: {length} lines (at most {FUNCTION_MAX})")
    known = set(trees)
    graph = {name: imports(tree, name, known) for name, (_, tree) in trees.items()}
    problems += ["import cycle: " + " <-> ".join(c) for c in cycles(graph)]
    if top:
        print(f"{len(trees)} modules; longest functions:")
        for length, where in sorted(longest, reverse=True)[:top]:
            print(f"  {length:4d}  {where}")
        print("largest modules:")
        for lines, where in sorted(sizes, reverse=True)[:top]:
            print(f"  {lines:4d}  {where}")
    return problems


def main(argv: list[str]) -> int:
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 0
    problems = report(top)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
