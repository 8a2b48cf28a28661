"""What a follow-up question inherits from its session: the sandbox worker and earlier answers.

The engine opens a fresh sandbox per run; a session lends it one it keeps open between runs
instead (for the top-level run only: an rlm_query run works on a piece, in a sandbox of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from rlm_local.sandbox import Sandbox, SandboxLimits

Context = str | dict[str, str]
Bridge = Mapping[str, Callable[..., Any]]
# (context, bridge, limits) -> a context manager giving the sandbox; `Sandbox` itself is one.
SandboxOpener = Callable[[Context, Bridge, SandboxLimits], AbstractContextManager[Sandbox]]


@dataclass(frozen=True)
class Carryover:
    earlier: str = ""  # "Earlier in this session: ..." put before the first user message
    open_sandbox: SandboxOpener | None = None  # None: a fresh Sandbox per run

    def opener(self, depth: int) -> SandboxOpener:
        """The session's sandbox for the top-level run; a new one for anything nested."""
        if depth == 0 and self.open_sandbox is not None:
            return self.open_sandbox
        return Sandbox

    def preface(self, depth: int, text: str) -> str:
        """`text` (a first user message) with the earlier questions and answers before it."""
        return f"{self.earlier}\n\n{text}" if depth == 0 and self.earlier else text
