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
        if not self.line:  # made of many files' lines: header_table()
            return self.path
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
    then rows, in reading order; for a dict of files, first the header_table() of their
    `Key: value` header lines, if they have them."""
    headers = header_table(text) if isinstance(text, dict) else None
    found: list[Table] = [headers] if headers is not None else []
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


HEADERS_WHERE = "the files' header lines"
FILE_COLUMN = "file"
MIN_HEADER_KEYS = 2  # one `Key: value` line opens many texts; a header has several
MAX_HEADER_LINES = 60
_HEADER_LINE = re.compile(r"^([A-Za-z][\w-]{0,30}):(?:[ \t]+(.*))?$")


def _header(body: str) -> dict[str, str]:
    """The `Key: value` lines a text opens with (an indented line continues a value; a key said
    twice keeps both values), up to the first line that is neither; a front matter's `---`
    fence is skipped."""
    lines = body.split("\n", MAX_HEADER_LINES + 1)[:MAX_HEADER_LINES]
    start = 1 if lines and lines[0].strip() == "---" else 0
    fields: dict[str, str] = {}
    key = ""
    for line in lines[start:]:
        if key and line[:1] in (" ", "\t") and line.strip():
            fields[key] = f"{fields[key]} {line.strip()}".strip()
            continue
        match = _HEADER_LINE.match(line.rstrip())
        if match is None:
            break
        key, value = match.group(1), (match.group(2) or "").strip()
        fields[key] = f"{fields[key]}, {value}" if fields.get(key) else value
    return fields if len(fields) >= MIN_HEADER_KEYS else {}


def header_table(files: dict[str, str]) -> Table | None:
    """The files that open with `Key: value` header lines (PEPs and RFCs, e-mails, front
    matter) as one table: a row per file, its path in column `file`, a column per key (empty
    where a file has none); None unless two or more files have such a header. Asked which PEPs
    a person sponsored, the 1.5B model counted matching lines, several to a file, or read one
    file's header for all."""
    headers = {
        path: fields
        for path, body in files.items()
        if isinstance(body, str) and (fields := _header(body))
    }
    if len(headers) < 2:
        return None
    table = Table()
    keys = dict.fromkeys(key for fields in headers.values() for key in fields)
    table.columns = [FILE_COLUMN, *(key for key in keys if key != FILE_COLUMN)]
    table.path, table.line = HEADERS_WHERE, 0
    for path, fields in headers.items():
        cells = {key: fields.get(key, "") for key in table.columns[1:]}
        table.append(Row({FILE_COLUMN: path, **cells}))
    return table
