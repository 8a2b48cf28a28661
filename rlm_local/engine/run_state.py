"""A question's bookkeeping across its depths: the clock, the counts, the timing and the events.

Every other part of the engine is handed the RunState of its question; none keeps counts itself.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from rlm_local.cache import CachedCompletion
from rlm_local.engine.options import RunOptions, RunStats
from rlm_local.engine.timing import CallSplit, Role, TimingLedger

Listener = Callable[[dict[str, Any]], None]


class RunState:
    """State of one question across its depths: counters, clock and event fan-out."""

    def __init__(self, options: RunOptions, listeners: list[Listener]) -> None:
        self.options = options
        self.listeners = listeners
        self.stats = RunStats()
        self.started = time.monotonic()
        self.lock = threading.RLock()  # sub-calls of a batch may run in threads
        # classify's labels so far: (labels, instruction) -> item text -> label
        self.labels: dict[tuple[tuple[str, ...], str], dict[str, str]] = {}
        self.timing = TimingLedger()
        self.last_step_seconds = 0.0  # the latest root turn with its cell: the next takes as long

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self, reserve: float = 0.0) -> bool:
        """Past max_seconds, or (with `reserve`) too close to it for a step that long."""
        return self.elapsed() + reserve > self.options.max_seconds

    def last_turn_reason(self, turn: int) -> str | None:
        """Why turn number `turn` of a play must be its last, or None while budgets remain."""
        if turn == self.options.max_turns:
            return "This is your last turn."
        if self.out_of_time(reserve=self.last_step_seconds):
            return "Time is up."  # the last turn ends the run near max_seconds, not a turn past
        if self.stats.sub_calls >= self.options.max_sub_calls:
            return "No llm_query calls are left."
        return None

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


def turn_event(
    depth: int,
    turn: int,
    call: CachedCompletion,
    code: str | None = None,
    resampled: bool = False,
) -> dict:
    """The event of a root model reply: a code turn, its resample, a reading or a direct answer."""
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
