"""Sandbox: generated code runs under RestrictedPython in a limited worker process.

Policy (what a cell may touch) is RestrictedPython plus the guards in `policy`; isolation (what a
cell may cost) is a separate worker process with resource limits that the parent kills and replaces
when a cell runs too long or dies. The worker holds `context` and the variables; the parent holds
everything else (models, cache) and serves the bridge functions a cell calls.
"""

from rlm_local.sandbox.runner import CellResult, Sandbox, SandboxError, SandboxLimits

__all__ = ["CellResult", "Sandbox", "SandboxError", "SandboxLimits"]
