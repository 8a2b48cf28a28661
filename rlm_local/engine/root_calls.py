"""The root model's calls: a code turn's reply, a direct answer, and readings of passages or of
the cells' printed output (reading.py). Each is counted in the question's RunState."""

from __future__ import annotations

from rlm_local.cache import CachedCompletion, CallCache, cached_chat
from rlm_local.engine import prompts, reading
from rlm_local.engine.options import RunOptions
from rlm_local.engine.run_state import RunState, turn_event
from rlm_local.errors import ContextOverflowError
from rlm_local.models.contract import ChatModel, Sampling

READ_SAMPLE_TEMPERATURE = 0.8  # the probe of docs/design.md used this


class RootCalls:
    """The root model with the cache and the options its calls are made under."""

    def __init__(self, root: ChatModel, cache: CallCache | None, options: RunOptions) -> None:
        self.root = root
        self.cache = cache
        self.options = options

    def turn(
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
            Sampling(
                max_tokens=self.options.root_max_tokens,
                temperature=temperature,
                stop=(prompts.CODE_STOP,),
                grammar=prompts.ROOT_GRAMMAR if grammar else None,
                seed=seed,
                assistant_prefix=prompts.CODE_PREFIX + (prompts.FINAL_PREFIX if final else ""),
            ),
        )

    def direct(self, messages: list[dict[str, str]], run: RunState) -> str:
        """The answer to the question asked with the whole input (mode direct)."""
        try:
            call = cached_chat(
                self.root, self.cache, messages, Sampling(max_tokens=self.options.root_max_tokens)
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
        run.emit(turn_event(0, 1, call))
        return call.completion.text.strip()

    def read(
        self,
        question: str,
        passages: str,
        context: str | dict[str, str],
        depth: int,
        run: RunState,
    ) -> reading.Reading:
        """The root model reads the first search's passages (reading.py); its answer counts when
        it is copied from them and is no value many records share, else the code turns begin."""
        call = self._reading_call(reading.read_messages(question, passages), run)
        if call is None:  # passages larger than the window: code goes on
            return reading.Reading()
        event = turn_event(depth, 0, call)
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

    def reread(
        self, question: str, said: str, outputs: str, depth: int, run: RunState
    ) -> str | None:
        """The code turns' printed output read afresh by the root model, as the first reader
        reads passages: its answer when copied from that output, else None."""
        call = self._reading_call(reading.reread_messages(question, outputs), run)
        if call is None:
            return None
        cut = call.completion.finish_reason == "length"
        answer = None if cut else reading.grounded_answer(call.completion.text, outputs)
        event = turn_event(depth, 0, call)
        event.update(type="reread", said=said, answer=answer)
        run.emit(event)
        return answer

    def _reading_call(
        self, messages: list[dict[str, str]], run: RunState
    ) -> CachedCompletion | None:
        """One greedy reading by the root model, counted as a turn; None when it overflows."""
        try:
            call = cached_chat(
                self.root, self.cache, messages, Sampling(max_tokens=self.options.read_max_tokens)
            )
        except ContextOverflowError:
            return None
        run.count(call, "root")
        run.stats.turns += 1
        return call

    def _sample_readings(self, question: str, passages: str, run: RunState) -> list[str | None]:
        """The grounded answers of seeded readings at temperature (cached like greedy ones)."""
        answers = []
        for seed in range(1, self.options.read_samples + 1):
            call = cached_chat(
                self.root,
                self.cache,
                reading.read_messages(question, passages),
                Sampling(
                    max_tokens=self.options.read_max_tokens,
                    temperature=READ_SAMPLE_TEMPERATURE,
                    seed=seed,
                ),
            )
            run.count(call, "root")
            answers.append(reading.grounded_answer(call.completion.text, passages))
        return answers
