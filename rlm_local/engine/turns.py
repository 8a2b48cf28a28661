"""The root model's code turns at one depth: it writes a cell, the sandbox runs it, the output is
the next message, until a FINAL answer passes the checks (checks.py) or the budgets end the play.

The root conversation only ever grows (system prompt, then turns appended), so llama.cpp
re-evaluates only the new suffix each turn.
"""

from __future__ import annotations

import time
from dataclasses import replace

from rlm_local.cache import CachedCompletion
from rlm_local.engine import checks, patterns, prompts
from rlm_local.engine.root_calls import RootCalls
from rlm_local.engine.run_state import RunState, turn_event
from rlm_local.errors import ContextOverflowError
from rlm_local.sandbox import CellResult, Sandbox

RESAMPLE_TEMPERATURES = (0.7, 1.0, 1.3)  # tried in turn until the code is new
STUCK_LIMIT = 2  # turns that only repeated old code before the model must answer
REREAD_CHARS = 3000  # the tail of the cells' printed output a fresh reading sees
MAX_SENT_BACK = 2  # FINAL answers sent back by checks.review in one run (each costs a turn)
PLAY_TEMPERATURE = 0.7  # the first program of each play after the greedy one
CODE_END = prompts.CODE_STOP


def run_cell(
    sandbox: Sandbox,
    code: str,
    depth: int,
    turn: int,
    run: RunState,
    context: str | dict[str, str] | None = None,
) -> CellResult:
    """Run a cell; with the context, its output ends with a note on the patterns it wrote
    that match no line of the input (patterns.py)."""
    with run.lock:
        bridge_before = run.timing.bridge_so_far(depth)
    result = sandbox.run(code)
    with run.lock:
        run.timing.cell(depth, result.seconds, bridge_before)
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


class TurnSession:
    """One play of the code turns at one depth: the root conversation and what the model has
    tried so far."""

    def __init__(
        self,
        root: RootCalls,
        question: str,
        context: str | dict[str, str],
        depth: int,
        run: RunState,
        box: Sandbox,
        seed: int | None = None,
        first_turn: int = 1,
    ) -> None:
        self.root, self.question, self.context = root, question, context
        self.depth, self.run, self.box = depth, run, box
        self.options = run.options
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

    def replay(self, seed: int) -> TurnSession:
        """A later play of the same question in the same sandbox, its first program sampled
        with `seed` and its turns numbered on from this one's."""
        return TurnSession(
            self.root,
            self.question,
            self.context,
            self.depth,
            self.run,
            self.box,
            seed,
            self.turn,
        )

    def first_search(self) -> str:
        """Before the first turn, a search of the input for the whole question (BM25: no word
        picked from it), so a fact that stands in one passage is in view at once. Returns the
        output to show, or "" when nothing matched."""
        code = prompts.first_search_cell(self.question)
        self.run.emit({"type": "first_step", "depth": self.depth, "turn": 0, "code": code})
        result = run_cell(self.box, code, self.depth, 0, self.run)
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
        for step in range(1, self.options.max_turns + 1):
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
        reason = self.run.last_turn_reason(step)
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
            call = self.root.turn(messages or self.messages, temperature, seed, final)
        except ContextOverflowError:
            # The conversation outgrew the window: keep the task and the latest exchange, and
            # ask for the answer. The prefix cache is lost, the run is not.
            latest = self.messages[-1]["content"][-4000:]
            reason = prompts.last_turn(self.question, "The conversation is too long to go on.")
            latest_turn = {"role": "user", "content": f"{latest}\n\n{reason}"}
            self.messages = [*self.messages[:2], *self.messages[-2:-1], latest_turn]
            self.run.emit({"type": "compacted", "depth": self.depth, "turn": turn})
            call = self.root.turn(self.messages, temperature, seed, final)
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
            self.run.emit(turn_event(self.depth, turn, call, code=code, resampled=True))
            call = self._root_call(turn, temperature, seed=turn, messages=self._without(code))
            self.run.stats.turns -= 1  # a resample is the same turn
            code = prompts.extract_code(call.completion.text)
        self.stuck_turns += not self._is_new(code)
        if last and self.last_final is None and not prompts.calls_final(code):
            self.run.emit(turn_event(self.depth, turn, call, code=code, resampled=True))
            call, code = self._forced_final(turn)
        self.run.emit(turn_event(self.depth, turn, call, code=code))
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
        result = run_cell(self.box, code, self.depth, turn, self.run, self.context)
        self.seen_code[code] = result.error
        seen = self.values_seen or self.run.stats.sub_calls != calls_before
        self.values_seen = self.values_seen or bool(result.output.strip())
        self.shown.append(result.output)
        self.outputs.append(result.output)
        if result.final is None:
            if result.error and self.cut_off:
                limit = self.options.root_max_tokens
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
        passed = frozenset(self.sent_back) | frozenset(self.options.skip_checks)
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
        cells printed (RootCalls.reread) gives another that stands in that output and passes the
        check: a small model asked to leave out a value it named can name it again with the
        right one in view."""
        check = self.sent_back_answers.get(_said(cell.answer))
        outputs = "\n".join(output for output in self.outputs if output.strip())
        if check is None or not outputs or self.run.out_of_time():
            return cell.answer
        outputs = outputs[-REREAD_CHARS:]
        read = self.root.reread(self.question, cell.answer, outputs, self.depth, self.run)
        if read is None or _said(read) == _said(cell.answer):
            return cell.answer
        if checks.CHECKS[check](replace(cell, answer=read)) is not None:
            return cell.answer
        return read


def _said(answer: str) -> str:
    """An answer as said, whatever its case, spacing and quotes."""
    return " ".join(answer.lower().split()).strip(" .'\"")
