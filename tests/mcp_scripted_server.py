"""Run by test_mcp.py as a subprocess: the real MCP server over stdio, on scripted models.

Arguments: the roots. The root model counts the word "secret" in code; the sub-model is unused.
"""

from __future__ import annotations

import sys

from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions
from rlm_local.mcp_server import McpSettings, real_roots, serve


def main() -> None:
    root = ScriptedModel(answer=lambda _: "n = str(context).count('secret')\nFINAL(str(n))")
    sub = ScriptedModel(answer=lambda _: "unused")
    rlm = RLM(load_settings(), RunOptions(mode="rlm", first_search=False), root=root, sub=sub)
    serve(rlm, McpSettings(real_roots(sys.argv[1:])))


if __name__ == "__main__":
    main()
