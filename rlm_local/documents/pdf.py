"""PDF with pypdfium2: a `--- page N ---` line before each page's text.

Chosen by measurement (benchmarks/README.md, "Reading documents"): on a generated 300-page PDF
pypdfium2 took 0.34 s, pypdf 0.76 s and pdfminer.six 7.0 s; none of the three put a two-column
page in reading order, so the faster one reads in the order the PDF draws its text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from rlm_local.documents.base import (
    ConvertOptions,
    DocumentError,
    Extracted,
    PasswordRequired,
    require,
)

PASSWORD_ENV = "RLM_LOCAL_PDF_PASSWORD"
OCR_DPI = 300
OCR_SECONDS = 120  # one page
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_INCORRECT_PASSWORD = 4  # FPDF_ERR_PASSWORD


def page_line(number: int) -> str:
    return f"--- page {number} ---"


def _open(pdfium: Any, data: bytes, options: ConvertOptions) -> tuple[Any, bool]:
    """The document and whether it needed a password; one clear sentence when it cannot open."""
    try:
        return pdfium.PdfDocument(data), False
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) != _INCORRECT_PASSWORD:
            raise DocumentError("it is a damaged or truncated PDF file") from None
    if options.password is None:
        raise PasswordRequired(
            "it is an encrypted PDF; give its password with --password "
            f"(asked at a prompt) or the environment variable {PASSWORD_ENV}"
        )
    try:
        return pdfium.PdfDocument(data, password=options.password), True
    except pdfium.PdfiumError:
        raise PasswordRequired(
            f"it is an encrypted PDF and the password given (--password or {PASSWORD_ENV}) "
            "does not open it"
        ) from None


def _page_text(page: Any) -> str:
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_bounded()
    finally:
        textpage.close()
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _has_image(page: Any, pdfium_c: Any) -> bool:
    return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2))


def _ocr(page: Any) -> str:
    """The page rendered to a grey image and read by the tesseract command (stdin to stdout)."""
    bitmap = page.render(scale=OCR_DPI / 72, grayscale=True)
    width, height, stride = bitmap.width, bitmap.height, bitmap.stride
    buffer = bytes(bitmap.buffer)
    rows = b"".join(buffer[y * stride : y * stride + width] for y in range(height))
    image = f"P5\n{width} {height}\n255\n".encode() + rows
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "--dpi", str(OCR_DPI)],
            input=image,
            capture_output=True,
            timeout=OCR_SECONDS,
            check=False,
        )
    except (subprocess.SubprocessError, OSError):  # too slow, or gone: the page stays unread
        return ""
    return done.stdout.decode("utf-8", "replace").strip() if done.returncode == 0 else ""


def _pages_note(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:20])) + (", …" if len(numbers) > 20 else "")
    return f"page{'s' if len(numbers) > 1 else ''} {shown}"


def _read_page(document: Any, index: int, pdfium: Any, pdfium_c: Any, ocr: bool) -> tuple[str, str]:
    """One page's text and what it was: "text", "ocr", "scanned", "empty" or "broken"."""
    try:
        page = document[index]
    except pdfium.PdfiumError:
        return "", "broken"
    try:
        text = _page_text(page)
        if text:
            return text, "text"
        if not _has_image(page, pdfium_c):
            return "", "empty"
        text = _ocr(page) if ocr else ""
        return text, "ocr" if text else "scanned"
    except pdfium.PdfiumError:
        return "", "broken"
    finally:
        page.close()


def convert_pdf(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    pdfium = require("pypdfium2", "PDF files")
    pdfium_c = require("pypdfium2.raw", "PDF files")
    document, encrypted = _open(pdfium, data, options)
    parts: list[str] = []
    found: dict[str, list[int]] = {"ocr": [], "scanned": [], "broken": []}
    can_ocr = options.ocr and shutil.which("tesseract") is not None
    try:
        pages = len(document)
        for index in range(pages):
            text, kind = _read_page(document, index, pdfium, pdfium_c, can_ocr)
            found.setdefault(kind, []).append(index + 1)
            parts.append(f"{page_line(index + 1)}\n{text}" if text else page_line(index + 1))
    finally:
        document.close()
    scanned, ocr_read = found["scanned"], found["ocr"]
    if not any(part != page_line(n + 1) for n, part in enumerate(parts)):
        which = "its only page" if pages == 1 else f"none of its {pages} pages"
        has = "has no" if pages == 1 else "has a"
        if scanned:
            raise DocumentError(f"{which} {has} text layer (a scan?); {_ocr_hint(options)}")
        raise DocumentError(f"{which} {'holds no' if pages == 1 else 'holds'} text")
    notes = []
    if found["broken"]:
        notes.append(f"{_pages_note(found['broken'])} could not be read (damaged)")
    if ocr_read:
        notes.append(f"{_pages_note(ocr_read)} read by OCR (tesseract)")
    if scanned:
        verb = "have" if len(scanned) > 1 else "has"
        notes.append(
            f"{_pages_note(scanned)} of {pages} {verb} no text layer (scanned?); "
            f"{_ocr_hint(options)}"
        )
    return Extracted("\n".join(parts) + "\n", notes, pages=pages, encrypted=encrypted)


def _ocr_hint(options: ConvertOptions) -> str:
    """How to read pages without text: OCR is opt-in (about seconds a page on two cores)."""
    if shutil.which("tesseract") is None:
        return "install tesseract (e.g. apt install tesseract-ocr) and pass --ocr to read them"
    if options.ocr:
        return "OCR (tesseract) found no text there"
    return "pass --ocr to read them with tesseract"
