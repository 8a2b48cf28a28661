"""The loop's logic with scripted models, the real sandbox worker and the real cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.cache import CallCache
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions, RunResult, checks, prompts, reading, voting
from rlm_local.errors import ContextOverflowError
from rlm_local.trace import load_run, read_trace

TEXT = "alpha beta. The secret code is 4417. gamma delta. " * 20


def _rlm(tmp_home: Path, root: ScriptedModel, sub: ScriptedModel | None = None, **opts) -> RLM:
    # Scripted answers are typed in: the check for answers found nowhere has its own tests.
    defaults = {"first_search": False, "read_samples": 0, "skip_checks": ("unfounded",)}
    options = RunOptions(mode="rlm", **{**defaults, **opts})
    sub = sub or ScriptedModel(answer=lambda p: "sub-answer")
    return RLM(load_settings(), options, root=root, sub=sub)


def _last_user(model: ScriptedModel, call: int = -1) -> str:
    return model.calls[call][-1]["content"]


def _events(result: RunResult, kind: str) -> list[dict]:
    """The run's trace events of one type."""
    return [e for e in read_trace(Path(str(result.trace_path))) if e["type"] == kind]


def _sent_back(result: RunResult) -> list[tuple[str, str]]:
    """(check, message) of each answer the run sent back: the message is what the model read."""
    return [(e["check"], e["why"]) for e in _events(result, "sent_back")]


def test_final_from_code(tmp_home: Path) -> None:
    root = ScriptedModel(["hits = grep('secret code')\nprint(hits[0])", "FINAL('4417')"])
    result = _rlm(tmp_home, root).ask("What is the secret code?", TEXT)
    assert result.answer == "4417"
    assert result.status == "answered"
    assert result.stats.turns == 2
    second_prompt = _last_user(root, 1)
    assert "The secret code is 4417" in second_prompt  # the cell's output was fed back
    # ... and the question is asked again after it
    output_at = second_prompt.index("The secret code is 4417")
    assert second_prompt.rindex("What is the secret code?") > output_at
    first_prompt = root.calls[0][1]["content"]
    assert "str of 1,000 characters" in first_prompt  # a description and a short preview
    assert TEXT not in first_prompt  # a search shows a piece, never the whole input


def test_final_var_and_trace(tmp_home: Path) -> None:
    root = ScriptedModel(["answer = context.count('secret')\nFINAL_VAR('answer')"])
    result = _rlm(tmp_home, root).ask("How many secrets?", TEXT)
    assert result.answer == "20"
    events = read_trace(Path(result.trace_path))
    kinds = [e["type"] for e in events]
    assert kinds == ["run_start", "turn", "cell", "run_end"]
    assert events[2]["final"] == "20"
    assert events[-1]["answer"] == "20"


def test_code_error_is_fed_back_and_fixed(tmp_home: Path) -> None:
    root = ScriptedModel(["print(undefined_name)", "FINAL(len(context))"])
    result = _rlm(tmp_home, root).ask("How long?", TEXT)
    assert result.answer == str(len(TEXT))
    feedback = _last_user(root, 1)
    assert "NameError" in feedback and "undefined_name" in feedback
    assert "Fix the code" in feedback
    assert result.stats.cell_errors == 1


def test_reply_without_code_and_repeated_code(tmp_home: Path) -> None:
    # turn 3 repeats print(1) greedily and at all three resampling temperatures
    root = ScriptedModel(["", "print(1)", *["print(1)"] * 4, "FINAL('one')"])
    result = _rlm(tmp_home, root).ask("q?", TEXT)
    assert result.answer == "one"
    assert "no code" in _last_user(root, 1)
    assert "already ran exactly this code" in _last_user(root, 6)
    assert result.stats.cells == 2  # the repeat was not run again
    resamples = [(p["temperature"], p["seed"]) for p in root.params[3:6]]
    assert resamples == [(0.7, 3), (1.0, 3), (1.3, 3)]  # rising, seeded: still cacheable


def test_a_repeated_cell_is_resampled_until_the_code_is_new(tmp_home: Path) -> None:
    root = ScriptedModel(["print(1)", "print(1)", "print(1)", "print(2)", "FINAL('x')"])
    result = _rlm(tmp_home, root).ask("q?", TEXT)
    assert result.answer == "x" and result.stats.turns == 3 and result.stats.cells == 3
    events = read_trace(Path(result.trace_path))
    assert [e["type"] for e in events].count("repeat") == 2
    assert "Output:\n2" in _last_user(root, 4)


def test_a_cell_cut_off_at_the_reply_limit_is_told_to_be_short(tmp_home: Path) -> None:
    typed_in = "table = {\n" + "".join(f'    "name{i}": "value{i}",\n' for i in range(40))
    root = ScriptedModel([typed_in, "FINAL(len(context))"])
    result = _rlm(tmp_home, root, root_max_tokens=100).ask("q?", TEXT)
    assert result.answer == str(len(TEXT))
    told, cut = _last_user(root, 1), _events(result, "cell")[0]
    assert "SyntaxError" in told and "100" in told  # the error, and the limit it ran past
    assert told == prompts.cut_off_turn(cut["error"], cut["output"], 100)
    # A cell that ends within the limit and fails gets the plain error message.
    root = ScriptedModel(["table = {", "FINAL(len(context))"])
    result = _rlm(tmp_home, root, root_max_tokens=100).ask("q?", TEXT)
    plain = _events(result, "cell")[0]
    assert "SyntaxError" in _last_user(root, 1)
    assert _last_user(root, 1) == prompts.error_turn(plain["error"], plain["output"])


def test_out_of_time_a_repeated_cell_is_not_resampled(tmp_home: Path) -> None:
    # Each resample is a full root turn (20-25 s on this machine's 1.5B model): past the budget
    # the repeat goes straight to the last turn's forced answer.
    root = ScriptedModel(["print(1)", "print(1)", "1)"], delay=1.0)
    result = _rlm(tmp_home, root, max_seconds=1.0).ask("q?", TEXT)
    assert result.answer == "1" and len(root.calls) == 3
    assert root.params[2]["assistant_prefix"].endswith("FINAL(")


