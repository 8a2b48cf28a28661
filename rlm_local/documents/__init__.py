"""Documents people have (PDF, Word, OpenDocument, PowerPoint, HTML, e-mail, spreadsheets) as text.

`read_document` is what the input loader calls for a file that is not plain text: it picks the
converter by content, reuses a cached text when the same bytes were read before, and reports
which converter read the file and how long it took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rlm_local.documents.base import (
    DOCS_EXTRA,
    ConvertOptions,
    DocumentError,
    MissingLibrary,
    PasswordRequired,
)
from rlm_local.documents.cache import DocumentCache, cache_key
from rlm_local.documents.detect import Detected, detect
from rlm_local.documents.pdf import PASSWORD_ENV
from rlm_local.documents.registry import REFUSED, converter_for, run_converter

__all__ = [
    "DOCS_EXTRA",
    "PASSWORD_ENV",
    "Conversion",
    "ConvertOptions",
    "Detected",
    "DocumentError",
    "MissingLibrary",
    "PasswordRequired",
    "detect",
    "read_document",
]


@dataclass
class Conversion:
    """What --json and the trace say about one converted file."""

    path: str
    format: str
    converter: str
    seconds: float
    cached: bool
    chars: int
    pages: int | None = None  # pages, slides, sheets or messages
    notes: list[str] = field(default_factory=list)


def read_document(
    path: str,
    data: bytes,
    found: Detected,
    options: ConvertOptions,
    cache_dir: Path | None = None,
) -> tuple[str, Conversion]:
    """The text of a file detected as a document (not plain text), and how it was read."""
    converter = converter_for(found.kind)
    if converter is None:
        raise DocumentError(found.note or REFUSED.get(found.kind, "binary file"))
    started = time.perf_counter()
    cache = DocumentCache(cache_dir) if cache_dir is not None else None
    key = cache_key(data, converter.name, converter.version, options.ocr and found.kind == "pdf")
    extracted = cache.get(key) if cache is not None else None
    cached = extracted is not None
    if extracted is None:
        extracted = run_converter(converter, data, path, options)
        # A mail may carry an encrypted PDF the password opened: its text is not kept either.
        holds_attachments = found.kind in ("eml", "mbox") and options.password is not None
        if cache is not None and not holds_attachments:
            cache.put(key, extracted)
    notes = ([found.note] if found.note else []) + extracted.notes
    return extracted.text, Conversion(
        path=path,
        format=found.kind,
        converter=converter.name,
        seconds=round(time.perf_counter() - started, 3),
        cached=cached,
        chars=len(extracted.text),
        pages=extracted.pages,
        notes=notes,
    )
