"""Follow-up questions on one loaded input: `RLM.session(context)` and `rlm-local chat`.

Each question is a run of its own (its own trace, budgets and answer), but all of them share one
sandbox worker, so the input is sent to it once and variables left by earlier cells stay; the
root model is told the earlier questions and answers in a few lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlm_local.engine import RunOptions, RunResult
from rlm_local.engine.carryover import Bridge, Carryover, Context
from rlm_local.sandbox import Sandbox, SandboxError, SandboxLimits

if TYPE_CHECKING:
    from rlm_local.api import RLM

EARLIER_EXCHANGES = 5  # the latest ones are shown; older ones are left out
EARLIER_QUESTION_CHARS = 200
EARLIER_ANSWER_CHARS = 300


@dataclass(frozen=True)
class Exchange:
    question: str
    answer: str | None


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def earlier_block(history: list[Exchange]) -> str:
    """The session so far in a few lines, for the first user message of the next run."""
    if not history:
        return ""
    lines = ["Earlier in this session (the new question may refer to these):"]
    for exchange in history[-EARLIER_EXCHANGES:]:
        answer = "(no answer)" if exchange.answer is None else exchange.answer
        lines.append(
            f"- Q: {_short(exchange.question, EARLIER_QUESTION_CHARS)} -> "
            f"A: {_short(answer, EARLIER_ANSWER_CHARS)}"
        )
    return "\n".join(lines)


class Session:
    """Questions in a row on one context; close it (or use `with`) to stop its worker."""

    def __init__(self, rlm: RLM, context: str | dict[str, str], name: str = "-") -> None:
        self.rlm = rlm
        self.context = context
        self.name = name  # the path evidence gives a single text
        self.history: list[Exchange] = []
        self._sandbox: Sandbox | None = None
        self._names: frozenset[str] = frozenset()
        self._bridge: dict[str, Callable[..., Any]] = {}  # the running question's functions

    def ask(
        self,
        question: str,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        options: RunOptions | None = None,
        cancel: threading.Event | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """One question; a cancelled or failed one is not remembered as an earlier answer."""
        carryover = Carryover(earlier=earlier_block(self.history), open_sandbox=self._lend)
        result = self.rlm.run(
            question, self.context, on_event, options, cancel, record, carryover, self.name
        )
        self.history.append(Exchange(question, result.answer))
        return result

    @property
    def worker_started(self) -> bool:
        return self._sandbox is not None

    @contextmanager
    def _lend(self, context: Context, bridge: Bridge, limits: SandboxLimits) -> Iterator[Sandbox]:
        """The session's sandbox for one run, its bridge calls relayed to that run's functions.

        The worker learns the bridge's names once, when it starts, so the sandbox gets relays
        that look up the current run's function by name. Limits are those of the first run.
        """
        if context is not self.context:
            raise SandboxError("A session's sandbox holds the session's context only.")
        if self._sandbox is None:
            self._names = frozenset(bridge)
            relays = {name: self._relay(name) for name in self._names}
            self._sandbox = Sandbox(context, bridge=relays, limits=limits)
        elif frozenset(bridge) != self._names:
            raise SandboxError("The engine's bridge functions changed within a session.")
        self._bridge = dict(bridge)
        try:
            yield self._sandbox
        finally:
            self._bridge = {}

    def _relay(self, name: str) -> Callable[..., Any]:
        def relay(*args: Any, **kwargs: Any) -> Any:
            func = self._bridge.get(name)
            if func is None:
                raise RuntimeError(f"{name} is not available between questions")
            return func(*args, **kwargs)

        return relay

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