def test_the_last_turn_comes_while_there_is_time_for_it(tmp_home: Path) -> None:
    # Each step takes 0.6 s of a 1.0 s budget: the second starts at 0.6 s and would end past the
    # budget, so it is the last (the run ends near max_seconds, not a whole turn after it).
    root = ScriptedModel(["n = 7\nprint(n)", "print(n)", "n * 6)"], delay=0.6)
    result = _rlm(tmp_home, root, max_seconds=1.0).ask("q?", TEXT)
    assert result.answer == "42" and len(root.calls) == 3  # not a third turn after the second
    assert "Time is up." in _last_user(root, 1) and "Time is up." not in _last_user(root, 0)
    assert root.params[2]["assistant_prefix"].endswith("FINAL(")


def test_a_model_stuck_on_old_code_is_asked_for_its_answer(tmp_home: Path) -> None:
    root = ScriptedModel(["print(1)", *["print(1)"] * 8, "FINAL('stuck')"])
    result = _rlm(tmp_home, root, max_turns=10).ask("q?", TEXT)
    assert result.answer == "stuck" and result.stats.turns == 4  # not all ten turns
    # asked for its answer: no turn, time or sub-call budget was spent, so being stuck is why
    assert _last_user(root, -1).endswith(prompts.last_turn("q?", "").lstrip())


def test_turn_budget_ends_with_a_last_turn(tmp_home: Path) -> None:
    # Last-turn code without FINAL is asked again with the reply begun as `FINAL(`: the model's
    # continuation is run in the sandbox, so it can name a variable of its earlier cells.
    root = ScriptedModel(["n = 7\nprint(n)", "print(2)", "print(3)", "n * 6)"])
    result = _rlm(tmp_home, root, max_turns=3).ask("q?", TEXT)
    assert result.answer == "42" and result.status == "answered" and result.stats.turns == 3
    assert "This is your last turn" in _last_user(root, 2)
    assert "last turn" not in _last_user(root, 1)
    assert root.params[3]["assistant_prefix"].endswith("FINAL(")
    assert all(not p["assistant_prefix"].endswith("FINAL(") for p in root.params[:3])

    root = ScriptedModel(["print(1)", "print(2)", "no_such_name)"])  # the forced answer fails
    result = _rlm(tmp_home, root, max_turns=2).ask("q?", TEXT)
    assert result.answer is None and result.status == "no_answer"

    root = ScriptedModel(["print(1)", "FINAL('best guess')"])
    result = _rlm(tmp_home, root, max_turns=2).ask("q?", TEXT)
    assert result.answer == "best guess"


def test_sub_calls_budget_and_batching(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=lambda p: f"len={len(p)}")
    root = ScriptedModel(
        [
            "r = llm_query_batched(['a', 'bb', 'a'])\nprint(r)",
            "x = [llm_query(str(i)) for i in range(5)]",
            "FINAL('done')",
        ]
    )
    result = _rlm(tmp_home, root, sub, max_sub_calls=4).ask("q?", TEXT)
    assert "['len=1', 'len=2', 'len=1']" in _last_user(root, 1)
    assert len(sub.calls) == 4  # 2 for the deduplicated batch, then 2 more until the budget
    assert "4 sub-calls" in _last_user(root, 2)  # the budget, used up
    assert "No llm_query calls are left" in _last_user(root, 2)
    assert result.answer == "done"


def test_sub_call_overflow_is_a_readable_error(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=lambda p: "never", n_ctx=600)
    root = ScriptedModel(["print(llm_query(context * 10))", "FINAL('ok')"])
    _rlm(tmp_home, root, sub).ask("q?", TEXT)
    feedback = _last_user(root, 1)
    assert "llm_query error" in feedback and "Split the text" in feedback
    assert sub.calls == []


def test_depth_limit_turns_rlm_query_into_llm_query(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=lambda p: "from-sub")
    root = ScriptedModel(["FINAL(rlm_query('What code?', context[:60]))"])
    result = _rlm(tmp_home, root, sub, max_depth=0).ask("q?", TEXT)
    assert result.answer == "from-sub"
    assert "Question: What code?" in sub.calls[0][-1]["content"]

    sub = ScriptedModel(answer=lambda p: "from-sub")
    root = ScriptedModel(
        [
            "FINAL(rlm_query('What code?', context[:200]))",  # depth 0
            "FINAL(context[-20:])",  # the child run at depth 1 answers from its own piece
        ]
    )
    result = _rlm(tmp_home, root, sub, max_depth=1).ask("q?", TEXT)
    assert result.answer == TEXT[:200][-20:]
    assert "str of 200 characters" in root.calls[1][1]["content"]
    assert sub.calls == []


def test_rlm_query_runs_count_against_the_sub_call_budget(tmp_home: Path) -> None:
    """A cell looping on rlm_query stops at --max-sub-calls, not at the run's clock."""
    sub = ScriptedModel(answer=lambda p: "from-sub")
    loop = "n = 0\nfor i in range(100):\n    rlm_query('What code?', context[:60])\n    n += 1"
    root = ScriptedModel([loop, "FINAL('a')", "FINAL('b')", "FINAL(str(n))"])
    result = _rlm(tmp_home, root, sub, max_sub_calls=2, max_depth=1).ask("q?", TEXT)
    assert result.answer == "2"
    assert result.stats.sub_calls == 2 and sub.calls == []
    assert "2 sub-calls" in _last_user(root, 3)  # the budget, used up
    assert root.replies == []


def test_long_output_is_truncated_for_the_root(tmp_home: Path) -> None:
    root = ScriptedModel(["print('x' * 50000)", "FINAL('ok')"])
    _rlm(tmp_home, root, output_chars=1000).ask("q?", TEXT)
    feedback = _last_user(root, 1)
    assert "characters cut" in feedback
    assert len(feedback) < 1600


def test_root_turns_are_cached(tmp_home: Path) -> None:
    replies = ["print(len(context))", "FINAL('n')"]
    first = _rlm(tmp_home, ScriptedModel(list(replies), identity="same")).ask("q?", TEXT)
    empty = ScriptedModel([], identity="same")  # a second run must not need the model at all
    second = _rlm(tmp_home, empty).ask("q?", TEXT)
    assert second.answer == first.answer == "n"
    assert second.stats.cache_hits == 2 and second.stats.cache_misses == 0
    assert CallCache(load_settings().cache_dir).stats().entries == 2


def test_direct_mode_for_short_inputs(tmp_home: Path) -> None:
    root = ScriptedModel(["4417"])
    rlm = RLM(load_settings(), RunOptions(mode="auto"), root=root, sub=ScriptedModel([]))
    result = rlm.ask("What is the secret code?", "The secret code is 4417.")
    assert result.mode == "direct" and result.answer == "4417"
    assert "The secret code is 4417." in root.calls[0][-1]["content"]


