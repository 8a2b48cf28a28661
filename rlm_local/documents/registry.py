"""Which converter reads which format, and the formats refused with a reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rlm_local.documents.base import ConvertOptions, DocumentError, Extracted
from rlm_local.documents.detect import NAMES, detect
from rlm_local.documents.mail import convert_eml, convert_mbox
from rlm_local.documents.office import convert_docx, convert_pptx
from rlm_local.documents.opendoc import convert_odt
from rlm_local.documents.pdf import convert_pdf
from rlm_local.documents.sheets import convert_csv, convert_tsv, convert_xlsx
from rlm_local.documents.web import convert_html

Reader = Callable[[bytes, str, ConvertOptions], Extracted]


@dataclass(frozen=True)
class Converter:
    format: str
    name: str  # what read the file, as --json and the trace report it
    read: Reader
    version: int = 1  # raised when the output changes, so cached texts are made again


CONVERTERS = (
    Converter("pdf", "pypdfium2", convert_pdf),
    Converter("docx", "python-docx", convert_docx),
    Converter("pptx", "pptx-xml", convert_pptx),
    Converter("odt", "odt-xml", convert_odt),
    Converter("xlsx", "openpyxl", convert_xlsx),
    Converter("csv", "csv", convert_csv),
    Converter("tsv", "csv-tab", convert_tsv),
    Converter("html", "html.parser", convert_html),
    Converter("eml", "email", convert_eml),
    Converter("mbox", "email-mbox", convert_mbox),
)
REFUSED = {
    "ole": "it is an old binary Office file (.doc, .xls or .ppt); save it as .docx, .xlsx or "
    ".pptx and ask again",
    "msg": "Outlook .msg files are not read; save the message as .eml, or export the folder "
    "as .mbox",
    "zip": "it is a zip archive; unpack it and give the directory",
    "binary": "binary file",
}


def converter_for(kind: str) -> Converter | None:
    return next((c for c in CONVERTERS if c.format == kind), None)


def run_converter(
    converter: Converter, data: bytes, name: str, options: ConvertOptions
) -> Extracted:
    """The converter's output; whatever a hostile or broken file makes a library raise becomes
    one sentence (the file is skipped, the run goes on)."""
    try:
        return converter.read(data, name, options)
    except DocumentError:
        raise
    except RecursionError:
        raise DocumentError("it is nested too deeply to read") from None
    except Exception as exc:  # noqa: BLE001 - a library's error on a bad file is a user's error
        what = NAMES.get(converter.format, converter.format.upper())
        detail = " ".join(str(exc).split())[:120]
        raise DocumentError(
            f"it is a damaged {what} file ({type(exc).__name__}{': ' + detail if detail else ''})"
        ) from None


def convert_bytes(data: bytes, name: str, options: ConvertOptions) -> Extracted:
    """Any file's text (used for e-mail attachments): detected, converted, or decoded as text."""
    found = detect(name, data)
    if found.kind == "text":
        return Extracted(data.decode("utf-8", errors="replace"))
    converter = converter_for(found.kind)
    if converter is None:
        raise DocumentError(
            REFUSED.get(found.kind, "binary file") if not found.note else found.note
        )
    return run_converter(converter, data, name, options)
