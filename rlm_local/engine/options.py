"""What a question is run with (RunOptions) and what it gives back (RunResult with RunStats)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rlm_local.engine import checks
from rlm_local.engine.evidence import Evidence
from rlm_local.engine.timing import RunTiming
from rlm_local.sandbox import SandboxLimits

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
    # (why: docs/design.md).
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
    evidence: list[Evidence] = field(default_factory=list)  # the input's lines the answer rests on

    def to_dict(self) -> dict[str, Any]:
        """What `ask --json` prints: per-model timing is left to the trace's run_end."""
        data = asdict(self)
        data.update(data.pop("stats"))
        data.pop("timing_by_model")
        data["timing"] = self.timing.to_dict()
        data["evidence"] = [item.to_dict() for item in self.evidence]
        return data
