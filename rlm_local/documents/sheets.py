"""CSV/TSV (standard library) and XLSX (openpyxl) as lines of records: one line per row.

Each row is written with its header, `Name: Ada || City: Oslo`, the line shape the sandbox's
`records()` helper and classify already read; a workbook gets a `--- sheet NAME ---` line per sheet.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from typing import Any

from rlm_local.documents.base import ConvertOptions, DocumentError, Extracted, require
from rlm_local.documents.zipguard import check_zip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


def record_lines(rows: Iterable[list[Any]]) -> Iterator[str]:
    """The first non-empty row is the header; every later row becomes `Header: value || …`,
    empty cells left out; a column with no header is named `column N`."""
    header: list[str] | None = None
    for raw in rows:
        cells = [_cell(v) for v in raw]
        if not any(cells):
            continue
        if header is None:
            header = [c or f"column {n}" for n, c in enumerate(cells, start=1)]
            yield " || ".join(header)
            continue
        names = header + [f"column {n}" for n in range(len(header) + 1, len(cells) + 1)]
        yield " || ".join(f"{k}: {v}" for k, v in zip(names, cells, strict=False) if v)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def convert_delimited(data: bytes, name: str, options: ConvertOptions, delimiter: str) -> Extracted:
    text = _decode(data)
    try:
        lines = list(record_lines(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)))
    except csv.Error as exc:
        raise DocumentError(
            f"it is not well-formed {'CSV' if delimiter == ',' else 'TSV'} ({exc})"
        ) from None
    if not lines:
        raise DocumentError("it holds no rows")
    return Extracted("\n".join(lines) + "\n", pages=None)


def convert_csv(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    return convert_delimited(data, name, options, ",")


def convert_tsv(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    return convert_delimited(data, name, options, "\t")


def convert_xlsx(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    openpyxl = require("openpyxl", "Excel (.xlsx) files")
    check_zip(data, "XLSX", options)
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    parts: list[str] = []
    try:
        for sheet in book.worksheets:
            rows = sheet.iter_rows(values_only=True)
            lines = list(record_lines(list(r) for r in rows))
            parts.append("\n".join([f"--- sheet {sheet.title} ---", *lines]))
        sheets = len(book.worksheets)
    finally:
        book.close()
    if not any("\n" in part for part in parts):
        raise DocumentError("it holds no cells with values")
    return Extracted("\n".join(parts) + "\n", pages=sheets)
