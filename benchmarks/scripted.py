"""Scripted models for the runner's smoke test: they exercise the plumbing, not the models."""

from __future__ import annotations

from typing import Any

from rlm_local.models.backend import Completion


class EchoModel:
    """Root: code that answers with the first grep hit of a digit run; sub: NONE."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.identity = f"scripted-{role}"
        self.n_ctx = 1 << 20

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) // 4 + 5 for m in messages) + 3

    def chat(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        if self.role == "sub":
            text = "NONE"
        elif params.get("assistant_prefix"):
            text = "hits = grep(r'\\d{7}')\nFINAL(hits[0] if hits else 'none')"
        else:
            text = "none"
        return Completion(text, self.count_message_tokens(messages), 3, 0.0, "stop")


def scripted_models() -> tuple[EchoModel, EchoModel]:
    return EchoModel("root"), EchoModel("sub")
