"""Scripted models for the runner's smoke test (`--scripted`): they exercise the plumbing, not
the models.

Not tests/scripted.py's ScriptedModel: `python -m benchmarks ... --scripted` runs (in CI too)
without tests/ on the path, and these are fixed policies (the root greps when asked for code)
with fixed identities, not scripts of replies. Both keep the model contract
(rlm_local.models.contract.ChatModel), which tests/test_model_contract.py checks.
"""

from __future__ import annotations

from rlm_local.errors import ContextOverflowError
from rlm_local.models.contract import Completion, Sampling


class EchoModel:
    """Root: code that answers with the first grep hit of a digit run; sub: NONE."""

    parallelism = 1

    def __init__(self, role: str) -> None:
        self.role = role
        self.identity = f"scripted-{role}"
        self.n_ctx = 1 << 20

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) // 4 + 5 for m in messages) + 3

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Completion:
        tokens, limit = self.count_message_tokens(messages), self.n_ctx - sampling.max_tokens
        if tokens > limit:  # as the contract says; smoke runs stay far below the window
            raise ContextOverflowError("too long", prompt_tokens=tokens, limit=limit)
        if self.role == "sub":
            text = "NONE"
        elif sampling.assistant_prefix:
            text = "hits = grep(r'\\d{7}')\nFINAL(hits[0] if hits else 'none')"
        else:
            text = "none"
        return Completion(text, tokens, 3, 0.0, "stop")

    def close(self) -> None:
        return None


def scripted_models() -> tuple[EchoModel, EchoModel]:
    return EchoModel("root"), EchoModel("sub")