def test_result_json_has_the_documented_fields(tmp_home: Path) -> None:
    root = ScriptedModel(["FINAL('x')"])
    data = _rlm(tmp_home, root).ask("q?", TEXT).to_dict()
    json.dumps(data)
    for key in (
        "answer",
        "turns",
        "sub_calls",
        "cache_hits",
        "prompt_tokens",
        "seconds",
        "trace_path",
    ):
        assert key in data


@pytest.mark.parametrize("context", [{"a.py": "x = 1\n", "b/c.py": "secret = 4417\n"}])
def test_dict_context(tmp_home: Path, context: dict[str, str]) -> None:
    root = ScriptedModel(["FINAL(grep('secret')[0])"])
    result = _rlm(tmp_home, root).ask("q?", context)
    assert "b/c.py" in result.answer and "4417" in result.answer
    assert "dict of 2 files" in root.calls[0][1]["content"]


def test_a_conversation_that_outgrows_the_window_is_compacted(tmp_home: Path) -> None:
    root = ScriptedModel(
        ["print('x' * 1900)", "print('y' * 1900)", "FINAL('compacted')"], n_ctx=384 + 1500
    )
    result = _rlm(tmp_home, root).ask("q?", TEXT)
    assert result.answer == "compacted"
    last = root.calls[-1]
    assert len(last) == 4  # system, task, the latest exchange
    assert "too long to go on" in last[-1]["content"]
    events = read_trace(Path(result.trace_path))
    assert any(e["type"] == "compacted" for e in events)


def test_direct_mode_refuses_an_input_that_does_not_fit(tmp_home: Path) -> None:
    root = ScriptedModel(["never"], n_ctx=1000)
    rlm = RLM(load_settings(), RunOptions(mode="direct"), root=root, sub=ScriptedModel([]))
    with pytest.raises(ContextOverflowError, match="use --mode rlm"):
        rlm.ask("q?", TEXT * 10)
    assert root.calls == []


def test_a_non_answer_is_pushed_back_once(tmp_home: Path) -> None:
    root = ScriptedModel(["FINAL('No hits found.')", "FINAL('4417')"])
    result = _rlm(tmp_home, root).ask("What is the secret code?", TEXT)
    assert result.answer == "4417"
    assert _sent_back(result) == [("gave_up", _last_user(root, 1))]
    assert "'No hits found.'" in _last_user(root, 1)  # the answer that went back is named

    root = ScriptedModel(["FINAL('None')", 'FINAL("None")'])
    assert _rlm(tmp_home, root).ask("q?", TEXT).answer == "None"  # accepted the second time
    # "No data available" says nothing was found, as "No hits found." does (docs-08).
    root = ScriptedModel(["FINAL('No data available')", "FINAL('4417')"])
    assert _rlm(tmp_home, root).ask("What is the secret code?", TEXT).answer == "4417"
    assert checks.is_non_answer("No data available") and not checks.is_non_answer("data 2019")

    root = ScriptedModel(["FINAL('not found')", "print(1)"])
    result = _rlm(tmp_home, root, max_turns=2).ask("q?", TEXT)
    assert result.answer == "not found"  # kept when nothing better came


def test_a_final_repeating_the_question_is_sent_back_once(tmp_home: Path) -> None:
    question = "List every pair of user ids where both users asked about a secret code."
    root = ScriptedModel([f"FINAL({question!r})", "FINAL('11111-22222')"])
    result = _rlm(tmp_home, root).ask(question, TEXT)
    assert result.answer == "11111-22222"
    assert _sent_back(result) == [("echoed", _last_user(root, 1))]
    root = ScriptedModel([f"FINAL({question.upper()!r})", f"FINAL({question!r})"])
    assert _rlm(tmp_home, root).ask(question, TEXT).answer == question  # accepted the second time
    root = ScriptedModel(["FINAL('pair')"])  # a short answer is an answer, even in the question
    assert _rlm(tmp_home, root).ask(question, TEXT).stats.turns == 1


def test_a_sentence_restating_the_question_around_the_answer_is_sent_back_once(
    tmp_home: Path,
) -> None:
    question = "Which client IP had the most sessions established?"
    said = "The client IP with the most sessions established is 10.0.0.3."
    root = ScriptedModel(["print('10.0.0.3')", f"FINAL({said!r})", "FINAL('10.0.0.3')"])
    result = _rlm(tmp_home, root).ask(question, TEXT)
    assert result.answer == "10.0.0.3"
    assert _sent_back(result) == [("restated", _last_user(root, 2))]
    # Only once: the model's second word stands, unless a fresh reading of the printed output
    # gives the value alone.
    root = ScriptedModel(["print('10.0.0.3')", f"FINAL({said!r})", f'FINAL("{said}")', "NONE"])
    assert _rlm(tmp_home, root).ask(question, TEXT).answer == said
    root = ScriptedModel(["print('10.0.0.3')", f"FINAL({said!r})", f'FINAL("{said}")', "10.0.0.3"])
    assert _rlm(tmp_home, root).ask(question, TEXT).answer == "10.0.0.3"
    # A sentence of the input's own words is an answer, not a restatement.
    root = ScriptedModel(["FINAL('Bob approved the budget after a long debate.')"])
    assert _rlm(tmp_home, root).ask(question, TEXT).stats.turns == 1


