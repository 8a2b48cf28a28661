"""One llama.cpp model: loaded on first use, used by one thread at a time.

Root and sub-model each get their own instance so that llama.cpp's automatic prefix reuse works:
the same instance, nothing else run on it in between, a prompt that only grows.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_local.errors import ContextOverflowError, ModelCorruptError
from rlm_local.models.contract import Completion, Sampling
from rlm_local.models.prefixes import PrefixStore, prefix_key
from rlm_local.models.store import ResolvedModel

# Tokens the chat template adds around each message (role markers, newlines); measured on Qwen2.5's
# ChatML template as 5 per message plus 3 for the assistant header. A margin, not an exact count:
# llama.cpp's own check is the backstop.
TEMPLATE_TOKENS_PER_MESSAGE = 5
TEMPLATE_TOKENS_FIXED = 3
# System prompts shorter than this are evaluated rather than read back: a restore has fixed costs.
MIN_STORED_PREFIX = 32
# Context settings that do not change what a state holds, only how fast it is computed.
SPEED_ONLY_SETTINGS = frozenset({"n_threads", "n_threads_batch", "no_perf"})


@dataclass(frozen=True)
class BackendOptions:
    """Machine-side settings; n_ctx, n_batch and flash_attn default to the model's entry."""

    n_ctx: int | None = None
    n_batch: int | None = None
    n_threads: int = 2
    n_gpu_layers: int = 0
    flash_attn: bool | None = None


@dataclass(frozen=True)
class PromptEvaluation:
    seconds: float = 0.0
    evaluated: int = 0
    restored: int = 0


