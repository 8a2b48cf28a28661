"""The llama.cpp backend on the real default sub-model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from rlm_local.errors import ContextOverflowError
from rlm_local.models import ResolvedModel
from rlm_local.models.backend import BackendOptions, LocalModel
from rlm_local.models.contract import Sampling
from rlm_local.models.prefixes import PrefixStore

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def test_greedy_output_is_deterministic_and_usage_is_counted(sub_model: LocalModel) -> None:
    first = sub_model.chat(MESSAGES, Sampling(max_tokens=16))
    second = sub_model.chat(MESSAGES, Sampling(max_tokens=16))
    assert first.text == second.text
    assert "paris" in first.text.lower()
    rendered = sub_model._formatter(messages=MESSAGES).prompt
    prompt_tokens = len(sub_model._llama.tokenize(rendered.encode(), special=True))
    assert first.prompt_tokens == prompt_tokens
    assert sub_model.count_message_tokens(MESSAGES) == prompt_tokens
    assert 0 < first.completion_tokens <= 16
    assert first.finish_reason == "stop"


def test_max_tokens_bounds_the_answer(sub_model: LocalModel) -> None:
    long = sub_model.chat(
        [{"role": "user", "content": "Write a long story about a lighthouse."}],
        Sampling(max_tokens=7),
    )
    assert long.completion_tokens == 7
    assert long.finish_reason == "length"


def test_assistant_prefix_starts_the_reply(sub_model: LocalModel) -> None:
    reply = sub_model.chat(
        [{"role": "user", "content": "Print the numbers 1 to 3 in Python."}],
        Sampling(max_tokens=48, assistant_prefix="```python\n", stop=("```",)),
    )
    assert "print" in reply.text
    assert "```" not in reply.text  # stopped at the closing fence, prefix not repeated
    compile(reply.text, "<reply>", "exec")  # it is code, not prose


def test_over_long_prompt_raises_a_clear_error(sub_model_file: ResolvedModel) -> None:
    small = LocalModel(sub_model_file, BackendOptions(n_ctx=512, n_threads=2))
    try:
        text = "lighthouse keeper " * 400
        with pytest.raises(ContextOverflowError, match="split the input") as info:
            small.chat([{"role": "user", "content": text}], Sampling(max_tokens=32))
        assert info.value.prompt_tokens > 480
        assert info.value.limit == 480
        ok = small.chat([{"role": "user", "content": "Say hi."}], Sampling(max_tokens=4))
        assert ok.completion_tokens > 0  # the model is still usable after the refusal
    finally:
        small.close()


def test_the_root_grammar_ends_a_turn_on_a_line_that_prints_or_answers(
    root_model: LocalModel,
) -> None:
    """Left free, the root model ends this cell on an assignment (a turn that would show
    nothing); under prompts.ROOT_GRAMMAR its last line prints or answers."""
    from rlm_local.engine import prompts

    messages = [{"role": "user", "content": "Set total to the sum of [3, 1, 2]. Code only."}]
    free_sampling = Sampling(
        max_tokens=64, assistant_prefix=prompts.CODE_PREFIX, stop=(prompts.CODE_STOP,)
    )
    answers = ("print(", "FINAL(", "FINAL_VAR(")
    free = root_model.chat(messages, free_sampling)
    held = root_model.chat(messages, replace(free_sampling, grammar=prompts.ROOT_GRAMMAR))
    assert not free.text.strip().splitlines()[-1].startswith(answers), free.text
    assert held.text.strip().splitlines()[-1].strip().startswith(answers), held.text
    compile(held.text, "<reply>", "exec")


def _first_root_turn() -> list[dict[str, str]]:
    from rlm_local.engine import prompts

    question = "What is the launch code?"
    description = prompts.describe_context("log start\nthe launch code is 7-alpha-12\nlog end\n")
    return [
        {"role": "system", "content": prompts.root_system()},
        {"role": "user", "content": prompts.first_turn(question, description)},
    ]


@pytest.mark.models  # its model fixture is asked for by name: not marked by conftest
@pytest.mark.parametrize("model_file", ["sub_model_file", "root_model_file"])
def test_a_restored_prompt_prefix_answers_exactly_as_a_fresh_evaluation(
    model_file: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The engine's first root turn, three times: in a process with no store, in one that stores
    the system prompt's state, and in a new one that restores it. Greedy answers must match."""
    from rlm_local.engine import prompts

    resolved: ResolvedModel = request.getfixturevalue(model_file)
    messages = _first_root_turn()
    sampling = Sampling(
        max_tokens=48, assistant_prefix=prompts.CODE_PREFIX, stop=(prompts.CODE_STOP,)
    )
    store = PrefixStore(tmp_path / "prefixes")
    replies = []
    for prefixes in (None, store, store):
        model = LocalModel(resolved, BackendOptions(n_threads=2), prefixes)
        try:
            replies.append(model.chat(messages, sampling))
        finally:
            model.close()
    fresh, storing, restoring = replies
    assert fresh.restored_tokens == storing.restored_tokens == 0
    assert fresh.evaluated_tokens == storing.evaluated_tokens == fresh.prompt_tokens
    assert store.stats().entries == 1
    assert restoring.restored_tokens > 500  # the system prompt, roughly 600 tokens
    assert restoring.evaluated_tokens == fresh.prompt_tokens - restoring.restored_tokens
    assert fresh.load_seconds > 0 and fresh.prompt_eval_seconds > 0
    assert fresh.generation_seconds > 0
    assert fresh.text == storing.text == restoring.text, (fresh.text, restoring.text)


