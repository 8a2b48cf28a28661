"""find_lines(pattern): every matching line, numbered, with the true total.

Counting with grep's capped snippet list gave 50 where the truth was in the hundreds; a list of
whole lines whose len() is the count, and whose items are still strings, makes counting and
pulling values out with a regex one obvious step.
"""

from __future__ import annotations

import re
from typing import Any

from rlm_local.sandbox.helpers.base import Context, check_int, sources

SHOWN_LINES = 20  # lines a printed result shows; len() and iteration see them all
SHOWN_CHARS = 200  # a longer line is shown cut

EXAMPLE = """\
Example, to count lines (a log, a table), with a pattern that fits the lines:
```python
hits = find_lines(r"\\bWARN\\b")
print(len(hits))  # the true count
print(hits[:3])
```"""


class Line(str):
    """One line of the input: a str (so regexes and str methods work on it) that knows where it
    stands: `.number` (1-based, in its file) and `.path` (the file, for a dict context)."""

    number: int
    path: str

    def __new__(cls, text: str, number: int, path: str = "") -> Line:
        line = super().__new__(cls, text)
        line.number = number
        line.path = path
        return line

    @property
    def where(self) -> str:
        return f"{self.path}:{self.number}" if self.path else f"line {self.number}"

    @property
    def text(self) -> str:
        return str.__str__(self)


class Lines(list[Line]):
    """find_lines' result: every match; printed, a count and the first lines with their numbers.
    Empty, it says how many lines the pattern matches ignoring case (`ignoring_case`), as a
    small model's "Attendees" pattern misses "attendees"."""

    ignoring_case = 0
    whole: Lines | None = None  # for a slice, the result it was cut from

    def __repr__(self) -> str:
        if not self:
            if self.ignoring_case:
                return f"(0 matching lines)\n({self.ignoring_case} match with ignore_case=True)"
            return "(0 matching lines)"
        shown = [f"  {line.where}: {_cut(line)}" for line in self[:SHOWN_LINES]]
        more = f"\n  ... {len(self) - SHOWN_LINES} more" if len(self) > SHOWN_LINES else ""
        return f"({self._counted()})\n" + "\n".join(shown) + more

    __str__ = __repr__

    def _counted(self) -> str:
        """`14 matching lines in 8 files`; a slice `3 of the 14 …`: a printed `hits[:3]` read
        as "3 matching lines" was answered as the count, and lines as the count of files."""
        whole = self if self.whole is None else self.whole
        paths = {line.path for line in whole if line.path}
        where = f" in {len(paths)} file{'s' * (len(paths) > 1)}" if paths else ""
        if len(whole) == len(self):
            return f"{len(self)} matching line{'s' * (len(self) != 1)}{where}"
        return f"{len(self)} of the {len(whole)} matching lines{where}"

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        if not isinstance(index, slice):
            return item
        part = Lines(item)
        part.whole = self if self.whole is None else self.whole
        return part

    def count(self, *value: Any) -> int:
        """With no argument, the number of lines: the 1.5B model wrote `find_lines(p).count()`
        for a count, cell after cell, and list.count wants the item to count."""
        if not value:
            return len(self)
        return super().count(*value)


def _cut(line: str) -> str:
    text = line.rstrip("\r")
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " ..."


def find_lines(
    pattern: str, text: Context | list[str] | None, ignore_case: bool = False, limit: int = 0
) -> Lines:
    """Every line matching the regex `pattern`, case-sensitive unless `ignore_case` (a count of
    "ERROR" lines must not count "error = ..." in WARN lines); an invalid regex is searched
    literally; `limit` > 0 keeps only the first `limit`. "" matches every non-empty line."""
    if not isinstance(pattern, str):
        raise TypeError("find_lines: pattern must be a str, e.g. find_lines(r'ERROR')")
    limit = check_int("limit", limit, 0)
    flags = re.IGNORECASE if ignore_case else 0
    try:
        regex = re.compile(pattern, flags)
    except re.error:
        regex = re.compile(re.escape(pattern), flags)
    found = _matching(regex, text, limit)
    if not found and not ignore_case:
        found.ignoring_case = len(_matching(re.compile(regex.pattern, re.IGNORECASE), text, 0))
    return found


def _matching(regex: re.Pattern[str], text: Context | list[str] | None, limit: int) -> Lines:
    found = Lines()
    for prefix, body in sources(text, "find_lines"):
        path = prefix.rstrip(": ")
        for number, line in enumerate(body.split("\n"), 1):
            if line.strip() and regex.search(line):
                found.append(Line(line.rstrip("\r"), number, path))
                if limit and len(found) >= limit:
                    return found
    return found
