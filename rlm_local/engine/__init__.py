"""The engine: the RLM loop, its prompts, and turning inputs into a `context`."""

from rlm_local.engine.inputs import InputOptions, LoadedInput, load_inputs
from rlm_local.engine.loop import Engine
from rlm_local.engine.options import RunOptions, RunResult, RunStats

__all__ = [
    "Engine",
    "InputOptions",
    "LoadedInput",
    "RunOptions",
    "RunResult",
    "RunStats",
    "load_inputs",
]
