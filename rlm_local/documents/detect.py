"""Which format a file is: by its first bytes first, by its name second.

A file whose name lies is read as what its content is, with a note; a binary file whose content is
recognised as nothing is refused by the caller.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

SNIFF_BYTES = 8192
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # old Word/Excel/PowerPoint, Outlook .msg
BY_EXTENSION = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".docm": "docx",
    ".dotx": "docx",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".pptx": "pptx",
    ".odt": "odt",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "eml",
    ".mbox": "mbox",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".msg": "msg",
    ".doc": "ole",
    ".xls": "ole",
    ".ppt": "ole",
}
TEXT_FORMATS = {"text", "html", "eml", "mbox", "csv", "tsv"}
ZIP_MEMBERS = (
    ("word/document.xml", "docx"),
    ("xl/workbook.xml", "xlsx"),
    ("ppt/presentation.xml", "pptx"),
)
ODF_TYPES = {"application/vnd.oasis.opendocument.text": "odt"}
CONTAINERS = ("docx", "xlsx", "pptx", "odt")
NAMES = {"docx": "DOCX", "xlsx": "XLSX", "pptx": "PPTX", "odt": "ODT", "pdf": "PDF", "html": "HTML"}
_MAIL_HEADER = re.compile(
    rb"^(From|To|Subject|Date|Message-ID|Received|Return-Path|MIME-Version|Delivered-To):",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Detected:
    kind: str  # a format name, "binary" (unrecognised) or "zip" (some other archive)
    note: str | None = None  # set when the name said something else


def _zip_kind(data: bytes) -> str:
    """A zip container's format by its member names, reading no member but ODF's tiny mimetype."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            for member, kind in ZIP_MEMBERS:
                if member in names:
                    return kind
            info = archive.getinfo("mimetype") if "mimetype" in names else None
            if info is not None and info.file_size < 200:
                return ODF_TYPES.get(archive.read(info).decode("ascii", "replace").strip(), "zip")
    except Exception:  # a damaged or hostile container: the converter its name names says more
        return "zip"
    return "zip"


def _text_kind(head: bytes) -> str | None:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:200].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "html"
    if start.startswith(b"from ") and _MAIL_HEADER.search(head):
        return "mbox"
    if len(_MAIL_HEADER.findall(head[:4096])) >= 3 and _MAIL_HEADER.match(start):
        return "eml"
    return None


def by_content(data: bytes) -> str | None:
    """The format the bytes are, or None for text of no particular format."""
    head = data[:SNIFF_BYTES]
    if head.lstrip(b"\xef\xbb\xbf \t\r\n\x00").startswith(b"%PDF-"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data)
    if head.startswith(OLE_MAGIC):
        return "ole"
    if b"\x00" in head:
        return "binary"
    return _text_kind(head)


def detect(name: str, data: bytes) -> Detected:
    """The content decides; the name only picks among text formats (CSV is text by content).

    HTML and mail are recognised by content only in files without a suffix or with a document's
    suffix: a .txt or .py file that starts like a mail is read as the text it is.
    """
    suffix = PurePath(name).suffix.lower()
    named = BY_EXTENSION.get(suffix)
    found = by_content(data)
    if named == "pdf" and found != "pdf" and b"%PDF-" in data[:1024]:
        found = "pdf"  # the format allows bytes before its header
    if found in ("html", "eml", "mbox") and suffix and named is None:
        found = None  # notes.txt or code.py that looks like mail or HTML stays as written
    if named == "msg" and found == "ole":
        return Detected("msg")
    if found is None:  # plain text, by content
        if named in TEXT_FORMATS:
            return Detected(named)
        if named is not None:  # a .pdf or .docx that is text
            note = f"its content is plain text despite its {suffix} name; read as text"
            return Detected("text", note)
        return Detected("text")
    if found == "zip" and named in CONTAINERS:  # damaged, or not what it says: its reader tells
        return Detected(named)
    if found in ("binary", "zip") and named is not None and named in NAMES:
        what = NAMES[named]
        return Detected(found, f"its name says {suffix} but its content is not {what}")
    if named is not None and named != found and found not in ("binary", "zip"):
        what = NAMES.get(found, found.upper())
        return Detected(found, f"its content is {what} despite its {suffix} name; read as {what}")
    return Detected(found)
