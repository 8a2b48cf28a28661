"""definitions(): every function, method and class of the Python files, parsed, with where each
stands.

Asked which class defines the most methods, or which module has the most top-level functions,
the 1.5B model counted `def ` with regexes on one file, or on every line (nested functions and
methods included): the counts a question means depend on nesting that a regex cannot see. Parsed
once with `ast`, each question is a filter and a Counter over plain attributes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

from rlm_local.sandbox.helpers.base import Context, sources

SHOWN_DEFINITIONS = 20


class Definition(str):
    """A def or class: its name (a str) with `.kind` ("function" at a module's top level,
    "method" directly in a class body, "nested" inside a function, "class"), `.path`, `.line`,
    `.parent` (the enclosing class or function, "" at top level), `.params` and `.bases`."""

    kind: str
    path: str
    line: int
    parent: str
    params: list[str]
    bases: list[str]

    def __repr__(self) -> str:
        inside = f" in {self.parent}" if self.parent else ""
        args = f"({', '.join(self.params)})" if self.kind != "class" else ""
        bases = f"({', '.join(self.bases)})" if self.bases else ""
        return f"{self.path}:{self.line} {self.kind} {str.__str__(self)}{args}{bases}{inside}"


class Definitions(list[Definition]):
    """definitions()' result: printed, the count and the first ones with where they stand."""

    def __repr__(self) -> str:
        shown = "\n".join(f"  {d!r}" for d in self[:SHOWN_DEFINITIONS])
        hidden = len(self) - SHOWN_DEFINITIONS
        more = f"\n  ... {hidden} more" if hidden > 0 else ""
        return f"({len(self)} definitions)\n{shown}{more}"

    __str__ = __repr__

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return Definitions(item) if isinstance(index, slice) else item


def _definition(node: ast.AST, path: str, kind: str, parent: str) -> Definition:
    name = getattr(node, "name", "")
    found = Definition.__new__(Definition, name)
    found.kind, found.path, found.parent = kind, path, parent
    found.line = getattr(node, "lineno", 0)
    found.params, found.bases = [], []
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args
        every = [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]
        found.params = [arg.arg for arg in every if arg is not None]
    elif isinstance(node, ast.ClassDef):
        found.bases = [ast.unparse(base) for base in node.bases]
    return found


def _walk(
    body: list[ast.stmt], path: str, parent: str, in_class: bool, in_def: bool
) -> Iterator[Definition]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield _definition(node, path, "class", parent)
            yield from _walk(node.body, path, node.name, True, False)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "method" if in_class else "nested" if in_def else "function"
            yield _definition(node, path, kind, parent)
            yield from _walk(node.body, path, node.name, False, True)
        else:  # defs under if/try/with/for blocks keep the enclosing level
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _walk(inner, path, parent, in_class, in_def)


def python_files(files: dict[str, str]) -> int:
    """How many of a directory's files are Python source."""
    return sum(path.endswith((".py", ".pyi")) for path in files)


def definitions(text: Context | list[str] | None) -> Definitions:
    """Every def and class of each Python file (a dict's ".py" paths, or a str of code), in file
    order; a file that does not parse is skipped."""
    found = Definitions()
    for prefix, body in sources(text, "definitions"):
        path = prefix.rstrip(": ")
        if isinstance(text, dict) and not python_files({path: body}):
            continue
        try:
            tree = ast.parse(body)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        found.extend(_walk(tree.body, path, "", False, False))
    return found
