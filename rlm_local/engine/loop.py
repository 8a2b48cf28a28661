"""The RLM loop: the root model writes code, the sandbox runs it, the output becomes the next turn.

The root conversation only ever grows (system prompt, then turns appended), so llama.cpp
re-evaluates only the new suffix each turn. Every model call goes through the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from rlm_local.cache import CachedCompletion, CallCache, ChatModel, cached_chat
from rlm_local.engine import checks, patterns, prompts, reading, voting
from rlm_local.engine import labels as labeling
from rlm_local.engine.carryover import Carryover
from rlm_local.engine.timing import CallSplit, Role, RunTiming, TimingLedger
from rlm_local.errors import ContextOverflowError, RlmLocalError
from rlm_local.sandbox import CellResult, Sandbox, SandboxLimits
from rlm_local.sandbox.helpers import chunks

Listener = Callable[[dict[str, Any]], None]
RESAMPLE_TEMPERATURES = (0.7, 1.0, 1.3)  # tried in turn until the code is new
STUCK_LIMIT = 2  # turns that only repeated old code before the model must answer
REREAD_CHARS = 3000  # the tail of the cells' printed output a fresh reading sees
MAX_SENT_BACK = 2  # FINAL answers sent back by checks.review in one run (each costs a turn)
READ_SAMPLE_TEMPERATURE = 0.8  # the probe of docs/design.md used this
PLAY_TEMPERATURE = 0.7  # the first program of each play after the greedy one
CODE_END = prompts.CODE_STOP
Mode = Literal["auto", "rlm", "direct"]
ReadFirst = Literal["answer", "hint", "off"]


@dataclass(frozen=True)
class RunOptions:
    """Budgets and knobs of one question; every one is a CLI flag."""

    mode: Mode = "auto"
    max_turns: int = 10
    max_sub_calls: int = 100
    max_seconds: float = 1800.0
    max_depth: int = 1  # levels of rlm_query below the top run; at the limit it is llm_query
    root_max_tokens: int = 384
    sub_max_tokens: int = 256
    vote_labels: bool = True  # classify labels each text in up to 3 batches (labels.vote)
    root_grammar: bool = False  # root turns under prompts.ROOT_GRAMMAR
    first_search: bool = True  # search the input for the question before the first turn
    # The root model reads that search's passages before any code: "answer" keeps a copied
    # answer as the run's (else the code turns start from the data look alone), "hint" offers
    # it and the passages to the code turns (the model decides), "off" shows them the passages.
    read_first: ReadFirst = "answer"
    read_max_tokens: int = 48  # the reader's reply: a copied fact, or CODE
    # Sampled readings (seeded) beside the greedy one: a copied answer counts only when all but
    # one of them also find a stated answer (docs/design.md); 0 trusts the greedy reading alone.
    read_samples: int = 4
    # Plays of the code turns (voting.py): the greedy one, then up to plays-1 from sampled first
    # programs while the answer is unsettled; the answer most plays reach wins. 1: greedy only
    # (more cost time and moved no devsuite answer with the default models: docs/design.md).
    plays: int = 1
    skip_checks: tuple[str, ...] = ()  # names of checks.CHECKS that never send an answer back
    output_chars: int = 2000  # a cell's printed output shown to the root model
    direct_max_tokens: int = 3000  # mode auto: inputs up to this size are answered directly
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.skip_checks) - set(checks.CHECKS))
        if unknown:
            raise ValueError(
                f"unknown check {', '.join(unknown)}; the checks are {', '.join(checks.CHECKS)}"
            )


@dataclass
class RunStats:
    turns: int = 0
    cells: int = 0
    cell_errors: int = 0
    sub_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    prompt_tokens: int = 0  # tokens the models evaluated (cache hits count 0)
    completion_tokens: int = 0
    worker_restarts: int = 0


@dataclass
class RunResult:
    answer: str | None
    status: Literal["answered", "no_answer"]
    mode: Literal["rlm", "direct"]
    question: str
    seconds: float
    stats: RunStats
    run_id: str | None = None
    trace_path: str | None = None
    timing: RunTiming = field(default_factory=RunTiming)  # all models of the run together
    timing_by_model: dict[str, RunTiming] = field(default_factory=dict)  # root, sub, labeller

    def to_dict(self) -> dict[str, Any]:
        """What `ask --json` prints: per-model timing is left to the trace's run_end."""
        data = asdict(self)
        data.update(data.pop("stats"))
        data.pop("timing_by_model")
        data["timing"] = self.timing.to_dict()
        return data


