"""What the sandbox's bridge functions call into: llm_query and its kin on the sub-model, classify
on the labeller (labels.py), rlm_query as a nested run of the engine.

Every sub-call is charged to the question's budget of sub-calls and counted in its RunState.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rlm_local.cache import CallCache, cached_chat
from rlm_local.engine import labels as labelling
from rlm_local.engine import prompts
from rlm_local.engine.options import RunOptions
from rlm_local.engine.run_state import RunState
from rlm_local.engine.timing import CallSplit, Role
from rlm_local.errors import ContextOverflowError, RlmLocalError
from rlm_local.models.contract import ChatModel, Sampling
from rlm_local.sandbox.helpers import chunks

# (question, context, depth, run) -> the answer of a run one level down, or None
NestedRun = Callable[[str, str | dict[str, str], int, RunState], str | None]


def as_context(piece: Any) -> str | dict[str, str]:
    """A piece handed to rlm_query becomes a context the sandbox accepts."""
    if isinstance(piece, str):
        return piece
    if isinstance(piece, dict):
        return {
            str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in piece.items()
        }
    return json.dumps(piece, ensure_ascii=False)


@dataclass(frozen=True)
class SubRequest:
    """One sub-model call: plain llm_query prompts and classify batches alike."""

    messages: list[dict[str, str]]
    max_tokens: int
    grammar: str | None = None
    role: Role = "sub"  # classify's batches go to the labeller model


class SubCalls:
    """The sub-model and the labeller behind the bridge functions of every depth's sandbox."""

    def __init__(
        self,
        sub: ChatModel,
        labeller: ChatModel,
        cache: CallCache | None,
        options: RunOptions,
        nested_run: NestedRun,
    ) -> None:
        self.sub = sub
        self.labeller = labeller
        self.cache = cache
        self.options = options
        self.nested_run = nested_run  # the engine's RLM run, for rlm_query below max_depth

    def functions(self, depth: int, run: RunState) -> dict[str, Callable[..., Any]]:
        """The bridge functions of a sandbox at `depth`, by the names its code calls them."""

        def llm_query(prompt: Any) -> str:
            return self._sub_call(self._query(str(prompt)), depth, run)

        def llm_query_batched(prompts_: list[Any]) -> list[str]:
            if not isinstance(prompts_, list):
                raise TypeError("llm_query_batched takes a list of prompts")
            unique = list(dict.fromkeys(map(str, prompts_)))  # duplicates cost one call
            answers = self._sub_calls([self._query(p) for p in unique], depth, run)
            by_prompt = dict(zip(unique, answers, strict=True))
            return [by_prompt[str(p)] for p in prompts_]

        def classify(items: Any, labels: Any, instruction: Any = None) -> list[str | None]:
            return self._classify(labelling.check_request(items, labels, instruction), depth, run)

        def ask_each(question_: Any, pieces: Any) -> list[str]:
            if isinstance(pieces, str) or not isinstance(pieces, list | tuple):
                raise TypeError("ask_each(question, pieces): pieces must be a list of str")
            # A piece too long for the sub-model is read in parts; their answers are joined.
            parts = [chunks(str(piece), prompts.MAX_PIECE_CHARS) or [""] for piece in pieces]
            asked = [
                prompts.piece_prompt(part, str(question_)) for group in parts for part in group
            ]
            answers = iter(llm_query_batched(asked))
            return [" | ".join(next(answers) for _ in group) for group in parts]

        def rlm_query(question: Any, piece: Any) -> str:
            if depth + 1 > self.options.max_depth:
                body = piece if isinstance(piece, str) else json.dumps(piece, ensure_ascii=False)
                return self._sub_call(self._query(f"{body}\n\nQuestion: {question}"), depth, run)
            self._charge_sub_call(run)  # a recursive run is one sub-call of the budget too
            answer = self.nested_run(str(question), as_context(piece), depth + 1, run)
            return answer if answer is not None else "(no answer found)"

        functions = {
            "llm_query": llm_query,
            "call_llm": llm_query,
            "llm_query_batched": llm_query_batched,
            "classify": classify,
            "rlm_query": rlm_query,
            "ask_each": ask_each,
        }
        return {name: run.timed_bridge(func, depth) for name, func in functions.items()}

    def _query(self, prompt: str) -> SubRequest:
        return SubRequest(prompts.sub_messages(prompt), self.options.sub_max_tokens)

    def _classify(
        self, request: labelling.LabelRequest, depth: int, run: RunState
    ) -> list[str | None]:
        scheme = (tuple(request.labels), request.instruction)
        known = run.labels.setdefault(scheme, {})  # a cell re-run after an error costs nothing
        todo = [text for text in request.distinct if text not in known]
        voting = self.options.vote_labels
        with run.lock:
            left = self.options.max_sub_calls - run.stats.sub_calls
            calls_before = run.stats.sub_calls
        if labelling.max_vote_calls(len(todo), voting) > left:
            voting = False  # one pass still fits: labels without the vote beat none
        if labelling.max_vote_calls(len(todo), voting) > left:
            raise RuntimeError(
                f"labelling {len(todo)} different items takes {labelling.batch_count(len(todo))} "
                "sub-calls "
                f"({labelling.ITEMS_PER_CALL} items each) but {left} are left; classify fewer "
                "items, e.g. only the part of each line the label depends on"
            )

        def label_groups(groups: list[list[str]]) -> list[list[str | None]]:
            calls = [
                SubRequest(
                    labelling.messages(group, request),
                    labelling.max_tokens(len(group), request.labels),
                    labelling.grammar(len(group), request.labels),
                    role="labeller",
                )
                for group in groups
            ]
            replies = self._sub_calls(calls, depth, run)
            return [
                labelling.parse(reply, len(group), request.labels)
                for group, reply in zip(groups, replies, strict=True)
            ]

        found = labelling.vote(todo, label_groups, voting) if todo else {}
        known.update((text, label) for text, label in found.items() if label)
        result = [known.get(labelling.item_text(item)) for item in request.items]
        run.emit(
            {
                "type": "classify",
                "depth": depth,
                "items": len(request.items),
                "distinct": len(request.distinct),
                "sub_calls": run.stats.sub_calls - calls_before,
                "voted": voting and len(todo) > 1,
                "unlabelled": sum(label is None for label in result),
            }
        )
        return result

    def _sub_calls(self, requests: list[SubRequest], depth: int, run: RunState) -> list[str]:
        """Several sub-calls: concurrent when the sub-model is served by endpoints that allow it
        (a local llama.cpp model runs one at a time). A failed call becomes an error string in
        its slot; the others are kept."""
        model = self._model_for(requests[0]) if requests else self.sub
        parallelism = min(model.parallelism, len(requests))
        started = time.monotonic()
        try:
            if parallelism <= 1:
                return [self._ask_sub(r, depth, run) for r in requests]

            def one(request: SubRequest) -> str:
                try:
                    return self._ask_sub(request, depth, run)
                except RlmLocalError as exc:
                    return f"[llm_query error: {exc}]"

            with ThreadPoolExecutor(max_workers=parallelism) as pool:
                return list(pool.map(one, requests))
        finally:  # the batch's wall time: its calls overlap when they run concurrently
            if requests:
                run.sub_calls_took(requests[0].role, time.monotonic() - started)

    def _model_for(self, request: SubRequest) -> ChatModel:
        return self.labeller if request.role == "labeller" else self.sub

    def _charge_sub_call(self, run: RunState) -> None:
        """Count one sub-call (or rlm_query run), or refuse it when a run budget is spent."""
        with run.lock:
            if run.stats.sub_calls >= self.options.max_sub_calls:
                raise RuntimeError(
                    f"the budget of {self.options.max_sub_calls} sub-calls is used up; "
                    "call FINAL with your best answer"
                )
            if run.out_of_time():
                raise RuntimeError("the time budget is used up; call FINAL with your best answer")
            run.stats.sub_calls += 1

    def _sub_call(self, request: SubRequest, depth: int, run: RunState) -> str:
        """One sub-call on its own (not in a batch), its wall time counted as sub-call time."""
        started = time.monotonic()
        try:
            return self._ask_sub(request, depth, run)
        finally:
            run.sub_calls_took(request.role, time.monotonic() - started)

    def _ask_sub(self, request: SubRequest, depth: int, run: RunState) -> str:
        self._charge_sub_call(run)
        started = time.monotonic()
        prompt = request.messages[-1]["content"]
        try:
            call = cached_chat(
                self._model_for(request),
                self.cache,
                request.messages,
                Sampling(max_tokens=request.max_tokens, grammar=request.grammar),
            )
        except ContextOverflowError as exc:
            run.emit(
                {
                    "type": "sub_call",
                    "depth": depth,
                    "prompt": prompt[:20000],
                    "prompt_chars": len(prompt),
                    "error": "context overflow",
                    "prompt_tokens": exc.prompt_tokens,
                }
            )
            return prompts.sub_overflow_message(exc.prompt_tokens, exc.limit)
        run.count(call, request.role)
        text = call.completion.text.strip()
        run.emit(
            {
                "type": "sub_call",
                "depth": depth,
                "model": request.role,
                "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()[:16],
                "prompt": prompt[:20000],
                "prompt_chars": len(prompt),
                "answer": text,
                "cached": call.cached,
                "cacheable": call.cacheable,
                "seconds": round(time.monotonic() - started, 3),
                "prompt_tokens": call.completion.prompt_tokens,
                "completion_tokens": call.completion.completion_tokens,
                **CallSplit.of(call).event_fields(),
            }
        )
        return text
