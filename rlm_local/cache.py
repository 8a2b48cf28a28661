"""Memoizing model calls on disk, so a repeated question or a re-run after a crash costs nothing.

Keys are the sha256 of everything that decides a call's output: the weights' sha256, the sampling
parameters and the full messages. Values are JSON text. Rows are never unpickled: diskcache 5.6.3
unpickles on read (CVE-2025-69872, unfixed upstream), so the Disk below refuses pickled rows.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_PICKLE, MODE_RAW

from rlm_local.models.contract import ChatModel, Completion, Sampling

LOCK_STRIPES = 256  # lock files, chosen by key prefix: bounded in number, never unlinked
HITS_KEY = "stats:hits"
MISSES_KEY = "stats:misses"


class UnsafeCacheRow(Exception):
    """A row that would need unpickling: refused, treated as a miss and deleted."""


class JsonOnlyDisk(diskcache.Disk):
    """Stores str, bytes, int, float and None raw; refuses to write or read anything pickled."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if not isinstance(key, str):
            raise TypeError("cache keys must be str")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise UnsafeCacheRow("a cache key was stored pickled")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if value is None:
            return 0, MODE_RAW, None, None
        if not isinstance(value, str | bytes | int | float) and not read:
            raise TypeError("cache values must be str, bytes or numbers")
        return super().store(value, read, key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise UnsafeCacheRow("a cache row was stored pickled")
        return super().fetch(mode, filename, value, read)


@dataclass(frozen=True)
class CacheStats:
    directory: Path
    entries: int
    size_bytes: int
    hits: int  # since the cache was created
    misses: int


@dataclass(frozen=True)
class CachedCompletion:
    completion: Completion
    cached: bool  # served from the cache
    cacheable: bool  # False when sampling is random (temperature > 0 and no seed)
    key: str


def call_key(model_identity: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"model": model_identity, "params": params, "messages": messages},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CallCache:
    """A diskcache.Cache of model calls; hits and misses are counted per instance and in total."""

    def __init__(self, directory: Path, size_limit_mb: int = 1024) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.directory = directory
        self._cache = diskcache.Cache(
            str(directory),
            disk=JsonOnlyDisk,
            size_limit=size_limit_mb << 20,
            eviction_policy="least-recently-used",
        )
        self.hits = 0
        self.misses = 0
        self.refused = 0

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            text = self._cache.get(f"call:{key}")
        except UnsafeCacheRow:
            self.refused += 1
            self._cache.delete(f"call:{key}")
            return None
        if not isinstance(text, str):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any], model_identity: str) -> None:
        # The tag lets `cache clear --model` drop one model's entries without reading them.
        self._cache.set(f"call:{key}", json.dumps(value, ensure_ascii=False), tag=model_identity)

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        self._cache.incr(HITS_KEY if hit else MISSES_KEY, default=0)

    def get_or_compute(
        self, key: str, model_identity: str, compute: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """One computation per key across threads and processes; returns (value, was_cached)."""
        if (value := self.get(key)) is not None:
            self._count(True)
            return value, True
        with self._key_lock(key):
            if (value := self.get(key)) is not None:
                self._count(True)
                return value, True
            value = compute()
            self.put(key, value, model_identity)
        self._count(False)
        return value, False

    @contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """flock, not diskcache.Lock: the OS releases it when a holder dies, so a run killed
        mid-call does not make the next run wait for a lock expiry."""
        locks = self.directory / "locks"
        locks.mkdir(mode=0o700, exist_ok=True)
        stripe = int(key[:4], 16) % LOCK_STRIPES if len(key) >= 4 else 0
        fd = os.open(locks / f"{stripe:03d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def stats(self) -> CacheStats:
        def counter(name: str) -> int:
            value = self._cache.get(name, default=0)
            return value if isinstance(value, int) else 0

        return CacheStats(
            directory=self.directory,
            entries=sum(1 for k in self._cache.iterkeys() if str(k).startswith("call:")),
            size_bytes=self._cache.volume(),
            hits=counter(HITS_KEY),
            misses=counter(MISSES_KEY),
        )

    def clear(self, model_identity: str | None = None) -> int:
        if model_identity is None:  # the hit/miss counters go too: a cleared cache starts afresh
            entries = self.stats().entries
            self._cache.clear()
            return entries
        self._cache.create_tag_index()
        return self._cache.evict(model_identity)

    def close(self) -> None:
        self._cache.close()


def cached_chat(
    model: ChatModel, cache: CallCache | None, messages: list[dict[str, str]], sampling: Sampling
) -> CachedCompletion:
    """The one way the engine calls a model: through the cache when the output is deterministic."""
    key = call_key(model.identity, messages, sampling.params())

    def compute() -> dict[str, Any]:
        return asdict(model.chat(messages, sampling))

    if cache is None or not sampling.deterministic:
        return CachedCompletion(Completion(**compute()), False, sampling.deterministic, key)
    value, hit = cache.get_or_compute(key, model.identity, compute)
    return CachedCompletion(Completion(**value), hit, True, key)