def test_a_typed_answer_found_nowhere_the_model_looked_is_sent_back_once(tmp_home: Path) -> None:
    question = "Apart from chrome.exe, which program shows up in the most lines?"
    programs = ["chrome.exe", "chrome.exe", "Dropbox.exe", "putty.exe"] * 20
    log = "\n".join(f"[10.30 16:49:{i:02d}] {p} - host:443 open" for i, p in enumerate(programs))
    cells = ["print(tally(r'\\] (\\S+) '))", "FINAL('Firefox (64-bit)')", "FINAL('Dropbox.exe')"]
    root = ScriptedModel(cells)
    result = _rlm(tmp_home, root, skip_checks=()).ask(question, log)
    assert result.answer == "Dropbox.exe"
    message = _last_user(root, 2)
    assert _sent_back(result) == [("unfounded", message)]
    assert "'bit', 'firefox'" in message  # the words found nowhere the model looked
    # Read off the output (or the lines the first turn showed), a typed answer stands.
    root = ScriptedModel(["print(tally(r'\\] (\\S+) '))", "FINAL('putty.exe')"])
    assert _rlm(tmp_home, root, skip_checks=()).ask(question, log).stats.turns == 2
    root = ScriptedModel(["FINAL('10.30')"])
    assert _rlm(tmp_home, root, skip_checks=()).ask(question, log).stats.turns == 1
    # Yes or no, read off a printed True or False, is no made-up word.
    root = ScriptedModel(["print(3 > 2)", "FINAL('Yes')"])
    assert _rlm(tmp_home, root, skip_checks=()).ask(question, log).stats.turns == 2
    # Digits grouped as in code (1_000_000) stand for the plain number.
    root = ScriptedModel(["print('iterations = 1_000_000')", "FINAL('1000000')"])
    assert _rlm(tmp_home, root, skip_checks=()).ask(question, log).stats.turns == 2
    # --skip-check turns a check off.
    root = ScriptedModel(["FINAL('Firefox')"])
    assert _rlm(tmp_home, root, skip_checks=("unfounded",)).ask(question, log).answer == "Firefox"
    with pytest.raises(ValueError, match="unknown check nope; the checks are gave_up"):
        RunOptions(skip_checks=("nope",))


def test_a_value_the_question_and_the_input_both_name_is_sent_back_once(tmp_home: Path) -> None:
    days = ["2015-07-29"] * 5 + ["2015-07-30"] * 3 + ["2015-08-01"] * 2
    log = "\n".join(f"{day} 10:00:00 - INFO - line {i}" for i, day in enumerate(days))
    question = "Leaving 2015-07-29 aside, which date has the most log lines?"
    tally_days = "print(tally(r'^(\\S+) ', find_lines('INFO')))"
    root = ScriptedModel([tally_days, "FINAL('2015-07-29')", "FINAL('2015-07-30')"])
    events: list[dict] = []
    result = _rlm(tmp_home, root).ask(question, log, on_event=events.append)
    assert result.answer == "2015-07-30"
    sent_back = [(e["check"], e["why"]) for e in events if e["type"] == "sent_back"]
    assert sent_back == [("named", _last_user(root, 2))]
    assert "'2015-07-29'" in _last_user(root, 2)  # the answer that went back is named
    # Said again, it stands when a fresh reading of the printed output copies it too (or
    # nothing, or a value that names what the question names): a question may offer the value.
    for reading_reply in ("2015-07-29", "NONE", "10:00:00"):  # the last: not in the output
        said_again = [tally_days, "FINAL('2015-07-29')", "FINAL('2015-07-29')", reading_reply]
        root = ScriptedModel(said_again)
        assert _rlm(tmp_home, root).ask(question, log).answer == "2015-07-29"
    # A fresh reading of what the cells printed may give the value the model had in view.
    root = ScriptedModel([tally_days, "FINAL('2015-07-29')", "FINAL('2015-07-29')", "2015-07-30"])
    result = _rlm(tmp_home, root).ask(question, log)
    assert result.answer == "2015-07-30" and result.stats.turns == 4
    reading_prompt = root.calls[3]
    assert reading_prompt[0]["content"] == reading.REREAD_SYSTEM
    assert "'2015-07-30': 3" in reading_prompt[1]["content"]  # the tally the cell printed
    assert load_run(Path(str(result.trace_path))).rereads == [("2015-07-29", "2015-07-30")]
    shown = run_cli("runs", "show", str(result.run_id)).stdout
    assert "2015-07-29 said again after it was sent back; the printed output read afresh: " \
        "2015-07-30" in shown  # fmt: skip
    # A choice the input does not hold (a label, yes or no) is accepted at once, and so is a
    # file name whose stem the question does not name.
    for answer, asked in [
        ("location", "Which label is more common, location or entity?"),
        ("yes", "Is 2015-07-30 busier than 2015-08-01? Answer yes or no."),
        ("2015-07-30", question),
    ]:
        root = ScriptedModel([tally_days, f"FINAL({answer!r})"])
        assert _rlm(tmp_home, root).ask(asked, log).stats.turns == 2
    named = "Apart from Chrome, which program shows up in the most lines?"
    root = ScriptedModel(["print(tally(r'(\\S+\\.exe)'))", "FINAL('chrome.exe')", "FINAL('x.exe')"])
    assert _rlm(tmp_home, root).ask(named, "a chrome.exe b\nc x.exe d\n" * 3).answer == "x.exe"


def test_an_empty_result_computed_unseen_is_sent_back_once_with_the_values(
    tmp_home: Path,
) -> None:
    blind = (
        "rows = [line for line in context.splitlines() if line.startswith('User: 7')]\n"
        "FINAL(len(rows))"
    )
    root = ScriptedModel([blind, "FINAL('3')"])
    events: list[dict] = []
    result = _rlm(tmp_home, root).ask("How many rows?", TEXT, on_event=events.append)
    assert result.answer == "3"
    sent_back = _last_user(root, 1)
    assert [(e["check"], e["why"]) for e in events if e["type"] == "sent_back"] == [
        ("empty", sent_back)
    ]
    values = [e["values"] for e in events if e["type"] == "cell"][0]
    assert values.startswith("rows = list of 0 items")  # the empty list the model never saw
    assert values in sent_back  # the trace keeps what the model was shown

    root = ScriptedModel([blind, "FINAL(0)"])  # the same answer again is accepted
    assert _rlm(tmp_home, root).ask("How many rows?", TEXT).answer == "0"
    root = ScriptedModel(["print(len(context))", "FINAL(0)"])  # after a value was seen: kept
    assert _rlm(tmp_home, root).ask("How many rows?", TEXT).answer == "0"
    root = ScriptedModel(["FINAL(context.count('secret'))"])  # a value: no round trip
    assert _rlm(tmp_home, root).ask("How many secrets?", TEXT).stats.turns == 1
    # Typed in, not computed (`lo = 0` read off a signature the first step printed): kept. Sent
    # back, the 1.5B model changed a right 0 into 1 (codebase QA 8K, seed 1).
    for typed in ("lo = 0\nFINAL(lo)", "FINAL('0')"):
        root = ScriptedModel([typed])
        assert _rlm(tmp_home, root).ask("Default of lo?", TEXT).stats.turns == 1
    assert checks.computes("n = len([x for x in rows if x])") and checks.computes("f(")
    assert not checks.computes("lo = 0\nprint(lo)\nFINAL(lo)")


