"""The RLM loop: the root model writes code, the sandbox runs it, the output becomes the next turn.

The root conversation only ever grows (system prompt, then turns appended), so llama.cpp
re-evaluates only the new suffix each turn. Every model call goes through the cache.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from rlm_local.cache import CachedCompletion, CallCache, ChatModel, cached_chat
from rlm_local.engine import labels as labeling
from rlm_local.engine import prompts
from rlm_local.engine.carryover import Carryover
from rlm_local.errors import ContextOverflowError, RlmLocalError
from rlm_local.sandbox import CellResult, Sandbox, SandboxLimits

Listener = Callable[[dict[str, Any]], None]
RESAMPLE_TEMPERATURES = (0.7, 1.0, 1.3)  # tried in turn until the code is new
STUCK_LIMIT = 2  # turns that only repeated old code before the model must answer
Mode = Literal["auto", "rlm", "direct"]


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
    read_max_tokens: int = 64  # the root model reading the first step's output: a short fact
    vote_labels: bool = True  # classify labels each text in up to 3 batches (labels.vote)
    root_grammar: bool = False  # root turns under prompts.ROOT_GRAMMAR
    output_chars: int = 2000  # a cell's printed output shown to the root model
    direct_max_tokens: int = 3000  # mode auto: inputs up to this size are answered directly
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("stats"))
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


@dataclass(frozen=True)
class _FirstStep:
    """Code the engine runs before the first turn, and how its output is introduced."""

    code: str
    labelling: bool = False  # the labelling of records, rather than a search
    named_rows: str | None = None  # in words: the rows the question names, counted apart
    label: str | None = None  # the label the question names, if it names one (labelling)
    pairs: labeling.PairRequest | None = None  # the field values grouped by labels (labelling)

    def readable(self, question: str, output: str) -> bool:
        """Whether a search found a piece that may hold a one-fact answer, to be read as text."""
        return (
            not self.labelling and prompts.is_lookup(question) and not prompts.found_nothing(output)
        )

    def introduce(self, output: str) -> str:
        if self.labelling:
            return prompts.labelling_done(output, self.named_rows, self.label, self.pairs)
        return prompts.search_done(self.code, output)


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

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self) -> bool:
        return self.elapsed() > self.options.max_seconds

    def emit(self, event: dict[str, Any]) -> None:
        event.setdefault("elapsed", round(self.elapsed(), 2))
        with self.lock:
            for listener in self.listeners:
                listener(event)

    def count(self, call: CachedCompletion) -> None:
        with self.lock:
            self._count(call)

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
                "context": prompts.describe_context(context, labeling.context_record_keys(context)),
                "options": asdict(self.options),
            }
        )
        if mode == "direct":
            answer = self._direct(question, context, run)
        else:
            answer = prompts.as_yes_no(question, self._rlm(question, context, depth=0, run=run))
        result = RunResult(
            answer=answer,
            status="answered" if answer is not None else "no_answer",
            mode=mode,
            question=question,
            seconds=round(run.elapsed(), 2),
            stats=run.stats,
        )
        run.emit({"type": "run_end", **result.to_dict()})
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
        run.count(call)
        run.stats.turns += 1
        run.emit(self._turn_event(0, 1, call))
        return call.completion.text.strip()

    def _rlm(
        self, question: str, context: str | dict[str, str], depth: int, run: _Run
    ) -> str | None:
        opts = self.options
        limits = SandboxLimits(**{**asdict(opts.sandbox), "output_chars": opts.output_chars})
        bridge = self._bridge(question, depth, run)
        record_keys = labeling.context_record_keys(context)
        description = prompts.describe_context(context, record_keys)
        seen_code: dict[str, str | None] = {}  # code already run -> the error it raised
        pushed_back = False  # a FINAL that gave nothing was sent back (once a run)
        stuck_turns = 0  # turns whose code, after resampling, had already run
        last_final: str | None = None  # a pushed-back answer, kept if nothing better comes
        values_seen = False  # has the model seen printed output of code it wrote yet?
        with self.carryover.opener(depth)(context, bridge, limits) as sandbox:
            searched = ""
            first_step = self._first_step(question, context, record_keys)
            if first_step is not None:
                # Run the obvious first step before the first turn: the model reads its output
                # instead of guessing (and then anchoring on its guess: `sort=None` kept after
                # `sort=-1` was shown; labels "found" in visible fields), and a found needle
                # costs no turn.
                code = first_step.code
                run.emit({"type": "first_step", "depth": depth, "turn": 0, "code": code})
                result = self._execute(sandbox, code, depth, 0, run)
                seen_code[code] = result.error
                if result.error is None and result.output.strip():
                    if first_step.readable(question, result.output):
                        answer = self._read(question, result.output, depth, run)
                        if answer is not None:
                            return answer
                    searched = first_step.introduce(result.output)
            # The records example (classify every line, print the counts) is what the first
            # step ran: shown after it, the 1.5B model ran it again (and looped on it) instead
            # of reading the counts.
            labelled = first_step is not None and first_step.labelling
            records_example = bool(record_keys) and not labelled
            messages = [
                {"role": "system", "content": prompts.root_system(records=records_example)},
                {
                    "role": "user",
                    "content": self.carryover.preface(
                        depth, prompts.first_turn(question, description, searched)
                    ),
                },
            ]
            for turn in range(1, opts.max_turns + 1):
                reason = self._last_turn_reason(turn, run)
                if stuck_turns >= STUCK_LIMIT and not reason:
                    reason = "You keep writing code that already ran."
                if reason:
                    messages[-1]["content"] += "\n\n" + prompts.last_turn(question, reason)
                try:
                    call = self._root_turn(messages)
                except ContextOverflowError:
                    # The conversation outgrew the window: keep the task and the latest exchange,
                    # and ask for the answer. The prefix cache is lost, the run is not.
                    reason = "The conversation is too long to go on."
                    messages = messages[:2] + messages[-2:]
                    messages[-1] = {
                        "role": "user",
                        "content": messages[-1]["content"][-4000:]
                        + "\n\n"
                        + prompts.last_turn(question, reason),
                    }
                    run.emit({"type": "compacted", "depth": depth, "turn": turn})
                    call = self._root_turn(messages)
                run.count(call)
                run.stats.turns += 1
                code = prompts.extract_code(call.completion.text)
                for temperature in RESAMPLE_TEMPERATURES:
                    if code not in seen_code:
                        break
                    # Greedy decoding of a small model loops on the same cell; seeded (so still
                    # cacheable) samples at rising temperatures break most loops.
                    run.emit(self._turn_event(depth, turn, call, code=code, resampled=True))
                    call = self._root_turn(messages, temperature=temperature, seed=turn)
                    run.count(call)
                    code = prompts.extract_code(call.completion.text)
                stuck_turns += code in seen_code
                event = self._turn_event(depth, turn, call, code=code)
                run.emit(event)
                messages.append(
                    {
                        "role": "assistant",
                        "content": prompts.CODE_PREFIX + code + "\n" + prompts.CODE_STOP,
                    }
                )
                if not code.strip():
                    feedback = prompts.error_turn("your reply had no code.", "")
                elif code in seen_code:
                    failed_with = seen_code[code]
                    feedback = (
                        prompts.repeat_error_turn(failed_with)
                        if failed_with
                        else prompts.repeat_turn(question)
                    )
                else:
                    calls_before = run.stats.sub_calls
                    result = self._execute(sandbox, code, depth, turn, run)
                    seen_code[code] = result.error
                    unseen = not values_seen and run.stats.sub_calls == calls_before
                    values_seen = values_seen or bool(result.output.strip())
                    if result.final is not None:
                        # Code alone computed 0 (or nothing) before the model saw any value: a
                        # 1.5B model's first filters and regexes often match nothing, and it
                        # never sees the empty list. Like a "not found", sent back once.
                        unseen_empty = (
                            unseen
                            and prompts.is_empty_result(result.final)
                            and prompts.computes(code)
                        )
                        gave_up = prompts.is_non_answer(result.final)
                        echoed = prompts.echoes_question(result.final, question)
                        # An answer typed in next to a print() was written before the output
                        # existed: the 1.5B model named the first row's label beside counts
                        # that said otherwise.
                        unread = bool(result.output.strip()) and prompts.final_is_literal(code)
                        # The first step grouped the pairs; typed in instead, they were the
                        # ids of the rows in view (4 of 5 OOLONG-Pairs-style tasks at f517239).
                        typed_pairs = (
                            first_step is not None
                            and first_step.pairs is not None
                            and prompts.final_typed_in(code)
                        )
                        sent_back = unseen_empty or gave_up or echoed or unread or typed_pairs
                        if pushed_back or reason or not sent_back:
                            return result.final
                        pushed_back = True
                        last_final = result.final
                        if unseen_empty:
                            feedback = prompts.unseen_final_turn(
                                question, result.final, result.output, result.values or ""
                            )
                        elif echoed:
                            feedback = prompts.echo_turn(question, result.final)
                        elif typed_pairs:
                            # `pairs = [...]` typed over the computed ones: computed again.
                            self._execute(sandbox, prompts.PAIRS_CODE, depth, turn, run)
                            feedback = prompts.typed_pairs_turn(question, result.final)
                        elif gave_up:
                            feedback = prompts.non_answer_turn(question, result.final)
                        else:
                            feedback = prompts.unread_output_turn(
                                question, result.final, result.output
                            )
                        messages.append({"role": "user", "content": feedback})
                        continue
                    if result.error:
                        feedback = prompts.error_turn(result.error, result.output)
                    else:
                        feedback = prompts.output_turn(question, result.output)
                if reason:
                    break
                messages.append({"role": "user", "content": feedback})
        return last_final

    @staticmethod
    def _first_step(
        question: str, context: str | dict[str, str], record_keys: list[str]
    ) -> _FirstStep | None:
        """The step a question obviously starts with, if any.

        Counting records by labels the question lists starts with labelling every line (the
        1.5B model instead filtered visible fields for the label and answered 0), and counting
        apart the rows the question names by a field's value; anything else with a searchable
        name starts by looking the name up.
        """
        labels = labeling.question_labels(question)
        if record_keys and labels and isinstance(context, str):
            named = labeling.question_rows(question, context, record_keys)
            pairs = labeling.question_pairs(question, labels, record_keys)
            code = prompts.labelling_cell(labels, record_keys[-1], named, pairs)
            label = labeling.question_label(question, labels)
            return _FirstStep(code, True, named and named.description, label, pairs)
        search = prompts.search_cell(question, context)
        return _FirstStep(search) if search is not None else None

    def _read(self, question: str, output: str, depth: int, run: _Run) -> str | None:
        """The root model reads the first step's output as text; its answer counts when it is
        copied from that output. Reading beats writing code about it for a 1.5B model (see
        prompts.READ_SYSTEM), and a found fact costs one short call instead of a turn."""
        try:
            call = cached_chat(
                self.root,
                self.cache,
                prompts.read_messages(question, output),
                max_tokens=self.options.read_max_tokens,
            )
        except ContextOverflowError:  # an output_chars larger than the window: code goes on
            return None
        run.count(call)
        run.stats.turns += 1
        answer = prompts.grounded_answer(call.completion.text, output)
        event = self._turn_event(depth, 0, call)
        event.update(type="read", accepted=answer is not None)
        run.emit(event)
        return answer

    @staticmethod
    def _execute(sandbox: Sandbox, code: str, depth: int, turn: int, run: _Run) -> CellResult:
        result = sandbox.run(code)
        if run.notices:  # shown with the output, so the model knows what was done for it
            notes = "\n".join(run.notices)
            run.notices.clear()
            result = replace(result, output=f"{notes}\n{result.output}")
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
        self, messages: list[dict[str, str]], temperature: float = 0.0, seed: int | None = None
    ) -> CachedCompletion:
        return cached_chat(
            self.root,
            self.cache,
            messages,
            max_tokens=self.options.root_max_tokens,
            stop=[prompts.CODE_STOP],
            assistant_prefix=prompts.CODE_PREFIX,
            temperature=temperature,
            seed=seed,
            grammar=prompts.ROOT_GRAMMAR if self.options.root_grammar else None,
        )

    def _last_turn_reason(self, turn: int, run: _Run) -> str | None:
        if turn == self.options.max_turns:
            return "This is your last turn."
        if run.out_of_time():
            return "Time is up."
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
            request = labeling.check_request(items, labels, instruction)
            rejoined = labeling.rejoin_labels(request.labels, question)
            if rejoined != request.labels:
                # "one of: description and abstract concept, entity": code that split the list
                # on "and" would count two labels that do not exist.
                joined = [label for label in rejoined if label not in request.labels]
                run.notices.append(
                    f"(classify: the question lists {', '.join(map(repr, joined))} as one label, "
                    "so it was used as one.)"
                )
                request = replace(request, labels=rejoined)
            return self._classify(request, depth, run)

        def rlm_query(question: Any, piece: Any) -> str:
            if depth + 1 > self.options.max_depth:
                body = piece if isinstance(piece, str) else json.dumps(piece, ensure_ascii=False)
                return self._sub_call(self._query(f"{body}\n\nQuestion: {question}"), depth, run)
            answer = self._rlm(str(question), _as_context(piece), depth + 1, run)
            return answer if answer is not None else "(no answer found)"

        return {
            "llm_query": llm_query,
            "call_llm": llm_query,
            "llm_query_batched": llm_query_batched,
            "classify": classify,
            "rlm_query": rlm_query,
        }

    def _query(self, prompt: str) -> _SubRequest:
        return _SubRequest(prompts.sub_messages(prompt), self.options.sub_max_tokens)

    def _classify(self, request: labeling.LabelRequest, depth: int, run: _Run) -> list[str | None]:
        field = labeling.record_field(request.items)
        if field is not None:
            # Whole records ("Date: … || User: … || Text: …") are each different, so every line
            # would cost a share of a call; their label is decided by the free-text field, which
            # repeats. Label that, once per different text, and say so in the cell's output.
            narrowed = replace(
                request, items=[labeling.field_text(item, field) for item in request.items]
            )
            run.notices.append(
                f"(classify: the items are records, so the text after {field!r} of each was "
                f"labelled: {len(narrowed.distinct)} different texts in {len(request.items)} "
                "records.)"
            )
            return self._classify(narrowed, depth, run)
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
        if parallelism <= 1:
            return [self._sub_call(r, depth, run) for r in requests]

        def one(request: _SubRequest) -> str:
            try:
                return self._sub_call(request, depth, run)
            except RlmLocalError as exc:
                return f"[llm_query error: {exc}]"

        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            return list(pool.map(one, requests))

    def _model_for(self, request: _SubRequest) -> ChatModel:
        return self.labeller if request.labelling else self.sub

    def _sub_call(self, request: _SubRequest, depth: int, run: _Run) -> str:
        with run.lock:
            if run.stats.sub_calls >= self.options.max_sub_calls:
                raise RuntimeError(
                    f"the budget of {self.options.max_sub_calls} sub-calls is used up; "
                    "call FINAL with your best answer"
                )
            if run.out_of_time():
                raise RuntimeError("the time budget is used up; call FINAL with your best answer")
            run.stats.sub_calls += 1
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
        run.count(call)
        text = call.completion.text.strip()
        run.emit(
            {
                "type": "sub_call",
                "depth": depth,
                "model": "labeller" if request.labelling else "sub",
                "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()[:16],
                "prompt": prompt[:20000],
                "prompt_chars": len(prompt),
                "answer": text,
                "cached": call.cached,
                "cacheable": call.cacheable,
                "seconds": round(time.monotonic() - started, 3),
                "prompt_tokens": call.completion.prompt_tokens,
                "completion_tokens": call.completion.completion_tokens,
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
        }
        if code is not None:
            event["code"] = code
        else:
            event["text"] = call.completion.text
        return event
