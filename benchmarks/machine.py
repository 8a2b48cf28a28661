"""Which machine produced a benchmark row: results differ across CPUs, not only in speed."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import llama_cpp

        llama = f"llama-cpp-python {llama_cpp.__version__}"
        features = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except Exception:  # the scripted smoke run needs no llama.cpp
        llama, features = "not loaded", ""
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "llama": llama,
        "llama_features": features[:300],
        "python": platform.python_version(),
    }


def machine_name(info: dict[str, Any]) -> str:
    """CPU, cores and vector unit: llama.cpp picks other kernels on AVX-512 than on AVX2, and the
    same greedy labelling came out different (OOLONG-style 32K 0.75 on one, 0.49 on the other)."""
    features = str(info.get("llama_features", ""))
    isa = next((f", {isa}" for isa in ("AVX512", "AVX2") if f"{isa} = 1" in features), "")
    return f"{info.get('cpu', 'unknown')}{isa}, {info.get('cores', '?')} cores"
