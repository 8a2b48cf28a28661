"""Extracted texts kept on disk by the file's sha256, so asking again converts nothing.

The key also names the converter and its version (and OCR), so a better converter redoes the
text. Texts of password-protected documents are never written: the password protected them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from rlm_local.documents.base import Extracted


def cache_key(data: bytes, converter: str, version: int, ocr: bool) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest}-{converter}-v{version}" + ("-ocr" if ocr else "")


class DocumentCache:
    """One JSON file per converted document under `directory` (private to the user)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Extracted | None:
        try:
            raw = json.loads(self._path(key).read_text(encoding="utf-8"))
            return Extracted(str(raw["text"]), list(raw.get("notes", [])), raw.get("pages"))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: convert again

    def put(self, key: str, extracted: Extracted) -> None:
        """Written atomically; a cache that cannot be written only costs a second conversion."""
        if extracted.encrypted:
            return
        record = {"text": extracted.text, "notes": extracted.notes, "pages": extracted.pages}
        path = self._path(key)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # texts are private
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError:
            return
