"""Turning files, directories and stdin into `context`, and refusing what cannot be read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rlm_local.engine import InputOptions, load_inputs
from rlm_local.errors import InputError


def test_one_file_is_a_str_and_a_directory_a_dict(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "src" / "pkg" / "b.py").write_text("y = 2\n")
    (tmp_path / "src" / "notes.md").write_text("# notes\n")
    (tmp_path / "src" / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "src" / ".git").mkdir()
    (tmp_path / "src" / ".git" / "HEAD").write_text("ref")

    single = load_inputs([str(tmp_path / "src" / "a.py")])
    assert single.context == "x = 1\n"

    tree = load_inputs([str(tmp_path / "src")])
    assert tree.context == {"a.py": "x = 1\n", "pkg/b.py": "y = 2\n", "notes.md": "# notes\n"}
    assert any("binary" in n for n in tree.notices)

    only_py = load_inputs([str(tmp_path / "src")], InputOptions(include=("*.py",)))
    assert set(only_py.context) == {"a.py", "pkg/b.py"}
    no_pkg = load_inputs([str(tmp_path / "src")], InputOptions(exclude=("pkg/*",)))
    assert "pkg/b.py" not in no_pkg.context

    both = load_inputs([str(tmp_path / "src" / "a.py"), str(tmp_path / "src" / "notes.md")])
    assert isinstance(both.context, dict) and len(both.context) == 2


def test_limits_and_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.txt"
    big.write_text("a" * 3000)
    with pytest.raises(InputError, match="memory budget"):
        load_inputs([str(big)], InputOptions(max_total_mb=0.001))
    with pytest.raises(InputError, match="readable text .*over the per-file limit"):
        load_inputs([str(big)], InputOptions(max_file_mb=0.001))
    with pytest.raises(InputError, match="does not exist"):
        load_inputs([str(tmp_path / "missing.txt")])
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        load_inputs([str(empty)])
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(InputError, match="empty"):
        load_inputs(["-"])
    monkeypatch.setattr("sys.stdin", io.StringIO("from a pipe"))
    assert load_inputs(["-"]).context == "from a pipe"
