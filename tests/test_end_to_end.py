"""The whole product on the real default models, through the CLI as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_cli

from benchmarks.haystack import niah_text
from rlm_local.models import ResolvedModel
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
    # The first step's grep found the needle, and the root model read the number off its output.
    assert [e["accepted"] for e in trace if e["type"] == "read"] == [True]
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
    assert data["mode"] == "rlm" and data["answer"] == "-1" and data["turns"] == 1
    trace = read_trace(Path(data["trace_path"]))
    assert [e["code"] for e in trace if e["type"] == "cell"] == ["print(source('compile'))"]


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


def test_records_are_labelled_by_vote_and_grouped_for_a_pairs_question(
    tmp_path: Path, home_with_models: Path
) -> None:
    """The real labeller votes over two batch orders, and the grouping step runs in the real
    sandbox on its labels."""
    praise = ["I love it, it works wonderfully!", "Fantastic quality, very happy.", "Great buy!"]
    complaints = ["Terrible, it broke after one day.", "Awful support, a total waste of money."]
    users = {11111: "pn", 22222: "pnp", 33333: "pp", 44444: "nn", 55555: "np"}
    lines = []
    for n, (user, kinds) in enumerate((u, k) for u, ks in users.items() for k in ks):
        text = (praise if kinds == "p" else complaints)[n % (3 if kinds == "p" else 2)]
        lines.append(f"Date: Mar {n + 1:02d}, 2024 || User: {user} || Review: {text}")
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(lines) + "\n")
    question = (
        "Each line is a review with one hidden label, one of: positive, negative. List every pair "
        "of user ids where both users wrote a review labelled 'positive' and one labelled "
        "'negative'."
    )
    args = ("--json", "--mode", "rlm", "--max-turns", "1")
    result = _ask(question, str(reviews), *args, home=home_with_models)
    assert result.returncode == 0, result.stderr
    trace = read_trace(Path(json.loads(result.stdout)["trace_path"]))
    (labelled,) = [e for e in trace if e["type"] == "classify"]
    assert labelled["distinct"] == 5 and labelled["voted"] and labelled["sub_calls"] >= 2
    assert labelled["unlabelled"] == 0
    step = next(e for e in trace if e["type"] == "cell" and not e.get("turn"))
    # 11111, 22222 and 55555 wrote both kinds; 33333 only praised, 44444 only complained
    assert (
        "3 User values with rows labelled 'positive' and 'negative', in having\n"
        in (step["output"])
    )
    assert "3 pairs of them, in pairs" in step["output"]
