"""Word (python-docx) and PowerPoint (the standard library's XML parser) documents.

Headings become markdown headings and each table row one line of cells joined by " | ", so a
row can be found with grep and read whole. Slides get a `--- slide N ---` line.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

from rlm_local.documents.base import ConvertOptions, DocumentError, Extracted, require
from rlm_local.documents.zipguard import check_zip, open_checked

_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def row_line(cells: list[str]) -> str:
    """One table row as one line; cells keep their order, line breaks inside them become spaces."""
    return " | ".join(" ".join(cell.split()) for cell in cells)


# -- DOCX ---------------------------------------------------------------------------------------


def _paragraph_line(paragraph: Any) -> str:
    text = paragraph.text.strip()
    if not text:
        return ""
    try:
        style = (paragraph.style.name or "") if paragraph.style is not None else ""
    except (KeyError, ValueError, AttributeError):
        style = ""
    if style == "Title":
        return f"# {text}"
    if style.startswith("Heading "):
        level = style.removeprefix("Heading ").strip()
        return f"{'#' * min(int(level), 6)} {text}" if level.isdigit() else text
    if style.startswith("List"):
        return f"- {text}"
    return text


def _table_lines(table: Any) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        seen: list[Any] = []
        for cell in row.cells:  # a merged cell is listed once per grid column it spans
            if seen and cell._tc is seen[-1]:
                continue
            seen.append(cell._tc)
            cells.append(cell.text)
        if any(c.strip() for c in cells):
            yield row_line(cells)


def convert_docx(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    docx = require("docx", "Word (.docx) files")
    check_zip(data, "DOCX", options)
    document = docx.Document(io.BytesIO(data))
    lines: list[str] = []
    for block in document.iter_inner_content():
        if hasattr(block, "rows"):
            lines.append("")
            lines.extend(_table_lines(block))
            lines.append("")
        elif line := _paragraph_line(block):
            lines.append(line)
    text = "\n".join(lines).strip()
    if not text:
        raise DocumentError("it holds no text")
    return Extracted(text + "\n")


# -- PPTX ---------------------------------------------------------------------------------------


def _xml(archive: zipfile.ZipFile, member: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(archive.read(member))
    except KeyError:
        raise DocumentError(f"it is a damaged file: {member} is missing") from None


def _slide_paths(archive: zipfile.ZipFile) -> list[str]:
    """Slides in the order the presentation shows them, not the order of their file names."""
    rels = _xml(archive, "ppt/_rels/presentation.xml.rels")
    targets = {rel.get("Id"): rel.get("Target", "") for rel in rels.iter(f"{_RELS}Relationship")}
    order = _xml(archive, "ppt/presentation.xml").iter(f"{_P}sldId")
    paths = []
    for slide in order:
        target = targets.get(slide.get(f"{_R}id"))
        if target:
            paths.append(posixpath.normpath(posixpath.join("ppt", target.lstrip("/"))))
    return paths


def _shape_lines(element: ElementTree.Element) -> Iterator[str]:
    """Paragraphs and table rows in document order."""
    for child in element:
        if child.tag == f"{_A}tr":
            cells = [" ".join("".join(t.text or "" for t in tc.iter(f"{_A}t")).split())
                     for tc in child.iter(f"{_A}tc")]  # fmt: skip
            if any(cells):
                yield row_line(cells)
        elif child.tag == f"{_A}p":
            text = "".join(t.text or "" for t in child.iter(f"{_A}t")).strip()
            if text:
                yield text
        else:
            yield from _shape_lines(child)


def convert_pptx(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    parts = []
    with open_checked(data, "PPTX", options) as archive:
        paths = _slide_paths(archive)
        for number, path in enumerate(paths, start=1):
            lines = list(_shape_lines(_xml(archive, path)))
            parts.append("\n".join([f"--- slide {number} ---", *lines]))
    if not any("\n" in part for part in parts):
        raise DocumentError("it holds no text")
    return Extracted("\n".join(parts) + "\n", pages=len(paths))
