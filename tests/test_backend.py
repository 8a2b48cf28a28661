"""The llama.cpp backend on the real default sub-model."""

from __future__ import annotations

import pytest

from rlm_local.errors import ContextOverflowError
from rlm_local.models import ResolvedModel
from rlm_local.models.backend import BackendOptions, LocalModel

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def test_greedy_output_is_deterministic_and_usage_is_counted(sub_model: LocalModel) -> None:
    first = sub_model.chat(MESSAGES, max_tokens=16)
    second = sub_model.chat(MESSAGES, max_tokens=16)
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
        [{"role": "user", "content": "Write a long story about a lighthouse."}], max_tokens=7
    )
    assert long.completion_tokens == 7
    assert long.finish_reason == "length"


def test_assistant_prefix_starts_the_reply(sub_model: LocalModel) -> None:
    reply = sub_model.chat(
        [{"role": "user", "content": "Print the numbers 1 to 3 in Python."}],
        max_tokens=48,
        assistant_prefix="```python\n",
        stop=["```"],
    )
    assert "print" in reply.text
    assert "```" not in reply.text  # stopped at the closing fence, prefix not repeated
    compile(reply.text, "<reply>", "exec")  # it is code, not prose


def test_over_long_prompt_raises_a_clear_error(sub_model_file: ResolvedModel) -> None:
    small = LocalModel(sub_model_file, BackendOptions(n_ctx=512, n_threads=2))
    try:
        text = "lighthouse keeper " * 400
        with pytest.raises(ContextOverflowError, match="split the input") as info:
            small.chat([{"role": "user", "content": text}], max_tokens=32)
        assert info.value.prompt_tokens > 480
        assert info.value.limit == 480
        ok = small.chat([{"role": "user", "content": "Say hi."}], max_tokens=4)
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
    params = dict(max_tokens=64, assistant_prefix=prompts.CODE_PREFIX, stop=[prompts.CODE_STOP])
    answers = ("print(", "FINAL(", "FINAL_VAR(")
    free = root_model.chat(messages, **params)
    held = root_model.chat(messages, grammar=prompts.ROOT_GRAMMAR, **params)
    assert not free.text.strip().splitlines()[-1].startswith(answers), free.text
    assert held.text.strip().splitlines()[-1].strip().startswith(answers), held.text
    compile(held.text, "<reply>", "exec")