def test_a_model_switching_system_prompts_restores_each_from_disk(
    sub_model_file: ResolvedModel, tmp_path: Path
) -> None:
    """The reader's prompt, then the root's, then the reader's again on one model: the prefix in
    memory no longer matches, so each comes back from the store."""
    from rlm_local.engine.reading import READ_SYSTEM

    store = PrefixStore(tmp_path)
    root_turn = _first_root_turn()
    reading = [{"role": "system", "content": READ_SYSTEM + "\n" + "Be brief. " * 20}, root_turn[1]]
    model = LocalModel(sub_model_file, BackendOptions(n_threads=2), store)
    try:
        first = [model.chat(m, Sampling(max_tokens=8)) for m in (reading, root_turn)]
        again = [model.chat(m, Sampling(max_tokens=8)) for m in (reading, root_turn)]
    finally:
        model.close()
    assert [c.restored_tokens for c in first] == [0, 0]
    assert all(c.restored_tokens > 40 for c in again)
    assert [c.text for c in first] == [c.text for c in again]
    assert store.stats().entries == 2


def test_a_damaged_or_foreign_state_is_dropped_and_the_prefix_evaluated_again(
    sub_model_file: ResolvedModel, tmp_path: Path
) -> None:
    """States whose files are intact but whose bytes llama.cpp cannot use (half a state, zeros,
    a state of fewer tokens): never a crash, never a wrong answer."""
    store = PrefixStore(tmp_path)
    messages = _first_root_turn()
    model = LocalModel(sub_model_file, BackendOptions(n_threads=2), store)
    try:
        expected = model.chat(messages, Sampling(max_tokens=16)).text
    finally:
        model.close()
    (state_path,) = tmp_path.glob("*.state")
    state = state_path.read_bytes()
    short_turn = [{"role": "system", "content": "Be brief. " * 20}, messages[1]]
    model = LocalModel(sub_model_file, BackendOptions(n_threads=2), PrefixStore(tmp_path / "o"))
    try:
        model.chat(short_turn, Sampling(max_tokens=1))
    finally:
        model.close()
    (other_state,) = (tmp_path / "o").glob("*.state")
    for bad in (state[: len(state) // 2], bytes(len(state)), other_state.read_bytes()):
        _replace_state(state_path, bad)
        model = LocalModel(sub_model_file, BackendOptions(n_threads=2), store)
        try:
            reply = model.chat(messages, Sampling(max_tokens=16))
        finally:
            model.close()
        assert reply.restored_tokens == 0
        assert reply.text == expected
        assert store.load(state_path.stem) == state  # evaluated again and stored afresh


def _replace_state(path: Path, state: bytes) -> None:
    """Writes other bytes under a key with a record that vouches for them."""
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record.update(state_bytes=len(state), state_sha256=hashlib.sha256(state).hexdigest())
    path.write_bytes(state)
    record_path.write_text(json.dumps(record))
