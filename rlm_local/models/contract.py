"""What the engine and the cache need from a model, written down once.

A llama.cpp model (backend.LocalModel), a served one (remote.OpenAIModel) and the tests' scripted
model all keep this contract; tests/test_model_contract.py checks each of them against it. Nothing
here imports a backend, so the cache and the engine depend on the contract, not on llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str  # "stop" or "length"
    # Where `seconds` went (llama.cpp models; a remote model reports only `seconds`):
    load_seconds: float = 0.0  # loading the weights, on the call that loaded them
    prompt_eval_seconds: float = 0.0  # evaluating the prompt, restoring a stored prefix included
    generation_seconds: float = 0.0
    evaluated_tokens: int = 0  # prompt tokens the model evaluated on this call
    restored_tokens: int = 0  # prompt tokens restored from the prefix cache on disk


@dataclass(frozen=True)
class Sampling:
    """How one reply is sampled: with the messages and the model's identity, all a cache key holds.

    `assistant_prefix` starts the model's reply (e.g. an opened code fence) so a small model cannot
    drift into prose; the returned text excludes it.
    """

    max_tokens: int
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF
    seed: int | None = None
    assistant_prefix: str = ""

    def __post_init__(self) -> None:
        # A list (or None) given as `stop` is kept as a tuple, so a Sampling cannot change.
        object.__setattr__(self, "stop", tuple(self.stop or ()))

    @property
    def deterministic(self) -> bool:
        """Greedy or seeded: the same call gives the same reply, so it may be cached."""
        return self.temperature == 0 or self.seed is not None

    def params(self) -> dict[str, Any]:
        """The fields as cache keys have always held them (rlm_local.cache.call_key).

        `assistant_prefix` is left out when empty, so the keys of plain chats did not change when
        it was added. Changing this dict invalidates every cache entry.
        """
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stop": list(self.stop),
            "grammar": self.grammar,
            "seed": self.seed,
        }
        if self.assistant_prefix:
            params["assistant_prefix"] = self.assistant_prefix
        return params


@runtime_checkable
class ChatModel(Protocol):
    """A chat model as the engine, the cache and the benchmarks use it.

    `chat` raises rlm_local.errors.ContextOverflowError when the prompt plus `max_tokens` cannot
    fit `n_ctx`: an input is never silently truncated.
    """

    @property
    def identity(self) -> str:
        """What the cache keys on: the weights' sha256 (or what stands for it), not a file name."""
        ...

    @property
    def n_ctx(self) -> int:
        """The context window in tokens: prompt and reply together."""
        ...

    @property
    def parallelism(self) -> int:
        """How many calls may run at once (1 for a local model; served ones allow more)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
        """The prompt's tokens, the chat template's markers included (a margin, not exact)."""
        ...

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Completion: ...

    def close(self) -> None:
        """Frees the weights or connections; the model may be used again afterwards."""
        ...
