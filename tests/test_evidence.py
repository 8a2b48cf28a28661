"""Evidence: the input's lines an answer rests on, located from what a run saw (no models here;
the end-to-end tests check evidence of real runs against the input files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions, evidence
from rlm_local.engine.evidence import Observation, Recorder, gather
from rlm_local.evidence_view import describe_evidence
from rlm_local.trace import read_trace

LOG = "\n".join(
    [
        "2024-01-01 10:00:00 INFO start",
        "2024-01-01 10:00:01 WARN disk at 91%",
        "2024-01-01 10:00:02 ERROR lost block blk_77 from 10.0.0.5",
        "2024-01-01 10:00:03 INFO done",
    ]
)


def _lines(text: str, first: int, last: int) -> str:
    return "\n".join(text.splitlines()[first - 1 : last])


def printed(text: str, turn: int = 1, final: str | None = None, code: str = "") -> Observation:
    return Observation("printed", 0, turn, text, code=code, final=final)


def test_a_printed_line_holding_the_answer_is_located_at_its_line() -> None:
    seen = [printed("--- lines 2-3\n" + _lines(LOG, 2, 3))]
    [item] = gather("10.0.0.5", "Which IP lost a block?", LOG, seen, "server.log")
    assert (item.path, item.line_start, item.line_end) == ("server.log", 3, 3)
    assert item.text == _lines(LOG, 3, 3) and item.why == "answer_words" and item.turn == 1


def test_a_fragment_cut_mid_line_gives_its_whole_line() -> None:
    seen = [printed("...lost block blk_77 fr")]
    [item] = gather("blk_77", "Which block was lost?", LOG, seen, "-")
    assert item.text == _lines(LOG, 3, 3) and item.path == "-"


def test_lines_not_in_the_input_and_answers_without_support_give_nothing() -> None:
    seen = [printed("blk_77 is my guess, not a line of the input")]
    assert gather("blk_77", "q", LOG, seen, "-") == []
    assert gather(None, "q", LOG, seen, "-") == []


def test_an_answer_naming_a_file_rests_on_the_lines_seen_in_it() -> None:
    tree = {
        "app/routing.py": "import re\n\nclass MapAdapter:\n    pass\n",
        "app/utils.py": "def helper():\n    return MapAdapter_like\n",
    }
    seen = [printed("--- app/routing.py:3\nclass MapAdapter:\n")]
    [item] = gather("app/routing.py", "Where is MapAdapter defined?", tree, seen, "-")
    assert (item.path, item.line_start, item.text) == ("app/routing.py", 3, "class MapAdapter:")


def test_a_list_printed_as_python_is_located_item_by_item() -> None:
    seen = [printed(repr([_lines(LOG, 2, 2), _lines(LOG, 3, 3)]))]
    items = gather("91%", "How full was the disk?", LOG, seen, "-")
    assert [(i.line_start, i.text) for i in items] == [(2, _lines(LOG, 2, 2))]


def test_a_sub_call_whose_answer_went_into_the_answer_gives_its_piece() -> None:
    piece = _lines(LOG, 1, 4)
    seen = [Observation("sub_call", 0, 2, f"Read this:\n{piece}\nWhat went wrong?", "lost block")]
    items = gather("The lost block", "What went wrong?", LOG, seen, "-")
    assert [(i.line_start, i.why) for i in items] == [(3, "sub_call_answer")]


def test_a_computed_count_rests_on_the_lines_its_cell_printed() -> None:
    code = "errors = [l for l in context.splitlines() if 'WARN' in l or 'ERROR' in l]"
    seen = [printed(f"{_lines(LOG, 2, 3)}\n2", turn=3, final="2", code=code)]
    items = gather("2", "How many warnings and errors?", LOG, seen, "-")
    assert [i.line_start for i in items] == [2, 3]
    assert all(i.why == "computed" and i.code == code and i.turn == 3 for i in items)


def test_pages_of_a_converted_pdf_are_given() -> None:
    pdf = "--- page 1 ---\nIntro text here\n--- page 2 ---\nThe total was 4521 units\n"
    [item] = gather(
        "4521", "What was the total?", pdf, [printed("The total was 4521 units")], "r.pdf"
    )
    assert (item.page, item.line_start, item.text) == (2, 4, "The total was 4521 units")


def test_the_recorder_gives_sub_calls_the_turn_of_the_cell_that_made_them() -> None:
    recorder = Recorder()
    recorder({"type": "sub_call", "depth": 0, "prompt": "piece", "answer": "x"})
    recorder({"type": "cell", "depth": 0, "turn": 2, "output": "out", "code": "c", "final": None})
    recorder({"type": "turn", "depth": 0, "turn": 3})
    sub, cell = recorder.observations
    assert (sub.source, sub.turn, sub.answer) == ("sub_call", 2, "x")
    assert (cell.source, cell.turn, cell.text, cell.code) == ("printed", 2, "out", "c")


def test_a_run_s_result_carries_evidence_located_by_the_engine(tmp_home: Path) -> None:
    """A scripted root prints the matching lines, then answers: the engine, not the model,
    finds those lines in the input, named as the file the text came from."""
    root = ScriptedModel(["print(find_lines('ERROR'))", "FINAL('blk_77')"])
    options = RunOptions(mode="rlm", first_search=False, read_samples=0, skip_checks=("unfounded",))
    with RLM(load_settings(), options, root=root, sub=ScriptedModel(answer=lambda _: "x")) as rlm:
        result = rlm.ask("Which block was lost?", LOG, name="logs/server.log")
    assert result.answer == "blk_77"
    [item] = result.to_dict()["evidence"]
    assert (item["path"], item["line_start"], item["line_end"]) == ("logs/server.log", 3, 3)
    assert item["text"] == _lines(LOG, 3, 3) and item["turn"] == 1 and item["why"] == "answer_words"
    end = read_trace(Path(str(result.trace_path)))[-1]
    assert end["type"] == "run_end" and end["evidence"] == [item]


def test_a_failure_to_find_evidence_keeps_the_answer(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> list:
        raise RuntimeError("a bug in gathering")

    monkeypatch.setattr(evidence, "gather", broken)
    root = ScriptedModel(["print(find_lines('ERROR'))", "FINAL('blk_77')"])
    options = RunOptions(mode="rlm", first_search=False, read_samples=0, skip_checks=("unfounded",))
    with RLM(load_settings(), options, root=root, sub=ScriptedModel(answer=lambda _: "x")) as rlm:
        result = rlm.ask("Which block was lost?", LOG)
    assert result.answer == "blk_77" and result.evidence == []
    events = read_trace(Path(str(result.trace_path)))
    assert {"type": "evidence_error", "error": "RuntimeError: a bug in gathering"}.items() <= next(
        e for e in events if e["type"] == "evidence_error"
    ).items()
    assert events[-1]["type"] == "run_end" and events[-1]["answer"] == "blk_77"


def test_the_terminal_shows_each_item_s_place_why_and_first_lines_cut() -> None:
    long_line = "x" * 500
    first = {"path": "a.log", "line_start": 3, "line_end": 3, "text": long_line, "turn": 0}
    pages = {"path": "r.pdf", "line_start": 4, "line_end": 15, "page": 2, "turn": 2}
    items = [
        {**first, "why": "answer_words"},
        {**pages, "text": "\n".join("abcdefghijkl"), "why": "computed"},
    ]
    shown = describe_evidence(items).splitlines()
    assert shown[0] == "Evidence:"
    assert shown[1] == "  a.log:3 (holds the answer's words, first step)"
    assert shown[2] == "    " + "x" * 300 + " …"
    assert shown[3].startswith("  r.pdf:4-15 (page 2) (") and shown[3].endswith(", turn 2)")
    assert shown[4:12] == [f"    {c}" for c in "abcdefgh"] and shown[12] == "    … 4 more lines"
    assert describe_evidence([]) == "Evidence: no passage of the input was linked to the answer."
