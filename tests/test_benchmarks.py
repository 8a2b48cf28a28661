"""The benchmark runner end to end on tiny tasks with scripted models, and the scorers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.runner import main
from benchmarks.tasks import SUITES, Task, make_tasks, score
from rlm_local.api import RLM
from rlm_local.engine import labels as labelling
from rlm_local.trace import TIMING_KEYS


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_runner_smoke(suite: str, tmp_path: Path, tmp_home: Path) -> None:
    out = tmp_path / "results"
    main(["run", "--suite", suite, "--sizes", "2k", "--n", "2", "--scripted", "--quiet",
          "--out", str(out), "--home", str(tmp_home)])  # fmt: skip
    rows = [json.loads(line) for line in (out / f"{suite}.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3
    assert {r["method"] for r in rows} == {"rlm", "direct", "chunked"}
    assert all(r["error"] is None and 0.0 <= r["score"] <= 1.0 for r in rows)
    assert all(r["machine"]["cores"] >= 1 and r["commit"] for r in rows)
    assert all(list(r["timing"]) == list(TIMING_KEYS) for r in rows if r["method"] == "rlm")
    assert all(r["timing"] is None for r in rows if r["method"] != "rlm")
    table = (out / f"{suite}.md").read_text()
    assert "| 2,048 | rlm |" in table and "| 2,048 | chunked |" in table
    assert "| load s | prompt s | gen s | sandbox s | sub s |" in table


def test_niah_scripted_rlm_finds_the_needle(tmp_path: Path, tmp_home: Path) -> None:
    out = tmp_path / "r"
    main(["run", "--suite", "niah", "--sizes", "4k", "--n", "3", "--methods", "rlm",
          "--scripted", "--quiet", "--out", str(out), "--home", str(tmp_home)])  # fmt: skip
    rows = [json.loads(line) for line in (out / "niah.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [1.0, 1.0, 1.0]


def test_generators_are_seeded_and_sized() -> None:
    for suite in SUITES:
        a, b = make_tasks(suite, 4096, 2), make_tasks(suite, 4096, 2)
        assert a == b
        assert a[0] != a[1]
        ctx = a[0].context
        size = len(ctx) if isinstance(ctx, str) else sum(map(len, ctx.values()))
        assert 4096 * 4 * 0.5 < size < 4096 * 4 * 1.5, suite


def _task(kind: str, answer: str) -> Task:
    return Task("t", "f", 1, "q", answer, kind, "")  # type: ignore[arg-type]


def test_scorers() -> None:
    assert score(_task("number", "10"), "There are 12.") == pytest.approx(0.75**2)
    assert score(_task("number", "10"), "no idea") == 0.0
    assert score(_task("label", "numeric value"), "Numeric value.") == 1.0
    assert score(_task("label", "numeric value"), "numeric value or location") == 0.0
    assert score(_task("yesno", "yes"), "Yes, it is.") == 1.0
    assert score(_task("pairs", "11111-22222 11111-33333"), "(22222, 11111)") == pytest.approx(
        2 * 1.0 * 0.5 / 1.5
    )
    pairs = _task("pairs", "11111-22222 33333-44444")
    assert score(pairs, "[('11111-22222',), (44444, '33333')]") == 1.0
    assert score(pairs, "users 22222 and 11111; 33333 & 44444") == 1.0
    assert score(pairs, "[11111, 22222, 33333, 44444]") == 0.0  # ids, not pairs
    assert score(pairs, "(11111, 22222, 33333)") == 0.0
    assert score(_task("expr", "0"), "It defaults to 0.") == 1.0
    assert score(_task("expr", "0"), "It defaults to 10") == 0.0
    assert score(_task("contains", "1234567"), None) == 0.0


def test_label_accuracy_smoke(tmp_path: Path, tmp_home: Path) -> None:
    out = tmp_path / "labels"
    main(["labels", "--scripted", "--size", "2k", "--n", "2", "--out", str(out), "--no-vote"])
    main(["labels", "--scripted", "--size", "2k", "--n", "2", "--out", str(out)])
    one_pass, row = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    per_call = labelling.ITEMS_PER_CALL
    batches = -(-row["instances"] // per_call)
    assert row["instances"] > per_call and one_pass["calls"] == batches
    # the vote's second pass; no third, since NONE everywhere is no disagreement
    assert row["voting"] and not one_pass["voting"] and row["calls"] == 2 * batches
    assert row["accuracy"] == 0.0  # the scripted sub-model answers NONE: no label parses
    assert 0.0 <= row["ceiling"] <= 1.0 and len(row["ceiling_scores"]) == 2
    assert "| sub (scripted) | 2,048 | 1-2 |" in (out / "labels.md").read_text()
    assert "| sub (scripted) (vote) | 2,048 | 1-2 |" in (out / "labels.md").read_text()
    (out / "labels.md").unlink()
    main(["table", str(out / "labels.jsonl")])  # rebuilt from the raw rows
    assert "| sub (scripted) | 2,048 | 1-2 |" in (out / "labels.md").read_text()


def test_oolong_answers_follow_the_labels_given() -> None:
    from benchmarks.tasks import oolong_task

    truth = oolong_task(8192, 5)  # seed 5: "which label is the most common"
    assert oolong_task(8192, 5, label_of=lambda r: r.label) == truth
    everything_entity = oolong_task(8192, 5, label_of=lambda r: "entity")
    assert everything_entity.answer == "entity" and everything_entity.question == truth.question


def test_rows_of_two_machines_are_never_averaged(tmp_path: Path) -> None:
    from benchmarks.machine import machine_name
    from benchmarks.runner import render_table

    zen3 = {"cpu": "AMD EPYC", "cores": 2, "llama": "l", "llama_features": "AVX2 = 1 | FMA = 1"}
    zen4 = {**zen3, "llama_features": "AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1"}
    assert machine_name(zen3) == "AMD EPYC, AVX2, 2 cores"
    assert machine_name(zen4) == "AMD EPYC, AVX512, 2 cores"
    assert machine_name({"cpu": "x", "cores": 1}) == "x, 1 cores"  # older rows: no features
    row = {"size_tokens": 8192, "method": "rlm", "commit": "abc", "seconds": 1.0, "cache": False}
    raw = tmp_path / "s.jsonl"
    rows = [
        {**row, "machine": zen3, "score": 1.0, "time": "2026-01-01T00:00:00"},
        {**row, "machine": zen4, "score": 0.0, "time": "2026-01-02T00:00:00"},
    ]
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = render_table(raw, "s")
    assert "| 8,192 | rlm | abc | AMD EPYC, AVX2, 2 cores | 1.00 | 1 |" in table
    assert "| 8,192 | rlm | abc | AMD EPYC, AVX512, 2 cores | 0.00 | 1 |" in table


def test_the_table_gives_the_timing_split_as_medians_or_a_dash(tmp_path: Path) -> None:
    from benchmarks.runner import render_table

    machine = {"cpu": "AMD EPYC", "cores": 2, "llama": "l", "llama_features": "AVX2 = 1"}
    row = {"size_tokens": 8192, "method": "rlm", "machine": machine, "cache": False, "score": 1.0}
    split = {"load_s": 0.4, "prompt_eval_s": 9.0, "prompt_tokens": 600, "restored_tokens": 500,
             "generation_s": 3.0, "sandbox_s": 0.8, "sub_calls_s": 2.0}  # fmt: skip
    rows = [  # commit new: two timed rows and one without (direct); commit old: before the split
        {**row, "commit": "new", "seconds": 15.0, "timing": split, "time": "2026-01-02T00:00"},
        {**row, "commit": "new", "seconds": 25.0, "time": "2026-01-02T00:01",
         "timing": {**split, "prompt_eval_s": 11.0, "sub_calls_s": 4.0}},
        {**row, "commit": "new", "seconds": 5.0, "timing": None, "time": "2026-01-02T00:02"},
        {**row, "commit": "old", "seconds": 20.0, "time": "2026-01-01T00:00"},
    ]  # fmt: skip
    raw = tmp_path / "s.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = render_table(raw, "s").splitlines()
    header = next(line for line in lines if line.startswith("| size"))
    assert "| median s | load s | prompt s | gen s | sandbox s | sub s | turns |" in header
    assert lines[lines.index(header) + 1].count("---") == header.count("|") - 1
    new = next(line for line in lines if "| new |" in line)
    assert "| 3 | 15.0 | 0.4 | 10.0 | 3.0 | 0.8 | 3.0 |" in new  # medians of the 2 timed rows
    old = next(line for line in lines if "| old |" in line)
    assert "| 1 | 20.0 | – | – | – | – | – |" in old


def test_rescore_applies_the_current_scorer_to_stored_answers(
    tmp_path: Path, tmp_home: Path
) -> None:
    out = tmp_path / "r"
    main(["run", "--suite", "pairs", "--sizes", "2k", "--n", "1", "--methods", "rlm",
          "--scripted", "--quiet", "--out", str(out), "--home", str(tmp_home)])  # fmt: skip
    raw = out / "pairs.jsonl"
    row = json.loads(raw.read_text())
    expected = row["expected"].split()
    assert expected  # the seed-1 task has pairs
    listed = "[" + ", ".join(sorted({i for p in expected for i in p.split("-")})) + "]"
    raw.write_text(json.dumps({**row, "answer": listed, "score": 0.5}) + "\n")
    main(["rescore", str(raw)])
    rescored = json.loads(raw.read_text())
    assert rescored["score"] == 0.0 and rescored["scored_at"]
    raw.write_text(json.dumps({**row, "answer": " ".join(expected), "score": 0.0}) + "\n")
    main(["rescore", str(raw)])
    assert json.loads(raw.read_text())["score"] == 1.0
    assert "| 2,048 | rlm |" in (out / "pairs.md").read_text()


def test_direct_cuts_an_input_with_a_dense_beginning_until_it_fits(tmp_home: Path) -> None:
    """A cut by the average density kept too much of a token-dense beginning (two codebase-QA
    32K tasks overflowed the window)."""
    from scripted import ScriptedModel

    from benchmarks.methods import run_direct
    from rlm_local.config import load_settings

    class DigitsCostMore(ScriptedModel):
        def count_tokens(self, text: str) -> int:  # a digit is a token, prose 4 characters one
            digits = sum(c.isdigit() for c in text)
            return digits + (len(text) - digits) // 4

        def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
            return sum(self.count_tokens(m["content"]) + 5 for m in messages) + 3

    root = DigitsCostMore(["42"], n_ctx=2048)
    context = "7" * 1500 + " prose" * 2000
    result = run_direct(RLM(load_settings(), root=root, sub=ScriptedModel()), "Which?", context)
    assert result.answer == "42" and result.notes[0].startswith("truncated to ")
    assert root.count_message_tokens(root.calls[0]) <= 2048 - 256


def test_chunked_combines_only_the_partial_answers_the_root_window_holds(tmp_home: Path) -> None:
    """At 1M tokens the ~700 partial answers overflow the root's window: the combining call gets
    the first ones that fit, and the row says how many (they were cut silently to 12,000 chars)."""
    from scripted import ScriptedModel

    from benchmarks.methods import CHUNK_CHARS, run_chunked
    from rlm_local.config import load_settings

    parts = 60
    sub = ScriptedModel([f"the number is {i:07d} in this part" for i in range(parts)])
    root = ScriptedModel(["0000007"], n_ctx=512)
    context = "prose " * (parts * CHUNK_CHARS // 6)
    result = run_chunked(RLM(load_settings(), root=root, sub=sub), "Which number?", context)

    assert result.sub_calls == parts and result.answer == "0000007"
    kept = int(result.notes[0].split()[3])
    assert result.notes[0] == f"combined the first {kept} of {parts} partial answers (root window)"
    combine = root.calls[0]
    assert root.count_message_tokens(combine) <= 512 - 256
    assert "- part 1: the number is 0000000" in combine[1]["content"]
    assert f"- part {kept}: " in combine[1]["content"]
    assert f"- part {kept + 1}: " not in combine[1]["content"]


def test_documents_benchmark_smoke(
    tmp_path: Path, tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Extraction timing on a small PDF, and the answering path with scripted models."""
    from benchmarks import documents

    documents.main(["extract", "--pages", "6", "--needle-page", "4", "--libraries", "pypdfium2"])
    printed = capsys.readouterr().out
    assert "| pypdfium2 |" in printed and "| 6 |" in printed and "| 4 |" in printed
    assert "from the document cache" in printed and "HTML main text" in printed
    out = tmp_path / "r"
    documents.main(["answer", "--pages", "6", "--n", "2", "--scripted", "--out", str(out),
                    "--home", str(tmp_home)])  # fmt: skip
    rows = [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()]
    assert [r["number_right"] for r in rows] == [True, True]  # the scripted root greps 7 digits
    assert all(r["converter"][0]["converter"] == "pypdfium2" for r in rows)
    assert all(r["cached_extract_seconds"] <= r["extract_seconds"] for r in rows)


def test_reading_order_score() -> None:
    from benchmarks.documents import order_score

    expected = ["alpha one", "beta two", "gamma three"]
    assert order_score("alpha one\nbeta two\ngamma three", expected) == 1.0
    assert order_score("gamma three beta two alpha one", expected) == pytest.approx(1 / 3)
    assert order_score("alpha one gamma three", expected) == pytest.approx(2 / 3)
