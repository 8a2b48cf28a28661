"""Run by test_chat.py as a subprocess: the real `rlm-local chat` command on scripted models.

The root model answers "second?" at once and works on anything else until stopped, one slow
sub-call a turn; the first sub-call creates the file $CHAT_MARKER, so the test knows when to
press Ctrl-C.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

from scripted import ScriptedModel

import rlm_local.api
from rlm_local import cli


def _models() -> tuple[ScriptedModel, ScriptedModel]:
    parts = itertools.count(1)

    def root(last: str) -> str:
        if "Question: second?" in last:
            return "FINAL('the second answer')"
        return f"print(llm_query('part {next(parts)}'))"

    def sub(prompt: str) -> str:
        Path(os.environ["CHAT_MARKER"]).touch()
        time.sleep(0.3)
        return "nothing here"

    return ScriptedModel(answer=root), ScriptedModel(answer=sub)


class ScriptedRLM(rlm_local.api.RLM):
    def __init__(self, settings: Any = None, options: Any = None, **_: Any) -> None:
        root, sub = _models()
        super().__init__(settings, options, root=root, sub=sub)


if __name__ == "__main__":
    rlm_local.api.RLM = ScriptedRLM  # type: ignore[misc]
    cli.main()
