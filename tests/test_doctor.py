"""`rlm-local doctor` against real model stores in a temporary home: tiny fake GGUF files with
their sha256 in a user models.toml, put in place and verified by the real store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_local.config import load_settings
from rlm_local.doctor import (
    DoctorReport,
    LlamaBuild,
    check_cpu,
    check_network,
    diagnose,
)
from rlm_local.models import ModelStore

ROOT_BYTES = b"GGUF" + bytes(range(256)) * 16
SUB_BYTES = b"GGUF" + b"\x05" * 3000
LOCAL_PIP = {"global.index-url": "file:///srv/mirror/simple", "global.find-links": "/srv/wheels"}


def _model(name: str, data: bytes) -> str:
    return (
        f'[models.{name}]\nfile = "{name}.gguf"\nsize = {len(data)}\n'
        f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nn_ctx = 512\n'
    )


@pytest.fixture
def tiny_config(tmp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry of two tiny models, tiny-root and tiny-sub, playing the two roles."""
    config = tmp_path / "models.toml"
    config.write_text(
        '[roles]\nroot = "tiny-root"\nsub = "tiny-sub"\n\n'
        + _model("tiny-root", ROOT_BYTES)
        + "\n"
        + _model("tiny-sub", SUB_BYTES)
    )
    monkeypatch.setenv("RLM_LOCAL_CONFIG", str(config))
    return config


def _store() -> ModelStore:
    settings = load_settings()
    return ModelStore(settings.registry, settings.models_dir)


def _import(tmp_path: Path, name: str, data: bytes) -> Path:
    """Put a model in place the way a user does on an air-gapped machine: `models import`."""
    source = tmp_path / f"download-{name}.gguf"
    source.write_bytes(data)
    return _store().import_file(name, source).path


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rlm_local", "doctor", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=180,
    )


def _line(output: str, needle: str) -> str:
    lines = [line for line in output.splitlines() if needle in line]
    assert lines, f"no line with {needle!r} in:\n{output}"
    return lines[0]


