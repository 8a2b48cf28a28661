"""The `real` benchmark suite: tasks read from a devsuite-format tasks file, contexts loaded as the
CLI loads them, scores from the suite's own score.py, rows, resume, Ctrl-C and the table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import real
from benchmarks.methods import METHODS, MethodResult
from benchmarks.runner import main
from rlm_local.engine import load_inputs

DEVSUITE = real.DEFAULT_TASKS.parent

# A stand-in scorer, unlike benchmarks/tasks.py's and the devsuite's (numbers score 0.5^error), so
# a row's score shows which scorer made it.
STAND_IN_SCORER = """
SCORERS = ("contains", "numeric", "exact")

def score_task(task, prediction):
    if prediction is None or not str(prediction).strip():
        return 0.0
    text = str(prediction)
    if text == "boom":
        raise ValueError("a scorer bug")
    if task["scorer"] == "numeric":
        digits = "".join(c if c.isdigit() else " " for c in text).split()
        return 0.5 ** abs(int(digits[0]) - int(task["answer"])) if digits else 0.0
    if task["scorer"] == "exact":
        return float(text.strip() == str(task["answer"]))
    return float(str(task["answer"]) in text)
"""

TASKS = [
    {
        "id": "log-01",
        "family": "logs",
        "task_type": "needle",
        "context_path": "data/app.log",
        "context_kind": "file",
        "question": "Which session id was opened after the failure?",
        "answer": "4417263",
        "scorer": "contains",
    },
    {
        "id": "code-01",
        "family": "code",
        "task_type": "aggregate",
        "context_path": "data/src",
        "context_kind": "dir",
        "question": "How many functions take a timeout parameter?",
        "answer": 3,
        "scorer": "numeric",
    },
]


def write_suite(folder: Path, scorer: str | None = STAND_IN_SCORER) -> Path:
    """A tiny suite in the devsuite layout: tasks.jsonl, score.py and data/ (a file and a dir)."""
    data = folder / "data"
    (data / "src" / "pkg").mkdir(parents=True)
    (data / "src" / "__pycache__").mkdir()
    lines = [f"2024-01-0{i % 9 + 1} 10:0{i % 10}:00 INFO worker {i} ok" for i in range(40)]
    lines[25] = "2024-01-05 10:05:00 ERROR failure; session 4417263 opened"
    (data / "app.log").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    (data / "src" / "pkg" / "net.py").write_text(
        "def get(url, timeout=5):\n    pass\n\ndef post(url, timeout=5):\n    pass\n"
    )
    (data / "src" / "pkg" / "io.py").write_text("def read(path, timeout=None):\n    pass\n")
    (data / "src" / "setup.cfg").write_text("[metadata]\nname = pkg\n")
    (data / "src" / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"\x00\x01junk")
    tasks = folder / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS), encoding="utf-8")
    if scorer is not None:
        (folder / "score.py").write_text(scorer, encoding="utf-8")
    return tasks


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run_real(tasks: Path, out: Path, home: Path, *extra: str) -> None:
    main(["run", "--suite", "real", "--tasks", str(tasks), "--scripted", "--quiet",
          "--out", str(out), "--home", str(home), *extra])  # fmt: skip


class FakeMethod:
    """Records each context it is given and answers from a table keyed by the question."""

    def __init__(self, answers: dict[str, str], interrupt_at: int = 0) -> None:
        self.answers = answers
        self.contexts: list[str | dict[str, str]] = []
        self.interrupt_at = interrupt_at

    def __call__(self, rlm: Any, question: str, context: Any, **_: Any) -> MethodResult:
        self.contexts.append(context)
        if len(self.contexts) == self.interrupt_at:
            raise KeyboardInterrupt
        return MethodResult(answer=self.answers[question], seconds=1.5 * len(self.contexts))


def test_scripted_run_writes_scored_rows_and_the_table(tmp_path: Path, tmp_home: Path) -> None:
    tasks = write_suite(tmp_path / "suite")
    out = tmp_path / "results"
    run_real(tasks, out, tmp_home, "--methods", "rlm,direct", "--tag", "smoke")
    rows = rows_of(out / "real-smoke.jsonl")
    assert [(r["id"], r["method"]) for r in rows] == [
        ("log-01", "rlm"), ("log-01", "direct"), ("code-01", "rlm"), ("code-01", "direct"),
    ]  # fmt: skip
    scorer = real.load_scorer(tasks.parent)
    for row, task in zip(rows, [TASKS[0], TASKS[0], TASKS[1], TASKS[1]], strict=True):
        assert row["error"] is None, row["error"]
        assert row["family"] == task["family"] and row["task_type"] == task["task_type"]
        assert row["score"] == scorer.score_task(task, row["answer"])
        assert row["machine"]["cores"] >= 1 and row["commit"] and row["cache"] is True
        assert row["time"] and row["seconds"] >= 0 and "turns" in row and "sub_calls" in row
        assert "prompt_tokens" in row and row["tasks_file"] == str(tasks.resolve())
        assert (row["timing"] is None) == (row["method"] == "direct")  # rlm rows carry the split
        assert row["method"] == "direct" or row["timing"]["sandbox_s"] >= 0
    table = (out / "real-smoke.md").read_text()
    assert "## rlm · " in table and "## direct · " in table
    assert "| family code | 1 |" in table and "| type needle | 1 |" in table
    assert "| **overall** | 2 |" in table and "| mean of family means | 2 families |" in table
    assert "| log-01 | logs | needle |" in table and "| code-01 | code | aggregate |" in table
    assert all("evidence_holds" in row and isinstance(row["evidence"], list) for row in rows)

    # The evidence found again from the kept traces, without models, equals the run's.
    replayed = real.replay_evidence(rows)
    assert [r["id"] for r in replayed] == ["log-01", "code-01"]  # rlm rows only
    ran = {r["id"]: r for r in rows if r["method"] == "rlm"}
    for row in replayed:
        assert row["evidence"] == ran[row["id"]]["evidence"]
        assert row["evidence_holds"] == ran[row["id"]]["evidence_holds"]


def test_contexts_are_what_the_cli_loads_and_scores_come_from_the_suites_scorer(
    tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = write_suite(tmp_path / "suite")
    fake = FakeMethod({TASKS[0]["question"]: "session 4417263", TASKS[1]["question"]: "2"})
    monkeypatch.setitem(METHODS, "rlm", fake)
    run_real(tasks, tmp_path / "out", tmp_home, "--methods", "rlm", "--no-cache")

    data = tasks.parent / "data"
    assert fake.contexts[0] == (data / "app.log").read_bytes().decode()  # CRLF kept
    assert fake.contexts[1] == load_inputs([str(data / "src")]).context
    assert sorted(fake.contexts[1]) == ["pkg/io.py", "pkg/net.py", "setup.cfg"]
    rows = rows_of(tmp_path / "out" / "real.jsonl")
    assert [r["score"] for r in rows] == [1.0, 0.5]  # the stand-in's 0.5^|2 - 3|
    assert all(r["cache"] is False for r in rows)
    table = (tmp_path / "out" / "real.md").read_text()
    assert "| **overall** | 2 | **0.75** |" in table
    assert "| family code | 1 | 0.50 |" in table and "| family logs | 1 | 1.00 |" in table
    assert "seconds per task: median 2.2, max 3.0" in table


def test_family_and_only_select_tasks(
    tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = write_suite(tmp_path / "suite")
    monkeypatch.setitem(METHODS, "rlm", FakeMethod({t["question"]: "3" for t in TASKS}))
    out = tmp_path / "out"
    run_real(tasks, out, tmp_home, "--methods", "rlm", "--family", "code")
    run_real(tasks, out, tmp_home, "--methods", "rlm", "--only", "log-01", "--tag", "one")
    assert [r["id"] for r in rows_of(out / "real.jsonl")] == ["code-01"]
    assert [r["id"] for r in rows_of(out / "real-one.jsonl")] == ["log-01"]


def test_ctrl_c_keeps_finished_rows_and_resume_skips_them(
    tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = write_suite(tmp_path / "suite")
    answers = {t["question"]: "4417263 and 3" for t in TASKS}
    monkeypatch.setitem(METHODS, "rlm", FakeMethod(answers, interrupt_at=2))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        run_real(tasks, out, tmp_home, "--methods", "rlm")
    assert stopped.value.code == 130
    assert [r["id"] for r in rows_of(out / "real.jsonl")] == ["log-01"]
    assert "| log-01 | logs | needle | 1.00 |" in (out / "real.md").read_text()

    again = FakeMethod(answers)
    monkeypatch.setitem(METHODS, "rlm", again)
    run_real(tasks, out, tmp_home, "--methods", "rlm", "--resume")
    assert len(again.contexts) == 1  # only the task the interrupt stopped
    assert [r["id"] for r in rows_of(out / "real.jsonl")] == ["log-01", "code-01"]

    run_real(tasks, out, tmp_home, "--methods", "rlm")  # without --resume: both run again
    assert len(again.contexts) == 3 and len(rows_of(out / "real.jsonl")) == 4
    assert "| **overall** | 2 |" in (out / "real.md").read_text()  # latest row per task


def test_a_failing_method_is_a_row_with_its_error(
    tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> MethodResult:
        raise RuntimeError("the model went away")

    monkeypatch.setitem(METHODS, "rlm", broken)
    tasks = write_suite(tmp_path / "suite")
    run_real(tasks, tmp_path / "out", tmp_home, "--methods", "rlm", "--only", "log-01")
    (row,) = rows_of(tmp_path / "out" / "real.jsonl")
    assert row["score"] == 0.0 and row["error"] == "RuntimeError: the model went away"
    table = (tmp_path / "out" / "real.md").read_text()
    assert "| log-01 | logs | needle | 0.00 |" in table and "error: RuntimeError" in table


def test_a_scorer_failing_mid_run_stops_it_with_the_rows_kept(
    tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = write_suite(tmp_path / "suite")
    answers = {TASKS[0]["question"]: "4417263", TASKS[1]["question"]: "boom"}
    monkeypatch.setitem(METHODS, "rlm", FakeMethod(answers))
    with pytest.raises(SystemExit) as failed:
        run_real(tasks, tmp_path / "out", tmp_home, "--methods", "rlm")
    assert (
        failed.value.code == "error: score.py cannot score task code-01 (ValueError: a scorer bug)."
    )
    assert [r["id"] for r in rows_of(tmp_path / "out" / "real.jsonl")] == ["log-01"]
    assert "| log-01 | logs | needle | 1.00 |" in (tmp_path / "out" / "real.md").read_text()


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda s: (s / "tasks.jsonl").unlink(), "does not exist"),
        (lambda s: (s / "score.py").unlink(), "No score.py beside the tasks file"),
        (lambda s: (s / "tasks.jsonl").write_text('{"id": "x"\n'), "tasks.jsonl:1 is not valid"),
        (lambda s: (s / "tasks.jsonl").write_text('{"id": "x"}\n'), "lacks family, question"),
        (lambda s: shutil.rmtree(s / "data" / "src"), "Task code-01: the folder"),
        (lambda s: (s / "score.py").write_text("SCORERS = ()\n"), "has no score_task"),
        (
            lambda s: (s / "tasks.jsonl").write_text(json.dumps({**TASKS[1], "answer": "x1"})),
            "score.py cannot score task code-01 (ValueError",
        ),
    ],
)
def test_a_broken_suite_is_one_sentence_not_a_traceback(
    break_it: Any, message: str, tmp_path: Path, tmp_home: Path
) -> None:
    tasks = write_suite(tmp_path / "suite")
    break_it(tasks.parent)
    with pytest.raises(SystemExit) as failed:
        run_real(tasks, tmp_path / "out", tmp_home, "--methods", "direct")
    assert str(failed.value.code).startswith("error: ") and message in str(failed.value.code)
    assert str(failed.value.code).count("\n") == 0


def test_unknown_family_or_task_id_names_the_known_ones(tmp_path: Path, tmp_home: Path) -> None:
    tasks = write_suite(tmp_path / "suite")
    for option, value, known in (("--family", "docs", "code, logs"), ("--only", "x-9", "code-01")):
        with pytest.raises(SystemExit) as failed:
            run_real(tasks, tmp_path / "out", tmp_home, option, value)
        assert value in str(failed.value.code) and known in str(failed.value.code)
    assert not (tmp_path / "out" / "real.jsonl").exists()


def test_tasks_option_takes_the_suites_folder_too(tmp_path: Path) -> None:
    tasks = write_suite(tmp_path / "suite")
    assert real.resolve_tasks_path(str(tasks.parent)) == tasks.resolve()
    suite = real.load_suite(str(tasks))
    assert [t.id for t in suite.tasks] == ["log-01", "code-01"]
    assert suite.tasks[1].context_path == (tasks.parent / "data" / "src").resolve()


def _row(**changes: Any) -> dict[str, Any]:
    machine = {"cpu": "AMD EPYC", "cores": 2, "llama": "l", "llama_features": "AVX2 = 1"}
    row = {
        "suite": "real", "task": "a", "id": "a", "family": "logs", "task_type": "needle",
        "method": "rlm", "commit": "abc", "machine": machine, "cache": False, "score": 1.0,
        "seconds": 10.0, "error": None, "answer": "x", "tasks_file": "/t/tasks.jsonl",
        "tasks_sha": "d1", "time": "2026-01-01T00:00:00",
    }  # fmt: skip
    return {**row, **changes}


def test_table_never_averages_commits_and_counts_a_rerun_task_once(tmp_path: Path) -> None:
    raw = tmp_path / "real.jsonl"
    rows = [
        _row(),
        _row(id="b", family="code", task_type="aggregate", score=0.0, seconds=30.0),
        _row(id="c", family="code", task_type="list", score=0.5, seconds=20.0),
        _row(
            id="b",
            family="code",
            task_type="aggregate",
            score=1.0,
            seconds=40.0,
            answer="| a pipe\nand a line " + "y" * 100,
            time="2026-01-01T01:00:00",
        ),  # fmt: skip
        _row(commit="def", score=0.0, time="2026-01-02T00:00:00"),
    ]
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = real.render_table(raw, "real")
    assert "| rlm | abc | AMD EPYC, AVX2, 2 cores | 3 | 0.83 | 0.88 | 0.75 | 1.00 | 20.0 " in table
    assert "| rlm | def | AMD EPYC, AVX2, 2 cores | 1 | 0.00 | 0.00 | – | 0.00 |" in table
    assert "## rlm · abc · AMD EPYC, AVX2, 2 cores" in table
    assert "## rlm · def · AMD EPYC, AVX2, 2 cores" in table
    assert "median 20.0, max 40.0" in table
    assert "| b | code | aggregate | 1.00 | – | 40.0 | \\| a pipe and a line yyy" in table
    assert "y" * 80 not in table  # answers are cut to 80 characters


def test_the_summary_gives_the_timing_split_as_medians_or_a_dash(tmp_path: Path) -> None:
    split = {"load_s": 1.0, "prompt_eval_s": 6.0, "generation_s": 2.0, "sandbox_s": 0.5,
             "sub_calls_s": 1.5, "prompt_tokens": 700, "restored_tokens": 0}  # fmt: skip
    rows = [
        _row(timing=split),
        _row(id="b", timing={**split, "prompt_eval_s": 8.0, "load_s": 0.0}),
        _row(commit="old", time="2025-01-01T00:00:00"),  # results from before the split
    ]
    raw = tmp_path / "real.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = real.render_table(raw, "real").splitlines()
    header = next(line for line in lines if line.startswith("| method |"))
    assert "| median s | max s | load s | prompt s | gen s | sandbox s | sub s | errors |" in header
    assert lines[lines.index(header) + 1].count("---") == header.count("|") - 1
    new = next(line for line in lines if line.startswith("| rlm | abc |"))
    assert new.endswith("| 10.0 | 10.0 | 0.5 | 7.0 | 2.0 | 0.5 | 1.5 | 0 |")
    old = next(line for line in lines if line.startswith("| rlm | old |"))
    assert old.endswith("| 10.0 | 10.0 | – | – | – | – | – | 0 |")


def test_engine_options_run_as_a_group_of_their_own(tmp_path: Path, tmp_home: Path) -> None:
    tasks = write_suite(tmp_path / "suite")
    out = tmp_path / "results"
    run_real(tasks, out, tmp_home, "--methods", "rlm", "--only", "log-01")
    run_real(tasks, out, tmp_home, "--methods", "rlm", "--only", "log-01",
             "--engine", "read_first=hint", "--engine", "first_search=false",
             "--engine", "skip_checks=unfounded,empty")  # fmt: skip
    rows = rows_of(out / "real.jsonl")
    engine = {"read_first": "hint", "first_search": False, "skip_checks": ["unfounded", "empty"]}
    assert [r.get("engine") for r in rows] == [None, engine]
    table = (out / "real.md").read_text()
    assert table.count("## rlm · ") == 1
    assert "## rlm first_search=False read_first=hint skip_checks=unfounded,empty · " in table


@pytest.mark.parametrize(
    ("value", "message"),
    [("read_first", "NAME=VALUE"), ("no_such=1", "NAME=VALUE"),
     ("max_turns=many", "takes a whole number"), ("first_search=perhaps", "takes true or false"),
     ("sandbox=x", "NAME=VALUE"), ("read_first=maybe", "takes one of answer, hint, off"),
     ("skip_checks=empty,nope", "skip_checks: unknown check nope")],
)  # fmt: skip
def test_a_wrong_engine_option_is_one_sentence(value: str, message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--suite", "real", "--engine", value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_table_and_rescore_commands_read_real_rows(tmp_path: Path) -> None:
    tasks = write_suite(tmp_path / "suite")
    raw = tmp_path / "real.jsonl"
    row = _row(id="code-01", family="code", answer="3", score=0.0, tasks_file=str(tasks))
    raw.write_text(json.dumps(row) + "\n")
    main(["table", str(raw)])
    assert "| code-01 | code | needle | 0.00 |" in (tmp_path / "real.md").read_text()
    main(["rescore", str(raw)])
    (rescored,) = rows_of(raw)
    assert rescored["score"] == 1.0 and rescored["scored_at"]
    assert "| code-01 | code | needle | 1.00 |" in (tmp_path / "real.md").read_text()


@pytest.mark.skipif(not (DEVSUITE / "score.py").is_file(), reason="../shared/devsuite is absent")
def test_scores_equal_the_devsuite_score_py(
    tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the devsuite's own score.py beside the tiny tasks file, the rows' scores and the
    table's means are what `python3 score.py` prints for the same answers."""
    tasks = write_suite(tmp_path / "suite", scorer=None)
    shutil.copy(DEVSUITE / "score.py", tasks.parent / "score.py")
    answers = {TASKS[0]["question"]: "It was 4417263.", TASKS[1]["question"]: "Two of them"}
    monkeypatch.setitem(METHODS, "direct", FakeMethod(answers))
    out = tmp_path / "out"
    run_real(tasks, out, tmp_home, "--methods", "direct")
    rows = rows_of(out / "real.jsonl")
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        "".join(json.dumps({"id": r["id"], "prediction": r["answer"]}) + "\n" for r in rows)
    )
    printed = subprocess.run(
        [sys.executable, str(tasks.parent / "score.py"), str(tasks), "--pred", str(predictions),
         "--json"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(printed.stdout)
    assert {t["id"]: t["score"] for t in report["tasks"]} == {
        r["id"]: round(r["score"], 4) for r in rows
    }
    assert [r["score"] for r in rows] == [1.0, 0.75]
    table = (out / "real.md").read_text()
    assert f"| **overall** | 2 | **{report['overall_mean']:.2f}** |" in table
    assert f"| mean of family means | 2 families | {report['family_macro_mean']:.2f} |" in table


@pytest.mark.skipif(not real.DEFAULT_TASKS.is_file(), reason="../shared/devsuite is absent")
def test_the_default_devsuite_loads_and_its_gold_answers_score_one() -> None:
    suite = real.load_suite()
    assert suite.path == real.DEFAULT_TASKS.resolve() and len(suite.tasks) >= 60
    assert {t.context_kind for t in suite.tasks} == {"file", "dir"}
    for task in suite.tasks:
        gold = task.record["answer"]
        said = json.dumps(gold) if isinstance(gold, list) else str(gold)
        assert suite.score(task, said) == 1.0, task.id
        assert suite.score(task, "") == 0.0
    code = next(t for t in suite.tasks if t.context_kind == "dir" and t.family == "code")
    context = real.load_context(code)
    assert isinstance(context, dict) and "routing/map.py" in context
    log = next(t for t in suite.tasks if t.context_kind == "file")
    assert isinstance(real.load_context(log), str)


def test_real_suite_options_are_refused_for_a_generated_suite(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as failed:
        main(["run", "--suite", "niah", "--family", "logs", "--scripted", "--out", str(tmp_path)])
    assert "apply to --suite real" in str(failed.value.code)


def test_evidence_holds_measures_the_gold_in_the_evidence_texts_and_paths(tmp_path: Path) -> None:
    suite = real.load_suite(str(write_suite(tmp_path)))
    needle, count = suite.tasks  # "4417263" (contains), 3 (numeric)
    line = {"path": "app.log", "text": "ERROR failure; session 4417263 opened"}
    assert real.evidence_holds(suite, needle, [line]) == 1.0
    assert real.evidence_holds(suite, needle, [{"path": "app.log", "text": "session 441726"}]) == 0
    assert real.evidence_holds(suite, needle, []) == 0.0
    assert real.evidence_holds(suite, count, [{"path": "a.py", "text": "retries = 3"}]) == 1.0
    assert real.evidence_holds(suite, count, [{"path": "a.py", "text": "retries = 31"}]) == 0.0
    rows = [_row(evidence_holds=1.0, evidence=[line]), _row(id="b", evidence_holds=0.0)]
    raw = tmp_path / "real.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = real.render_table(raw, "real")
    assert "Evidence holds the gold answer: 0.50 of 2 tasks" in table
    assert (
        "| a | logs | needle | 1.00 | 1.00 |" in table
        and "| b | logs | needle | 1.00 | 0.00 |" in table
    )