def test_a_zero_the_model_saw_its_code_find_is_sent_back_once(tmp_home: Path) -> None:
    counted = "hits = find_lines(r'attendees from Acme')\nprint(len(hits))\nprint(hits)"
    root = ScriptedModel([counted, "FINAL('0')", "print(find_lines('secret')[:2])", "FINAL('20')"])
    events: list[dict] = []
    result = _rlm(tmp_home, root).ask("How many?", TEXT, on_event=events.append)
    assert result.answer == "20" and result.stats.turns == 4
    sent_back = [(e["check"], e["why"]) for e in events if e["type"] == "sent_back"]
    assert sent_back == [("empty", _last_user(root, 2))]

    # Said again, it stands when the printed output read afresh gives it too.
    root = ScriptedModel([counted, "FINAL('0')", "FINAL(0)", "0"])
    assert _rlm(tmp_home, root).ask("How many?", TEXT).answer == "0"
    # A 0 the input itself shows ("lo=0" in a signature) is no empty result: kept at once.
    root = ScriptedModel(["print(source_text := 'def f(lo=0): ...')", "FINAL('0')"])
    assert _rlm(tmp_home, root).ask("Default of lo?", TEXT).stats.turns == 2


def test_two_checks_can_each_send_an_answer_back_once(tmp_home: Path) -> None:
    cells = [
        "print(len(search('secret')))",
        "FINAL(str(len(search('secret'))))",  # a capped count
        "hits = find_lines('Secret Code')\nprint(len(hits))",
        "FINAL('0')",  # an empty result
        "FINAL(0)",  # said again: kept, as two were sent back already
        "0",  # the printed output read afresh
    ]
    events: list[dict] = []
    result = _rlm(tmp_home, ScriptedModel(cells)).ask("How many?", TEXT, on_event=events.append)
    assert result.answer == "0"
    assert [e["check"] for e in events if e["type"] == "sent_back"] == ["capped_count", "empty"]


def test_an_answer_typed_in_beside_a_print_is_sent_back_once_with_the_output(
    tmp_home: Path,
) -> None:
    guessed = "print(context.count('secret'))\nFINAL('location')"
    root = ScriptedModel([guessed, "FINAL('entity')"])
    result = _rlm(tmp_home, root).ask("Which is most common?", TEXT)
    assert result.answer == "entity" and result.stats.turns == 2
    sent_back = _last_user(root, 1)
    assert "FINAL('location')" in sent_back and f"\n{TEXT.count('secret')}\n" in sent_back
    # Computed, or typed in with nothing printed beside it: accepted at once.
    for cell in ("n = context.count('secret')\nprint(n)\nFINAL(n)", "FINAL('location')"):
        root = ScriptedModel([cell])
        assert _rlm(tmp_home, root).ask("Which is most common?", TEXT).stats.turns == 1
    assert checks.final_is_literal("FINAL(42)") and not checks.final_is_literal("FINAL(x)")
    assert not checks.final_is_literal("FINAL('a'")  # a syntax error is not a typed answer


def test_repeating_failed_code_gets_a_hint_to_look_at_the_data(tmp_home: Path) -> None:
    failing = "print(context.split('\\t')[5])"
    root = ScriptedModel([failing, *[failing] * 4, "FINAL('ok')"])  # 3 resamples in turn 2
    result = _rlm(tmp_home, root).ask("q?", TEXT)
    assert result.answer == "ok"
    hint = _last_user(root, 5)
    error = _events(result, "cell")[0]["error"]
    assert error.startswith("IndexError") and failing in error  # the error names its line
    assert error in hint and "print(context[:500])" in hint  # what failed; look at the data
    assert hint == prompts.repeat_error_turn(error)
    # Resampled, the model is told what the cell raised, without the cell to copy.
    resample = root.calls[2]
    assert not any(failing in m["content"] for m in resample if m["role"] == "assistant")
    assert error in resample[-1]["content"]
    assert resample[-1]["content"].endswith("\n\n" + prompts.failed_before(error))
    assert [m["role"] for m in resample] == ["system", "user"]
    # Code that ran cleanly is resampled with its output in view: that output is the news.
    clean = "print(len(context))"
    root = ScriptedModel([clean, clean, "FINAL('ok')"])
    assert _rlm(tmp_home, root).ask("q?", TEXT).answer == "ok"
    assert root.calls[2] == root.calls[1]


def test_a_pattern_that_matches_no_line_is_noted_with_real_lines(tmp_home: Path) -> None:
    cell = "import re\ncodes = re.findall(r'secret: (\\d+)', context)\nprint(codes[0])"
    root = ScriptedModel([cell, "FINAL('4417')"])
    result = _rlm(tmp_home, root).ask("What is the secret code?", TEXT)
    assert result.answer == "4417"
    feedback = _last_user(root, 1)
    cell = _events(result, "cell")[0]
    assert "IndexError" in cell["error"] and cell["error"] in feedback
    hint = prompts._hint(cell["error"])  # what the error means here
    assert hint and hint in feedback
    # The note: the pattern as the model wrote it, and a real line that holds its words.
    note = cell["output"]  # the trace shows what the model read
    assert r"r'secret: (\d+)'" in note and "\n  alpha beta. The secret code is 4417." in note
    assert note in feedback


@pytest.mark.parametrize(
    ("cell", "hint"),
    [
        # each hint names the code that fixes its error
        ("import re\nprint(re.search(r'nothing', context).group(1))", "before .group()"),
        ("print(re.findall('a', {'f': 'a'}.values()))", "context[path]"),
        ("rows = [{'Name': 'Ann'}]\nprint(rows['Name'])", 'row["Name"]'),
    ],
)
def test_common_errors_come_back_with_what_they_mean_here(
    tmp_home: Path, cell: str, hint: str
) -> None:
    root = ScriptedModel([cell, "FINAL('x')"])
    _rlm(tmp_home, root).ask("q?", TEXT)
    assert hint in _last_user(root, 1)


def test_root_turns_go_under_the_grammar_only_when_asked(tmp_home: Path) -> None:
    for held in (False, True):
        root = ScriptedModel(["n = len(context)\nprint(n)", "FINAL(n)"])
        options = RunOptions(mode="rlm", root_grammar=held)
        RLM(load_settings(), options, root=root, sub=ScriptedModel([])).ask("q?", TEXT)
        grammars = {p.get("grammar") for p in root.params}
        assert grammars == ({prompts.ROOT_GRAMMAR} if held else {None})