def test_missing_and_corrupt_models_are_named_with_their_fix(
    tiny_config: Path, tmp_path: Path
) -> None:
    sub_path = _import(tmp_path, "tiny-sub", SUB_BYTES)
    assert _store().status("tiny-sub").verified
    # Modified after verification: same size, one byte different, a newer mtime.
    sub_path.write_bytes(SUB_BYTES[:-1] + b"\x06")
    stat = sub_path.stat()
    os.utime(sub_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    result = _doctor()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    missing = _line(out, "✗ tiny-root (root)")  # in the "what to do" list
    assert "not downloaded" in missing and "Run `rlm-local models pull tiny-root`" in missing
    changed = _line(out, "✗ tiny-sub (sub)")
    assert "changed on disk since it was verified" in changed
    assert "`rlm-local models verify tiny-sub`" in changed
    assert "`rlm-local models pull --force tiny-sub`" in changed
    assert "ask cannot run until the 2 problem(s) marked ✗ are fixed" in out
    # The packaged models are listed too; not being pulled is no problem for them.
    assert "not downloaded (not in use)" in _line(out, "qwen3-8b")

    # --full re-hashes: now the changed file is known to be corrupt, with the one fix for it.
    full = _doctor("--full")
    assert full.returncode == 1
    corrupt = _line(full.stdout, "✗ tiny-sub (sub)")
    assert "corrupt: its sha256 does not match models.toml" in corrupt
    assert corrupt.endswith("Fetch it again: `rlm-local models pull --force tiny-sub`.")
    assert "Traceback" not in full.stderr


def test_healthy_setup_exits_0(tiny_config: Path, tmp_path: Path) -> None:
    _import(tmp_path, "tiny-root", ROOT_BYTES)
    _import(tmp_path, "tiny-sub", SUB_BYTES)
    result = _doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ask is ready." in result.stdout
    assert "verified (import:" in _line(result.stdout, "tiny-root (root)")
    assert "verified (import:" in _line(result.stdout, "tiny-sub (sub)")
    for area in ("llama.cpp", "cpu", "threads", "cache", "runs", "network", "disk"):
        assert any(line.split()[1:2] == [area] for line in result.stdout.splitlines()), area

    data = json.loads(_doctor("--json", "--full").stdout)
    assert data["ready"] is True
    models = {f["subject"]: f for f in data["findings"] if f["area"] == "model"}
    assert models["tiny-sub (sub)"]["detail"].endswith("sha256 re-checked in full")


def test_wrong_size_not_gguf_and_never_verified(tiny_config: Path, tmp_path: Path) -> None:
    root_path = _import(tmp_path, "tiny-root", ROOT_BYTES)
    root_path.write_bytes(ROOT_BYTES[:100])  # truncated, e.g. a disk that filled up
    sub_path = _store().path_of("tiny-sub")
    sub_path.write_bytes(b"<html>not a model</html>")  # a login page saved as the model

    report = diagnose()
    models = {f.subject: f for f in report.findings if f.area == "model"}
    root, sub = models["tiny-root (root)"], models["tiny-sub (sub)"]
    assert root.detail == f"corrupt: 100 bytes instead of {len(ROOT_BYTES):,}"
    assert root.fix == "Fetch it again: `rlm-local models pull --force tiny-root`."
    assert "is not a GGUF model file" in sub.detail and "pull --force tiny-sub" in str(sub.fix)
    assert root.blocks_ask and sub.blocks_ask and not report.ready

    sub_path.write_bytes(SUB_BYTES)  # the right bytes, copied by hand: no verification record
    sub = next(f for f in diagnose().findings if f.subject == "tiny-sub (sub)")
    assert (
        "never verified" in sub.detail
        and sub.fix == "Check it: `rlm-local models verify tiny-sub`."
    )


def test_default_check_does_not_hash(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(tmp_path, "tiny-root", ROOT_BYTES)
    _import(tmp_path, "tiny-sub", SUB_BYTES)
    import rlm_local.models.store as store_module

    hashed: list[Path] = []
    real = store_module.sha256_file

    def counting(path: Path, progress: object = None) -> str:
        hashed.append(path)
        return real(path, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "sha256_file", counting)
    assert diagnose(pip_config=LOCAL_PIP).ready and hashed == []
    seen: list[str] = []
    assert diagnose(full=True, progress=lambda d, done, total: seen.append(d)).ready
    assert len(hashed) == 2 and any("tiny-root.gguf" in d for d in seen)


def test_a_broken_config_is_a_finding_not_a_traceback(
    tmp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[models.x\nfile = 1\n")
    monkeypatch.setenv("RLM_LOCAL_CONFIG", str(config))
    result = _doctor()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not valid TOML" in _line(result.stdout, "✗ " + str(config))


def test_offline_state_is_read_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    findings = {f.subject: f for f in check_network(None, LOCAL_PIP)}
    assert findings["ask"].detail == "ask uses no network"
    assert findings["pip"].detail.endswith("all local, works offline")
    assert "file:///srv/mirror/simple" in findings["pip"].detail
    assert "HF_HUB_OFFLINE is set" in findings["hub"].detail

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.internal")
    remote = {f.subject: f for f in check_network(None, {})}
    assert "https://pypi.org/simple" in remote["pip"].detail
    assert "works offline" not in remote["pip"].detail
    assert "https://hub.example.internal" in remote["hub"].detail
    env_wins = {**LOCAL_PIP, ":env:.no-index": "1", ":env:.find-links": "/mnt/usb"}
    assert (
        "reads /mnt/usb — all local"
        in {f.subject: f for f in check_network(None, env_wins)}["pip"].detail
    )


def test_cpu_and_build_mismatches() -> None:
    avx2_cpu = {"avx", "avx2", "fma", "f16c", "pni", "ssse3"}
    generic = LlamaBuild("0.3.36", "", {"AVX": True, "AVX2": False, "FMA": False}, False)
    slow = [f for f in check_cpu(generic, avx2_cpu, "0.3.36") if f.level == "warn"]
    assert len(slow) == 1 and "AVX2 FMA" in slow[0].detail
    assert 'CMAKE_ARGS="-DGGML_NATIVE=on" pip install' in str(slow[0].fix)

    too_new = LlamaBuild("0.3.36", "", {"AVX": True, "AVX512": True}, False)
    crash = [f for f in check_cpu(too_new, avx2_cpu, "0.3.36") if f.level == "fail"]
    assert len(crash) == 1 and crash[0].blocks_ask and "AVX512" in crash[0].detail

    matched = LlamaBuild("0.3.36", "", {"AVX": True, "AVX2": True, "FMA": True}, False)
    assert all(f.level == "ok" for f in check_cpu(matched, avx2_cpu, "0.3.36"))
    assert check_cpu(matched, None, None)[0].level == "info"


def test_report_shape() -> None:
    report = DoctorReport(home=Path("/x"), findings=())
    assert report.ready and report.to_dict() == {"home": "/x", "ready": True, "findings": []}
