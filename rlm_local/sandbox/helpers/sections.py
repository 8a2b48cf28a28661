"""sections(): a document cut into its parts — markdown or reST headings, else blank-line blocks.

A list question over a long document ("which items were decided") needs every relevant part
read; a part with its heading and line number is the unit to search, read and cite.
"""

from __future__ import annotations

import re
from typing import Any

from rlm_local.sandbox.helpers.base import Context, sources

SHOWN_SECTIONS = 30
MAX_BLOCK_CHARS = 3000  # blank-line blocks are joined up to this size
_MARKDOWN = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^([=\-~^*+#])\1{2,}\s*$")

EXAMPLE = """\
Example, to answer from every relevant part of a document (lists, "which" questions):
```python
parts = [s for s in sections() if "budget" in s.lower()]
print(len(parts), [s.title for s in parts])
answers = ask_each("Which decisions about the budget are stated? Say none if none.", parts)
for part, answer in zip(parts, answers):
    print(part.where, answer)
```"""


class Section(str):
    """A part of the input: its full text (a str) with `.title`, `.path` and `.line` (1-based
    line of its first line in its file)."""

    title: str
    path: str
    line: int

    def __new__(cls, text: str, title: str, line: int, path: str = "") -> Section:
        section = super().__new__(cls, text)
        section.title = title
        section.line = line
        section.path = path
        return section

    @property
    def where(self) -> str:
        place = f"{self.path}:{self.line}" if self.path else f"line {self.line}"
        return f"{place} {self.title!r}" if self.title else place

    @property
    def text(self) -> str:
        return str.__str__(self)


class Sections(list[Section]):
    """Printed, a table of contents (where, title, size), not the texts."""

    def __repr__(self) -> str:
        if not self:
            return "(0 sections)"
        shown = [f"  {s.where} ({len(s):,} chars)" for s in self[:SHOWN_SECTIONS]]
        more = f"\n  ... {len(self) - SHOWN_SECTIONS} more" if len(self) > SHOWN_SECTIONS else ""
        return f"({len(self)} sections)\n" + "\n".join(shown) + more

    __str__ = __repr__

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return Sections(item) if isinstance(index, slice) else item


def _heading(rows: list[str], i: int) -> tuple[int, str] | None:
    """The heading that starts at row i, if any, with its level: markdown `## x` (2), or a reST
    title underlined (level 1: reST levels are set by use, not by the character)."""
    match = _MARKDOWN.match(rows[i])
    if match:
        return len(match.group(1)), match.group(2)
    title = rows[i].strip()
    below = rows[i + 1] if i + 1 < len(rows) else ""
    underlined = _UNDERLINE.match(below) and len(below.strip()) >= min(len(title), 3)
    if title and underlined and not _UNDERLINE.match(rows[i]):
        return 1, title
    return None


def _titled(rows: list[str]) -> list[tuple[int, str]]:
    """(row, title) of every heading; a nested heading's title names its parents
    ("Float16Array > Conclusion"), so a "Conclusion" says which item it concludes."""
    found = []
    parents: list[tuple[int, str]] = []  # (level, title) of the open headings
    for i in range(len(rows)):
        heading = _heading(rows, i)
        if heading is None:
            continue
        level, title = heading
        parents = [p for p in parents if p[0] < level] + [heading]
        shown = [t for lvl, t in parents[-2:] if lvl > 1 or (lvl, t) == heading]
        found.append((i, " > ".join(shown)))
    return found


def _by_headings(body: str, path: str) -> list[Section]:
    rows = body.split("\n")
    starts = _titled(rows)
    if len(starts) < 2:
        return []
    if starts[0][0] > 0:
        starts.insert(0, (0, ""))
    parts = []
    for (start, title), (end, _) in zip(starts, [*starts[1:], (len(rows), "")], strict=True):
        text = "\n".join(rows[start:end]).strip("\n")
        if text.strip():
            parts.append(Section(text, title, start + 1, path))
    return parts


def _by_blocks(body: str, path: str) -> list[Section]:
    """Blank-line blocks, joined while under MAX_BLOCK_CHARS; a huge block is cut at lines."""
    parts: list[Section] = []
    rows = body.split("\n")
    start, size = 0, 0
    for i, row in enumerate(rows + [""]):
        size += len(row) + 1
        at_break = not row.strip() and size >= MAX_BLOCK_CHARS // 2
        if at_break or size >= MAX_BLOCK_CHARS or i == len(rows):
            text = "\n".join(rows[start : i + 1]).strip("\n")
            if text.strip():
                first = start + next(n for n, r in enumerate(rows[start:]) if r.strip())
                parts.append(Section(text, "", first + 1, path))
            start, size = i + 1, 0
    return parts


def sections(text: Context | list[str] | None) -> Sections:
    """The parts of each file: by headings when it has at least two, else by blank-line blocks."""
    found = Sections()
    for prefix, body in sources(text, "sections"):
        path = prefix.rstrip(": ")
        found.extend(_by_headings(body, path) or _by_blocks(body, path))
    return found
