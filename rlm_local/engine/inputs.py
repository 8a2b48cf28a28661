"""Files, directories or stdin become the sandbox's `context`: a str, or a dict path -> text.

Plain text is decoded here; documents (PDF, DOCX, XLSX, HTML, e-mail, ...) are recognised by
their content and converted by rlm_local.documents, once: their text is cached by sha256.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rlm_local.documents import (
    Conversion,
    ConvertOptions,
    DocumentError,
    detect,
    read_document,
)
from rlm_local.errors import InputError

DEFAULT_EXCLUDES = (
    ".git/*",
    "*/.git/*",
    "node_modules/*",
    "*/node_modules/*",
    "__pycache__/*",
    "*/__pycache__/*",
    ".venv/*",
    "*/.venv/*",
)


@dataclass(frozen=True)
class InputOptions:
    include: tuple[str, ...] = ()  # globs on relative paths; empty = everything
    exclude: tuple[str, ...] = ()
    max_file_mb: float = 64.0  # larger files are skipped with a notice
    max_total_mb: float | None = None  # None: a quarter of the machine's memory
    documents_cache: Path | None = None  # where converted documents' texts are kept; None: not
    password: str | None = field(default=None, repr=False)  # for encrypted PDFs; never recorded
    ocr: bool = False  # PDF pages without a text layer go to tesseract

    @property
    def convert(self) -> ConvertOptions:
        return ConvertOptions(password=self.password, ocr=self.ocr)


@dataclass
class LoadedInput:
    context: str | dict[str, str]
    sources: list[str]
    notices: list[str] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)  # documents only, not plain text

    @property
    def name(self) -> str:
        """The path a single text is known by in evidence: the file as given, `-` for stdin."""
        return self.sources[0] if self.sources and self.sources != ["<stdin>"] else "-"


def _memory_budget_bytes(options: InputOptions) -> int:
    if options.max_total_mb is not None:
        return int(options.max_total_mb * (1 << 20))
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _decode(path: Path, data: bytes, notices: list[str]) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        if bad > len(text) // 100 + 10:
            notices.append(f"skipped {path}: not UTF-8 text")
            return None
        notices.append(f"{path}: {bad} undecodable bytes replaced")
        return text


@dataclass
class _Reading:
    """What reading the files produced besides their texts."""

    notices: list[str] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    refusals: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of documents


def _read_file(
    key: str, path: Path, options: InputOptions, max_bytes: int, out: _Reading
) -> str | None:
    """The file's text, or None with a notice saying why it was skipped."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            out.notices.append(f"skipped {path}: {size >> 20} MiB is over the per-file limit")
            return None
        data = path.read_bytes()
    except OSError as exc:
        out.notices.append(f"skipped {path}: {exc.strerror}")
        return None
    found = detect(path.name, data)
    if found.kind == "text":
        if found.note:
            out.notices.append(f"{path}: {found.note}")
        return _decode(path, data, out.notices)
    try:
        text, conversion = read_document(key, data, found, options.convert, options.documents_cache)
    except DocumentError as exc:
        out.notices.append(f"skipped {path}: {exc}")
        out.refusals.append((str(path), str(exc)))
        return None
    out.conversions.append(conversion)
    out.notices.extend(f"{path}: {note}" for note in conversion.notes)
    return text


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(Path(rel).name, p) for p in patterns)


def _walk(root: Path, options: InputOptions) -> Iterable[tuple[str, Path]]:
    excludes = DEFAULT_EXCLUDES + options.exclude
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if _matches(rel, excludes):
                continue
            if options.include and not _matches(rel, options.include):
                continue
            if full.is_symlink():
                continue
            yield rel, full


def load_inputs(paths: list[str], options: InputOptions | None = None) -> LoadedInput:
    """One file or stdin gives a str; several files or a directory give a dict."""
    options = options or InputOptions()
    budget = _memory_budget_bytes(options)
    max_file = int(options.max_file_mb * (1 << 20))
    notices: list[str] = []
    if not paths:
        raise InputError("Give at least one input file or directory, or '-' for standard input.")
    if paths == ["-"]:
        text = sys.stdin.read(budget + 1)
        if len(text) > budget:
            raise InputError("Standard input is larger than the memory budget (--max-total-mb).")
        if not text.strip():
            raise InputError("Standard input is empty: there is nothing to ask about.")
        return LoadedInput(text, ["<stdin>"], notices)

    files: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            base = path.name if len(paths) > 1 else ""
            for rel, full in _walk(path, options):
                files[f"{base}/{rel}" if base else rel] = full
        elif path.is_file():
            files[raw] = path
        else:
            raise InputError(f"Input {raw} does not exist.")

    single_file = len(paths) == 1 and Path(paths[0]).expanduser().is_file()
    texts: dict[str, str] = {}
    reading = _Reading(notices)
    total = 0
    for key, path in files.items():
        text = _read_file(key, path, options, max_file, reading)
        if text is None:
            continue
        total += len(text)
        if total > budget:
            raise InputError(
                f"The inputs add up to more than {budget >> 20} MiB, over the memory budget; "
                "narrow them with --include/--exclude or raise --max-total-mb."
            )
        texts[key] = text
    if not texts:
        if len(files) == 1 and reading.refusals:
            where, why = reading.refusals[0]
            raise InputError(f"{where} cannot be read: {why}.")
        why = f" ({'; '.join(notices[:3])})" if notices else ""
        raise InputError(f"None of the inputs holds readable text{why}.")
    if not any(t.strip() for t in texts.values()):
        raise InputError("The input is empty: there is nothing to ask about.")
    context: str | dict[str, str] = next(iter(texts.values())) if single_file else texts
    return LoadedInput(context, list(texts), notices, reading.conversions)
