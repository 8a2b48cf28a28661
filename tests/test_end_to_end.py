"""The whole product on the real default models, through the CLI as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_cli
from scripted import ScriptedModel

from benchmarks.haystack import niah_text
from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions
from rlm_local.models import ResolvedModel
from rlm_local.models.backend import LocalModel
from rlm_local.trace import read_trace

REPO = Path(__file__).parent.parent


def _ask(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("ask", *args, env={"RLM_LOCAL_HOME": str(home)}, stdin=stdin, timeout=900)


@pytest.fixture
def home_with_models(
    tmp_path: Path, root_model_file: ResolvedModel, sub_model_file: ResolvedModel
) -> Path:
    """A fresh home (empty cache, no runs) whose models/ links to the real verified models."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(root_model_file.path.parent, target_is_directory=True)
    return home


def test_needle_in_a_long_text_through_the_cli(tmp_path: Path, home_with_models: Path) -> None:
    text, needle = niah_text(120_000, seed=4242)
    big = tmp_path / "big.txt"
    big.write_text(text)
    assert len(text) >= 100_000

    result = _ask(needle.question, str(big), "--json", home=home_with_models)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert needle.value in data["answer"]
    assert data["mode"] == "rlm" and data["turns"] >= 1
    trace = read_trace(Path(data["trace_path"]))
    assert trace[0]["type"] == "run_start" and trace[-1]["type"] == "run_end"
    assert any(e["type"] == "cell" for e in trace)
    # The root model never saw the text: no prompt held the needle except through cell output.
    assert text[:5000] not in json.dumps(trace)

    again = _ask(needle.question, str(big), "--json", home=home_with_models)
    second = json.loads(again.stdout)
    assert second["answer"] == data["answer"]
    assert second["cache_misses"] == 0 and second["cache_hits"] >= 1  # nothing recomputed


@pytest.mark.models
def test_a_fact_on_page_150_of_a_200_page_pdf_through_the_cli(
    tmp_path: Path, home_with_models: Path
) -> None:
    """A PDF as a user has one: converted once (cached by sha256), the needle found, the
    converter named in --json and in the trace."""
    import documents_maker

    _, needle = niah_text(1000, seed=150)
    pages = [f"Page {n} of the annual report: nothing remarkable here." for n in range(1, 201)]
    pages[149] = f"Section 12 of the annual report. {needle.sentence}"
    pdf = documents_maker.pdf(tmp_path / "annual-report.pdf", pages)  # type: ignore[arg-type]
    question = f"{needle.question} On which page of the report is it?"

    result = _ask(question, str(pdf), "--json", home=home_with_models)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert needle.value in data["answer"]
    [document] = data["inputs"]["documents"]
    assert document["converter"] == "pypdfium2" and document["pages"] == 200
    assert document["cached"] is False
    trace = read_trace(Path(data["trace_path"]))
    assert trace[1]["type"] == "inputs" and trace[1]["documents"][0]["pages"] == 200
    # Not asserted, for the report: whether the 1.5B root model named page 150 too.
    print("answer:", data["answer"])
    # The evidence names the page the engine found the needle on, whatever the model said.
    held = [e for e in data["evidence"] if needle.value in e["text"]]
    assert held and all(e["page"] == 150 and e["path"] == str(pdf) for e in held)

    again = json.loads(_ask(question, str(pdf), "--json", home=home_with_models).stdout)
    assert again["inputs"]["documents"][0]["cached"] is True  # converted once


def test_a_default_in_real_source_is_read_off_the_definition(
    tmp_path: Path, home_with_models: Path
) -> None:
    # Asked to write code about `optimize=-1`, the 1.5B model answered 0 (codebase QA 8K, seed 5).
    import heapq
    import py_compile

    code = tmp_path / "code"
    code.mkdir()
    for module in (heapq, py_compile):
        (code / Path(str(module.__file__)).name).write_text(Path(str(module.__file__)).read_text())
    question = (
        "In the file py_compile.py, what is the default value of the parameter `optimize` of the "
        "top-level function `compile`? Answer with the Python expression."
    )
    result = _ask(question, str(code), "--include", "*.py", "--json", home=home_with_models)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["mode"] == "rlm" and data["answer"].strip("`'\" ") == "-1"
    trace = read_trace(Path(data["trace_path"]))
    cells = [e for e in trace if e["type"] == "cell"]
    # The answer was read off printed code: some cell's output shows the definition.
    assert any("def compile(" in (e["output"] or "") for e in cells)


