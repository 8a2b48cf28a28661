"""Where a run's seconds go: model calls by phase, sandbox cells, and sub-model calls.

Only calls a model actually made count: a call served from the call cache carries the numbers
of the run that computed it, so it adds nothing here. See docs/design.md ("Where a run's seconds
go") for what each key means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from rlm_local.cache import CachedCompletion

Role = Literal["root", "sub", "labeller"]
DECIMALS = 3


def _rounded(record: CallSplit | RunTiming) -> dict[str, float | int]:
    """A record's fields for JSON, seconds to the millisecond."""
    return {
        key: round(value, DECIMALS) if isinstance(value, float) else value
        for key, value in asdict(record).items()
    }


@dataclass(frozen=True)
class CallSplit:
    """One model call's seconds and prompt tokens by phase; all 0 for a cached call."""

    load_s: float = 0.0
    prompt_eval_s: float = 0.0
    generation_s: float = 0.0
    evaluated_tokens: int = 0
    restored_tokens: int = 0

    @classmethod
    def of(cls, call: CachedCompletion) -> CallSplit:
        """A model that reports only its total (a remote server: its time is network and
        server work we cannot split) has that total counted as generation."""
        if call.cached:
            return cls()
        c = call.completion
        phases = (c.load_seconds, c.prompt_eval_seconds, c.generation_seconds)
        if not any(phases):
            phases = (0.0, 0.0, c.seconds)
        return cls(*phases, c.evaluated_tokens, c.restored_tokens)

    def event_fields(self) -> dict[str, float | int]:
        """What a turn, read or sub_call event records of its call."""
        return _rounded(self)


@dataclass
class RunTiming:
    """Seconds of a run (or of one model role in it) by where they went; see module doc."""

    load_s: float = 0.0
    prompt_eval_s: float = 0.0
    prompt_tokens: int = 0  # prompt tokens the model evaluated, not the prompts' length
    restored_tokens: int = 0  # prompt tokens restored from the on-disk prefix cache
    generation_s: float = 0.0
    sandbox_s: float = 0.0  # in cells, less the time the cells waited on bridge calls
    sub_calls_s: float = 0.0  # wall time of sub-model calls (a batch counts once)

    def add_call(self, split: CallSplit) -> None:
        self.load_s += split.load_s
        self.prompt_eval_s += split.prompt_eval_s
        self.generation_s += split.generation_s
        self.prompt_tokens += split.evaluated_tokens
        self.restored_tokens += split.restored_tokens

    def to_dict(self) -> dict[str, float | int]:
        return _rounded(self)


@dataclass
class TimingLedger:
    """A run's timing as it goes: the whole run, each model role, and the bridge time of the
    cell running at each depth. Not locked itself: `RunState.lock` (run_state.py) guards it."""

    total: RunTiming = field(default_factory=RunTiming)
    by_role: dict[str, RunTiming] = field(default_factory=dict)
    bridge_s: dict[int, float] = field(default_factory=dict)  # depth -> seconds so far

    def _role(self, role: Role) -> RunTiming:
        return self.by_role.setdefault(role, RunTiming())

    def model_call(self, role: Role, split: CallSplit) -> None:
        self.total.add_call(split)
        self._role(role).add_call(split)

    def sub_calls(self, role: Role, seconds: float) -> None:
        self.total.sub_calls_s += seconds
        self._role(role).sub_calls_s += seconds

    def bridge(self, depth: int, seconds: float) -> None:
        """A bridge call (llm_query, classify, rlm_query, ...) made by the cell at `depth`."""
        self.bridge_s[depth] = self.bridge_s.get(depth, 0.0) + seconds

    def bridge_so_far(self, depth: int) -> float:
        return self.bridge_s.get(depth, 0.0)

    def cell(self, depth: int, seconds: float, bridge_before: float) -> None:
        """A cell at `depth` took `seconds`, bridge calls included; `bridge_before` was
        bridge_so_far(depth) when it started. Its bridge calls are sub-calls or a nested run,
        counted where they belong; clamped at 0, as the two clocks differ by a little."""
        bridge = self.bridge_so_far(depth) - bridge_before
        self.total.sandbox_s += max(0.0, seconds - bridge)

    def by_model(self) -> dict[str, dict[str, float | int]]:
        """The roles that were used, root first."""
        order = ("root", "sub", "labeller")
        return {role: self.by_role[role].to_dict() for role in order if role in self.by_role}
