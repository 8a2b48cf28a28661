"""The scripted chat model for testing the loop's logic (never the only test of a feature).

It keeps the model contract (rlm_local.models.contract.ChatModel), as test_model_contract.py checks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from rlm_local.models.contract import Completion, Sampling


class ScriptedModel:
    """Replies from a list (root) or a function of the last user message (sub); records prompts."""

    def __init__(
        self,
        replies: list[str] | None = None,
        answer: Callable[[str], str] | None = None,
        n_ctx: int = 4096,
        identity: str | None = None,
        timing: dict[str, Any] | None = None,
        delay: float = 0.0,
    ) -> None:
        """`timing`: Completion fields (seconds, load_seconds, ...) each reply reports;
        `delay`: seconds each call sleeps, so wall-clock measurements have something to see."""
        self.replies = list(replies or [])
        self.answer = answer
        self.n_ctx = n_ctx
        # Distinct per instance unless given: the cache must not mix two scripts' replies.
        self.identity = identity or uuid.uuid4().hex
        self.parallelism = 1  # a test sets more, as a served model offers
        self.calls: list[list[dict[str, str]]] = []
        self.params: list[dict[str, Any]] = []  # each call's Sampling.params()
        self.timing = dict(timing or {})
        self.delay = delay

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) // 4 + 5 for m in messages) + 3

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Completion:
        from rlm_local.errors import ContextOverflowError

        tokens = self.count_message_tokens(messages)
        limit = self.n_ctx - sampling.max_tokens
        if tokens > limit:
            raise ContextOverflowError("too long", prompt_tokens=tokens, limit=limit)
        self.calls.append([dict(m) for m in messages])
        self.params.append(sampling.params())
        if self.answer is not None:
            text = self.answer(messages[-1]["content"])
        else:
            if not self.replies:
                raise AssertionError("the scripted model ran out of replies")
            text = self.replies.pop(0)
        if self.delay:
            time.sleep(self.delay)
        split = {"seconds": 0.0, **self.timing}
        # A reply past max_tokens (about 4 characters a token) is cut there, as llama.cpp does.
        cut = len(text) // 4 > sampling.max_tokens
        text = text[: sampling.max_tokens * 4] if cut else text
        finish = "length" if cut else "stop"
        return Completion(text, tokens, len(text) // 4, finish_reason=finish, **split)

    def close(self) -> None:
        return None