def test_the_data_look_names_the_key_lines_a_text_or_its_files_share() -> None:
    transcript = "# Notes\n" + "".join(
        f"{who}: point {i}\n\n" for i, who in enumerate(["KG", "NRO", "KG", "MM"] * 5)
    )
    look = prompts.describe_context(transcript + "Note: once\n")
    keys = look.splitlines()[-1]
    assert keys.endswith("KG: 10, NRO: 5, MM: 5")  # most frequent first, with their lines
    assert "Note" not in keys  # a key of fewer than three lines is no field
    peps = {
        f"pep-{n}.rst": f"PEP: {n}\nTitle: T{n}\n" + ("Sponsor: Ann\n" if n % 2 else "") + "Body"
        for n in range(6)
    }
    look = prompts.describe_context(peps)
    keys = look.splitlines()[-1]
    assert keys.endswith("PEP: 6, Title: 6, Sponsor: 3") and "6 files" in keys  # files each
    assert "Ann" not in look and "T3" not in look  # keys only: no file's values
    assert "Key:" not in prompts.describe_context("2015-07-29 10:00 INFO a\n" * 50)


def test_the_data_look_says_where_the_tables_are_and_their_columns() -> None:
    table = "| Name | Org |\n|---|---|\n" + "".join(f"| P{i} | Acme |\n" for i in range(5))
    notes = f"# Minutes\n\n{table}\nText.\n"
    listed = prompts.describe_context(notes).splitlines()[-1]
    assert all(part in listed for part in ("line 3", "5 rows", "Name, Org"))
    look = prompts.describe_context({"a.md": notes, "b.md": notes + "\n" + table, "c.py": "x = 1"})
    listed = look.splitlines()[-1]
    where = ["a.md:3:", "b.md:3:", "b.md:13:"]  # every table, in the files' order
    assert all(w in listed for w in where) and sorted(where, key=listed.index) == where
    assert listed.count("5 rows") == 3 and listed.count("Name, Org") == 3
    assert "Tables" not in prompts.describe_context("a | b\nno table\n" * 20)


def test_the_first_turn_shows_real_lines_from_the_head_middle_and_tail(tmp_home: Path) -> None:
    log = "\n".join(f"2015-07-29 10:{i % 60:02d} INFO event number {i}" for i in range(1, 101))
    root = ScriptedModel(["FINAL('x')"])
    _rlm(tmp_home, root).ask("q?", log)
    first = _last_user(root, 0)
    for number in (1, 4, 51, 100):  # numbered as in the file
        assert f"\n{number}: 2015-07-29 10:{number % 60:02d} INFO event number {number}" in first
    assert "event number 30\n" not in first  # a sample, not the text
    tree = ScriptedModel(["FINAL('x')"])
    _rlm(tmp_home, tree).ask("q?", {"pkg/a.py": "import os\n" * 200, "b.py": "x = 1\n"})
    first = _last_user(tree, 0)
    assert "pkg/: a.py" in first and "./: b.py" in first
    assert "import os" not in first  # no one file's text, which the model answered from


def test_a_final_from_a_cell_that_raised_is_sent_back_once(tmp_home: Path) -> None:
    root = ScriptedModel(["FINAL('12')\nprint(1 / 0)", "FINAL('13')"])
    result = _rlm(tmp_home, root).ask("q?", TEXT)
    assert result.answer == "13"
    assert "ZeroDivisionError" in _last_user(root, 1)


def test_a_count_taken_from_grep_s_capped_list_is_sent_back(tmp_home: Path) -> None:
    many = "\n".join(f"ERROR disk {i} failed" for i in range(300))
    root = ScriptedModel(["FINAL(len(grep('ERROR')))", "FINAL(len(find_lines('ERROR')))"])
    result = _rlm(tmp_home, root).ask("How many errors?", many)
    assert result.answer == "300"
    assert "find_lines" in _last_user(root, 1)

    # search's k pieces counted in one cell, the number typed into FINAL in the next
    root = ScriptedModel(
        ["hits = search('ERROR disk', k=5)\nprint(len(hits))", "FINAL('5')",
         "FINAL(len(find_lines('ERROR')))"]
    )  # fmt: skip
    result = _rlm(tmp_home, root).ask("How many errors?", many)
    assert result.answer == "300"
    assert _sent_back(result) == [("capped_count", _last_user(root, 2))]
    assert "len(search(" in _last_user(root, 2)  # names the capped helper that was counted
    root = ScriptedModel(["print(search('disk 7'))", "FINAL('7')"])  # a number read, not counted
    assert _rlm(tmp_home, root).ask("Which disk?", many).stats.turns == 2


def test_a_long_passage_copied_into_final_is_sent_back(tmp_home: Path) -> None:
    passage = " ".join(f"word{i}" for i in range(60))
    # printed first, then copied whole into FINAL in the next cell
    root = ScriptedModel([f"print({passage!r})", f"s = {passage!r}\nFINAL(s)", "FINAL('word7')"])
    result = _rlm(tmp_home, root).ask("Which word?", TEXT)
    assert result.answer == "word7"
    assert "copies a long passage" in _last_user(root, 2)


def test_ask_each_asks_the_sub_model_about_every_piece(tmp_home: Path) -> None:
    sub = ScriptedModel(answer=lambda p: p.split("\n")[0].upper())
    cell = "print(ask_each('What is it?', ['alpha text', 'beta text', 'alpha text']))"
    root = ScriptedModel([cell, "FINAL('ok')"])
    result = _rlm(tmp_home, root, sub).ask("q?", TEXT)
    assert "['ALPHA TEXT', 'BETA TEXT', 'ALPHA TEXT']" in _last_user(root, 1)
    assert len(sub.calls) == 2 and result.stats.sub_calls == 2  # equal pieces asked once
    asked = sorted(c[-1]["content"] for c in sub.calls)  # each piece with the question
    assert all("What is it?" in prompt for prompt in asked)
    assert asked == [prompts.piece_prompt(p, "What is it?") for p in ("alpha text", "beta text")]
    sub = ScriptedModel(answer=lambda p: "part")  # 13,000 characters: read in three parts
    root = ScriptedModel(["print(ask_each('q', ['line of text\\n' * 1000]))", "FINAL('ok')"])
    _rlm(tmp_home, root, sub).ask("q?", TEXT)
    assert "['part | part | part']" in _last_user(root, 1)