def test_a_new_process_restores_the_system_prompts_and_answers_the_same(
    tmp_path: Path, home_with_models: Path
) -> None:
    """The call cache emptied between two asks, so both run the models: the second restores the
    fixed prompt parts the first stored. `--no-cache` stores and restores nothing."""
    question = "What is the special magic number for hollow-quarry mentioned in the provided text?"
    example = str(REPO / "examples" / "needle.txt")  # the Quick start's question
    uncached_home = tmp_path / "uncached"
    uncached_home.mkdir()
    (uncached_home / "models").symlink_to(home_with_models / "models")
    runs = []
    for home, flags in (
        (home_with_models, ()),
        (home_with_models, ()),
        (uncached_home, ("--no-cache",)),
    ):
        shutil.rmtree(home / "cache", ignore_errors=True)
        result = _ask(question, example, "--json", *flags, home=home)
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    first, second, uncached = runs
    assert "8982030" in first["answer"]
    assert second["answer"] == uncached["answer"] == first["answer"]
    assert first["timing"]["restored_tokens"] == 0
    assert second["timing"]["restored_tokens"] > 0
    assert second["timing"]["prompt_tokens"] < first["timing"]["prompt_tokens"]
    assert first["timing"]["load_s"] > 0 and first["timing"]["generation_s"] > 0
    assert uncached["timing"]["restored_tokens"] == 0
    assert list((home_with_models / "prefixes").glob("*.state"))
    assert not (uncached_home / "prefixes").exists()


def test_stdin_short_input_is_answered_directly(home_with_models: Path) -> None:
    result = _ask(
        "What colour is the door?",
        home=home_with_models,
        stdin="The house at the end of the lane has a bright green door and two windows.",
    )
    assert result.returncode == 0, result.stderr
    assert "green" in result.stdout.lower()
    assert "mode direct" in result.stderr


def test_an_unknown_labeller_is_one_clear_sentence(home_with_models: Path) -> None:
    result = _ask("--labeller", "no-such-model", "What colour?", "README.md", home=home_with_models)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "'no-such-model' is neither a known model nor a .gguf file" in result.stderr


def test_models_list_names_the_labeller_when_set_apart(tmp_path: Path) -> None:
    env = {"RLM_LOCAL_HOME": str(tmp_path), "RLM_LOCAL_LABELLER": "qwen2.5-coder-0.5b-instruct"}
    listed = json.loads(run_cli("models", "list", "--json", env=env).stdout)
    roles = {row["name"]: row["role"] for row in listed}
    assert roles["qwen2.5-coder-0.5b-instruct"] == "sub, labeller"
    assert roles["qwen2.5-coder-1.5b-instruct"] == "root"


def test_a_cell_s_classify_is_labelled_by_the_real_labeller_with_a_vote(
    tmp_home: Path, root_model: LocalModel
) -> None:
    """classify in a real sandbox cell, labelled by the real root model (the default labeller)
    voting over two batch orders; the root's code is scripted so the cell is known."""
    praise = ["I love it, it works wonderfully!", "Fantastic quality, very happy.", "Great buy!"]
    complaints = ["Terrible, it broke after one day.", "Awful support, a total waste of money."]
    reviews = "\n".join((praise * 3 + complaints * 2)[:12])
    cell = (
        "labels = classify(context.splitlines(), ['positive', 'negative'])\n"
        "print(Counter(labels)['positive'], Counter(labels)['negative'])"
    )
    root = ScriptedModel([cell, "FINAL('done')"])
    options = RunOptions(mode="rlm", skip_checks=("unfounded",))  # the scripted answer is typed
    with RLM(load_settings(), options, root=root, sub=root_model, labeller=root_model) as rlm:
        result = rlm.ask("How many reviews are positive?", reviews)
    trace = read_trace(Path(str(result.trace_path)))
    (labelled,) = [e for e in trace if e["type"] == "classify"]
    assert labelled["distinct"] == 5 and labelled["voted"] and labelled["sub_calls"] >= 2
    assert labelled["unlabelled"] == 0
    expected = reviews.splitlines()
    n_praise = sum(line in praise for line in expected)
    assert f"{n_praise} {len(expected) - n_praise}" in root.calls[1][-1]["content"]
