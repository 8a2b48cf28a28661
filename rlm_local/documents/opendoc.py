"""OpenDocument text (.odt) with the standard library: its content.xml read in order.

Headings become markdown headings, list items "- " lines, table rows one line of cells.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree import ElementTree

from rlm_local.documents.base import ConvertOptions, DocumentError, Extracted
from rlm_local.documents.office import row_line
from rlm_local.documents.zipguard import open_checked

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_SKIP = {f"{_TEXT}note", f"{_TEXT}tracked-changes", f"{_OFFICE}annotation"}


def _inline(element: ElementTree.Element) -> str:
    """A paragraph's text: spans and links kept, <text:s c="3"/> as spaces, notes left out."""
    out = [element.text or ""]
    for child in element:
        if child.tag == f"{_TEXT}s":
            out.append(" " * int(child.get(f"{_TEXT}c", "1") or 1))
        elif child.tag == f"{_TEXT}tab":
            out.append("\t")
        elif child.tag == f"{_TEXT}line-break":
            out.append("\n")
        elif child.tag not in _SKIP:
            out.append(_inline(child))
        out.append(child.tail or "")
    return "".join(out)


def _cell_text(cell: ElementTree.Element) -> str:
    return " ".join(_inline(p) for p in cell.iter() if p.tag in (f"{_TEXT}p", f"{_TEXT}h"))


def _rows(table: ElementTree.Element) -> Iterator[str]:
    for row in table.iter(f"{_TABLE}table-row"):
        cells = [_cell_text(c) for c in row if c.tag == f"{_TABLE}table-cell"]
        if any(c.strip() for c in cells):
            yield row_line(cells)


def _blocks(element: ElementTree.Element, bullet: str = "") -> Iterator[str]:
    for child in element:
        if child.tag == f"{_TEXT}h":
            level = int(child.get(f"{_TEXT}outline-level", "1") or 1)
            yield f"{'#' * min(level, 6)} {_inline(child).strip()}"
        elif child.tag == f"{_TEXT}p":
            if text := _inline(child).strip():
                yield f"{bullet}{text}"
        elif child.tag == f"{_TEXT}list":
            yield from _blocks(child, "- ")
        elif child.tag == f"{_TABLE}table":
            yield ""
            yield from _rows(child)
            yield ""
        elif child.tag not in _SKIP:
            yield from _blocks(child, bullet)


def convert_odt(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    with open_checked(data, "ODT", options) as archive:
        try:
            root = ElementTree.fromstring(archive.read("content.xml"))
        except KeyError:
            raise DocumentError("it is a damaged ODT file: content.xml is missing") from None
    body = root.find(f"{_OFFICE}body/{_OFFICE}text")
    text = "\n".join(_blocks(body)).strip() if body is not None else ""
    if not text:
        raise DocumentError("it holds no text")
    return Extracted(text + "\n")
