"""Evidence of real runs, checked against the input files: every item's text stands verbatim at
its lines of the file its path names (one file, several files, a directory, standard input)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_cli

from benchmarks.haystack import niah_text
from rlm_local.models import ResolvedModel

pytestmark = pytest.mark.models


@pytest.fixture
def home(tmp_path: Path, root_model_file: ResolvedModel, sub_model_file: ResolvedModel) -> Path:
    """A fresh home whose models/ links to the real verified models."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(root_model_file.path.parent, target_is_directory=True)
    return home


def _ask(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("ask", *args, env={"RLM_LOCAL_HOME": str(home)}, stdin=stdin, timeout=900)


def _stands_at_its_lines(item: dict, text: str) -> bool:
    lines = text.split("\n")
    return (
        "\n".join(lines[item["line_start"] - 1 : item["line_end"]]).rstrip("\r\n") == item["text"]
    )


def _evidence(result: subprocess.CompletedProcess[str]) -> tuple[str, list[dict]]:
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["evidence"], "an answered needle rests on at least one passage"
    return data["answer"], data["evidence"]


def _filler(words: int, seed: int) -> str:
    text, _ = niah_text(words * 6, seed=seed)
    return text


def test_one_file_s_evidence_stands_at_its_lines(tmp_path: Path, home: Path) -> None:
    text, needle = niah_text(40_000, seed=2828)
    path = tmp_path / "report.txt"
    path.write_text(text)

    answer, evidence = _evidence(_ask(home, needle.question, str(path), "--json"))
    assert needle.value in answer
    assert {item["path"] for item in evidence} == {str(path)}
    assert all(_stands_at_its_lines(item, text) for item in evidence)
    assert any(needle.value in item["text"] for item in evidence)


def test_a_directory_s_evidence_names_the_file_inside_it(tmp_path: Path, home: Path) -> None:
    text, needle = niah_text(30_000, seed=3131)
    folder = tmp_path / "notes"
    (folder / "2024").mkdir(parents=True)
    files = {
        "2024/january.txt": _filler(3000, 1),
        "2024/march.txt": text,
        "readme.txt": _filler(2000, 2),
    }
    for name, body in files.items():
        (folder / name).write_text(body)

    answer, evidence = _evidence(_ask(home, needle.question, str(folder), "--json"))
    assert needle.value in answer
    assert all(item["path"] in files for item in evidence)
    assert all(_stands_at_its_lines(item, files[item["path"]]) for item in evidence)
    assert any(i["path"] == "2024/march.txt" and needle.value in i["text"] for i in evidence)


def test_several_files_evidence_uses_the_paths_given(tmp_path: Path, home: Path) -> None:
    text, needle = niah_text(30_000, seed=4545)
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(_filler(3000, 3))
    second.write_text(text)
    by_path = {str(first): first.read_text(), str(second): text}

    answer, evidence = _evidence(_ask(home, needle.question, str(first), str(second), "--json"))
    assert needle.value in answer
    assert all(item["path"] in by_path for item in evidence)
    assert all(_stands_at_its_lines(item, by_path[item["path"]]) for item in evidence)


def test_standard_input_s_evidence_is_path_dash_and_shown_on_stderr(home: Path) -> None:
    text, needle = niah_text(30_000, seed=5656)

    result = _ask(home, needle.question, "-", "--evidence", stdin=text)
    assert result.returncode == 0, result.stderr
    assert needle.value in result.stdout and "Evidence" not in result.stdout
    assert "Evidence:" in result.stderr and "-:" in result.stderr
    # Progress names the input's size on one line; the data look's lines are for --verbose.
    assert text.split("\n", 1)[0][:60] not in result.stderr

    answer, evidence = _evidence(_ask(home, needle.question, "-", "--json", stdin=text))
    assert {item["path"] for item in evidence} == {"-"}
    assert all(_stands_at_its_lines(item, text) for item in evidence)
