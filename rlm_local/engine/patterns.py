"""The patterns a cell wrote that match no line of the input, shown with lines that hold their
words.

The 1.5B model writes its first pattern for the lines it imagines (`Client IP: (\\d+...)`,
`Created: (\\d{4})` for `Created: 26-Apr-2019`), gets an empty list, an IndexError or a 0, and
guesses again. Said plainly, with real lines that hold the pattern's words, the next pattern can
fit how the input is written. Model-written patterns run under the `regex` module's timeout: a
pattern that backtracks for ever must not stall the engine.
"""

from __future__ import annotations

import ast
import heapq
import re
import time
from dataclasses import dataclass

import regex

REGEX_CALLS = frozenset(
    ["findall", "finditer", "search", "match", "fullmatch", "compile", "split", "sub", "subn"]
)
HELPER_CALLS = frozenset(["find_lines", "tally"])  # helpers whose first argument is a regex
MIN_LITERAL_CHARS = 4  # a shorter `"x" in line` test is no pattern worth a note
MAX_NOTED = 2  # patterns a note shows
SHOWN_LINES = 3  # lines with a pattern's words, per pattern
MAX_LINE_CHARS = 160
TIMEOUT_SECONDS = 1.0  # for all the cell's patterns; one that would take longer gets no note


@dataclass(frozen=True)
class Pattern:
    """A pattern the cell wrote: a regex, or a literal tested with `in`."""

    text: str
    literal: bool = False
    ignore_case: bool = False


def written_patterns(code: str) -> list[Pattern]:
    """The regexes passed as string constants to re's functions, find_lines or tally, and the
    string constants tested with `in`, in the order written."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    found: dict[Pattern, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _takes_regex(node) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value:
                found[Pattern(first.value, ignore_case=_ignores_case(node))] = None
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant):
            value = node.left.value
            in_test = any(isinstance(op, ast.In | ast.NotIn) for op in node.ops)
            if in_test and isinstance(value, str) and len(value.strip()) >= MIN_LITERAL_CHARS:
                found[Pattern(value, literal=True)] = None
    return list(found)


def _takes_regex(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return (
            isinstance(func.value, ast.Name) and func.value.id == "re" and func.attr in REGEX_CALLS
        )
    return isinstance(func, ast.Name) and func.id in HELPER_CALLS


def _ignores_case(call: ast.Call) -> bool:
    written = ast.unparse(call)
    return "IGNORECASE" in written or "re.I" in written or "ignore_case=True" in written


def unmatched_note(code: str, context: str | dict[str, str]) -> str:
    """A note for the cell's patterns that match no line of the input ("" when every one
    matches): each with up to SHOWN_LINES lines that hold the most of its words."""
    texts = (
        [("", context)] if isinstance(context, str) else [(f"{p}: ", t) for p, t in context.items()]
    )
    notes = []
    deadline = time.monotonic() + TIMEOUT_SECONDS
    for pattern in written_patterns(code):
        if len(notes) == MAX_NOTED:
            break
        if _matches(pattern, texts, deadline) is not False:
            continue
        notes.append(_describe(pattern, texts))
    return "\n".join(f"Note: {note}" for note in notes)


def _matches(pattern: Pattern, texts: list[tuple[str, str]], deadline: float) -> bool | None:
    """Whether the pattern matches somewhere; None when that cannot be told by the deadline."""
    if pattern.literal:
        return any(pattern.text in text for _path, text in texts)
    flags = regex.MULTILINE | (regex.IGNORECASE if pattern.ignore_case else 0)
    try:
        compiled = regex.compile(pattern.text, flags)
        for _path, text in texts:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if compiled.search(text, timeout=left):
                return True
        return False
    except (regex.error, TimeoutError, ValueError, OverflowError):
        return None


def _describe(pattern: Pattern, texts: list[tuple[str, str]]) -> str:
    shown = repr(pattern.text)
    plain = not any(c in pattern.text for c in "'\n") and not pattern.text.endswith("\\")
    if not pattern.literal and plain:
        shown = f"r'{pattern.text}'"  # as the model wrote it, not with its backslashes doubled
    what = "occurs in" if pattern.literal else "matches"
    head = f"{shown} {what} no line of `context`."
    words = _words(pattern.text)
    lines = _lines_with(words, texts)
    if not lines:
        return head
    listed = "\n".join(f"  {line}" for line in lines)
    return f"{head} Lines that hold its words ({', '.join(words)}):\n{listed}"


def _words(pattern: str) -> list[str]:
    """The words a pattern spells out: letters outside escapes (\\d, \\w, \\b) and classes."""
    plain = re.sub(r"\\[A-Za-z]|\[[^\]]*\]|\{[^}]*\}", " ", pattern)
    return list(dict.fromkeys(w.lower() for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9_]{2,}", plain)))


def _lines_with(words: list[str], texts: list[tuple[str, str]]) -> list[str]:
    """The lines that hold the most of the words (ignoring case; more than half of them), first
    ones first; in a directory, each after its file's path."""
    if not words:
        return []
    enough = len(words) // 2 + 1
    held = (
        (sum(word in line.lower() for word in words), path + line.strip())
        for path, text in texts
        for line in text.split("\n")
    )
    # nsmallest keeps the input's order among equals: the first such lines come first.
    best = heapq.nsmallest(
        SHOWN_LINES, ((-n, line) for n, line in held if n >= enough), key=lambda item: item[0]
    )
    return [_cut(line) for _held, line in best]


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " ..."


def matches_line(pattern: Pattern, line: str) -> bool:
    """Whether the pattern matches in the line (a broken or too slow regex does not)."""
    if pattern.literal:
        return pattern.text in line
    flags = regex.IGNORECASE if pattern.ignore_case else 0
    try:
        return regex.search(pattern.text, line, flags, timeout=TIMEOUT_SECONDS) is not None
    except (regex.error, TimeoutError, ValueError, OverflowError):
        return False
