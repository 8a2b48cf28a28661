"""Evaluated prompt prefixes on disk, so a new process need not evaluate a system prompt again.

A llama.cpp sequence state (its KV cells) is only valid for the exact tokens, weights, llama.cpp
build and context settings that produced it; the key is a hash of all of them. Each entry is two
files: the raw state bytes and a JSON record with their size and sha256. Nothing is unpickled; a
file that does not match its record is deleted and reported as a miss; the least recently used
entries go when the store outgrows its limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
STATE_SUFFIX = ".state"
RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class PrefixStats:
    directory: Path
    entries: int
    size_bytes: int


def prefix_key(validity: Mapping[str, Any], tokens: Sequence[int]) -> str:
    """The sha256 of what makes a state valid and the tokens it holds."""
    canonical = json.dumps(
        {"format": FORMAT, "validity": validity, "tokens": list(tokens)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PrefixStore:
    """A bounded directory of prefix states; safe for several processes (writes are renames)."""

    def __init__(self, directory: Path, size_limit_mb: int = 512) -> None:
        self.directory = directory
        self.size_limit = size_limit_mb << 20

    def load(self, key: str) -> bytes | None:
        """The state stored under key, or None; a damaged entry is deleted."""
        record_path, state_path = self._paths(key)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            state = state_path.read_bytes()
        except (OSError, ValueError):
            if record_path.exists() or state_path.exists():
                self.discard(key)
            return None
        if not _matches(record, key, state):
            self.discard(key)
            return None
        now = time.time()
        for path in (record_path, state_path):  # the eviction order is least recently used
            with contextlib.suppress(OSError):
                os.utime(path, (now, now))
        return state

    def save(self, key: str, state: bytes, n_tokens: int, about: Mapping[str, Any]) -> None:
        """Stores a state unless it alone would outgrow the store; then evicts the oldest."""
        if not state or len(state) > self.size_limit:
            return
        record_path, state_path = self._paths(key)
        record = {
            "format": FORMAT,
            "key": key,
            "n_tokens": n_tokens,
            "state_bytes": len(state),
            "state_sha256": hashlib.sha256(state).hexdigest(),
            "created": time.time(),
            **about,
        }
        try:  # the state first: a record never names a state that is not there yet
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_atomically(state_path, state)
            _write_atomically(record_path, json.dumps(record).encode("utf-8"))
        except OSError:  # a full disk costs the next process a re-evaluation, nothing more
            with contextlib.suppress(OSError):
                self.discard(key)
            return
        self._evict()

    def discard(self, key: str) -> None:
        for path in self._paths(key):
            path.unlink(missing_ok=True)

    def stats(self) -> PrefixStats:
        states = self._states()
        return PrefixStats(self.directory, len(states), sum(size for _, size, _ in states))

    def clear(self, model_sha256: str | None = None) -> int:
        """Deletes every entry (or one model's) and any write a killed process left behind."""
        if model_sha256 is not None:
            keys = [key for _, _, key in self._states() if self._model_of(key) == model_sha256]
            for key in keys:
                self.discard(key)
            return len(keys)
        entries = len(self._states())
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.suffix in (STATE_SUFFIX, RECORD_SUFFIX) and path.is_file():
                    path.unlink(missing_ok=True)
        return entries

    def _model_of(self, key: str) -> str | None:
        try:
            record = json.loads(self._paths(key)[0].read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record.get("model_sha256") if isinstance(record, dict) else None

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _is_key(key):
            raise ValueError("a prefix key is a sha256 hex digest")
        return self.directory / f"{key}{RECORD_SUFFIX}", self.directory / f"{key}{STATE_SUFFIX}"

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [
            path
            for path in self.directory.iterdir()
            if path.suffix in (STATE_SUFFIX, RECORD_SUFFIX) and _is_key(path.stem)
        ]

    def _states(self) -> list[tuple[float, int, str]]:
        """(last use, size, key) of each stored state."""
        found = []
        for path in self._files():
            if path.suffix != STATE_SUFFIX:
                continue
            try:
                info = path.stat()
            except OSError:
                continue
            found.append((info.st_mtime, info.st_size, path.stem))
        return found

    def _evict(self) -> None:
        states = sorted(self._states())
        total = sum(size for _, size, _ in states)
        for _, size, key in states:
            if total <= self.size_limit:
                break
            self.discard(key)
            total -= size


def _is_key(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _matches(record: Any, key: str, state: bytes) -> bool:
    return (
        isinstance(record, dict)
        and record.get("format") == FORMAT
        and record.get("key") == key
        and record.get("state_bytes") == len(state)
        and record.get("state_sha256") == hashlib.sha256(state).hexdigest()
    )


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
