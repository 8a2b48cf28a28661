"""Where a run's seconds go: sums of the models' own split, cached calls, sandbox time without
the sub-calls it waited on, and how `--json`, the trace and `runs show` report it."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_cli
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.config import ModelSpec, ServerSpec, load_settings
from rlm_local.engine import RunOptions, RunResult
from rlm_local.engine.timing import RunTiming
from rlm_local.models.contract import Sampling
from rlm_local.models.remote import OpenAIModel
from rlm_local.trace import TIMING_KEYS, load_run, read_trace

TEXT = "alpha beta. The secret code is 4417. gamma delta. " * 20
ROOT_SPLIT = {
    "seconds": 3.5,
    "load_seconds": 0.5,
    "prompt_eval_seconds": 1.0,
    "generation_seconds": 2.0,
    "evaluated_tokens": 100,
    "restored_tokens": 40,
}
SUB_SPLIT = {
    "seconds": 0.75,
    "prompt_eval_seconds": 0.25,
    "generation_seconds": 0.5,
    "evaluated_tokens": 10,
}
LABELLER_SPLIT = {"seconds": 1.5, "generation_seconds": 1.5, "evaluated_tokens": 7}
CELLS = [
    "r = llm_query('hi')\nprint(r)",
    "labels = classify(['a', 'b'], ['x', 'y'])\nprint(labels)",
    "FINAL('done')",
]


def _ask(
    root: ScriptedModel,
    sub: ScriptedModel,
    labeller: ScriptedModel | None = None,
    **opts: Any,
) -> RunResult:
    defaults = {"first_search": False, "skip_checks": ("unfounded",)}  # typed-in scripted answers
    options = RunOptions(mode="rlm", **{**defaults, **opts})
    with RLM(load_settings(), options, root=root, sub=sub, labeller=labeller or sub) as rlm:
        return rlm.ask("q?", TEXT)


def _models(identity: str = "") -> tuple[ScriptedModel, ScriptedModel, ScriptedModel]:
    """Root, sub and labeller with known splits; fixed identities when `identity` is given, so
    a second run is served from the cache."""

    def named(role: str) -> str | None:
        return identity + role if identity else None

    root = ScriptedModel(list(CELLS), timing=ROOT_SPLIT, identity=named("root"))
    sub = ScriptedModel(  # its delay keeps its wall time above the millisecond the trace rounds to
        answer=lambda p: "ok", timing=SUB_SPLIT, identity=named("sub"), delay=0.01
    )
    labeller = ScriptedModel(
        answer=lambda p: "1: x\n2: x",
        timing=LABELLER_SPLIT,
        identity=named("labeller"),
        delay=0.01,
    )
    return root, sub, labeller


def _events(result: RunResult, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_trace(Path(str(result.trace_path))) if e["type"] == kind]


def test_the_keys_are_run_timings_fields() -> None:
    assert tuple(f.name for f in fields(RunTiming)) == TIMING_KEYS


def test_json_and_trace_sum_each_models_split(tmp_home: Path) -> None:
    root, sub, labeller = _models()
    result = _ask(root, sub, labeller)
    assert result.answer == "done" and len(labeller.calls) == 2  # classify votes in two orders
    timing = result.to_dict()["timing"]
    assert list(timing) == list(TIMING_KEYS)
    json.dumps(timing)
    assert timing["load_s"] == pytest.approx(3 * 0.5)
    assert timing["prompt_eval_s"] == pytest.approx(3 * 1.0 + 0.25)
    assert timing["generation_s"] == pytest.approx(3 * 2.0 + 0.5 + 2 * 1.5)
    assert timing["prompt_tokens"] == 3 * 100 + 10 + 2 * 7  # evaluated, not the prompts' size
    assert timing["restored_tokens"] == 3 * 40
    assert timing["sub_calls_s"] > 0 and timing["sandbox_s"] > 0

    end = _events(result, "run_end")[0]
    assert end["timing"] == timing
    by_model = end["timing_by_model"]
    assert list(by_model) == ["root", "sub", "labeller"]
    assert by_model["root"]["generation_s"] == pytest.approx(6.0)
    assert by_model["root"]["sub_calls_s"] == 0
    assert by_model["sub"]["prompt_tokens"] == 10
    assert by_model["labeller"]["generation_s"] == pytest.approx(3.0)
    assert by_model["labeller"]["sub_calls_s"] > 0

    turn = _events(result, "turn")[0]
    assert (turn["load_s"], turn["prompt_eval_s"], turn["generation_s"]) == (0.5, 1.0, 2.0)
    assert (turn["evaluated_tokens"], turn["restored_tokens"]) == (100, 40)
    calls = _events(result, "sub_call")
    assert [c["model"] for c in calls] == ["sub", "labeller", "labeller"]
    assert calls[0]["evaluated_tokens"] == 10 and calls[0]["prompt_eval_s"] == 0.25
    assert calls[1]["generation_s"] == 1.5 and calls[1]["load_s"] == 0


def test_calls_served_from_the_cache_add_nothing(tmp_home: Path) -> None:
    first = _ask(*_models("same"))
    assert first.to_dict()["timing"]["generation_s"] > 0
    again = _ask(*_models("same"))
    assert again.answer == "done" and again.stats.cache_misses == 0
    timing = again.to_dict()["timing"]
    for key in ("load_s", "prompt_eval_s", "prompt_tokens", "restored_tokens", "generation_s"):
        assert timing[key] == 0, key
    for event in _events(again, "turn") + _events(again, "sub_call"):
        assert event["cached"] and event["generation_s"] == 0 and event["evaluated_tokens"] == 0
    # the roles were used, though every call was cached
    assert list(_events(again, "run_end")[0]["timing_by_model"]) == ["root", "sub", "labeller"]


def test_sandbox_time_leaves_out_the_sub_calls_its_cells_waited_on(tmp_home: Path) -> None:
    root = ScriptedModel(["a = llm_query('a')\nb = llm_query('b')\nFINAL(a + b)"])
    sub = ScriptedModel(answer=lambda p: "x", delay=0.4)
    timing = _ask(root, sub).to_dict()["timing"]
    assert timing["sub_calls_s"] >= 0.8
    assert timing["sandbox_s"] < 0.4  # with the sub-calls it would be over 0.8


BUSY = (  # 0.6 s of the cell's own time, by the wall clock however loaded the CPU is
    "import datetime\n"
    "start = datetime.datetime.now()\n"
    "while (datetime.datetime.now() - start).total_seconds() < 0.6:\n"
    "    pass\n"
)


def test_a_nested_run_is_split_not_counted_as_sub_call_or_sandbox_time(tmp_home: Path) -> None:
    root = ScriptedModel(
        [BUSY + "a = rlm_query('What code?', context[:200])\nFINAL(a)", "FINAL(llm_query('x'))"]
    )
    sub = ScriptedModel(answer=lambda p: "4417", delay=0.5)
    result = _ask(root, sub)
    assert result.answer == "4417"
    timing = result.to_dict()["timing"]
    assert 0.5 <= timing["sub_calls_s"] < 0.9  # the llm_query, not the rlm_query around it
    # The outer cell's own 0.6 s, without the nested run; the nested cell's, without its
    # llm_query (which would make it 1.1 s), each counted once.
    assert 0.6 <= timing["sandbox_s"] < 1.0


def test_a_concurrent_batch_counts_its_wall_time_once(tmp_home: Path) -> None:
    root = ScriptedModel(["r = llm_query_batched(['a', 'b', 'c', 'd'])\nFINAL(str(len(r)))"])
    sub = ScriptedModel(answer=lambda p: "x", delay=0.3, timing=SUB_SPLIT)
    sub.parallelism = 4  # type: ignore[attr-defined]  # as a served model offers
    timing = _ask(root, sub).to_dict()["timing"]
    assert 0.3 <= timing["sub_calls_s"] < 0.9  # four calls of 0.3 s side by side
    assert timing["prompt_tokens"] == 4 * 10  # every thread's call was counted


def test_a_model_that_reports_only_its_seconds_counts_them_as_generation(tmp_home: Path) -> None:
    root = ScriptedModel(["FINAL('x')"], timing={"seconds": 2.0})
    timing = _ask(root, ScriptedModel([])).to_dict()["timing"]
    assert (timing["generation_s"], timing["prompt_eval_s"], timing["load_s"]) == (2.0, 0, 0)


def test_a_served_models_round_trip_is_its_generation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(name="served", server=ServerSpec(base_urls=("http://x/v1",), model="m"))

    def post(self: OpenAIModel, endpoint: Any, body: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.05)
        message = {"message": {"content": "hi"}, "finish_reason": "stop"}
        return {"choices": [message], "usage": {"prompt_tokens": 9, "completion_tokens": 1}}

    monkeypatch.setattr(OpenAIModel, "_post", post)
    reply = OpenAIModel(spec).chat([{"role": "user", "content": "hello"}], Sampling(max_tokens=8))
    assert reply.generation_seconds == reply.seconds >= 0.05
    assert reply.prompt_eval_seconds == 0 and reply.evaluated_tokens == 0


def test_runs_show_prints_where_the_time_went(tmp_home: Path) -> None:
    result = _ask(*_models())
    shown = run_cli("runs", "show", str(result.run_id))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    line = next(line for line in text.splitlines() if "time: " in line)
    assert (
        "time: load 1.5 s · prompt 3.2 s (324 evaluated, 120 restored) · generation 9.5 s" in line
    )
    assert "· sandbox " in line and "· sub-calls " in line
    assert (
        "root: load 1.5 s · prompt 3.0 s (300 evaluated, 120 restored) · generation 6.0 s\n" in text
    )
    assert (
        "sub: load 0.0 s · prompt 0.2 s (10 evaluated, 0 restored) · generation 0.5 s · sub-calls"
        in text
    )
    assert "labeller: load 0.0 s" in text
    run = load_run(Path(str(result.trace_path)))
    assert run.timing is not None and run.timing["restored_tokens"] == 120
    assert run.turns[0].timing == {
        "load_s": 0.5,
        "prompt_eval_s": 1.0,
        "generation_s": 2.0,
        "evaluated_tokens": 100,
        "restored_tokens": 40,
    }
    assert run.sub_calls[0].timing is not None and run.sub_calls[0].timing["evaluated_tokens"] == 10
    page = run_cli("runs", "html", str(result.run_id), "-o", str(tmp_home / "page.html"))
    assert page.returncode == 0, page.stderr
    assert "time of labeller" in (tmp_home / "page.html").read_text("utf-8")


def test_a_trace_from_before_the_split_still_shows(tmp_home: Path) -> None:
    result = _ask(*_models())
    path = Path(str(result.trace_path))
    split_keys = {"timing", "timing_by_model", "load_s", "prompt_eval_s", "generation_s"}
    split_keys |= {"evaluated_tokens", "restored_tokens"}
    events = [{k: v for k, v in e.items() if k not in split_keys} for e in read_trace(path)]
    path.write_text("".join(json.dumps(e) + "\n" for e in events), "utf-8")
    run = load_run(path)
    assert run.timing is None and run.timing_by_model == {}
    assert run.turns[0].timing is None and run.sub_calls[0].timing is None
    shown = run_cli("runs", "show", str(result.run_id))
    assert shown.returncode == 0, shown.stderr
    assert "answer: done" in shown.stdout and "time:" not in shown.stdout