def _as_context(piece: Any) -> str | dict[str, str]:
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
class _SubRequest:
    """One sub-model call: plain llm_query prompts and classify batches alike."""

    messages: list[dict[str, str]]
    max_tokens: int
    grammar: str | None = None
    labelling: bool = False  # classify's batches go to the labeller model


def _role(request: _SubRequest) -> Role:
    """The model role a sub-call's events and timing are recorded under."""
    return "labeller" if request.labelling else "sub"


class _Run:
    """State of one question across its depths: counters, clock and event fan-out."""

    def __init__(self, options: RunOptions, listeners: list[Listener]) -> None:
        self.options = options
        self.listeners = listeners
        self.stats = RunStats()
        self.started = time.monotonic()
        self.lock = threading.RLock()  # sub-calls of a batch may run in threads
        self.notices: list[str] = []  # what bridge functions did on the model's behalf
        # classify's labels so far: (labels, instruction) -> item text -> label
        self.labels: dict[tuple[tuple[str, ...], str], dict[str, str]] = {}
        self.timing = TimingLedger()
        self.last_step_seconds = 0.0  # the latest root turn with its cell: the next takes as long

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self, reserve: float = 0.0) -> bool:
        """Past max_seconds, or (with `reserve`) too close to it for a step that long."""
        return self.elapsed() + reserve > self.options.max_seconds

    def emit(self, event: dict[str, Any]) -> None:
        event.setdefault("elapsed", round(self.elapsed(), 2))
        with self.lock:
            for listener in self.listeners:
                listener(event)

    def count(self, call: CachedCompletion, role: Role) -> None:
        with self.lock:
            self._count(call)
            self.timing.model_call(role, CallSplit.of(call))

    def timed_bridge(self, func: Callable[..., Any], depth: int) -> Callable[..., Any]:
        """`func` as a bridge function whose time is not counted as its cell's."""

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return func(*args, **kwargs)
            finally:
                with self.lock:
                    self.timing.bridge(depth, time.monotonic() - started)

        return call

    def sub_calls_took(self, role: Role, seconds: float) -> None:
        with self.lock:
            self.timing.sub_calls(role, seconds)

    def _count(self, call: CachedCompletion) -> None:
        if call.cached:
            self.stats.cache_hits += 1
        else:
            self.stats.cache_misses += 1
            self.stats.prompt_tokens += call.completion.prompt_tokens
            self.stats.completion_tokens += call.completion.completion_tokens


