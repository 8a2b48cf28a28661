"""Follow-up questions (RLM.session) and cancelling a run, with scripted models, the real sandbox
worker and the real cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions
from rlm_local.errors import RunCancelled
from rlm_local.session import Exchange, earlier_block
from rlm_local.trace import list_runs, load_run, read_trace

TEXT = "alpha beta. The secret code is 4417. gamma delta. " * 20


def _rlm(root: ScriptedModel, sub: ScriptedModel | None = None, **opts: object) -> RLM:
    sub = sub or ScriptedModel(answer=lambda p: "sub-answer")
    return RLM(
        load_settings(),
        RunOptions(mode="rlm", first_search=False, skip_checks=("unfounded",), **opts),
        root=root,
        sub=sub,
    )  # type: ignore[arg-type]


def _first_user(model: ScriptedModel, call: int) -> str:
    return model.calls[call][1]["content"]


def test_a_session_keeps_the_worker_and_tells_the_root_model_earlier_answers(
    tmp_home: Path,
) -> None:
    root = ScriptedModel(
        [
            "n = context.count('secret')\nFINAL(str(n))",  # question 1 leaves `n` behind
            "FINAL(str(n * 2))",  # question 2 reads `n`: same worker
            "FINAL(str(n + 1))",  # question 3
        ]
    )
    with _rlm(root).session(TEXT) as session:
        first = session.ask("How many secrets are there?")
        assert first.answer == "20"
        sandbox = session._sandbox
        second = session.ask("And twice that?")
        assert second.answer == "40"
        assert session._sandbox is sandbox and sandbox is not None
        assert sandbox.restarts == 0
        third = session.ask("Plus one?")
        assert third.answer == "21"
    assert session._sandbox is None  # closed with the session

    assert "Earlier in this session" not in _first_user(root, 0)
    second_prompt = _first_user(root, 1)
    assert "Earlier in this session" in second_prompt
    first_exchange = Exchange("How many secrets are there?", "20")
    told = earlier_block([first_exchange])
    assert told in second_prompt and "How many secrets are there?" in told and "20" in told
    assert second_prompt.index("Earlier in this session") < second_prompt.index("And twice that?")
    third_prompt = _first_user(root, 2)
    assert earlier_block([first_exchange, Exchange("And twice that?", "40")]) in third_prompt
    assert [e.answer for e in session.history] == ["20", "40", "21"]
    assert len(list_runs(load_settings().runs_dir)) == 3  # one trace per question


def test_a_nested_rlm_query_gets_its_own_sandbox_in_a_session(tmp_home: Path) -> None:
    root = ScriptedModel(
        [
            "kept = 7\nprint(rlm_query('What code?', context[:200]))",
            "FINAL(str(len(context)))",  # depth 1: its context is the piece
            "FINAL(str(kept))",  # top level again: its own variable is still there
        ]
    )
    with _rlm(root, max_depth=1).session(TEXT) as session:
        assert session.ask("q?").answer == "7"
    nested_prompt = _first_user(root, 1)
    assert "str of 200 characters" in nested_prompt


def test_earlier_block_is_short() -> None:
    history = [Exchange(f"question {i} " + "x" * 500, "y" * 900) for i in range(8)]
    history.append(Exchange("last?", None))
    block = earlier_block(history)
    lines = block.splitlines()
    assert len(lines) == 6  # a heading and the latest five
    assert "question 0" not in block and "question 7" in block
    assert "last?" in lines[-1] and lines[-1].endswith("(no answer)")
    assert all(len(line) < 560 for line in lines)
    assert earlier_block([]) == ""


def test_cancel_stops_the_run_at_its_next_step_and_keeps_the_cache(tmp_home: Path) -> None:
    cancel = threading.Event()
    turns = iter(range(1, 100))

    def root_reply(_: str) -> str:
        return f"print(llm_query('part {next(turns)}'))"

    def sub_reply(prompt: str) -> str:
        if "part 2" in prompt:
            cancel.set()  # as if the user pressed Ctrl-C while the second sub-call ran
        return "nothing here"

    root = ScriptedModel(answer=root_reply)
    sub = ScriptedModel(answer=sub_reply)
    rlm = _rlm(root, sub, max_turns=10)
    with pytest.raises(RunCancelled):
        rlm.ask("q?", TEXT, cancel=cancel)
    assert len(root.calls) == 2 and len(sub.calls) == 2  # stopped right after the sub-call
    run = list_runs(load_settings().runs_dir)[0]
    assert run.status == "cancelled"
    events = read_trace(run.path)
    assert events[-1]["type"] == "cancelled"
    assert load_run(run.path).status == "cancelled"

    # The same question again: the two root turns and both sub-calls come from the cache (the
    # script goes on from part 3, as a model would not be asked for the cached turns).
    cancel.clear()
    calls_before = (len(root.calls), len(sub.calls))
    sub.answer = lambda prompt: "FOUND 4417" if "part 3" in prompt else "nothing here"
    root.answer = lambda last: (
        "FINAL('4417')" if "FOUND 4417" in last else f"print(llm_query('part {next(turns)}'))"
    )
    result = rlm.ask("q?", TEXT, cancel=cancel)
    assert result.answer == "4417"
    assert result.stats.cache_hits >= 4
    assert (len(root.calls), len(sub.calls)) == (calls_before[0] + 2, calls_before[1] + 1)


def test_a_cancelled_question_is_not_remembered_and_the_session_goes_on(tmp_home: Path) -> None:
    cancel = threading.Event()

    def sub_reply(prompt: str) -> str:
        cancel.set()
        return "x"

    root = ScriptedModel(["print(llm_query('a'))", "FINAL('again')"])
    with _rlm(root, ScriptedModel(answer=sub_reply)).session(TEXT) as session:
        with pytest.raises(RunCancelled):
            session.ask("first?", cancel=cancel)
        assert session.history == []
        cancel.clear()
        result = session.ask("second?", cancel=cancel)
    assert result.answer == "again"
    assert session.history == [Exchange("second?", "again")]
    assert "Earlier in this session" not in _first_user(root, 1)
