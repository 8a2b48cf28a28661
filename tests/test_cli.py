"""The CLI's model and cache commands as a user runs them (no model is loaded here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cli_runner import run_cli

from rlm_local.cache import CallCache
from rlm_local.models.prefixes import PrefixStore, prefix_key

PAYLOAD = b"GGUF" + b"\x07" * 5000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


_cli = run_cli


def test_models_import_verify_rm_through_the_cli(tmp_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "extra.toml"
    config.write_text(
        f'[models.tiny]\nfile = "tiny.gguf"\nsize = {len(PAYLOAD)}\nsha256 = "{SHA}"\n'
    )
    gguf = tmp_path / "tiny-download.gguf"
    gguf.write_bytes(PAYLOAD)

    imported = _cli("--config", str(config), "models", "import", "tiny", str(gguf))
    assert imported.returncode == 0, imported.stderr
    listing = json.loads(_cli("--config", str(config), "models", "list", "--json").stdout)
    assert next(m for m in listing if m["name"] == "tiny")["verified"]
    assert _cli("--config", str(config), "models", "verify", "tiny").returncode == 0

    (tmp_home / "models" / "tiny.gguf").write_bytes(PAYLOAD[:-1] + b"\x08")
    corrupt = _cli("--config", str(config), "models", "verify", "tiny")
    assert corrupt.returncode == 1
    assert "corrupt" in corrupt.stderr and "models pull --force tiny" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr

    removed = _cli("--config", str(config), "models", "rm", "tiny")
    assert removed.returncode == 0 and "removed tiny" in removed.stderr
    unknown = _cli("--config", str(config), "models", "pull", "nonesuch")
    assert unknown.returncode == 1 and "no model named 'nonesuch'" in unknown.stderr


def test_cache_commands(tmp_home: Path) -> None:
    cache = CallCache(tmp_home / "cache")
    cache.get_or_compute("a" * 64, "model-a", lambda: {"text": "1"})
    cache.get_or_compute("a" * 64, "model-a", lambda: {"text": "1"})
    cache.close()

    stats = json.loads(_cli("cache", "stats", "--json").stdout)
    assert (stats["entries"], stats["hits"], stats["misses"]) == (1, 1, 1)
    assert _cli("cache", "path").stdout.strip() == str(tmp_home / "cache")
    prefixes = PrefixStore(tmp_home / "prefixes")
    for tokens in ([1, 2], [3, 4]):
        prefixes.save(prefix_key({}, tokens), b"state" * 100, 2, {"model_sha256": SHA})
    stats = json.loads(_cli("cache", "stats", "--json").stdout)
    assert stats["prefixes"]["entries"] == 2 and stats["prefixes"]["size_bytes"] == 1000
    assert stats["prefixes"]["directory"] == str(tmp_home / "prefixes")
    assert "evaluated prompt prefixes" in _cli("cache", "stats").stdout
    cleared = _cli("cache", "clear")
    assert cleared.returncode == 0
    assert "removed 1 entries and 2 prompt prefixes" in cleared.stderr
    after = json.loads(_cli("cache", "stats", "--json").stdout)
    assert after["entries"] == 0 and after["prefixes"]["entries"] == 0


def test_help_texts_exist() -> None:
    commands = ("ask", "chat", "mcp", "models", "cache")
    for args in (["--help"], *([command, "--help"] for command in commands)):
        result = _cli(*args)
        assert result.returncode == 0 and "Usage:" in result.stdout
    assert "--max-sub-calls" in _cli("ask", "--help").stdout
    assert "--max-sub-calls" in _cli("chat", "--help").stdout


def test_served_models_are_listed_with_their_servers(tmp_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "served.toml"
    config.write_text(
        "[models.lan-sub]\nn_ctx = 4096\n[models.lan-sub.server]\n"
        'base_urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]\nmodel = "q"\n'
    )
    listing = _cli("--config", str(config), "models", "list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("lan-sub"))
    assert "served" in row and "http://127.0.0.1:9/v1 http://127.0.0.1:10/v1" in row
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.x.server]\nbase_urls = ["ftp://host"]\nmodel = "q"\n')
    refused = _cli("--config", str(bad), "models", "list")
    assert refused.returncode == 1 and "http(s)://" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_cell_bridge_limit_flags(tmp_path: Path) -> None:
    help_text = _cli("ask", "--help").stdout
    assert "--cell-bridge-calls" in help_text and "--cell-bridge-seconds" in help_text
    text = tmp_path / "in.txt"
    text.write_text("hello")
    for flag, value in (("--cell-bridge-calls", "-1"), ("--cell-bridge-seconds", "0")):
        refused = _cli("ask", flag, value, "q?", str(text))
        assert refused.returncode == 2 and flag in refused.stderr
        assert "Traceback" not in refused.stderr


def test_skip_check_names_every_check_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    from rlm_local.engine.checks import CHECKS

    help_text = " ".join(_cli("ask", "--help").stdout.split())
    assert "--skip-check" in help_text
    assert all(name in help_text for name in CHECKS)  # the help lists them all
    text = tmp_path / "in.txt"
    text.write_text("hello")
    refused = _cli("ask", "--skip-check", "nope", "q?", str(text))
    assert refused.returncode == 2 and "unknown check nope" in refused.stderr
    assert "Traceback" not in refused.stderr
