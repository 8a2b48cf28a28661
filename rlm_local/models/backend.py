"""One llama.cpp model: loaded on first use, used by one thread at a time.

Root and sub-model each get their own instance so that llama.cpp's automatic prefix reuse works:
the same instance, nothing else run on it in between, a prompt that only grows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from rlm_local.errors import ContextOverflowError, ModelCorruptError
from rlm_local.models.store import ResolvedModel

# Tokens the chat template adds around each message (role markers, newlines); measured on Qwen2.5's
# ChatML template as 5 per message plus 3 for the assistant header. A margin, not an exact count:
# llama.cpp's own check is the backstop.
TEMPLATE_TOKENS_PER_MESSAGE = 5
TEMPLATE_TOKENS_FIXED = 3


@dataclass(frozen=True)
class BackendOptions:
    """Machine-side settings; n_ctx, n_batch and flash_attn default to the model's entry."""

    n_ctx: int | None = None
    n_batch: int | None = None
    n_threads: int = 2
    n_gpu_layers: int = 0
    flash_attn: bool | None = None


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


class LocalModel:
    """A lazily loaded `llama_cpp.Llama` behind a lock."""

    def __init__(self, model: ResolvedModel, options: BackendOptions) -> None:
        self.model = model
        self.options = options
        self.n_ctx = options.n_ctx or model.n_ctx
        self._llama: Any = None
        self._formatter: Any = None  # the GGUF's own chat template, rendered by us
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """What the cache keys on: the bytes of the weights, not the file's name."""
        return self.model.sha256

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama  # imported late: costly, and unused by most commands

            try:
                self._llama = Llama(
                    model_path=str(self.model.path),
                    n_ctx=self.n_ctx,
                    n_batch=self.options.n_batch or self.model.n_batch,
                    n_threads=self.options.n_threads,
                    n_threads_batch=self.options.n_threads,
                    n_gpu_layers=self.options.n_gpu_layers,
                    flash_attn=(
                        self.model.flash_attn
                        if self.options.flash_attn is None
                        else self.options.flash_attn
                    ),
                    chat_format=None
                    if self.model.chat_format == "gguf"
                    else self.model.chat_format,
                    verbose=False,
                )
            except ValueError as exc:
                raise ModelCorruptError(
                    f"llama.cpp could not load {self.model.path} ({exc}); "
                    f"run `rlm-local models verify {self.model.name}`."
                ) from None
            template = self._llama.metadata.get("tokenizer.chat_template")
            if self.model.chat_format == "gguf" and template:
                self._formatter = _gguf_formatter(self._llama, template)
        return self._llama

    def count_tokens(self, text: str) -> int:
        with self._lock:
            llama = self._load()
            return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
        body = sum(self.count_tokens(m["content"]) for m in messages)
        return body + TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + TEMPLATE_TOKENS_FIXED

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        grammar: str | None = None,
        seed: int | None = None,
        assistant_prefix: str = "",
    ) -> Completion:
        """Greedy by default; a prompt that cannot fit raises ContextOverflowError, never truncates.

        `assistant_prefix` starts the model's reply (e.g. an opening code fence) so a small model
        cannot drift into prose; the returned text excludes it.
        """
        prompt_tokens = self.count_message_tokens(messages)
        limit = self.n_ctx - max_tokens
        if prompt_tokens > limit:
            raise ContextOverflowError(
                f"The prompt has about {prompt_tokens} tokens but {self.model.name} has room for "
                f"{limit} ({self.n_ctx} window minus {max_tokens} for the answer); "
                "split the input into smaller pieces.",
                prompt_tokens=prompt_tokens,
                limit=limit,
            )
        with self._lock:
            llama = self._load()
            kwargs: dict[str, Any] = {}
            if grammar is not None:
                from llama_cpp import LlamaGrammar

                kwargs["grammar"] = LlamaGrammar.from_string(grammar, verbose=False)
            if seed is not None:
                kwargs["seed"] = seed
            started = time.perf_counter()
            try:
                if self._formatter is not None:
                    rendered = self._formatter(messages=messages)
                    out = llama.create_completion(
                        rendered.prompt + assistant_prefix,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        stop=(stop or []) + _as_list(rendered.stop),
                        **kwargs,
                    )
                else:
                    out = llama.create_chat_completion(
                        messages=messages,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        stop=stop or [],
                        **kwargs,
                    )
            except ValueError as exc:
                if "exceed context window" in str(exc):
                    raise ContextOverflowError(
                        f"The prompt does not fit {self.model.name}'s {self.n_ctx}-token window; "
                        "split the input into smaller pieces.",
                        prompt_tokens=prompt_tokens,
                        limit=limit,
                    ) from None
                raise
            seconds = time.perf_counter() - started
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        text = choice["text"] if "text" in choice else choice["message"].get("content")
        return Completion(
            text=text or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=seconds,
            finish_reason=choice.get("finish_reason") or "stop",
        )

    def close(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None


def _as_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _gguf_formatter(llama: Any, template: str) -> Any:
    """Render chats with the template stored in the GGUF, as llama-cpp-python itself would."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token_id: int) -> str:
        return llama._model.token_get_text(token_id) if token_id != -1 else ""

    return Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llama.token_eos()),
        bos_token=token_text(llama.token_bos()),
        stop_token_ids=[llama.token_eos()],
    )
