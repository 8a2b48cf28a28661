"""Running `rlm-local` as a user does: a separate process, the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`python -m rlm_local ARGS` with the test's environment plus `env`."""
    return subprocess.run(
        [sys.executable, "-m", "rlm_local", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