def test_the_question_is_searched_for_before_the_first_turn(tmp_home: Path) -> None:
    filler = "\n".join(f"Line {i}: the weather was mild and nothing happened." for i in range(400))
    text = filler + "\nThe vault code for the north gate is 5521.\n" + filler
    question = "What is the vault code for the north gate?"
    root = ScriptedModel(["FINAL('5521')"])
    result = _rlm(tmp_home, root, first_search=True, read_first="off").ask(question, text)
    assert result.answer == "5521" and result.stats.cells == 2  # the search, then the answer
    first = _last_user(root, 0)
    assert "The vault code for the north gate is 5521." in first
    assert first.rstrip().endswith("write code for the next step.")
    events = read_trace(Path(result.trace_path))
    (step,) = [e for e in events if e["type"] == "first_step"]
    assert step["turn"] == 0 and step["code"].startswith("print(search(")
    root = ScriptedModel(["FINAL('none')", "FINAL('x')"])  # nothing shares a word: no output shown
    _rlm(tmp_home, root, first_search=True).ask("zzz qqq?", text)
    assert "best match" not in _last_user(root, 0)


def test_the_search_s_passages_are_read_first_and_a_copied_answer_is_kept(tmp_home: Path) -> None:
    filler = "\n".join(f"Line {i}: the weather was mild and nothing happened." for i in range(400))
    text = filler + "\nThe vault code for the north gate is 5521.\n" + filler
    question = "What is the vault code for the north gate?"
    root = ScriptedModel(["5521"])  # the reader's reply, copied from the passages
    result = _rlm(tmp_home, root, first_search=True, read_first="answer").ask(question, text)
    assert result.answer == "5521" and result.stats.turns == 1
    assert "assistant_prefix" not in root.params[0]  # read as text, not asked for code
    read = [e for e in read_trace(Path(result.trace_path)) if e["type"] == "read"]
    assert [(e["accepted"], e["text"]) for e in read] == [(True, "5521")]
    for reply in ("CODE", "4417", "The code is probably 5521 or so."):  # not copied: code goes on
        root = ScriptedModel([reply, "FINAL('x')"])
        result = _rlm(tmp_home, root, first_search=True, read_first="answer").ask(question, text)
        assert result.answer == "x" and result.stats.turns == 2
        # The code turns start from the data look alone: the passages had no stated answer.
        first_code_turn = _last_user(root, 1)
        assert "best match" not in first_code_turn and "Some of its lines" in first_code_turn


# A proxy log whose busiest day the reader cannot see in three passages.
DAYS_LOG = "\n".join(
    f"[{day} 10:00:{i % 60:02d}] app.exe - host:443 open"
    for i, day in enumerate(["07.26"] * 40 + ["10.30"] * 60)
)
DAYS_QUESTION = "On which day did app.exe open the most connections to the host?"


def test_a_read_value_many_records_share_goes_to_the_code_turns(tmp_home: Path) -> None:
    # "Which day has the most lines?": the passages show some day, and the reader copies it;
    # a value in more lines than the passages hold is decided over the whole input.
    log, question = DAYS_LOG, DAYS_QUESTION
    root = ScriptedModel(["07.26", "print(tally(r'^\\[(\\S+) '))", "FINAL('10.30')"])
    result = _rlm(tmp_home, root, first_search=True).ask(question, log)
    assert result.answer == "10.30" and result.stats.turns == 3
    read = [e for e in read_trace(Path(result.trace_path)) if e["type"] == "read"]
    assert read[0]["accepted"] is False and read[0]["shared_by"] > 36
    assert reading.shared_by_many("07.26", log, 3) > 36
    assert reading.shared_by_many("app.exe, 07.26", log, 3) > 36  # a list: every item
    assert reading.shared_by_many("07.26, 10:00:07", log, 3) == 0  # one is rare: stated there
    assert reading.shared_by_many("07.26", log, 4) == 0  # four pieces hold 48 lines
    assert reading.shared_by_many("10:00:07", {"a.log": log}, 3) == 0  # rare: a stated fact
    # A class name in 40 of 10,000 lines of code is a name, not a value records share.
    code = "\n".join(
        "class Gone(HTTPException):" if i % 250 == 0 else "x = 1" for i in range(10_000)
    )
    assert reading.shared_by_many("HTTPException", {"exceptions.py": code}, 3) == 0


def test_when_the_code_turns_find_nothing_the_reader_s_copied_answer_stands(
    tmp_home: Path,
) -> None:
    log, question = DAYS_LOG, DAYS_QUESTION
    # Refused as a shared value; the code turns give up twice: the reading stands.
    root = ScriptedModel(["07.26", "FINAL('not found')", "FINAL('No answer found.')"])
    result = _rlm(tmp_home, root, first_search=True).ask(question, log)
    assert result.answer == "07.26"
    events = read_trace(Path(result.trace_path))
    assert [e["answer"] for e in events if e["type"] == "fallback"] == ["07.26"]
    assert load_run(Path(result.trace_path)).fell_back
    shown = run_cli("runs", "show", str(result.run_id))
    assert "the code turns found no answer: the reader's copied answer stands" in shown.stdout
    # So it does when the code turns' answer is the question itself.
    echo = "FINAL(" + repr(question) + ")"
    root = ScriptedModel(["07.26", echo, echo.replace("FINAL(", "FINAL( ")])
    assert _rlm(tmp_home, root, first_search=True).ask(question, log).answer == "07.26"
    # A real answer of the code turns wins over the reading.
    root = ScriptedModel(["07.26", "FINAL('10.30')"])
    assert _rlm(tmp_home, root, first_search=True).ask(question, log).answer == "10.30"


@pytest.mark.parametrize(
    ("reply", "kept"),
    [("PEP 589", True), ("589", False), ("4", False), ("Rob Palmer, Ujjwal Sharma", True),
     ("Rob Palmer and Ujjwal Sharma", True), ("10", False), ("Rob Smith", False),
     ("Palmer Rob Sharma Ujjwal", False), ("CODE", False), ("Not found.", False),
     ("Rob Palmer\nUjjwal Sharma", "Rob Palmer, Ujjwal Sharma"),
     ("- Rob Palmer\n- `Ujjwal Sharma`.", "Rob Palmer, Ujjwal Sharma"),
     ("Rob Palmer\nRob Smith", False), ("CODE\nRob Palmer", False)],
)  # fmt: skip
def test_a_read_answer_counts_only_when_the_passages_hold_it(reply: str, kept: bool | str) -> None:
    passages = "--- pep-0589.rst:667\nDavid Foster contributed.\n| Rob Palmer | RPR |\n" \
        "| Ujjwal Sharma | USA |\nline 107: x at 19:37:04"  # fmt: skip
    copied = reading.grounded_answer(reply, passages)
    assert copied == kept if isinstance(kept, str) else (copied == reply) is kept


