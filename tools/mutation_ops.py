"""The mutation operators of ``tools/mutate.py``: which small changes are made to a policy's Python
(from its syntax tree, spliced into the file's bytes so that everything else stays as it is) and
to the Lua scripts it holds (from their text)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Site:
    """What of one file is mutated: these functions (qualified names; None: all), the
    module-level constants named, and the Lua scripts held by the constants named."""

    path: str
    scope: tuple[str, ...] | None = None
    constants: tuple[str, ...] = ()
    lua: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mutant:
    module: str
    path: str
    line: int
    start: int  # byte offsets of the replaced text in the file
    end: int
    text: str
    key: str  # "path::scope: change", stable across unrelated edits (see EQUIVALENT)


# -- Python: mutations from the syntax tree -----------------------------------------------------

SWAP: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE,), ast.LtE: (ast.Lt,), ast.Gt: (ast.GtE,), ast.GtE: (ast.Gt,),
    ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,), ast.NotIn: (ast.In,), ast.Add: (ast.Sub,), ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div,), ast.Div: (ast.Mult,), ast.FloorDiv: (ast.Mult,),
    ast.Pow: (ast.Mult,), ast.Mod: (ast.FloorDiv,), ast.And: (ast.Or,), ast.Or: (ast.And,),
}  # fmt: skip
SKIPPED_FIELDS = {"annotation", "returns", "type_comment", "decorator_list"}


def numbers(value: object) -> list[object]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int | float):
        return [value + 1] + ([0] if value == 1 else [])
    return []


def stringy(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


Change = tuple[ast.AST, str]  # (node whose text is replaced, the replacement's source)


def _compare(node: ast.Compare) -> Iterator[Change]:
    for i, op in enumerate(node.ops):
        for new in SWAP.get(type(op), ()):
            ops = [*node.ops[:i], new(), *node.ops[i + 1 :]]
            yield node, ast.unparse(ast.Compare(node.left, ops, node.comparators))


def _binop(node: ast.BinOp) -> Iterator[Change]:
    if not (stringy(node.left) or stringy(node.right)):  # "a" + b is no arithmetic
        for new in SWAP.get(type(node.op), ()):
            yield node, ast.unparse(ast.BinOp(node.left, new(), node.right))


def _boolop(node: ast.BoolOp) -> Iterator[Change]:
    for new in SWAP[type(node.op)]:
        yield node, ast.unparse(ast.BoolOp(new(), node.values))


def _not(node: ast.UnaryOp) -> Iterator[Change]:
    if isinstance(node.op, ast.Not):
        yield node, ast.unparse(node.operand)


def _constant(node: ast.Constant) -> Iterator[Change]:
    for value in numbers(node.value):
        yield node, repr(value)


def _return(node: ast.Return) -> Iterator[Change]:
    if node.value is not None and not (
        isinstance(node.value, ast.Constant) and node.value.value is None
    ):
        yield node.value, "None"


def _branch(node: ast.If | ast.While) -> Iterator[Change]:
    yield node.test, "False"


def _raise(node: ast.Raise) -> Iterator[Change]:
    yield node, "pass"


CHANGES: dict[type, Callable[[Any], Iterator[Change]]] = {
    ast.Compare: _compare, ast.BinOp: _binop, ast.BoolOp: _boolop, ast.UnaryOp: _not,
    ast.Constant: _constant, ast.Return: _return, ast.If: _branch, ast.While: _branch,
    ast.Raise: _raise,
}  # fmt: skip


def changes(node: ast.AST) -> Iterator[Change]:
    """Each mutation of ``node``: the node whose text is replaced, and by what."""
    change = CHANGES.get(type(node))
    return change(node) if change is not None else iter(())


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node``, without annotations, docstrings and f-strings."""
    for name, value in ast.iter_fields(node):
        if name in SKIPPED_FIELDS:
            continue
        for child in value if isinstance(value, list) else [value]:
            if not isinstance(child, ast.AST) or isinstance(child, ast.JoinedStr):
                continue
            if isinstance(child, ast.Expr) and stringy(child.value):
                continue
            yield child
            yield from walk(child)


def scopes(tree: ast.Module, site: Site) -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of each function and constant of ``site`` to mutate."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.AST]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef):
                name = prefix + child.name
                if site.scope is None or name in site.scope:
                    yield name, child
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, prefix + child.name + ".")

    yield from visit(tree, "")
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id in site.constants:
            yield target.id, node.value


class Source:
    """A file's bytes, with ast positions (line, UTF-8 column) turned into offsets."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.starts[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
        end = self.starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
        return start, end


def python_mutants(module: str, site: Site, source: Source) -> Iterator[Mutant]:
    tree = ast.parse(source.data)
    for scope, root in scopes(tree, site):
        for node in [root, *walk(root)]:
            for target, text in changes(node):
                start, end = source.span(target)
                old = source.data[start:end].decode()
                if not isinstance(target, ast.stmt):
                    text = f"({text})"
                change = f"{' '.join(old.split())[:70]} -> {' '.join(text.split())[:70]}"
                line = target.lineno  # type: ignore[attr-defined]
                key = f"{site.path}::{scope}: {change}"
                yield Mutant(module, site.path, line, start, end, text, key)


# -- Lua: mutations of the scripts' text ---------------------------------------------------------

LUA_TOKEN = re.compile(
    r"(?P<skip>--[^\n]*|'[^']*'|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*|\.\.)"
    r"|(?P<num>\d+(?:\.\d+)?)|(?P<op><=|>=|==|~=|<|>|\+|-|\*|/)|(?P<punct>[()\[\]{},=#;])"
)
LUA_SWAP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "~=", "~=": "==", "+": "-",
            "-": "+", "*": "/", "/": "*", "and": "or", "or": "and"}  # fmt: skip
#: After these, a "-" is a negative number's sign: the number is mutated, not the sign.
LUA_UNARY_AFTER = {"", "(", ",", "{", "[", "=", "return", *LUA_SWAP}


def lua_changes(script: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, replacement) within ``script`` for each mutation of its code."""
    previous = ""
    for match in LUA_TOKEN.finditer(script):
        token = match.group()
        index = previous == "[" and script[match.end() : match.end() + 1] == "]"
        if match.group("num") and not index:  # KEYS[1], ARGV[3]: addressing, not policy
            for value in numbers(float(token) if "." in token else int(token)):
                yield match.start(), match.end(), str(value)
        unary = token == "-" and previous in LUA_UNARY_AFTER
        if (match.group("op") and not unary) or token in ("and", "or"):
            yield match.start(), match.end(), LUA_SWAP[token]
        previous = token


def lua_mutants(module: str, site: Site, source: Source) -> Iterator[Mutant]:
    tree = ast.parse(source.data)
    for name, node in scopes(tree, Site(site.path, (), site.lua)):
        assert isinstance(node, ast.Constant) and isinstance(node.value, str), name
        script = node.value.encode()
        at = source.data.index(script, source.span(node)[0])  # the literal holds no escapes
        for start, end, text in lua_changes(node.value):
            line = source.data.count(b"\n", 0, at + start) + 1
            context = node.value[max(start - 25, 0) : end + 15].replace("\n", " ")
            key = f"{site.path}::{name}: {node.value[start:end]} -> {text} in '{context}'"
            yield Mutant(module, site.path, line, at + start, at + end, text, key)
