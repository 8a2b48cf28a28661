"""source(name): the code of a function or class, headed by its file and line."""

from __future__ import annotations

import ast
import re
import textwrap

from rlm_local.sandbox.helpers.base import Context, check_int, sources

_KEYWORDS = frozenset({"def", "class", "async", "function", "method"})


def defaults_note(lines: list[str]) -> str:
    """A comment line listing a def's parameter defaults, spaced out: `sort=-1` and
    `mode='exec'` are single tokens to Qwen's tokenizer (`=-`, `='`), and the 1.5B model read
    them back as 0 and exec; `sort = -1` it reads right."""
    for end in range(1, min(len(lines), 12) + 1):
        head = textwrap.dedent("\n".join(lines[:end]))
        try:
            node = ast.parse(head + "\n    pass").body[0]
        except SyntaxError:
            continue
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return ""
        args = node.args
        positional = args.posonlyargs + args.args
        with_default = positional[len(positional) - len(args.defaults) :]
        pairs = list(zip(with_default, args.defaults, strict=True))
        keyword = zip(args.kwonlyargs, args.kw_defaults, strict=True)
        pairs += [(arg, default) for arg, default in keyword if default is not None]
        shown = ", ".join(f"{arg.arg} = {ast.unparse(default)}" for arg, default in pairs)
        return f"# defaults: {shown}\n" if shown else ""
    return ""


MAX_DEF_LINES = 3000  # a definition longer than this is cut in the value too


class Source(str):
    """The code of the definitions found, whole: len(), re and .count() see every line. Printed,
    each definition shows its first max_lines lines and says how many more it has: the 1.5B
    model counted a class's methods with a regex over a printed-size cut, and answered 8 of 15."""

    shown: str

    def __new__(cls, whole: str, shown: str) -> Source:
        code = super().__new__(cls, whole)
        code.shown = shown
        return code

    def __str__(self) -> str:
        return self.shown

    __repr__ = __str__


def _definition(body: str, start: int, indent: int) -> list[str]:
    """The lines of the def or class starting at `start`, up to the first line indented no
    deeper than its own (closing brackets of a signature excepted)."""
    lines = body[start:].split("\n", MAX_DEF_LINES + 1)[:MAX_DEF_LINES]
    kept = [lines[0]]
    for line in lines[1:]:
        stripped = line.strip()
        if (
            stripped
            and len(line) - len(line.lstrip()) <= indent
            and not stripped.startswith((")", "]", "}"))
        ):
            break
        kept.append(line)
    while len(kept) > 1 and not kept[-1].strip():
        kept.pop()
    return kept


def source(
    name: str, text: Context | list[str] | None, max_lines: int = 60, max_defs: int = 5
) -> str:
    """The code of each function or class called `name` (else each top-level assignment to
    it), headed by its path and line number; printed, each shows its first `max_lines` lines.

    "search, then read around the hit" in one call for code: a grep window cuts long signatures,
    and small models then parse snippets with regexes and print the wrong group.
    """
    if not isinstance(name, str):
        raise TypeError("source: name must be a str, e.g. source('parse_config')")
    max_lines = check_int("max_lines", max_lines, 1)
    max_defs = check_int("max_defs", max_defs, 1)
    words = [w for w in re.findall(r"[A-Za-z_]\w*", name) if w not in _KEYWORDS]
    if not words:
        raise ValueError("source: name must be a function or class name, e.g. 'parse_config'")
    wanted = words[-1]  # "Config.parse" or "def parse(" -> "parse"
    regex = re.compile(rf"^([ \t]*)(?:async[ \t]+def|def|class)[ \t]+{re.escape(wanted)}\b", re.M)
    found: list[tuple[int, str, str]] = []  # (indent, whole, shown): top level comes first
    for prefix, body in sources(text, "source"):
        for match in regex.finditer(body):
            indent = len(match.group(1).expandtabs())
            found.append(_entry(prefix, body, match.start(), indent, max_lines))
    if not found:  # a constant: a top-level assignment to the name
        assigned = re.compile(rf"^{re.escape(wanted)}[ \t]*(?::[^=\n]+)?=(?!=)", re.M)
        for prefix, body in sources(text, "source"):
            found += [
                _entry(prefix, body, m.start(), 0, max_lines) for m in assigned.finditer(body)
            ]
    if not found:
        return f"(no def, class or assignment named {wanted!r}; try grep({wanted!r}))"
    found.sort(key=lambda item: item[0])  # stable: file order within a level
    chosen = found[:max_defs]
    return Source("\n\n".join(c[1] for c in chosen), "\n\n".join(c[2] for c in chosen))


def _entry(prefix: str, body: str, start: int, indent: int, max_lines: int) -> tuple[int, str, str]:
    """(indent, whole, shown) for the definition starting at `start`, headed by path and line."""
    kept = _definition(body, start, indent)
    line_no = body.count("\n", 0, start) + 1
    where = f"{prefix.rstrip(': ')} line {line_no}".strip()
    head = f"# {where}\n{defaults_note(kept)}"
    shown = head + "\n".join(kept[:max_lines]).rstrip()
    if len(kept) > max_lines:
        more = len(kept) - max_lines
        shown += f"\n    ... ({more} more line{'s' * (more > 1)}, in the str returned)"
    return indent, head + "\n".join(kept).rstrip(), shown
