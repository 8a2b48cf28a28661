"""What every converter shares: its options, its result, and the errors a document can cause."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

from rlm_local.errors import InputError

DOCS_EXTRA = "pip install 'rlm-local[docs]'"


class DocumentError(InputError):
    """A document that cannot be read; str() is one sentence naming the file and what to do."""


class PasswordRequired(DocumentError):
    """An encrypted document and no (or a wrong) password."""


class MissingLibrary(DocumentError):
    """The optional library a format needs is not installed."""


@dataclass(frozen=True)
class ConvertOptions:
    password: str | None = field(default=None, repr=False)  # never shown, logged or cached
    ocr: bool = False  # run tesseract on PDF pages without a text layer
    max_unzipped_bytes: int = 256 << 20  # a DOCX/XLSX/ODT/PPTX may inflate to at most this
    max_members: int = 20_000  # files inside one zip container


@dataclass
class Extracted:
    """A converter's output: the text, and facts the user is told about."""

    text: str
    notes: list[str] = field(default_factory=list)
    pages: int | None = None  # pages, slides, sheets or messages, where the format has them
    encrypted: bool = False  # its text is never written to the document cache


def require(module: str, what: str) -> ModuleType:
    """Import an optional library, or fail with the one sentence that says how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingLibrary(
            f"reading {what} needs the optional package {module.split('.')[0]}: {DOCS_EXTRA}"
        ) from None