class LocalModel:
    """A lazily loaded `llama_cpp.Llama` behind a lock.

    With a PrefixStore, the state after each prompt's system messages is kept on disk, so the next
    process restores it instead of evaluating the same tokens again.
    """

    parallelism = 1  # one llama.cpp context, behind the lock: calls run one at a time

    def __init__(
        self, model: ResolvedModel, options: BackendOptions, prefixes: PrefixStore | None = None
    ) -> None:
        self.model = model
        self.options = options
        self.prefixes = prefixes
        self.n_ctx = options.n_ctx or model.n_ctx
        self._llama: Any = None
        self._formatter: Any = None  # the GGUF's own chat template, rendered by us
        self._lock = threading.Lock()
        self._unreported_load = 0.0  # load seconds not yet attached to a Completion
        self._validity_record: dict[str, Any] | None = None

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

            started = time.perf_counter()
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
            self._unreported_load += time.perf_counter() - started
        return self._llama

    def count_tokens(self, text: str) -> int:
        with self._lock:
            llama = self._load()
            return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_message_tokens(self, messages: list[dict[str, str]]) -> int:
        body = sum(self.count_tokens(m["content"]) for m in messages)
        return body + TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + TEMPLATE_TOKENS_FIXED

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Completion:
        """Greedy by default; a prompt that cannot fit raises ContextOverflowError, never truncates.

        `sampling.assistant_prefix` starts the model's reply (e.g. an opening code fence) so a
        small model cannot drift into prose; the returned text excludes it.
        """
        prompt_tokens = self.count_message_tokens(messages)
        limit = self.n_ctx - sampling.max_tokens
        if prompt_tokens > limit:
            raise ContextOverflowError(
                f"The prompt has about {prompt_tokens} tokens but {self.model.name} has room for "
                f"{limit} ({self.n_ctx} window minus {sampling.max_tokens} for the answer); "
                "split the input into smaller pieces.",
                prompt_tokens=prompt_tokens,
                limit=limit,
            )
        with self._lock:
            llama = self._load()
            kwargs = _llama_sampling(sampling)
            load_seconds, self._unreported_load = self._unreported_load, 0.0
            started = time.perf_counter()
            try:
                out, prompt, generating = self._generate(llama, messages, sampling, kwargs)
            except ValueError as exc:
                if "exceed context window" in str(exc):
                    raise ContextOverflowError(
                        f"The prompt does not fit {self.model.name}'s {self.n_ctx}-token window; "
                        "split the input into smaller pieces.",
                        prompt_tokens=prompt_tokens,
                        limit=limit,
                    ) from None
                raise
            finished = time.perf_counter()
        generating = started if generating is None else generating
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        text = choice["text"] if "text" in choice else choice["message"].get("content")
        return Completion(
            text=text or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=finished - started,
            finish_reason=choice.get("finish_reason") or "stop",
            load_seconds=load_seconds,
            prompt_eval_seconds=prompt.seconds,
            generation_seconds=finished - generating,
            evaluated_tokens=prompt.evaluated,
            restored_tokens=prompt.restored,
        )

    def _generate(
        self,
        llama: Any,
        messages: list[dict[str, str]],
        sampling: Sampling,
        kwargs: dict[str, Any],
    ) -> tuple[dict[str, Any], PromptEvaluation, float | None]:
        """llama.cpp's reply, how its prompt was evaluated, and when generation began (None: not
        apart from the prompt, with a chat format llama-cpp-python renders itself)."""
        if self._formatter is None:
            out = llama.create_chat_completion(
                messages=messages,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                stop=list(sampling.stop),
                **kwargs,
            )
            return out, PromptEvaluation(), None
        rendered = self._formatter(messages=messages)
        tokens = _prompt_tokens(llama, rendered.prompt + sampling.assistant_prefix)
        if len(tokens) >= self.n_ctx:
            raise ValueError("the prompt tokens exceed context window")
        prompt = self._evaluate(llama, tokens, self._fixed_length(messages, tokens))
        generating = time.perf_counter()
        out = llama.create_completion(
            tokens,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            stop=list(sampling.stop) + _as_list(rendered.stop),
            **kwargs,
        )
        return out, prompt, generating

    def _fixed_length(self, messages: list[dict[str, str]], tokens: list[int]) -> int:
        """How many leading tokens the prompt shares with its system messages alone: the part
        that is the same for every question, and so worth keeping on disk."""
        leading = []
        for message in messages:
            if message.get("role") != "system":
                break
            leading.append(message)
        if not leading or self._formatter is None:
            return 0
        alone = _prompt_tokens(self._llama, self._formatter(messages=leading).prompt)
        return min(_common_length(alone, tokens), len(tokens) - 1)

    def _evaluate(self, llama: Any, tokens: list[int], fixed: int) -> PromptEvaluation:
        """Evaluates the prompt so the completion only samples.

        The fixed part is always evaluated apart from the rest, restored from disk or not, so a
        restored state and a fresh one give the same numbers bit for bit (greedy answers match).
        """
        started = time.perf_counter()
        in_memory = min(_common_length(llama.input_ids[: llama.n_tokens], tokens), len(tokens) - 1)
        evaluated = restored = 0
        if in_memory < fixed:
            key = self._prefix_key(llama, tokens[:fixed])
            if key is not None and self._restore(llama, key, tokens[:fixed]):
                restored = fixed
            else:
                _truncate(llama, 0)
                llama.eval(tokens[:fixed])
                evaluated = fixed
                if key is not None:
                    self._store(llama, key, fixed)
            in_memory = fixed
        _truncate(llama, in_memory)
        llama.eval(tokens[in_memory:])
        evaluated += len(tokens) - in_memory
        return PromptEvaluation(time.perf_counter() - started, evaluated, restored)

    def _prefix_key(self, llama: Any, prefix: list[int]) -> str | None:
        """The store's key for this prefix; None when nothing is stored (no store, too short)."""
        if self.prefixes is None or len(prefix) < MIN_STORED_PREFIX:
            return None
        return prefix_key(self._validity(llama), prefix)

    def _restore(self, llama: Any, key: str, prefix: list[int]) -> bool:
        assert self.prefixes is not None
        state = self.prefixes.load(key)
        if state is None:
            return False
        import llama_cpp

        _truncate(llama, 0)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        loaded = llama_cpp.llama_state_seq_set_data(llama.ctx, buffer, len(state), 0) != 0
        memory = llama_cpp.llama_get_memory(llama.ctx)
        if not loaded or (
            llama_cpp.llama_memory_seq_pos_min(memory, 0),
            llama_cpp.llama_memory_seq_pos_max(memory, 0),
        ) != (0, len(prefix) - 1):
            self.prefixes.discard(key)  # another build's or a damaged state: evaluate afresh
            _truncate(llama, 0)
            return False
        llama.input_ids[: len(prefix)] = prefix
        llama.n_tokens = len(prefix)
        return True

    def _store(self, llama: Any, key: str, n_tokens: int) -> None:
        assert self.prefixes is not None
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(llama.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llama.ctx, buffer, size, 0)
        if 0 < written <= size:
            about = {"model": self.model.name, "model_sha256": self.model.sha256}
            self.prefixes.save(key, ctypes.string_at(buffer, written), n_tokens, about)

    def _validity(self, llama: Any) -> dict[str, Any]:
        """Everything that decides whether a stored state fits this process's context."""
        if self._validity_record is None:
            self._validity_record = {
                "model_sha256": self.model.sha256,
                "llama_cpp": _llama_build(),
                "context": _plain_fields(llama.context_params),
                "n_gpu_layers": self.options.n_gpu_layers,
            }
        return self._validity_record

    def close(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None


def _prompt_tokens(llama: Any, prompt: str) -> list[int]:
    """The tokens llama-cpp-python's create_completion makes of a text prompt."""
    tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    bos, eos = llama.token_bos(), llama.token_eos()
    if llama._model.add_bos_token() and bos != -1:
        tokens = [bos, *tokens]
    if llama._model.add_eos_token() or llama._model.token_sep() != -1:
        sep = llama._model.token_sep()
        tokens = [*tokens, sep if sep != -1 else eos]
    return tokens


def _common_length(first: Any, second: list[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def _truncate(llama: Any, n_tokens: int) -> None:
    """Forgets every evaluated token from position n_tokens on."""
    llama._ctx.kv_cache_seq_rm(-1, n_tokens, -1)
    llama.n_tokens = n_tokens


def _llama_build() -> dict[str, Any]:
    """The llama.cpp build: its version, the CPU features it uses and its library file."""
    import llama_cpp

    library = Path(llama_cpp.__file__).parent / "lib" / "libllama.so"
    try:
        info = library.stat()
        file = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    except OSError:
        file = {}
    return {
        "version": llama_cpp.__version__,
        "system": llama_cpp.llama_print_system_info().decode("utf-8", "replace"),
        "library": file,
    }


def _plain_fields(params: Any) -> dict[str, Any]:
    """A ctypes struct's numbers and flags, without pointers and speed-only settings."""
    plain = {}
    for name, kind in params._fields_:
        if name in SPEED_ONLY_SETTINGS or kind is ctypes.c_void_p:
            continue
        if isinstance(kind, type) and issubclass(kind, ctypes._SimpleCData):
            value = getattr(params, name)
            if isinstance(value, bool | int | float):
                plain[name] = value
    return plain


def _llama_sampling(sampling: Sampling) -> dict[str, Any]:
    """The grammar (compiled) and seed, for llama-cpp-python's completion calls."""
    kwargs: dict[str, Any] = {}
    if sampling.grammar is not None:
        from llama_cpp import LlamaGrammar

        kwargs["grammar"] = LlamaGrammar.from_string(sampling.grammar, verbose=False)
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    return kwargs


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