class Engine:
    """Runs questions against a root and a sub-model; knows nothing of the CLI."""

    def __init__(
        self,
        root: ChatModel,
        sub: ChatModel,
        cache: CallCache | None,
        options: RunOptions,
        labeller: ChatModel | None = None,
        carryover: Carryover | None = None,
    ) -> None:
        self.root = root
        self.sub = sub
        self.labeller = labeller or sub
        self.cache = cache
        self.options = options
        self.carryover = carryover or Carryover()  # a session's sandbox and earlier answers

    # -- public ---------------------------------------------------------------------------------

    def run(
        self, question: str, context: str | dict[str, str], listeners: list[Listener]
    ) -> RunResult:
        run = _Run(self.options, listeners)
        mode = self._choose_mode(question, context)
        run.emit(
            {
                "type": "run_start",
                "question": question,
                "mode": mode,
                "context": prompts.describe_context(context),
                "options": asdict(self.options),
            }
        )
        if mode == "direct":
            answer = self._direct(question, context, run)
        else:
            answer = self._rlm(question, context, depth=0, run=run)
        result = RunResult(
            answer=answer,
            status="answered" if answer is not None else "no_answer",
            mode=mode,
            question=question,
            seconds=round(run.elapsed(), 2),
            stats=run.stats,
            timing=run.timing.total,
            timing_by_model=dict(run.timing.by_role),
        )
        run.emit({"type": "run_end", **result.to_dict(), "timing_by_model": run.timing.by_model()})
        return result

    # -- modes ----------------------------------------------------------------------------------

    def _choose_mode(
        self, question: str, context: str | dict[str, str]
    ) -> Literal["rlm", "direct"]:
        if self.options.mode != "auto":
            return self.options.mode
        chars = len(context) if isinstance(context, str) else sum(map(len, context.values()))
        if chars > self.options.direct_max_tokens * 6:  # surely too long: skip tokenizing
            return "rlm"
        tokens = self.root.count_message_tokens(prompts.direct_messages(question, context))
        return "direct" if tokens <= self.options.direct_max_tokens else "rlm"

    def _direct(self, question: str, context: str | dict[str, str], run: _Run) -> str:
        messages = prompts.direct_messages(question, context)
        messages[-1]["content"] = self.carryover.preface(0, messages[-1]["content"])
        try:
            call = cached_chat(
                self.root,
                self.cache,
                messages,
                max_tokens=self.options.root_max_tokens,
            )
        except ContextOverflowError as exc:
            raise ContextOverflowError(
                f"The input is too long for direct mode (about {exc.prompt_tokens} tokens, room "
                f"for {exc.limit}); use --mode rlm or --mode auto.",
                prompt_tokens=exc.prompt_tokens,
                limit=exc.limit,
            ) from None
        run.count(call, "root")
        run.stats.turns += 1
        run.emit(self._turn_event(0, 1, call))
        return call.completion.text.strip()

    def _rlm(
        self, question: str, context: str | dict[str, str], depth: int, run: _Run
    ) -> str | None:
        opts = self.options
        limits = SandboxLimits(**{**asdict(opts.sandbox), "output_chars": opts.output_chars})
        bridge = self._bridge(question, depth, run)
        description = prompts.describe_context(context)
        with self.carryover.opener(depth)(context, bridge, limits) as box:
            session = _Session(self, question, context, depth, run, box)
            searched = session.first_search() if self.options.first_search else ""
            found = reading.Reading()
            if searched and self.options.read_first != "off":
                found = self._read(question, searched, context, depth, run)
                if self.options.read_first == "answer":
                    if found.answer is not None:
                        return found.answer
                    # No stated answer there: the code turns start without the passages,
                    # which anchored the model on search() (docs/design.md).
                    searched = ""
            first = self.carryover.preface(
                depth, prompts.first_turn(question, description, searched, found.answer)
            )
            return self._or_reading(self._vote(session, first), found, question, depth, run)

    @staticmethod
    def _or_reading(
        answer: str | None, found: reading.Reading, question: str, depth: int, run: _Run
    ) -> str | None:
        """The code turns' answer; when they found none (or only the question), what the reader
        copied from the passages (refused as unsure or as a shared value, still the better)."""
        found_none = answer is None or checks.is_non_answer(answer)
        if found.grounded is None or not (found_none or checks.is_echo(answer, question)):
            return answer
        run.emit({"type": "fallback", "depth": depth, "answer": found.grounded, "code": answer})
        return found.grounded

    def _vote(self, greedy: _Session, first_message: str) -> str | None:
        """The code turns played from the greedy first program and, at the top level while the
        answer is unsettled and half the time is left, from sampled ones; most plays' answer."""
        ballot = voting.Ballot(self.options.plays if greedy.depth == 0 else 1)
        ballot.add(greedy.play(first_message))
        run, last = greedy.run, greedy
        while not ballot.settled() and run.elapsed() < self.options.max_seconds / 2:
            seed = len(ballot.answers)
            last = _Session(
                self,
                greedy.question,
                greedy.context,
                greedy.depth,
                run,
                greedy.box,
                seed,
                last.turn,
            )
            ballot.add(last.play(first_message))
        if len(ballot.answers) > 1:
            run.emit({"type": "vote", "depth": greedy.depth, "answers": ballot.answers})
        return ballot.winner()

    def _read(
        self,
        question: str,
        passages: str,
        context: str | dict[str, str],
        depth: int,
        run: _Run,
    ) -> reading.Reading:
        """The root model reads the first search's passages (reading.py); its answer counts when
        it is copied from them and is no value many records share, else the code turns begin."""
        call = self._reading_call(reading.read_messages(question, passages), run)
        if call is None:  # passages larger than the window: code goes on
            return reading.Reading()
        event = self._turn_event(depth, 0, call)
        reply = call.completion.text
        if call.completion.finish_reason == "length":  # a list longer than a reply
            event["cut_off"] = True
            reply = reading.without_cut_item(reply)
        answer = grounded = reading.grounded_answer(reply, passages)
        if event.get("cut_off"):
            answer = None  # the code turns list it all; what was read is their fallback
        shared = reading.shared_by_many(answer, context, prompts.FIRST_SEARCH_HITS) if answer else 0
        if shared:
            event["shared_by"] = shared  # occurrences in the input (counted just past the limit)
            answer = None
        if answer is not None and self.options.read_samples:
            samples = self._sample_readings(question, passages, run)
            event["samples"] = samples
            if sum(sample is not None for sample in samples) < len(samples) - 1:
                answer = None  # the model itself is unsure the passages state it
        event.update(type="read", accepted=answer is not None)
        run.emit(event)
        return reading.Reading(answer, grounded)

    def _reread(self, question: str, said: str, outputs: str, depth: int, run: _Run) -> str | None:
        """The code turns' printed output read afresh by the root model, as the first reader
        reads passages: its answer when copied from that output, else None."""
        call = self._reading_call(reading.reread_messages(question, outputs), run)
        if call is None:
            return None
        cut = call.completion.finish_reason == "length"
        answer = None if cut else reading.grounded_answer(call.completion.text, outputs)
        event = self._turn_event(depth, 0, call)
        event.update(type="reread", said=said, answer=answer)
        run.emit(event)
        return answer

    def _reading_call(self, messages: list[dict[str, str]], run: _Run) -> CachedCompletion | None:
        """One greedy reading by the root model, counted as a turn; None when it overflows."""
        try:
            call = cached_chat(
                self.root, self.cache, messages, max_tokens=self.options.read_max_tokens
            )
        except ContextOverflowError:
            return None
        run.count(call, "root")
        run.stats.turns += 1
        return call

    def _sample_readings(self, question: str, passages: str, run: _Run) -> list[str | None]:
        """The grounded answers of seeded readings at temperature (cached like greedy ones)."""
        answers = []
        for seed in range(1, self.options.read_samples + 1):
            call = cached_chat(
                self.root,
                self.cache,
                reading.read_messages(question, passages),
                max_tokens=self.options.read_max_tokens,
                temperature=READ_SAMPLE_TEMPERATURE,
                seed=seed,
            )
            run.count(call, "root")
            answers.append(reading.grounded_answer(call.completion.text, passages))
        return answers

    @staticmethod
    def _execute(
        sandbox: Sandbox,
        code: str,
        depth: int,
        turn: int,
        run: _Run,
        context: str | dict[str, str] | None = None,
    ) -> CellResult:
        """Run a cell; with the context, its output ends with a note on the patterns it wrote
        that match no line of the input (patterns.py)."""
        with run.lock:
            bridge_before = run.timing.bridge_so_far(depth)
        result = sandbox.run(code)
        with run.lock:
            run.timing.cell(depth, result.seconds, bridge_before)
        if run.notices:  # shown with the output, so the model knows what was done for it
            notes = "\n".join(run.notices)
            run.notices.clear()
            result = replace(result, output=f"{notes}\n{result.output}")
        note = patterns.unmatched_note(code, context) if context is not None else ""
        if note:
            result = replace(result, output=f"{result.output.rstrip()}\n{note}".lstrip("\n"))
        run.stats.cells += 1
        run.stats.worker_restarts += int(result.worker_restarted)
        run.stats.cell_errors += int(result.error is not None)
        run.emit(
            {
                "type": "cell",
                "depth": depth,
                "turn": turn,
                "code": code,
                "output": result.output,
                "error": result.error,
                "final": result.final,
                "values": result.values,
                "seconds": round(result.seconds, 3),
                "worker_restarted": result.worker_restarted,
            }
        )
        return result

    def _root_turn(
        self,
        messages: list[dict[str, str]],
        temperature: float = 0.0,
        seed: int | None = None,
        final: bool = False,
    ) -> CachedCompletion:
        """A root reply, after an opened code fence; with `final`, after `FINAL(` as well."""
        grammar = self.options.root_grammar and not final
        return cached_chat(
            self.root,
            self.cache,
            messages,
            max_tokens=self.options.root_max_tokens,
            stop=[prompts.CODE_STOP],
            assistant_prefix=prompts.CODE_PREFIX + (prompts.FINAL_PREFIX if final else ""),
            temperature=temperature,
            seed=seed,
            grammar=prompts.ROOT_GRAMMAR if grammar else None,
        )

    def _last_turn_reason(self, turn: int, run: _Run) -> str | None:
        if turn == self.options.max_turns:
            return "This is your last turn."
        if run.out_of_time(reserve=run.last_step_seconds):
            return "Time is up."  # the last turn ends the run near max_seconds, not a turn past
        if run.stats.sub_calls >= self.options.max_sub_calls:
            return "No llm_query calls are left."
        return None

    # -- the functions the sandbox can call -----------------------------------------------------

    def _bridge(self, question: str, depth: int, run: _Run) -> dict[str, Callable[..., Any]]:
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
            return self._classify(labeling.check_request(items, labels, instruction), depth, run)

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
            answer = self._rlm(str(question), _as_context(piece), depth + 1, run)
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

    def _query(self, prompt: str) -> _SubRequest:
        return _SubRequest(prompts.sub_messages(prompt), self.options.sub_max_tokens)

    def _classify(self, request: labeling.LabelRequest, depth: int, run: _Run) -> list[str | None]:
        scheme = (tuple(request.labels), request.instruction)
        known = run.labels.setdefault(scheme, {})  # a cell re-run after an error costs nothing
        todo = [text for text in request.distinct if text not in known]
        voting = self.options.vote_labels
        with run.lock:
            left = self.options.max_sub_calls - run.stats.sub_calls
            calls_before = run.stats.sub_calls
        if labeling.max_vote_calls(len(todo), voting) > left:
            voting = False  # one pass still fits: labels without the vote beat none
        if labeling.max_vote_calls(len(todo), voting) > left:
            raise RuntimeError(
                f"labelling {len(todo)} different items takes {labeling.batch_count(len(todo))} "
                "sub-calls "
                f"({labeling.ITEMS_PER_CALL} items each) but {left} are left; classify fewer "
                "items, e.g. only the part of each line the label depends on"
            )

        def label_groups(groups: list[list[str]]) -> list[list[str | None]]:
            calls = [
                _SubRequest(
                    labeling.messages(group, request),
                    labeling.max_tokens(len(group), request.labels),
                    labeling.grammar(len(group), request.labels),
                    labelling=True,
                )
                for group in groups
            ]
            replies = self._sub_calls(calls, depth, run)
            return [
                labeling.parse(reply, len(group), request.labels)
                for group, reply in zip(groups, replies, strict=True)
            ]

        found = labeling.vote(todo, label_groups, voting) if todo else {}
        known.update((text, label) for text, label in found.items() if label)
        result = [known.get(labeling.item_text(item)) for item in request.items]
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

    def _sub_calls(self, requests: list[_SubRequest], depth: int, run: _Run) -> list[str]:
        """Several sub-calls: concurrent when the sub-model is served by endpoints that allow it
        (a local llama.cpp model runs one at a time). A failed call becomes an error string in
        its slot; the others are kept."""
        model = self._model_for(requests[0]) if requests else self.sub
        parallelism = min(getattr(model, "parallelism", 1), len(requests))
        started = time.monotonic()
        try:
            if parallelism <= 1:
                return [self._ask_sub(r, depth, run) for r in requests]

            def one(request: _SubRequest) -> str:
                try:
                    return self._ask_sub(request, depth, run)
                except RlmLocalError as exc:
                    return f"[llm_query error: {exc}]"

            with ThreadPoolExecutor(max_workers=parallelism) as pool:
                return list(pool.map(one, requests))
        finally:  # the batch's wall time: its calls overlap when they run concurrently
            if requests:
                run.sub_calls_took(_role(requests[0]), time.monotonic() - started)

    def _model_for(self, request: _SubRequest) -> ChatModel:
        return self.labeller if request.labelling else self.sub

    def _charge_sub_call(self, run: _Run) -> None:
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

    def _sub_call(self, request: _SubRequest, depth: int, run: _Run) -> str:
        """One sub-call on its own (not in a batch), its wall time counted as sub-call time."""
        started = time.monotonic()
        try:
            return self._ask_sub(request, depth, run)
        finally:
            run.sub_calls_took(_role(request), time.monotonic() - started)

    def _ask_sub(self, request: _SubRequest, depth: int, run: _Run) -> str:
        self._charge_sub_call(run)
        started = time.monotonic()
        prompt = request.messages[-1]["content"]
        try:
            call = cached_chat(
                self._model_for(request),
                self.cache,
                request.messages,
                max_tokens=request.max_tokens,
                grammar=request.grammar,
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
        run.count(call, _role(request))
        text = call.completion.text.strip()
        run.emit(
            {
                "type": "sub_call",
                "depth": depth,
                "model": _role(request),
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

    @staticmethod
    def _turn_event(
        depth: int,
        turn: int,
        call: CachedCompletion,
        code: str | None = None,
        resampled: bool = False,
    ) -> dict:
        event = {
            "type": "repeat" if resampled else "turn",
            "depth": depth,
            "turn": turn,
            "cached": call.cached,
            "cacheable": call.cacheable,
            "prompt_tokens": call.completion.prompt_tokens,
            "completion_tokens": call.completion.completion_tokens,
            "seconds": round(call.completion.seconds, 3) if not call.cached else 0.0,
            **CallSplit.of(call).event_fields(),
        }
        if code is not None:
            event["code"] = code
        else:
            event["text"] = call.completion.text
        return event


class _Session:
    """One RLM run at one depth: the root conversation and what the model has tried so far."""

    def __init__(
        self,
        engine: Engine,
        question: str,
        context: str | dict[str, str],
        depth: int,
        run: _Run,
        box: Sandbox,
        seed: int | None = None,
        first_turn: int = 1,
    ) -> None:
        self.engine, self.question, self.context = engine, question, context
        self.depth, self.run, self.box = depth, run, box
        self.seed = seed  # a play after the greedy one: its first program is sampled with it
        self.turn = first_turn  # the number the next turn takes (plays are numbered on)
        self.messages: list[dict[str, str]] = []
        self.seen_code: dict[str, str | None] = {}  # code already run -> the error it raised
        self.stuck_turns = 0  # turns whose code, after resampling, had already run
        self.sent_back: set[str] = set()  # the checks.review checks that sent an answer back
        self.last_final: str | None = None  # a sent-back answer, kept if nothing better comes
        self.sent_back_code: set[str] = set()  # cells whose FINAL went back: said again, it stands
        self.sent_back_answers: dict[str, str] = {}  # an answer sent back (_said) -> the check
        self.outputs: list[str] = []  # what the cells printed (the first search's passages not)
        self.values_seen = False  # has the model read printed output of its own code yet?
        self.shown: list[str] = []  # the outputs the model was shown, for checks.review
        self.cut_off = False  # did the last cell run past root_max_tokens?

    def first_search(self) -> str:
        """Before the first turn, a search of the input for the whole question (BM25: no word
        picked from it), so a fact that stands in one passage is in view at once. Returns the
        output to show, or "" when nothing matched."""
        code = prompts.first_search_cell(self.question)
        self.run.emit({"type": "first_step", "depth": self.depth, "turn": 0, "code": code})
        result = self.engine._execute(self.box, code, self.depth, 0, self.run)
        self.seen_code[code] = result.error
        if result.error or not result.output.strip() or result.output.startswith("(no piece"):
            return ""
        self.shown.append(result.output)
        return result.output

    def play(self, first_message: str) -> str | None:
        """The turn cycle: the root model writes a cell, the sandbox runs it, and the output (or
        the reason an answer was sent back) is the next message, until an answer is accepted."""
        self.messages = [
            {"role": "system", "content": prompts.root_system()},
            {"role": "user", "content": first_message},
        ]
        for step in range(1, self.engine.options.max_turns + 1):
            turn, self.turn = self.turn, self.turn + 1
            reason = self._last_turn_reason(step)
            if reason:
                self.messages[-1]["content"] += "\n\n" + prompts.last_turn(self.question, reason)
            started = time.monotonic()
            code = self._next_code(turn, last=bool(reason))
            self.messages.append(
                {"role": "assistant", "content": prompts.CODE_PREFIX + code + "\n" + CODE_END}
            )
            answer, feedback = self._step(code, turn, last=bool(reason))
            self.run.last_step_seconds = time.monotonic() - started
            if answer is not None:
                return answer
            if reason:
                break
            self.messages.append({"role": "user", "content": feedback})
        return self.last_final

    def _last_turn_reason(self, step: int) -> str | None:
        reason = self.engine._last_turn_reason(step, self.run)
        if not reason and self.stuck_turns >= STUCK_LIMIT:
            reason = "You keep writing code that already ran."
        return reason

    def _root_call(
        self,
        turn: int,
        temperature: float = 0.0,
        seed: int | None = None,
        final: bool = False,
        messages: list[dict[str, str]] | None = None,
    ) -> CachedCompletion:
        try:
            call = self.engine._root_turn(messages or self.messages, temperature, seed, final)
        except ContextOverflowError:
            # The conversation outgrew the window: keep the task and the latest exchange, and
            # ask for the answer. The prefix cache is lost, the run is not.
            latest = self.messages[-1]["content"][-4000:]
            reason = prompts.last_turn(self.question, "The conversation is too long to go on.")
            latest_turn = {"role": "user", "content": f"{latest}\n\n{reason}"}
            self.messages = [*self.messages[:2], *self.messages[-2:-1], latest_turn]
            self.run.emit({"type": "compacted", "depth": self.depth, "turn": turn})
            call = self.engine._root_turn(self.messages, temperature, seed, final)
        self.run.count(call, "root")
        self.run.stats.turns += 1
        return call

    def _next_code(self, turn: int, last: bool = False) -> str:
        """The root model's next cell; code that already ran is resampled at rising temperatures
        (seeded, so still cacheable): greedy decoding of a small model loops on one cell."""
        if self.seed is not None:  # a later play's first program; its other turns are greedy
            call = self._root_call(turn, PLAY_TEMPERATURE, seed=self.seed)
            self.seed = None
        else:
            call = self._root_call(turn)
        code = prompts.extract_code(call.completion.text)
        for temperature in RESAMPLE_TEMPERATURES:
            if self._is_new(code) or self.run.out_of_time():
                break  # out of time, the repeat is answered by the next message instead
            self.run.emit(Engine._turn_event(self.depth, turn, call, code=code, resampled=True))
            call = self._root_call(turn, temperature, seed=turn, messages=self._without(code))
            self.run.stats.turns -= 1  # a resample is the same turn
            code = prompts.extract_code(call.completion.text)
        self.stuck_turns += not self._is_new(code)
        if last and self.last_final is None and not prompts.calls_final(code):
            self.run.emit(Engine._turn_event(self.depth, turn, call, code=code, resampled=True))
            call, code = self._forced_final(turn)
        self.run.emit(Engine._turn_event(self.depth, turn, call, code=code))
        self.cut_off = call.completion.finish_reason == "length"
        return code

    def _without(self, code: str) -> list[dict[str, str]] | None:
        """The conversation to resample a repeat of failed code from: the exchanges that ran it
        left out and what it raised told in words (prompts.failed_before). None for code that
        ran cleanly: its output is what the model must read."""
        error = self.seen_code.get(code)
        if not error:
            return None
        cell = prompts.CODE_PREFIX + code + "\n" + CODE_END
        kept: list[dict[str, str]] = []
        for message in self.messages:
            if kept and kept[-1]["content"] == cell:
                kept.pop()  # the failed cell, and now the feedback on it
            else:
                kept.append(message)
        told = f"{kept[-1]['content']}\n\n{prompts.failed_before(error)}"
        return [*kept[:-1], {**kept[-1], "content": told}]

    def _is_new(self, code: str) -> bool:
        """Code not run yet, or a FINAL that went back, said again: the model's second word."""
        return code not in self.seen_code or code in self.sent_back_code

    def _forced_final(self, turn: int) -> tuple[CachedCompletion, str]:
        """The last turn asked again with the reply begun as `FINAL(`: the model still chooses
        the answer (a value or a variable of its cells), and the run ends with its best answer
        instead of none."""
        call = self._root_call(turn, final=True)
        self.run.stats.turns -= 1  # the same turn, asked again
        code = prompts.extract_code(call.completion.text)
        return call, code if prompts.calls_final(code) else prompts.FINAL_PREFIX + code

    def _step(self, code: str, turn: int, last: bool) -> tuple[str | None, str]:
        """Run one cell: (the accepted answer, or None and the message that goes back)."""
        if not code.strip():
            return None, prompts.error_turn("your reply had no code.", "")
        if not self._is_new(code):
            failed_with = self.seen_code[code]
            if failed_with:
                return None, prompts.repeat_error_turn(failed_with)
            return None, prompts.repeat_turn(self.question)
        calls_before = self.run.stats.sub_calls
        result = self.engine._execute(self.box, code, self.depth, turn, self.run, self.context)
        self.seen_code[code] = result.error
        seen = self.values_seen or self.run.stats.sub_calls != calls_before
        self.values_seen = self.values_seen or bool(result.output.strip())
        self.shown.append(result.output)
        self.outputs.append(result.output)
        if result.final is None:
            if result.error and self.cut_off:
                limit = self.engine.options.root_max_tokens
                return None, prompts.cut_off_turn(result.error, result.output, limit)
            if result.error:
                return None, prompts.error_turn(result.error, result.output)
            return None, prompts.output_turn(self.question, result.output)
        return self._judge(code, result, seen, last)

    def _judge(
        self, code: str, result: CellResult, seen: bool, last: bool
    ) -> tuple[str | None, str]:
        """Accept a FINAL, or send it back with what is wrong (checks.review): each check at
        most once, MAX_SENT_BACK answers in a run."""
        answer = result.final or ""
        shown = "\n".join(self.shown)
        earlier = tuple(c for c in self.seen_code if c != code)
        look = self.messages[1]["content"]
        cell = checks.FinalCell(
            answer, self.question, code, result, seen, shown, earlier, look, self.context
        )
        if last or len(self.sent_back) >= MAX_SENT_BACK:
            return self._said_again(cell), ""
        passed = frozenset(self.sent_back) | frozenset(self.engine.options.skip_checks)
        verdict = checks.review(cell, passed)
        if verdict is None:
            return self._said_again(cell), ""
        self.sent_back.add(verdict.check)
        self.sent_back_code.add(code)
        self.sent_back_answers.setdefault(_said(answer), verdict.check)
        self.last_final = answer
        self.run.emit(
            {
                "type": "sent_back",
                "depth": self.depth,
                "answer": answer,
                "check": verdict.check,
                "why": verdict.message,
            }
        )
        return None, verdict.message

    def _said_again(self, cell: checks.FinalCell) -> str:
        """An answer a check sent back, said again, stands unless a fresh reading of what the
        cells printed (Engine._reread) gives another that stands in that output and passes the
        check: asked to leave out the date it named, the 1.5B model printed the dates ranked and
        named the first one again, with the right one in view."""
        check = self.sent_back_answers.get(_said(cell.answer))
        outputs = "\n".join(output for output in self.outputs if output.strip())
        if check is None or not outputs or self.run.out_of_time():
            return cell.answer
        outputs = outputs[-REREAD_CHARS:]
        read = self.engine._reread(self.question, cell.answer, outputs, self.depth, self.run)
        if read is None or _said(read) == _said(cell.answer):
            return cell.answer
        if checks.CHECKS[check](replace(cell, answer=read)) is not None:
            return cell.answer
        return read


def _said(answer: str) -> str:
    """An answer as said, whatever its case, spacing and quotes."""
    return " ".join(answer.lower().split()).strip(" .'\"")
