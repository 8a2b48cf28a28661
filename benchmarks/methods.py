"""The methods compared on the same models and tasks: rlm (ours), direct, chunked.

Each returns a MethodResult with the same measurements, so the table can put them side by side.
All model calls go through the same cache (or none, with --no-cache).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rlm_local.api import RLM
from rlm_local.cache import CachedCompletion, cached_chat
from rlm_local.engine import RunOptions
from rlm_local.engine.prompts import direct_messages, sub_messages
from rlm_local.models.contract import Sampling

CHUNK_CHARS = 6000
COMBINE_SYSTEM = "Combine partial answers into one final answer. Be brief."


@dataclass
class MethodResult:
    answer: str | None
    seconds: float
    turns: int = 0
    sub_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    notes: list[str] = field(default_factory=list)  # shown in the table
    details: list[str] = field(default_factory=list)  # kept in the raw rows only
    trace_path: str | None = None
    timing: dict[str, float] | None = None  # the engine's split of an rlm run's seconds
    evidence: list[dict[str, Any]] = field(default_factory=list)  # the answer's passages

    def count(self, call: CachedCompletion) -> None:
        if call.cached:
            self.cache_hits += 1
        else:
            self.cache_misses += 1
            self.prompt_tokens += call.completion.prompt_tokens
            self.completion_tokens += call.completion.completion_tokens


def _flatten(context: str | dict[str, str]) -> str:
    if isinstance(context, str):
        return context
    return "\n\n".join(f"### {path}\n{text}" for path, text in sorted(context.items()))


def run_rlm(rlm: RLM, question: str, context: str | dict[str, str], **_: Any) -> MethodResult:
    result = rlm.ask(
        question, context, options=RunOptions(**{**rlm.options.__dict__, "mode": "rlm"})
    )
    s = result.stats
    return MethodResult(
        answer=result.answer,
        seconds=result.seconds,
        turns=s.turns,
        sub_calls=s.sub_calls,
        prompt_tokens=s.prompt_tokens,
        completion_tokens=s.completion_tokens,
        cache_hits=s.cache_hits,
        cache_misses=s.cache_misses,
        trace_path=result.trace_path,
        timing=result.timing.to_dict(),
        evidence=[item.to_dict() for item in result.evidence],
    )


def run_direct(rlm: RLM, question: str, context: str | dict[str, str], **_: Any) -> MethodResult:
    """The root model reads the input itself; what does not fit its window is cut (and said)."""
    started = time.monotonic()
    root = rlm.root
    text = _flatten(context)
    max_tokens = 256
    room = root.n_ctx - max_tokens - root.count_message_tokens(direct_messages(question, ""))
    out = MethodResult(answer=None, seconds=0.0)
    tokens = root.count_tokens(text)
    if tokens > room:
        keep = len(text)
        while tokens > room:  # a cut by the average density overshoots a denser beginning
            keep = int(keep * room / tokens * 0.97)
            tokens = root.count_tokens(text[:keep])
        out.notes.append(f"truncated to {keep:,} of {len(text):,} characters ({room} tokens)")
        text = text[:keep]
    call = cached_chat(root, rlm.cache, direct_messages(question, text), Sampling(max_tokens))
    out.count(call)
    out.turns = 1
    out.answer = call.completion.text.strip()
    out.seconds = round(time.monotonic() - started, 2)
    return out


def run_chunked(rlm: RLM, question: str, context: str | dict[str, str], **_: Any) -> MethodResult:
    """Map-reduce: one sub-model call per fixed-size chunk, one root call to combine."""
    started = time.monotonic()
    text = _flatten(context)
    out = MethodResult(answer=None, seconds=0.0)
    notes: list[str] = []
    for start in range(0, len(text), CHUNK_CHARS):
        piece = text[start : start + CHUNK_CHARS]
        # No "reply NONE if irrelevant" option: measured here, the 0.5B model then answers NONE
        # even for the chunk that holds the answer. The combining call sorts the answers out.
        prompt = f"{piece}\n\nQuestion: {question}\nAnswer briefly from this text."
        call = cached_chat(rlm.sub, rlm.cache, sub_messages(prompt), Sampling(max_tokens=128))
        out.count(call)
        out.sub_calls += 1
        notes.append(f"- part {len(notes) + 1}: {call.completion.text.strip()}")
    out.details = notes
    max_tokens = 256
    combine_prompt, kept = _combine_messages(rlm.root, question, notes, max_tokens)
    if kept < len(notes):
        out.notes.append(f"combined the first {kept} of {len(notes)} partial answers (root window)")
    call = cached_chat(rlm.root, rlm.cache, combine_prompt, Sampling(max_tokens))
    out.count(call)
    out.turns = 1
    out.answer = call.completion.text.strip()
    out.seconds = round(time.monotonic() - started, 2)
    return out


def _combine_messages(
    root: Any, question: str, partial_answers: list[str], max_tokens: int
) -> tuple[list[dict[str, str]], int]:
    """The combining prompt with as many partial answers as the root's window holds, in order.

    At 1M tokens the ~700 answers overflow the window; like `direct`, what does not fit is cut
    from the end, and the count kept is returned so the cut can be reported.
    """

    def messages(kept: int) -> list[dict[str, str]]:
        combined = "\n".join(partial_answers[:kept]) or "(no part had anything relevant)"
        return [
            {"role": "system", "content": COMBINE_SYSTEM},
            {
                "role": "user",
                "content": f"Partial answers from parts of a long text:\n{combined}\n\n"
                f"Question: {question}\nFinal answer:",
            },
        ]

    def fits(kept: int) -> bool:
        return root.count_message_tokens(messages(kept)) <= root.n_ctx - max_tokens

    if fits(len(partial_answers)):  # the usual case: one count, no search
        return messages(len(partial_answers)), len(partial_answers)
    low, high = 0, len(partial_answers) - 1  # the most answers that fit lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return messages(low), low


METHODS = {"rlm": run_rlm, "direct": run_direct, "chunked": run_chunked}
