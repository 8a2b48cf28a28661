"""rlm-local: answer questions about inputs far larger than a model's window, on local models.

The input lives in a sandbox as `context`; a root model writes code that reads pieces of it and
asks a smaller model about them (a Recursive Language Model).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RLM": "rlm_local.api",
    "InputOptions": "rlm_local.engine",
    "RunOptions": "rlm_local.engine",
    "RunResult": "rlm_local.engine",
    "load_inputs": "rlm_local.engine",
    "Evidence": "rlm_local.engine.evidence",
    "ChatModel": "rlm_local.models.contract",
    "Completion": "rlm_local.models.contract",
    "Sampling": "rlm_local.models.contract",
    "ModelStore": "rlm_local.models",
    "RlmLocalError": "rlm_local.errors",
    "Settings": "rlm_local.config",
    "load_settings": "rlm_local.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import on first use, so `rlm-local models list` does not load the engine."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlm_local' has no attribute {name!r}")
