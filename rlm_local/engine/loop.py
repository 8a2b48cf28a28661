"""The RLM loop: the root model writes code, the sandbox runs it, the output becomes the next turn.

The engine picks the mode, opens the sandbox of each depth with its bridge functions (bridge.py),
reads the first search's passages (root_calls.py), then plays the code turns (turns.py) and
votes among the plays (voting.py). Every model call goes through the cache; a question's clock,
counts and events live in its RunState (run_state.py).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from rlm_local.cache import CallCache
from rlm_local.engine import checks, evidence, prompts, reading, voting
from rlm_local.engine.bridge import SubCalls
from rlm_local.engine.carryover import Carryover
from rlm_local.engine.options import RunOptions, RunResult
from rlm_local.engine.root_calls import RootCalls
from rlm_local.engine.run_state import Listener, RunState
from rlm_local.engine.turns import TurnSession
from rlm_local.models.contract import ChatModel
from rlm_local.sandbox import SandboxLimits


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
        self.root_calls = RootCalls(root, cache, options)
        self.sub_calls = SubCalls(sub, self.labeller, cache, options, nested_run=self._rlm)

    def run(
        self,
        question: str,
        context: str | dict[str, str],
        listeners: list[Listener],
        name: str = "-",
    ) -> RunResult:
        """`name`: the path evidence gives a single text (the file as given, `-` for stdin)."""
        seen = evidence.Recorder()
        run = RunState(self.options, [seen, *listeners])
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
            seen.read_whole(context)
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
            evidence=_evidence(answer, question, context, seen, name, run),
        )
        run.emit({"type": "run_end", **result.to_dict(), "timing_by_model": run.timing.by_model()})
        return result

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

    def _direct(self, question: str, context: str | dict[str, str], run: RunState) -> str:
        messages = prompts.direct_messages(question, context)
        messages[-1]["content"] = self.carryover.preface(0, messages[-1]["content"])
        return self.root_calls.direct(messages, run)

    def _rlm(
        self, question: str, context: str | dict[str, str], depth: int, run: RunState
    ) -> str | None:
        """A question answered by code at `depth` (0 for the top run, more for rlm_query)."""
        opts = self.options
        limits = SandboxLimits(**{**asdict(opts.sandbox), "output_chars": opts.output_chars})
        bridge = self.sub_calls.functions(depth, run)
        description = prompts.describe_context(context)
        with self.carryover.opener(depth)(context, bridge, limits) as box:
            session = TurnSession(self.root_calls, question, context, depth, run, box)
            searched = session.first_search() if self.options.first_search else ""
            found = reading.Reading()
            if searched and self.options.read_first != "off":
                found = self.root_calls.read(question, searched, context, depth, run)
                if self.options.read_first == "answer":
                    if found.answer is not None:
                        return found.answer
                    # No stated answer there: the code turns start without the passages,
                    # which anchored the model on search() (docs/design.md).
                    searched = ""
            first = self.carryover.preface(
                depth, prompts.first_turn(question, description, searched, found.answer)
            )
            return _or_reading(self._vote(session, first), found, question, depth, run)

    def _vote(self, greedy: TurnSession, first_message: str) -> str | None:
        """The code turns played from the greedy first program and, at the top level while the
        answer is unsettled and half the time is left, from sampled ones; most plays' answer."""
        ballot = voting.Ballot(self.options.plays if greedy.depth == 0 else 1)
        ballot.add(greedy.play(first_message))
        run, last = greedy.run, greedy
        while not ballot.settled() and run.elapsed() < self.options.max_seconds / 2:
            last = last.replay(seed=len(ballot.answers))
            ballot.add(last.play(first_message))
        if len(ballot.answers) > 1:
            run.emit({"type": "vote", "depth": greedy.depth, "answers": ballot.answers})
        return ballot.winner()


def _or_reading(
    answer: str | None, found: reading.Reading, question: str, depth: int, run: RunState
) -> str | None:
    """The code turns' answer; when they found none (or only the question), what the reader
    copied from the passages (refused as unsure or as a shared value, still the better)."""
    found_none = answer is None or checks.is_non_answer(answer)
    if found.grounded is None or not (found_none or checks.is_echo(answer, question)):
        return answer
    run.emit({"type": "fallback", "depth": depth, "answer": found.grounded, "code": answer})
    return found.grounded


def _evidence(
    answer: str | None,
    question: str,
    context: str | dict[str, str],
    seen: evidence.Recorder,
    name: str,
    run: RunState,
) -> list[evidence.Evidence]:
    """The answer's evidence; a failure to find it is recorded and must not lose the answer."""
    try:
        return evidence.gather(answer, question, context, seen.observations, name)
    except Exception as exc:  # an aid to the answer, never a reason to lose it
        run.emit({"type": "evidence_error", "error": f"{type(exc).__name__}: {exc}"})
        return []
