r"""tables(): the pipe tables of a document (markdown), each a list of rows keyed by column.

Asked to count an attendee table's rows by organisation, the 1.5B model searched for the words
"Attendee Table" or matched `Organization=(\w+)`, a layout it imagined; a table parsed once,
with its column names printed, makes a tally of a column a plain dict lookup. It also wrote
`table["Attendee"]` for a column, as in pandas: a column can be had by name, and a name that is
no column says which ones are.
"""

from __future__ import annotations

import re
from typing import Any

from rlm_local.sandbox.helpers.base import Context, sources

SHOWN_ROWS = 3  # rows a printed table shows; iteration and len() see them all
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")

EXAMPLE = """\
Example, for a table in a document (lines of | cells |):
```python
table = tables()[0]  # a list of rows, each a dict: column name -> cell
print(len(table), table.columns)
print(Counter(table["Status"]).most_common(5))  # table["Status"]: that column's cells
```"""


def _column(columns: list[str], name: str) -> str:
    """The column called `name`, whatever its case; a KeyError that names the columns if none."""
    if name in columns:
        return name
    wanted = name.strip().casefold()
    for column in columns:
        if column.casefold() == wanted:
            return column
    raise KeyError(f"no column {name!r}; the columns are {', '.join(map(repr, columns))}")


class Row(dict[str, str]):
    """One row: column name -> cell; a column is found whatever its case."""

    def __missing__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return self[_column(list(self), name)]


class Table(list[Row]):
    """One table: its rows as dicts, with `.columns` and where it starts (`.path`, `.line`);
    `table["Name"]` is that column's cells, top to bottom."""

    columns: list[str]
    path: str
    line: int

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            column = _column(self.columns, key)
            return [row[column] for row in self]
        return super().__getitem__(key)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.path else f"line {self.line}"

    def __repr__(self) -> str:
        shown = "\n".join(f"  {dict(row)}" for row in list.__getitem__(self, slice(SHOWN_ROWS)))
        more = f"\n  ... {len(self) - SHOWN_ROWS} more rows" if len(self) > SHOWN_ROWS else ""
        return f"(table at {self.where}: {len(self)} rows; columns {self.columns})\n{shown}{more}"

    __str__ = __repr__


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def _table(rows: list[str], path: str, line: int) -> Table:
    table = Table()
    table.columns = [
        name.strip("*_` ") or f"column {n}" for n, name in enumerate(_cells(rows[0]), 1)
    ]
    table.path, table.line = path, line
    for row in rows[2:]:
        cells = _cells(row) + [""] * len(table.columns)  # a short row: empty cells
        table.append(Row(zip(table.columns, cells, strict=False)))
    return table


def tables(text: Context | list[str] | None) -> list[Table]:
    """Every pipe table: a header row, a |---| separator row (a heading's underline has no |),
    then rows, in reading order."""
    found: list[Table] = []
    for prefix, body in sources(text, "tables"):
        lines = body.split("\n")
        start = 0
        while start < len(lines) - 1:
            below = lines[start + 1].strip()
            if "|" in lines[start] and "|" in below and _SEPARATOR.match(below):
                end = start + 2
                while end < len(lines) and "|" in lines[end] and lines[end].strip():
                    end += 1
                found.append(_table(lines[start:end], prefix.rstrip(": "), start + 1))
                start = end
            else:
                start += 1
    return found