def test_a_read_answer_can_be_offered_to_the_code_turns_instead(tmp_home: Path) -> None:
    filler = "\n".join(f"Line {i}: the weather was mild and nothing happened." for i in range(400))
    text = filler + "\nThe vault code for the north gate is 5521.\n" + filler
    root = ScriptedModel(["5521", "FINAL(len(find_lines('weather')))"])
    question = "What is the vault code for the north gate?"
    result = _rlm(tmp_home, root, first_search=True, read_first="hint").ask(question, text)
    assert result.answer == "800"  # the code turn decided, not the reader
    assert "give the answer '5521'" in _last_user(root, 1)


def test_a_read_list_cut_at_the_reply_limit_goes_to_the_code_turns(tmp_home: Path) -> None:
    # The reader's list ran past its tokens ("10.250.17.177, 10.250.10.213, 10.251"): the list
    # is longer than a reply, which is what code over the whole input is for.
    hosts = [f"10.250.{i}.{i * 7}" for i in range(40)]
    text = "\n".join(f"ask {host} to delete a block" for host in hosts)
    listed = ", ".join(hosts)
    root = ScriptedModel([listed, *[listed] * 4, "FINAL('from code')"])
    question = "Which hosts were asked to delete a block?"
    result = _rlm(tmp_home, root, first_search=True, read_max_tokens=48).ask(question, text)
    assert result.answer == "from code"
    (read,) = [e for e in read_trace(Path(result.trace_path)) if e["type"] == "read"]
    assert read["cut_off"] is True and read["accepted"] is False
    # Should the code turns find nothing, the items read before the cut stand.
    root = ScriptedModel([listed, "FINAL('not found')", "FINAL('none')"])
    result = _rlm(tmp_home, root, first_search=True, read_max_tokens=48).ask(question, text)
    read_items = result.answer.split(", ")
    assert 10 < len(read_items) < 40 and listed.startswith(result.answer + ", ")
    assert reading.without_cut_item("a, b, 10.251") == "a, b"
    assert reading.without_cut_item("a\nb\n10.2") == "a\nb" and reading.without_cut_item("x") == ""
    # A short list, whole within the limit, is read as before.
    root = ScriptedModel([", ".join(hosts[:2])] * 5)
    result = _rlm(tmp_home, root, first_search=True, read_max_tokens=48).ask(question, text)
    assert result.answer == ", ".join(hosts[:2]) and result.stats.turns == 1


@pytest.mark.parametrize(
    ("samples", "kept"),
    [(["5521", "5521", "5521", "5521"], True), (["CODE", "5521", "5521", "5521"], True),
     (["CODE", "5521", "Not found.", "5521"], False), (["CODE"] * 4, False)],
)  # fmt: skip
def test_a_read_answer_needs_the_sampled_readings_to_find_one_too(
    tmp_home: Path, samples: list[str], kept: bool
) -> None:
    filler = "\n".join(f"Line {i}: the weather was mild and nothing happened." for i in range(400))
    text = filler + "\nThe vault code for the north gate is 5521.\n" + filler
    root = ScriptedModel(["5521", *samples, "FINAL('from code')"])
    question = "What is the vault code for the north gate?"
    result = _rlm(tmp_home, root, first_search=True, read_samples=4).ask(question, text)
    assert result.answer == ("5521" if kept else "from code")
    sampled = root.params[1:5]
    assert [p.get("seed") for p in sampled] == [1, 2, 3, 4]
    assert all(p["temperature"] > 0 for p in sampled)
    (read,) = [e for e in read_trace(Path(result.trace_path)) if e["type"] == "read"]
    assert read["accepted"] is kept and len(read["samples"]) == 4


def test_plays_after_the_greedy_one_vote_on_the_answer(tmp_home: Path) -> None:
    root = ScriptedModel(["FINAL('7')", "FINAL(' 8.')", "FINAL('8')"])
    events: list[dict] = []
    result = _rlm(tmp_home, root, plays=3).ask("q?", TEXT, on_event=events.append)
    assert result.answer == " 8." and result.stats.turns == 3  # as the first play to reach it
    assert [p.get("temperature", 0) for p in root.params] == [0, 0.7, 0.7]
    assert [p.get("seed") for p in root.params] == [None, 1, 2]
    assert [e["answers"] for e in events if e["type"] == "vote"] == [["7", " 8.", "8"]]
    assert [e["turn"] for e in events if e["type"] == "turn"] == [1, 2, 3]  # numbered on
    shown = run_cli("runs", "show", str(result.run_id))
    assert shown.returncode == 0 and "plays' answers: 7 · 8. · 8\n" in shown.stdout
    assert load_run(Path(str(result.trace_path))).votes == ["7", " 8.", "8"]

    root = ScriptedModel(["FINAL('7')", "FINAL('7')"])  # two agree: a third cannot change it
    assert _rlm(tmp_home, root, plays=3).ask("q?", TEXT).stats.turns == 2
    root = ScriptedModel(["FINAL('7')", "FINAL('8')", "FINAL('9')"])
    assert _rlm(tmp_home, root, plays=3).ask("q?", TEXT).answer == "7"  # none agree: greedy
    root = ScriptedModel(["FINAL('7')"])
    assert _rlm(tmp_home, root, plays=3, max_seconds=0).ask("q?", TEXT).answer == "7"  # no time


def test_a_ballot_counts_answers_not_their_spelling() -> None:
    ballot = voting.Ballot(planned=6)
    for answer in ("Headers", None, "no match found", "`headers`"):
        ballot.add(answer)
    assert ballot.winner() == "Headers" and not ballot.settled()  # 2 to 0, two plays to come
    ballot.add("ETags")
    assert not ballot.settled()  # 2 to 1, one to come: a tie is still possible
    ballot.add("headers.")
    assert ballot.settled() and ballot.winner() == "Headers"
    assert voting.Ballot(planned=3, answers=["a", "A "]).settled()  # 2 to 0, one to come
    empty = voting.Ballot(planned=2)
    empty.add(None)
    assert empty.winner() is None and not empty.settled()
    empty.add("not found")
    assert empty.winner() == "not found"  # no play answered: what one of them said
